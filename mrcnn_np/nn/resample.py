"""Resizing feature maps and images, as ``torch.nn.functional.interpolate`` does it
(``align_corners=False``), including its float32 arithmetic: one home for every resampler.

- ``upsample_nearest_forward`` / ``upsample_nearest_backward``: the layer pair of FPN's
  top-down path (chapter 02), nearest-neighbour to a given size, with its backward.
- ``interpolate_nearest``: the same rule, forward only, also with a scale factor (the
  transform resizes instance masks with it, so 0/1 masks stay 0/1).
- ``interpolate_bilinear``: bilinear, forward only (the transform resizes images with it;
  post-processing resizes each 28x28 mask to its box).
- ``upsample_bilinear_forward`` / ``upsample_bilinear_backward``: the same bilinear rule as a
  layer pair (the keypoint predictor's 2x upsampling, 28x28 -> 56x56).

They reproduce torch bit for bit, because a one-pixel difference in a resized size or a
source index would make every later number differ from torchvision.
"""
import numpy as np


def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def _output_size_and_scales(in_hw, size, scale_factor, recompute_scale_factor):
    """Output size and the per-axis scale torch hands to its kernel.

    Returns ``((out_h, out_w), (scale_h, scale_w))`` where a scale is ``None`` when the kernel
    must derive it from the sizes (``in / out``), or the user's factor ``s`` (the kernel then
    uses ``1 / s``). With a ``scale_factor`` the output size is ``floor(in * s)``, computed in
    float64 as torch does (``int(in * s)``).
    """
    if (size is None) == (scale_factor is None):
        raise ValueError("give exactly one of size and scale_factor")
    if size is not None:
        if recompute_scale_factor:
            raise ValueError("recompute_scale_factor is not meaningful with an explicit size")
        return tuple(int(s) for s in _pair(size)), (None, None)
    factors = tuple(float(f) for f in _pair(scale_factor))
    out = tuple(int(n * f) for n, f in zip(in_hw, factors))  # floor, in float64
    if recompute_scale_factor:
        return out, (None, None)  # the kernel sees only the integer sizes
    return out, factors


def _kernel_scale(in_size, out_size, factor, dtype):
    """torch's ``compute_scales_value``: ``1/factor`` if a factor was kept, else ``in/out``.

    Computed in ``dtype`` (float32 for float32 images), as the C++ kernel does.
    """
    if factor is not None and factor > 0:
        return dtype.type(1.0 / factor)  # 1/s in float64, then rounded to dtype
    return dtype.type(in_size) / dtype.type(out_size)


def linear_indices_weights(in_size, out_size, scale, dtype=np.float32):
    """Source indices and weights of 1-D linear resampling with ``align_corners=False``.

    Output pixel ``d`` has its centre at ``d + 0.5``; mapped back into the input that is
    ``(d + 0.5) * scale``, a pixel index of ``src = (d + 0.5) * scale - 0.5``. ``src`` is clamped
    at 0 (the first half pixel repeats the border value), and the output mixes its two
    neighbours: ``(1 - l) * x[i0] + l * x[i1]`` with ``i0 = floor(src)``, ``i1 = i0 + 1`` (or
    ``i0`` at the last pixel) and ``l = src - i0``. When ``out_size == in_size`` torch copies
    (``l = 0``) whatever the scale; so do we.

    Args:
        in_size, out_size: int.
        scale: the kernel's scale, ``in/out`` or ``1/scale_factor`` (see ``_kernel_scale``).
        dtype: arithmetic precision (the image dtype).
    Returns:
        i0, i1: int64 [out_size]; l0, l1: dtype [out_size], ``l0 + l1 = 1``.
    """
    dtype = np.dtype(dtype)
    if out_size == in_size:
        i0 = np.arange(out_size, dtype=np.int64)  # [out]
        return i0, i0.copy(), np.ones(out_size, dtype), np.zeros(out_size, dtype)
    # torch's compiled kernel evaluates scale * (d + 0.5) - 0.5 as one fused multiply-add: a
    # single rounding at the end. The product of two float32 numbers is exact in float64, so
    # computing in float64 and rounding once to float32 gives the same bits. (Rounding twice,
    # in plain float32, moves src by up to one float32 step, ~6e-5 px at src ~ 1000.) For
    # float64 images this is plain float64 arithmetic, within 1e-13 px of torch's.
    d = np.arange(out_size, dtype=np.float64)  # [out]
    scale64 = np.float64(dtype.type(scale))  # the kernel's scale, in dtype, widened exactly
    src = (scale64 * (d + 0.5) - 0.5).astype(dtype)  # [out] source pixel index, one rounding
    src = np.maximum(src, dtype.type(0))  # clamp at 0 (linear modes only)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)  # [out]
    l1 = np.clip(src - i0.astype(dtype), 0, 1).astype(dtype)  # [out] weight of i1
    i1 = i0 + (i0 < in_size - 1)  # [out]
    l0 = (dtype.type(1) - l1).astype(dtype)  # [out] weight of i0
    return i0, i1, l0, l1


