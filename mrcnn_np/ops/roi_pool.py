"""RoIPool (Fast R-CNN, Sec. 2.1): quantize the RoI, cut it into bins, take each bin's max.

Semantics are torchvision's ``torchvision.ops.roi_pool`` (its CPU kernel), to the letter:

1. The RoI corners are scaled and *rounded* to whole feature pixels, with C's ``round``
   (halves away from zero): ``roi_start_w = round(x1 * spatial_scale)``, and so on.
2. The RoI covers pixels ``roi_start .. roi_end`` inclusive, so ``roi_width =
   max(roi_end_w - roi_start_w + 1, 1)`` (a malformed RoI becomes 1x1).
3. Bin ``(ph, pw)`` covers rows ``floor(ph * bin_size_h) .. ceil((ph + 1) * bin_size_h) - 1``
   (shifted by ``roi_start_h``, clipped to the map) where ``bin_size_h = roi_height / S_h``;
   neighbouring bins may share a row. The same for columns.
4. A bin's output is the max over its pixels; an empty bin (wholly off the map) outputs 0.

Tie rule (backward): the gradient of a bin goes to its argmax, and when several pixels hold
the maximum value, the *first in row-major order* (smallest row, then smallest column) wins
-- torchvision's CPU loop replaces the running max only on a strict ``>``. Values not above
``-FLT_MAX`` are never selected, so a bin of ``-inf`` outputs ``-FLT_MAX`` and passes no
gradient. Empty bins pass no gradient either.

Gradient: to ``input`` only; the RoI coordinates are rounded, so their gradient would be zero
almost everywhere, and proposals are treated as constants anyway (as in torchvision).
"""
import numpy as np

from ._backend import DEFAULT_BACKEND, resolve_backend
from .roi_align import convert_boxes_to_roi_format, pair, round_half_away

FLT_MAX = float(np.finfo(np.float32).max)  # torchvision's start value for the running max


def roi_pool_bins(rois, spatial_scale, pooled_height, pooled_width, H, W):
    """Each bin's pixel range, as torchvision computes it.

    rois: [R, 5] = (batch_index, x1, y1, x2, y2), float T.
    Returns ``hstart, hend`` [R, S_h] and ``wstart, wend`` [R, S_w] int64 (half-open
    ranges ``[start, end)``, already shifted by the RoI start and clipped to the map).
    """
    T = rois.dtype.type
    scale = T(spatial_scale)
    roi_start_w = round_half_away(rois[:, 1] * scale).astype(np.int64)   # [R]
    roi_start_h = round_half_away(rois[:, 2] * scale).astype(np.int64)   # [R]
    roi_end_w = round_half_away(rois[:, 3] * scale).astype(np.int64)     # [R]
    roi_end_h = round_half_away(rois[:, 4] * scale).astype(np.int64)     # [R]
    roi_width = np.maximum(roi_end_w - roi_start_w + 1, 1)               # [R] pixels, inclusive
    roi_height = np.maximum(roi_end_h - roi_start_h + 1, 1)              # [R]
    bin_size_h = roi_height.astype(T) / T(pooled_height)                 # [R]
    bin_size_w = roi_width.astype(T) / T(pooled_width)                   # [R]
    ph = np.arange(pooled_height)                                        # [S_h]
    pw = np.arange(pooled_width)                                         # [S_w]
    hstart = np.floor(ph.astype(T)[None] * bin_size_h[:, None]).astype(np.int64)       # [R, S_h]
    hend = np.ceil((ph + 1).astype(T)[None] * bin_size_h[:, None]).astype(np.int64)    # [R, S_h]
    wstart = np.floor(pw.astype(T)[None] * bin_size_w[:, None]).astype(np.int64)       # [R, S_w]
    wend = np.ceil((pw + 1).astype(T)[None] * bin_size_w[:, None]).astype(np.int64)    # [R, S_w]
    hstart = np.clip(hstart + roi_start_h[:, None], 0, H)
    hend = np.clip(hend + roi_start_h[:, None], 0, H)
    wstart = np.clip(wstart + roi_start_w[:, None], 0, W)
    wend = np.clip(wend + roi_start_w[:, None], 0, W)
    return hstart, hend, wstart, wend


