"""RoIAlign (Mask R-CNN paper, Sec. 3): bilinear samples, no rounding anywhere.

Each RoI is cut into ``S_h x S_w`` bins. In each bin, ``roi_bin_grid_h x roi_bin_grid_w``
points are sampled on a regular grid; each sample is a bilinear blend of the four pixels
around it; a bin's output is the mean of its samples. Semantics are torchvision's
``torchvision.ops.roi_align`` (its CPU kernel), to the letter:

- ``aligned=False`` (torchvision's default, and what ``MultiScaleRoIAlign`` uses): the RoI
  corners are ``box * spatial_scale``, and a RoI narrower than 1 feature pixel is widened to
  1 (``roi_width = max(roi_width, 1)``). ``aligned=True``: corners are shifted by
  ``-0.5`` (pixel centres sit at half-integers in box coordinates) and no minimum size.
- ``sampling_ratio > 0``: that many samples per bin along each axis. ``sampling_ratio <= 0``
  (adaptive): ``ceil(roi_height / S_h)`` along y and ``ceil(roi_width / S_w)`` along x.
- A sample with ``y < -1`` or ``y > H`` (or the same for x) contributes 0. Otherwise it is
  clamped into the map: ``y <= 0 -> 0``; ``y >= H - 1 -> H - 1`` (both taps on the last row).
- A bin's value is ``sum(samples) / max(roi_bin_grid_h * roi_bin_grid_w, 1)``.

The weights are separable: sample ``(y, x)`` gives pixel ``(i, j)`` the weight
``wy(i) * wx(j)``, and it counts only if both ``y`` and ``x`` are inside. So for one RoI and
one channel the whole output is two small matrix products,

    out[c] = Ay @ input[b, c] @ Ax.T / count      # [S_h, H] @ [H, W] @ [W, S_w]

where ``Ay[p, i]`` sums the y-weights that the samples of bin row ``p`` give to row ``i``.
That is how the NumPy reference below computes it, and why its backward is just the
transpose, ``dinput[b, c] += Ay.T @ dout[r, c] @ Ax / count``: a scatter of the same
bilinear weights back onto the pixels they were read from.

Gradient: to ``input`` only. The RoI coordinates get none: proposals are treated as
constants, as in the paper and in torchvision (whose roi_align has no gradient for ``rois``).
The gradient of the box position would flow through the sample positions, which the
detector does not train through (box regression has its own loss).

``roi_align_max_forward`` / ``roi_align_max_backward`` (end of the file) keep each bin's
largest sample instead of the mean, the "RoIAlign (bilinear, max)" row of the paper's
Table 2c; its backward sends a bin's gradient to the winning sample's four pixels only.
"""
from typing import NamedTuple

import numpy as np

from ._backend import DEFAULT_BACKEND, resolve_backend


# ------------------------------------------------------------------------------- helpers ---

def pair(output_size):
    """``7 -> (7, 7)``; ``(7, 5) -> (7, 5)``."""
    if isinstance(output_size, (int, np.integer)):
        return int(output_size), int(output_size)
    h, w = output_size
    return int(h), int(w)


def convert_boxes_to_roi_format(rois, dtype):
    """Return RoIs as one ``[R, 5] = (batch_index, x1, y1, x2, y2)`` array of ``dtype``.

    ``rois`` is either already ``[R, 5]``, or a list with one ``[K_i, 4]`` box array per
    image (torchvision's other accepted form); image ``i``'s boxes get batch index ``i``.
    """
    if isinstance(rois, (list, tuple)):
        parts = [np.concatenate([np.full((len(b), 1), i, dtype), np.asarray(b, dtype).reshape(-1, 4)], 1)
                 for i, b in enumerate(rois)]                             # each [K_i, 5]
        return np.concatenate(parts, 0) if parts else np.zeros((0, 5), dtype)  # [R, 5]
    rois = np.asarray(rois, dtype=dtype)
    if rois.ndim != 2 or rois.shape[1] != 5:
        raise ValueError(f"rois must be [R, 5] = (batch_index, x1, y1, x2, y2), got {rois.shape}")
    return rois                                                           # [R, 5]


