"""Max pooling with its winners, and its backward (numba). Reference: ``mrcnn_np/nn/layers.py``.

The NumPy reference pads with -inf and makes ``k*k`` passes over the whole map, each keeping a
running maximum and the offset of its winner (three array operations per pass). For the stem's
3x3 / stride-2 pool that is 27 passes over a [N, C, H/4, W/4] map. This kernel visits each
window once and keeps its maximum in a register: the same comparisons in the same order
(row-major over the window, a value replaces the maximum only when strictly larger, a padded
cell counts as -inf), so the same maximum and the same winner.

The backward adds each output gradient onto its winner, in float64 and in the order of the
output cells, as the reference's ``np.bincount`` does, then rounds to the gradient's dtype: the
same sums in the same order, so the same bits (``tests/test_pool_numba.py``).

Measured on the 2-core machine, one thread (2026-12-03, medians of 55, the same runs): the
tiny stem's pool (2 images x 16 ch, 96x96 -> 48x48, after a ReLU) forward 2.8-3.1 -> 0.70-0.82
ms, backward 2.2 -> 0.23 ms. Each task is one (image, channel) plane, split over threads with ``prange``.
Tried and not kept (same bits, no faster, 0.80-2.05 ms): the comparison written without a
branch; no ``prange``; a running maximum over a whole output row per window offset, with and
without first splitting the columns into stride phases. The forward is bound by each window's
chain of nine dependent comparisons.
This file imports nothing from ``mrcnn_np``.
"""
import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def max_pool2d_forward(x, k, s, padding, Ho, Wo):
    """x [N, C, H, W] -> (out [N, C, Ho, Wo], flat [N, C, Ho, Wo] int64), where ``flat`` is
    the winner's index in one padded [H + 2*padding, W + 2*padding] plane (the reference's).

    Each task pads one plane with -inf (as the reference) and walks its windows; the first
    cell of a window starts the running maximum and only a strictly larger value replaces it."""
    N, C, H, W = x.shape
    Hp, Wp = H + 2 * padding, W + 2 * padding
    out = np.empty((N, C, Ho, Wo), x.dtype)
    flat = np.empty((N, C, Ho, Wo), np.int64)
    for t in numba.prange(N * C):
        n = t // C
        c = t % C
        xp = np.full((Hp, Wp), -np.inf, x.dtype)      # one padded plane
        xp[padding:padding + H, padding:padding + W] = x[n, c]
        for oh in range(Ho):
            for ow in range(Wo):
                y0 = oh * s                            # the window's top-left, padded coords
                x0 = ow * s
                best = xp[y0, x0]
                win = y0 * Wp + x0
                for a in range(k):
                    for b in range(k):
                        v = xp[y0 + a, x0 + b]
                        if v > best:
                            best = v
                            win = (y0 + a) * Wp + x0 + b
                out[n, c, oh, ow] = best
                flat[n, c, oh, ow] = win
    return out, flat


@numba.njit(parallel=True, cache=True)
def max_pool2d_backward(dout, flat, H, W, padding):
    """dout [N, C, Ho, Wo], flat from the forward -> dx [N, C, H, W] in dout's dtype: each
    output gradient added (in float64, in output order) onto its winner."""
    N, C, Ho, Wo = dout.shape
    Hp, Wp = H + 2 * padding, W + 2 * padding
    dx = np.empty((N, C, H, W), dout.dtype)
    for t in numba.prange(N * C):
        n = t // C
        c = t % C
        acc = np.zeros(Hp * Wp, np.float64)            # one padded plane's sums
        for oh in range(Ho):
            for ow in range(Wo):
                acc[flat[n, c, oh, ow]] += dout[n, c, oh, ow]
        for y in range(H):
            for xx in range(W):
                dx[n, c, y, xx] = acc[(y + padding) * Wp + xx + padding]
    return dx