def roi_pool_forward(input, rois, output_size, spatial_scale=1.0, backend=DEFAULT_BACKEND):
    """RoIPool forward.

    Inputs:
    - input: [N, C, H, W] float32 or float64.
    - rois: [R, 5] = (batch_index, x1, y1, x2, y2) in image coordinates, or a list of N
      arrays [K_i, 4] of boxes, one per image.
    - output_size: S or (S_h, S_w); spatial_scale: feature pixels per image pixel.
    - backend: "numpy" (this file), "numba" or "auto". RoIPool is the baseline being
      replaced, so it has no CUDA kernel: "cuda" raises ``BackendUnavailable``.

    Returns ``(out, cache)``; out: [R, C, S_h, S_w]. The cache holds ``argmax``
    [R, C, S_h, S_w] int64: the flat index ``h * W + w`` of each bin's max in its image's
    channel plane, or -1 for a bin that passes no gradient.
    """
    backend = resolve_backend(backend, "roi_pool", kernels=("numba",))
    input = np.asarray(input)
    N, C, H, W = input.shape
    rois = convert_boxes_to_roi_format(rois, input.dtype)                 # [R, 5]
    S_h, S_w = pair(output_size)
    R = len(rois)
    out = np.zeros((R, C, S_h, S_w), input.dtype)                         # [R, C, S_h, S_w]
    argmax = np.full((R, C, S_h, S_w), -1, np.int64)                      # [R, C, S_h, S_w]
    cache = dict(rois=rois, argmax=argmax, input_shape=input.shape, backend=backend)
    if R == 0 or C == 0:
        return out, cache
    hstart, hend, wstart, wend = roi_pool_bins(rois, spatial_scale, S_h, S_w, H, W)
    batch = rois[:, 0].astype(np.int64)                                   # [R]
    if backend == "numba":
        from kernels.roi_pool_numba import roi_pool_forward_numba
        roi_pool_forward_numba(input, batch, hstart, hend, wstart, wend, out, argmax)
        return out, cache

    # The NumPy reference: one bin at a time, all channels at once.
    for r in range(R):
        for ph in range(S_h):
            for pw in range(S_w):
                h0, h1, w0, w1 = hstart[r, ph], hend[r, ph], wstart[r, pw], wend[r, pw]
                if h1 <= h0 or w1 <= w0:
                    continue                                              # empty bin: 0, no argmax
                region = input[batch[r], :, h0:h1, w0:w1].reshape(C, -1)  # [C, h*w], row-major
                first = region.argmax(axis=1)                             # first max wins ties
                best = region[np.arange(C), first]                        # [C]
                hit = best > -FLT_MAX                                     # torchvision's strict >
                rows, cols = np.divmod(first, w1 - w0)
                out[r, :, ph, pw] = np.where(hit, best, -FLT_MAX)
                argmax[r, :, ph, pw] = np.where(hit, (h0 + rows) * W + (w0 + cols), -1)
    return out, cache


def roi_pool_backward(dout, cache):
    """RoIPool backward: dinput [N, C, H, W] (fresh), each bin's gradient added at its argmax.

    Pixels that are the max of several bins (bins overlap, RoIs overlap) receive the sum.
    """
    rois, argmax = cache["rois"], cache["argmax"]
    N, C, H, W = cache["input_shape"]
    dout = np.asarray(dout, dtype=rois.dtype)
    dinput = np.zeros((N, C, H * W), rois.dtype)                          # [N, C, H*W]
    if len(rois) == 0 or C == 0:
        return dinput.reshape(N, C, H, W)
    batch = rois[:, 0].astype(np.int64)                                   # [R]
    if cache["backend"] == "numba":
        from kernels.roi_pool_numba import roi_pool_backward_numba
        roi_pool_backward_numba(dout, batch, argmax, dinput)
        return dinput.reshape(N, C, H, W)
    R, _, S_h, S_w = argmax.shape
    n = np.broadcast_to(batch[:, None, None, None], argmax.shape)         # [R, C, S_h, S_w]
    c = np.broadcast_to(np.arange(C)[None, :, None, None], argmax.shape)  # [R, C, S_h, S_w]
    hit = argmax >= 0
    np.add.at(dinput, (n[hit], c[hit], argmax[hit]), dout[hit])           # scatter-add
    return dinput.reshape(N, C, H, W)


def roi_pool(input, rois, output_size, spatial_scale=1.0, backend=DEFAULT_BACKEND):
    """torchvision.ops.roi_pool's signature; returns out [R, C, S_h, S_w] only."""
    return roi_pool_forward(input, rois, output_size, spatial_scale, backend)[0]