def round_half_away(x):
    """C's ``round``: halves go away from zero (``np.round`` would round them to even)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def roi_align_params(rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    """Per-RoI geometry of RoIAlign, computed in the RoIs' dtype exactly as torchvision does.

    rois: [R, 5] = (batch_index, x1, y1, x2, y2), float ``T``.
    Returns a dict of [R] arrays: ``roi_batch_ind`` (int64), ``roi_start_h``, ``roi_start_w``,
    ``bin_size_h``, ``bin_size_w`` (T), ``roi_bin_grid_h``, ``roi_bin_grid_w`` (int64, >= 0),
    ``count`` (T, the number of samples per bin, at least 1).
    """
    T = rois.dtype.type
    scale = T(spatial_scale)
    offset = T(0.5) if aligned else T(0.0)                    # half-pixel shift of aligned=True
    roi_start_w = rois[:, 1] * scale - offset                 # [R]
    roi_start_h = rois[:, 2] * scale - offset                 # [R]
    roi_end_w = rois[:, 3] * scale - offset                   # [R]
    roi_end_h = rois[:, 4] * scale - offset                   # [R]
    roi_width = roi_end_w - roi_start_w                       # [R]
    roi_height = roi_end_h - roi_start_h                      # [R]
    if not aligned:                                           # legacy: force malformed RoIs to 1x1
        roi_width = np.maximum(roi_width, T(1))
        roi_height = np.maximum(roi_height, T(1))
    bin_size_h = roi_height / T(pooled_height)                # [R]
    bin_size_w = roi_width / T(pooled_width)                  # [R]
    if sampling_ratio > 0:
        roi_bin_grid_h = np.full(len(rois), sampling_ratio, np.int64)   # [R]
        roi_bin_grid_w = np.full(len(rois), sampling_ratio, np.int64)   # [R]
    else:                                                     # adaptive: about one sample per pixel
        with np.errstate(invalid="ignore"):
            roi_bin_grid_h = np.nan_to_num(np.ceil(roi_height / T(pooled_height))).astype(np.int64)
            roi_bin_grid_w = np.nan_to_num(np.ceil(roi_width / T(pooled_width))).astype(np.int64)
        # A negative grid (aligned=True, x2 < x1) samples nothing, as torchvision's loops do.
        roi_bin_grid_h = np.maximum(roi_bin_grid_h, 0)
        roi_bin_grid_w = np.maximum(roi_bin_grid_w, 0)
    count = np.maximum(roi_bin_grid_h * roi_bin_grid_w, 1).astype(rois.dtype)  # [R]
    return dict(roi_batch_ind=rois[:, 0].astype(np.int64), roi_start_h=roi_start_h,
                roi_start_w=roi_start_w, bin_size_h=bin_size_h, bin_size_w=bin_size_w,
                roi_bin_grid_h=roi_bin_grid_h, roi_bin_grid_w=roi_bin_grid_w, count=count)


def sample_positions(roi_start, bin_size, roi_bin_grid, pooled):
    """Where RoIAlign samples along one axis, in feature-pixel coordinates (pixel ``i``'s
    centre is at ``i``).

    roi_start, bin_size: [R] float T; roi_bin_grid: [R] int; pooled: S.
    Returns ``pos`` [R, S, G] T, sample ``g`` of bin ``p`` at
    ``roi_start + p * bin_size + (g + 0.5) * bin_size / roi_bin_grid``, and ``used``
    [R, 1, G] bool (``g < roi_bin_grid``; ``G = max(roi_bin_grid)``, the rest is padding).
    """
    T = roi_start.dtype.type
    R = len(roi_start)
    G = int(roi_bin_grid.max()) if R else 0
    p = np.arange(pooled).astype(T)[None, :, None]                        # [1, S, 1]
    g = (np.arange(G) + 0.5).astype(T)[None, None, :]                     # [1, 1, G]
    start = roi_start[:, None, None]                                      # [R, 1, 1]
    bsize = bin_size[:, None, None]                                       # [R, 1, 1]
    grid = np.maximum(roi_bin_grid, 1).astype(T)[:, None, None]           # [R, 1, 1]
    with np.errstate(invalid="ignore", over="ignore"):
        pos = start + p * bsize + g * bsize / grid                        # [R, S, G]
    used = np.arange(G)[None, None, :] < roi_bin_grid[:, None, None]      # [R, 1, G]
    return pos, used


def bilinear_axis(roi_start, bin_size, roi_bin_grid, pooled, size):
    """Sample positions along one axis and their two bilinear taps, for every RoI.

    roi_start, bin_size: [R] float T; roi_bin_grid: [R] int (samples per bin on this axis);
    pooled: S (bins on this axis); size: H or W (pixels on this axis).

    Returns ``low, high`` [R, S, G] int64 (the two pixel rows/columns a sample reads) and
    ``w_low, w_high`` [R, S, G] T (their weights), where ``G = max(roi_bin_grid)``. Sample
    ``g`` of bin ``p`` sits at ``roi_start + p * bin_size + (g + 0.5) * bin_size / grid``.
    Unused slots (``g >= grid``) and samples outside ``[-1, size]`` get weight 0 and index 0.
    This is torchvision's ``pre_calc``, split into y and x because the weights are separable.
    """
    T = roi_start.dtype.type
    pos, used = sample_positions(roi_start, bin_size, roi_bin_grid, pooled)   # [R, S, G]
    with np.errstate(invalid="ignore"):
        inside = used & (pos >= -1.0) & (pos <= size)                     # [R, S, G]
    pos = np.where(inside, pos, T(0))
    pos = np.where(pos <= 0, T(0), pos)                       # clamp samples in [-1, 0] to 0
    low = pos.astype(np.int64)                                # floor (pos >= 0 here)
    edge = low >= size - 1                                    # on or past the last pixel
    high = np.where(edge, size - 1, low + 1)
    low = np.where(edge, size - 1, low)
    pos = np.where(edge, low.astype(T), pos)
    frac = pos - low.astype(T)                                # distance to the low tap, in [0, 1)
    w_high = np.where(inside, frac, T(0))                     # [R, S, G]
    w_low = np.where(inside, T(1) - frac, T(0))               # [R, S, G]
    return low, high, w_low, w_high


def axis_matrix(low, high, w_low, w_high, size):
    """One RoI's axis weights as a matrix ``A [S, size]``: ``A[p, i]`` = total weight that
    the samples of bin ``p`` give to pixel ``i`` (summed over the bin's samples).

    low, high: [S, G] int; w_low, w_high: [S, G] T.
    """
    S = low.shape[0]
    A = np.zeros((S, size), w_low.dtype)                                  # [S, size]
    rows = np.broadcast_to(np.arange(S)[:, None], low.shape)              # [S, G]
    np.add.at(A, (rows, low), w_low)
    np.add.at(A, (rows, high), w_high)
    return A


def window(A):
    """The smallest range ``[lo, hi)`` of pixels that ``A [S, size]`` touches (0, 0 if none)."""
    nz = np.flatnonzero(A.any(axis=0))
    return (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, 0)


# ---------------------------------------------------------------------------------- op ---

GEOMETRY_FIELDS = ("roi_batch_ind", "roi_start_h", "roi_start_w", "bin_size_h", "bin_size_w",
                   "roi_bin_grid_h", "roi_bin_grid_w", "count")  # the CUDA kernels' order


class SampleTables(NamedTuple):
    """Every RoI's bilinear sample table (the reference's ``bilinear_axis``), in the order the
    numba kernels take them. Computed here, once, so every backend rounds the same way."""
    roi_batch_ind: np.ndarray   # [R] int64
    roi_bin_grid_h: np.ndarray  # [R] int64, samples per bin along y
    roi_bin_grid_w: np.ndarray  # [R] int64, along x
    count: np.ndarray           # [R] T, samples per bin (at least 1)
    y_low: np.ndarray           # [R, S_h, G_y] int64
    y_high: np.ndarray          # [R, S_h, G_y] int64
    wy_low: np.ndarray          # [R, S_h, G_y] T
    wy_high: np.ndarray         # [R, S_h, G_y] T
    x_low: np.ndarray           # [R, S_w, G_x] int64
    x_high: np.ndarray          # [R, S_w, G_x] int64
    wx_low: np.ndarray          # [R, S_w, G_x] T
    wx_high: np.ndarray         # [R, S_w, G_x] T


def sample_tables(prm, S_h, S_w, H, W):
    """``roi_align_params``' output -> ``SampleTables`` for an ``H x W`` map."""
    ys = bilinear_axis(prm["roi_start_h"], prm["bin_size_h"], prm["roi_bin_grid_h"], S_h, H)
    xs = bilinear_axis(prm["roi_start_w"], prm["bin_size_w"], prm["roi_bin_grid_w"], S_w, W)
    return SampleTables(prm["roi_batch_ind"], prm["roi_bin_grid_h"], prm["roi_bin_grid_w"],
                        prm["count"], *ys, *xs)


