"""im2col and col2im on all cores (numba). Reference: ``mrcnn_np/nn/conv.py``.

A convolution is im2col (a copy), one BLAS matrix product, and for the backward two more
products and col2im (strided adds). BLAS uses every core it is given; NumPy's copies and adds
use one. At the tiny preset's sizes the copies are a third of a convolution's time, so on two
cores they are what is left serial. These two kernels do the same copies and the same adds,
split over cores with ``prange``:

- ``im2col``: one task per row of ``cols`` (a channel and a kernel offset ``(c, i, j)``) and
  image; each task writes its own stretch of the row.
- ``col2im``: one input channel per task, so each thread owns whole planes of the gradient
  (no atomics), and it adds the kernel offsets in the reference's ``(i, j)`` order.

Both are pure copies and in-order additions: their results equal the NumPy reference bit for
bit (``tests/test_nn_conv.py``). This file imports nothing from ``mrcnn_np``; the caller pads
the input and computes the output size.

Measured on the 2-core machine, 2 numba threads, the tiny preset's shapes (ms, NumPy vs these
kernels): im2col of the mask head's 32 RoIs x 32 ch at 14x14 1.29 vs 1.08, of P2's 3x3 conv
(2 x 64 ch at 48x48) 1.39 vs 0.44, of the stem (stride 2) 1.82 vs 1.88; col2im of the same
2.78 vs 1.89, 2.43 vs 1.75 and 4.60 vs 1.85. On one thread (2026-12-01) im2col is slower
than NumPy's nine strided copies where the rows are short (the mask head, 32 RoIs x 64 ch at
14x14: 4.7 vs 3.0 ms; the stem 0.76 vs 0.26 ms), so ``nn/conv.py`` calls it only when numba
has more than one thread; col2im stays ahead or even there (5.7 vs 6.2, 0.50 vs 0.96 ms).

col2im's inner loop at stride 1 now spells out the unit stride, which LLVM vectorises: on
one thread (2026-12-02, a DataParallel worker's setting) the mask head's 8 RoIs x 64 ch at
14x14 1.52 -> 0.26 ms, P2's 64 ch at 48x48 1.00 -> 0.23 ms, 16 ch at 96x96 1.17 -> 0.20 ms
(medians of 30; the same adds in the same order, so still the reference's bits). The same
spelling made im2col's row copies slower than their slice copies, so im2col keeps those.
"""
import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def im2col(xp, kh, kw, stride, Ho, Wo):
    """xp [N, C, Hp, Wp] (padded) -> cols [C*kh*kw, N*Ho*Wo]; row ``(c*kh + i)*kw + j`` holds
    ``xp[n, c, oh*stride + i, ow*stride + j]`` at column ``(n*Ho + oh)*Wo + ow``.

    One task per (row, image): each writes its own ``Ho*Wo`` stretch of one row. At stride 1
    each output row of a patch is a contiguous slice of an input row (one vector copy); a
    first version with a scalar loop there was up to 2x slower than NumPy's copy."""
    N, C = xp.shape[0], xp.shape[1]
    K = C * kh * kw
    cols = np.empty((K, N * Ho * Wo), xp.dtype)
    for t in numba.prange(K * N):
        r = t // N
        n = t % N
        c = r // (kh * kw)
        i = (r // kw) % kh
        j = r % kw
        row = cols[r]
        plane = xp[n, c]                               # [Hp, Wp]
        for oh in range(Ho):
            src = plane[oh * stride + i]               # one padded input row [Wp]
            dst = (n * Ho + oh) * Wo
            if stride == 1:
                row[dst:dst + Wo] = src[j:j + Wo]
            else:
                for ow in range(Wo):
                    row[dst + ow] = src[ow * stride + j]
    return cols


@numba.njit(parallel=True, cache=True)
def col2im(cols, N, C, Hp, Wp, kh, kw, stride, Ho, Wo):
    """The adjoint of :func:`im2col`: cols [C*kh*kw, N*Ho*Wo] -> xp [N, C, Hp, Wp], where
    overlapping patches add up, kernel offsets in (i, j) order as in the reference."""
    xp = np.zeros((N, C, Hp, Wp), cols.dtype)
    for c in numba.prange(C):                          # each thread owns channel c's planes
        for n in range(N):
            for i in range(kh):
                for j in range(kw):
                    r = (c * kh + i) * kw + j
                    row = cols[r]
                    for oh in range(Ho):
                        dst = xp[n, c, oh * stride + i]   # one padded gradient row [Wp]
                        src = (n * Ho + oh) * Wo
                        if stride == 1:  # unit stride spelled out: LLVM vectorises this loop
                            for ow in range(Wo):
                                dst[j + ow] += row[src + ow]
                        else:
                            for ow in range(Wo):
                                dst[ow * stride + j] += row[src + ow]
    return xp