def interpolate_bilinear(x, size=None, scale_factor=None, recompute_scale_factor=None):
    """Bilinear resize, as ``F.interpolate(x, ..., mode="bilinear", align_corners=False)``.

    Args:
        x: [N, C, H, W] float array (float32 or float64; the dtype is kept).
        size: int or (out_h, out_w); or else
        scale_factor: float or (s_h, s_w). The output size is ``floor(H * s_h), floor(W * s_w)``.
        recompute_scale_factor: with ``scale_factor``: ``True`` resamples with ``H / out_h``
            (the ratio of the integer sizes); ``False``/``None`` resamples with ``1 / s_h``.
            The two differ whenever ``H * s_h`` is not an integer.
    Returns:
        [N, C, out_h, out_w] array of x's dtype.

    Each output pixel is a weighted mean of the 2x2 input pixels around its source point (see
    ``linear_indices_weights``); the weights factor into a row part and a column part, so we
    resample the width first and then the height.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"bilinear interpolation needs a float array, got {x.dtype}")
    dtype = x.dtype
    H, W = x.shape[-2:]
    (out_h, out_w), (f_h, f_w) = _output_size_and_scales((H, W), size, scale_factor,
                                                         recompute_scale_factor)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"output size must be positive, got {(out_h, out_w)}")
    scale_h = _kernel_scale(H, out_h, f_h, dtype)
    scale_w = _kernel_scale(W, out_w, f_w, dtype)
    ih0, ih1, lh0, lh1 = linear_indices_weights(H, out_h, scale_h, dtype)  # [out_h] each
    iw0, iw1, lw0, lw1 = linear_indices_weights(W, out_w, scale_w, dtype)  # [out_w] each
    cols = lw0 * x[..., iw0] + lw1 * x[..., iw1]  # [N, C, H, out_w]
    out = lh0[:, None] * cols[..., ih0, :] + lh1[:, None] * cols[..., ih1, :]  # [N, C, oh, ow]
    return out.astype(dtype, copy=False)


# -- bilinear: the layer pair of the keypoint predictor ---------------------------------
def _linear_matrix(i0, i1, l0, l1, in_size):
    """The 1-D resampling as a matrix ``A`` [out, in]: ``out = A @ x`` along one axis. Row ``d``
    holds ``l0[d]`` at ``i0[d]`` and ``l1[d]`` at ``i1[d]`` (added: at the last pixel they are
    the same column)."""
    A = np.zeros((len(i0), in_size), dtype=l0.dtype)  # [out, in]
    rows = np.arange(len(i0))
    np.add.at(A, (rows, i0), l0)
    np.add.at(A, (rows, i1), l1)
    return A


def upsample_bilinear_forward(x, size=None, scale_factor=None, recompute_scale_factor=None):
    """Bilinear resize with a backward: ``F.interpolate(x, ..., mode="bilinear",
    align_corners=False)``, the keypoint predictor's 2x upsampling (28x28 -> 56x56, called
    there with ``scale_factor=2.0, recompute_scale_factor=False``).

    Inputs   x : [N, C, H, W] float; size / scale_factor / recompute_scale_factor as
             ``interpolate_bilinear`` (which computes ``out``: torch's numbers, to rounding).
    Returns  out : [N, C, Ho, Wo];  cache (the two 1-D resampling matrices)

    The resize is linear in ``x`` and separable: ``out[n, c] = A_h @ x[n, c] @ A_w.T`` with
    ``A_h`` [Ho, H] and ``A_w`` [Wo, W] holding each output pixel's two weights (see
    ``linear_indices_weights``). At 2x with ``align_corners=False`` the source of output pixel
    ``d`` is ``d / 2 - 0.25``: the weights are (0.75, 0.25) and (0.25, 0.75) in turn, and the
    first and last output pixels copy the border pixel (the source is clamped at 0, and past
    the last pixel both neighbours are the last pixel).
    """
    out = interpolate_bilinear(x, size=size, scale_factor=scale_factor,
                               recompute_scale_factor=recompute_scale_factor)  # [N, C, Ho, Wo]
    x = np.asarray(x)
    dtype = x.dtype
    H, W = x.shape[-2:]
    Ho, Wo = out.shape[-2:]
    _, (f_h, f_w) = _output_size_and_scales((H, W), size, scale_factor, recompute_scale_factor)
    A_h = _linear_matrix(*linear_indices_weights(H, Ho, _kernel_scale(H, Ho, f_h, dtype), dtype),
                         H)  # [Ho, H]
    A_w = _linear_matrix(*linear_indices_weights(W, Wo, _kernel_scale(W, Wo, f_w, dtype), dtype),
                         W)  # [Wo, W]
    return out, (x.shape, A_h, A_w)


def upsample_bilinear_backward(dout, cache):
    """Each input pixel gets the gradients of the output pixels that read it, times the
    weights they read it with: ``dx[n, c] = A_h.T @ dout[n, c] @ A_w`` (the transpose of the
    forward's linear map). Returns dx : [N, C, H, W] in dout's dtype."""
    shape, A_h, A_w = cache
    dout = np.asarray(dout)
    if dout.size == 0:
        return np.zeros(shape, dtype=dout.dtype)
    A_h, A_w = A_h.astype(dout.dtype, copy=False), A_w.astype(dout.dtype, copy=False)
    return (A_h.T @ dout @ A_w).astype(dout.dtype, copy=False)  # [H, Ho] @ [N, C, Ho, Wo] @ [Wo, W]


def nearest_indices(in_size, out_size, factor=None):
    """Source index of each output pixel for torch's ``mode="nearest"`` (not "nearest-exact").

    ``src = min(floor(d * scale), in_size - 1)`` in float32 with ``scale = in/out`` (or
    ``1/factor`` when a scale factor was kept). This is OpenCV's INTER_NEAREST rule: it samples
    the *left/top edge* of each output pixel, not its centre, so the picture shifts by up to
    half an input pixel towards the top-left. torch keeps it for backward compatibility, with
    two shortcuts: equal sizes copy, and exact doubling uses ``d // 2``.

    Returns:
        int64 [out_size].
    """
    d = np.arange(out_size, dtype=np.int64)  # [out]
    if out_size == in_size:
        return d
    if out_size == 2 * in_size:
        return d >> 1
    scale = _kernel_scale(in_size, out_size, factor, np.dtype(np.float32))  # always float32
    src = np.floor(d.astype(np.float32) * scale).astype(np.int64)  # [out]
    return np.minimum(src, in_size - 1)


def interpolate_nearest(x, size=None, scale_factor=None, recompute_scale_factor=None):
    """Nearest-neighbour resize, as ``F.interpolate(x, ..., mode="nearest")``.

    Used for instance masks: it only copies values, so 0/1 masks stay 0/1 and any dtype works.

    Args:
        x: [N, C, H, W] array of any dtype.
        size, scale_factor, recompute_scale_factor: as ``interpolate_bilinear``.
    Returns:
        [N, C, out_h, out_w] array of x's dtype.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got shape {x.shape}")
    H, W = x.shape[-2:]
    (out_h, out_w), (f_h, f_w) = _output_size_and_scales((H, W), size, scale_factor,
                                                         recompute_scale_factor)
    ih = nearest_indices(H, out_h, f_h)  # [out_h]
    iw = nearest_indices(W, out_w, f_w)  # [out_w]
    return x[:, :, ih[:, None], iw[None, :]]  # [N, C, out_h, out_w]


# -- nearest: the layer pair of FPN's top-down path ----------------------------------------
def upsample_nearest_forward(x, size):
    """Nearest-neighbour resize to ``size = (Ho, Wo)`` (``F.interpolate(mode="nearest")``).

    FPN's top-down path uses it to bring a coarse map to the size of the next finer one.
    Inputs   x : [N, C, H, W];  size : (Ho, Wo)
    Returns  out : [N, C, Ho, Wo], ``out[..., i, j] = x[..., src_h[i], src_w[j]]``;  cache
    """
    Ho, Wo = size
    N, C, H, W = x.shape
    sh, sw = nearest_indices(H, Ho), nearest_indices(W, Wo)        # [Ho], [Wo]
    out = x[:, :, sh[:, None], sw[None, :]]                        # [N, C, Ho, Wo]
    return out, (x.shape, sh, sw)


def _sum_back(d, src, n_in, axis):
    """Add the entries of ``d`` along ``axis`` into the ``n_in`` source slots they came from.
    ``src`` is non-decreasing, so each source slot owns one contiguous run: ``reduceat``."""
    uniq, starts = np.unique(src, return_index=True)
    red = np.add.reduceat(d, starts, axis=axis)
    shape = list(d.shape)
    shape[axis] = n_in
    out = np.zeros(shape, dtype=d.dtype)
    idx = [slice(None)] * d.ndim
    idx[axis] = uniq
    out[tuple(idx)] = red
    return out


def upsample_nearest_backward(dout, cache):
    """Each input pixel gets the sum of the gradients of the output pixels that copied it;
    pixels nobody copied (when shrinking) get 0. Returns dx : [N, C, H, W]."""
    (N, C, H, W), sh, sw = cache
    if dout.size == 0:
        return np.zeros((N, C, H, W), dtype=dout.dtype)
    d = _sum_back(dout, sw, W, axis=3)                             # [N, C, Ho, W]
    return _sum_back(d, sh, H, axis=2)                             # [N, C, H, W]