def roi_align_forward(input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1,
                      aligned=False, backend=DEFAULT_BACKEND):
    """RoIAlign forward.

    Inputs:
    - input: [N, C, H, W] float32 or float64 feature map.
    - rois: [R, 5] = (batch_index, x1, y1, x2, y2) in image coordinates (cast to input's
      dtype), or a list of N arrays [K_i, 4] of boxes, one per image.
    - output_size: S or (S_h, S_w).
    - spatial_scale: feature pixels per image pixel (1/4 for P2, ..., 1/32).
    - sampling_ratio: samples per bin along each axis; <= 0 means adaptive.
    - aligned: shift boxes by -0.5 pixel (True) or use the legacy convention (False).
    - backend: "numpy" (this file), "numba", "cuda" or "auto" (kernels in ``kernels/``; this
      file computes the per-RoI geometry and sample tables and hands them in).

    Returns ``(out, cache)``; out: [R, C, S_h, S_w], input's dtype.
    """
    backend = resolve_backend(backend, "roi_align")
    input = np.asarray(input)
    N, C, H, W = input.shape
    rois = convert_boxes_to_roi_format(rois, input.dtype)                 # [R, 5]
    S_h, S_w = pair(output_size)
    R = len(rois)
    cache = dict(rois=rois, input_shape=input.shape, output_size=(S_h, S_w),
                 spatial_scale=spatial_scale, sampling_ratio=sampling_ratio,
                 aligned=aligned, backend=backend)
    if R == 0 or C == 0:
        return np.zeros((R, C, S_h, S_w), input.dtype), cache
    prm = roi_align_params(rois, spatial_scale, S_h, S_w, sampling_ratio, aligned)
    if backend == "cuda":
        from kernels.roi_align_cuda import roi_align_forward_cuda
        return roi_align_forward_cuda(input, [prm[k] for k in GEOMETRY_FIELDS], S_h, S_w), cache
    tables = sample_tables(prm, S_h, S_w, H, W)
    if backend == "numba":
        from kernels.roi_align_numba import roi_align_forward_numba
        return roi_align_forward_numba(input, tables, S_h, S_w), cache

    # The NumPy reference: one RoI at a time, two small matrix products per RoI.
    t = tables
    out = np.zeros((R, C, S_h, S_w), input.dtype)                        # [R, C, S_h, S_w]
    for r in range(R):
        b = t.roi_batch_ind[r]
        Ay = axis_matrix(t.y_low[r], t.y_high[r], t.wy_low[r], t.wy_high[r], H)  # [S_h, H]
        Ax = axis_matrix(t.x_low[r], t.x_high[r], t.wx_low[r], t.wx_high[r], W)  # [S_w, W]
        y0, y1 = window(Ay)                                               # rows the RoI reads
        x0, x1 = window(Ax)                                               # columns the RoI reads
        if y1 == y0 or x1 == x0:
            continue                                                      # every sample outside
        patch = input[b, :, y0:y1, x0:x1]                                 # [C, h, w]
        out[r] = Ay[:, y0:y1] @ patch @ Ax[:, x0:x1].T / t.count[r]       # [C, S_h, S_w]
    return out, cache


def roi_align_backward(dout, cache):
    """RoIAlign backward.

    Inputs: dout [R, C, S_h, S_w]; cache from ``roi_align_forward``.
    Returns dinput [N, C, H, W], a fresh array: each output bin's gradient, divided by the
    sample count, scattered back onto the four pixels of each of its samples with their
    bilinear weights. Pixels read by several RoIs or samples receive the sum.
    The RoIs get no gradient (see the module docstring).
    """
    rois = cache["rois"]
    N, C, H, W = cache["input_shape"]
    S_h, S_w = cache["output_size"]
    dout = np.asarray(dout, dtype=rois.dtype)
    if len(rois) == 0 or C == 0:
        return np.zeros((N, C, H, W), rois.dtype)
    prm = roi_align_params(rois, cache["spatial_scale"], S_h, S_w, cache["sampling_ratio"],
                           cache["aligned"])
    if cache["backend"] == "cuda":
        from kernels.roi_align_cuda import roi_align_backward_cuda
        return roi_align_backward_cuda(dout, [prm[k] for k in GEOMETRY_FIELDS], (N, C, H, W))
    t = sample_tables(prm, S_h, S_w, H, W)
    if cache["backend"] == "numba":
        from kernels.roi_align_numba import roi_align_backward_numba
        return roi_align_backward_numba(dout, t, (N, C, H, W))

    dinput = np.zeros((N, C, H, W), rois.dtype)                           # [N, C, H, W]
    for r in range(len(rois)):
        b = t.roi_batch_ind[r]
        Ay = axis_matrix(t.y_low[r], t.y_high[r], t.wy_low[r], t.wy_high[r], H)  # [S_h, H]
        Ax = axis_matrix(t.x_low[r], t.x_high[r], t.wx_low[r], t.wx_high[r], W)  # [S_w, W]
        y0, y1 = window(Ay)
        x0, x1 = window(Ax)
        if y1 == y0 or x1 == x0:
            continue
        # transpose of the forward: [h, S_h] @ [C, S_h, S_w] @ [S_w, w] -> [C, h, w]
        dinput[b, :, y0:y1, x0:x1] += Ay[:, y0:y1].T @ dout[r] @ Ax[:, x0:x1] / t.count[r]
    return dinput


def roi_align(input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False,
              backend=DEFAULT_BACKEND):
    """torchvision.ops.roi_align's signature; returns out [R, C, S_h, S_w] only."""
    return roi_align_forward(input, rois, output_size, spatial_scale, sampling_ratio, aligned,
                             backend)[0]


# ------------------------------------------------------------------ the max reduction ---
# The Mask R-CNN paper's Table 2c also reports "RoIAlign (bilinear, max)": the same bilinear
# samples, but a bin keeps the largest of them instead of their mean (30.2 AP vs 30.3 for
# avg: the reduction hardly matters; the rounding does). It is an ablation, not on the
# default path, so it has the NumPy definition only. It is the reference above with one
# change: the axis matrices get one row per *sample* instead of one per bin (the bin's sum
# is left out), so the two products give every sample, and a max over each bin's samples
# replaces the mean.

def sample_matrix(low, high, w_low, w_high, size):
    """One RoI's per-sample axis weights, ``A [S * G, size]``: row ``p * G + g`` holds the two
    bilinear taps of sample ``g`` of bin ``p`` (``axis_matrix`` sums a bin's G rows into one).

    low, high: [S, G] int; w_low, w_high: [S, G] T (0 for padding slots and off-map samples).
    """
    return axis_matrix(low.reshape(-1, 1), high.reshape(-1, 1), w_low.reshape(-1, 1),
                       w_high.reshape(-1, 1), size)                      # [S*G, size]


def roi_align_max_forward(input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1,
                          aligned=False, backend=DEFAULT_BACKEND):
    """RoIAlign with a max over each bin's samples.

    Inputs as ``roi_align_forward``. The sample grid, the ``aligned`` convention and the
    out-of-map rules are RoIAlign's (``bilinear_axis``); a sample off the map has the value 0,
    as it adds 0 to the average of ``roi_align``. A bin's output is the largest of its
    ``roi_bin_grid_h * roi_bin_grid_w`` samples; a bin with no samples (an adaptive grid of
    0, ``aligned=True`` and x2 < x1) outputs 0.
    backend: there is no kernel; "numpy" and "auto" run this function, "numba" and "cuda"
    raise ``BackendUnavailable``.

    Returns ``(out, cache)``; out [R, C, S_h, S_w]. The cache holds ``argmax`` [R, C, S_h, S_w]
    int64: the winning sample's index ``iy * G_x + ix`` in its bin (ties: the first in
    row-major order wins, as in RoIPool), or -1 for a bin with no samples.
    """
    resolve_backend(backend, "roi_align_max", kernels=())
    input = np.asarray(input)
    N, C, H, W = input.shape
    rois = convert_boxes_to_roi_format(rois, input.dtype)                 # [R, 5]
    S_h, S_w = pair(output_size)
    R = len(rois)
    out = np.zeros((R, C, S_h, S_w), input.dtype)                         # [R, C, S_h, S_w]
    argmax = np.full((R, C, S_h, S_w), -1, np.int64)                      # [R, C, S_h, S_w]
    cache = dict(rois=rois, input_shape=input.shape, output_size=(S_h, S_w), argmax=argmax,
                 tables=None)
    if R == 0 or C == 0:
        return out, cache
    prm = roi_align_params(rois, spatial_scale, S_h, S_w, sampling_ratio, aligned)
    t = cache["tables"] = sample_tables(prm, S_h, S_w, H, W)
    G_y, G_x = t.y_low.shape[2], t.x_low.shape[2]
    value = np.zeros((R, C, S_h * G_y, S_w * G_x), input.dtype)          # every sample's value
    # (rows: bin p_h's samples at p_h * G_y + iy; columns: bin p_w's at p_w * G_x + ix)
    for r in range(R):  # the reference's two products, one row/column per sample
        Ay = sample_matrix(t.y_low[r], t.y_high[r], t.wy_low[r], t.wy_high[r], H)  # [S_h*G_y, H]
        Ax = sample_matrix(t.x_low[r], t.x_high[r], t.wx_low[r], t.wx_high[r], W)  # [S_w*G_x, W]
        y0, y1 = window(Ay)
        x0, x1 = window(Ax)
        if y1 > y0 and x1 > x0:                                           # else: all off the map
            patch = input[t.roi_batch_ind[r], :, y0:y1, x0:x1]            # [C, h, w]
            value[r] = Ay[:, y0:y1] @ patch @ Ax[:, x0:x1].T              # [C, S_h*G_y, S_w*G_x]
    value = value.reshape(R, C, S_h, G_y, S_w, G_x)
    # The running max over each bin's samples in row-major order; a sample replaces the best
    # so far only when strictly larger, so the first of tied samples wins (as RoIPool).
    best = np.full((R, C, S_h, S_w), -np.inf, input.dtype)                # [R, C, S_h, S_w]
    for iy in range(G_y):
        for ix in range(G_x):
            used = (iy < t.roi_bin_grid_h) & (ix < t.roi_bin_grid_w)      # [R] not padding
            v = value[:, :, :, iy, :, ix]                                 # [R, C, S_h, S_w]
            better = (v > best) & used[:, None, None, None]
            best = np.where(better, v, best)
            argmax[better] = iy * G_x + ix
    out[...] = np.where(argmax >= 0, best, 0)                             # no samples: 0
    return out, cache


def roi_align_max_backward(dout, cache):
    """RoIAlign-max backward: dinput [N, C, H, W] (fresh).

    Each bin's gradient goes to its winning sample only, and from there to the (up to) four
    pixels around it with that sample's bilinear weights; the other samples of the bin get
    nothing (as in max-pooling). A sample off the map has zero weights, so a bin it wins
    passes nothing. Pixels reached by several bins receive the sum. The RoIs get no gradient.
    """
    rois, argmax, t = cache["rois"], cache["argmax"], cache["tables"]
    N, C, H, W = cache["input_shape"]
    S_h, S_w = cache["output_size"]
    dout = np.asarray(dout, dtype=rois.dtype)
    dinput = np.zeros((N, C, H, W), rois.dtype)                           # [N, C, H, W]
    if t is None:
        return dinput
    G_y, G_x = t.y_low.shape[2], t.x_low.shape[2]
    # each bin's gradient on its winning sample, zero on the others
    dvalue = np.zeros((len(rois), C, S_h, G_y, S_w, G_x), rois.dtype)
    for iy in range(G_y):
        for ix in range(G_x):
            dvalue[:, :, :, iy, :, ix] = np.where(argmax == iy * G_x + ix, dout, 0)
    dvalue = dvalue.reshape(len(rois), C, S_h * G_y, S_w * G_x)           # as the forward's value
    for r in range(len(rois)):
        Ay = sample_matrix(t.y_low[r], t.y_high[r], t.wy_low[r], t.wy_high[r], H)  # [S_h*G_y, H]
        Ax = sample_matrix(t.x_low[r], t.x_high[r], t.wx_low[r], t.wx_high[r], W)  # [S_w*G_x, W]
        y0, y1 = window(Ay)
        x0, x1 = window(Ax)
        if y1 > y0 and x1 > x0:  # the forward's transpose, as in roi_align_backward
            dpatch = Ay[:, y0:y1].T @ dvalue[r] @ Ax[:, x0:x1]            # [C, h, w]
            dinput[t.roi_batch_ind[r], :, y0:y1, x0:x1] += dpatch
    return dinput


def roi_align_max(input, rois, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False,
                  backend=DEFAULT_BACKEND):
    """Like ``roi_align``'s signature; returns out [R, C, S_h, S_w] only."""
    return roi_align_max_forward(input, rois, output_size, spatial_scale, sampling_ratio,
                                 aligned, backend)[0]
