"""Bicubic resizing, as ``torch.nn.functional.interpolate(x, ..., mode="bicubic",
align_corners=False)`` computes it: forward only (chapter 15 resizes each keypoint heatmap to
its box with it; nothing trains through it).

The rule, one axis at a time
----------------------------
Output pixel ``d`` has its centre at ``d + 0.5``; in input pixels that is ``(d + 0.5) * scale``,
a pixel *index* of

    src = (d + 0.5) * scale - 0.5          scale = in / out (or 1 / scale_factor)

Unlike the linear modes, bicubic does NOT clamp ``src`` at 0: near the top-left border ``src``
may be negative (-0.25 at 2x), and the first output pixel then reads a tap at index -2, -1, ...
which is clamped to the edge pixel instead (the border is repeated). With ``i = floor(src)``
and ``t = src - i`` in [0, 1), the output mixes the four input pixels ``i-1, i, i+1, i+2``
with Keys' cubic-convolution weights (R. Keys, "Cubic convolution interpolation for digital
image processing", 1981), for the distances ``1+t, t, 1-t, 2-t`` of the four taps:

    W(s) = (a + 2)|s|^3 - (a + 3)|s|^2 + 1           for |s| <= 1
    W(s) = a|s|^3 - 5a|s|^2 + 8a|s| - 4a             for 1 < |s| < 2

with ``a = -0.75`` (OpenCV's and torch's choice; Keys proposed -0.5, which PIL and torch's
``antialias=True`` use). The four weights sum to 1, the two outer ones are negative for
0 < t < 1: bicubic can overshoot the input's range, unlike bilinear. At ``t = 0`` the weights
are (0, 1, 0, 0): equal sizes copy the input.

2-D resizing does the width first, then the height: each of an output pixel's four source
rows is mixed along the width, then the four row values are mixed along the height. That is
the order of torch's CPU kernel (``upsample_non_separable`` in ``UpSampleKernel.cpp``), which
computes in the input's dtype. Its compiled code (x86, AVX2) fuses some products and sums into
FMA instructions, one rounding for ``a * b + c``; we measured which (an impulse per input pixel
exposes torch's weights, random rows its sums) and ``_fma`` reproduces them, so float32 results
equal torch's bit for bit. That keeps the argmax of a resized keypoint heatmap where torch finds
it. float64 results differ from torch's in the last bits (about 1e-15): a true float64 FMA
cannot be written in NumPy, and nothing downstream needs it.
"""
import numpy as np

from .resample import _kernel_scale, _output_size_and_scales

A = -0.75  # the cubic-convolution parameter torch uses with antialias=False (OpenCV's value)


def _fma(a, b, c, dtype):
    """``a * b + c`` with one rounding to ``dtype``, as an FMA instruction computes it.

    For float32 the product of two float32 numbers is exact in float64 (24 + 24 bits < 53),
    so computing in float64 and rounding once to float32 gives the FMA's result (barring a
    double-rounding tie, vanishingly rare). For float64 it is plain float64 arithmetic.
    """
    a64 = np.asarray(a, np.float64)
    return (a64 * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(dtype)


def cubic_weights(t, dtype=np.float32):
    """Keys' four weights for a source point a fraction ``t`` past tap 1.

    Args:
        t: [out] fractional positions in [0, 1].
    Returns:
        [out, 4] weights of the taps at distances ``1 + t, t, 1 - t, 2 - t``: tap 0 and 3 use
        the outer piece of W, taps 1 and 2 the inner piece. Each row sums to 1 (up to rounding).

    The polynomials are evaluated in Horner form with torch's roundings: every step but the
    last is an FMA. (The outer piece near s = 2 is a difference of numbers near 3 that nearly
    cancel, so a different rounding order moves a small weight by ~1e-7, and the output with it.)
    """
    dtype = np.dtype(dtype)
    f = dtype.type
    t = np.asarray(t, dtype)
    a = f(A)

    def inner(s):  # W(s) for 0 <= s <= 1: ((a + 2) s - (a + 3)) s s + 1, Horner form
        p = _fma(f(A + 2), s, -f(A + 3), dtype)  # [out]
        return ((p * s).astype(dtype) * s).astype(dtype) + f(1)

    def outer(s):  # W(s) for 1 <= s <= 2: ((a s - 5a) s + 8a) s - 4a, Horner form
        p = _fma(a, s, -f(5 * A), dtype)
        p = _fma(p, s, f(8 * A), dtype)
        return (p * s).astype(dtype) - f(4 * A)

    one_minus_t = (f(1) - t).astype(dtype)
    return np.stack([outer((t + f(1)).astype(dtype)), inner(t),
                     inner(one_minus_t), outer((one_minus_t + f(1)).astype(dtype))], axis=-1)


def cubic_indices_weights(in_size, out_size, scale, dtype=np.float32):
    """The [out, 4] table of one 1-D bicubic pass: which input pixels each output pixel reads,
    and with what weights.

    Args:
        in_size, out_size: int.
        scale: the kernel's scale, ``in/out`` or ``1/scale_factor`` (``resample._kernel_scale``).
        dtype: arithmetic precision (the image dtype).
    Returns:
        idx: int64 [out, 4], the taps ``i-1 .. i+2`` clamped to ``[0, in_size - 1]``;
        w: dtype [out, 4], their weights (see ``cubic_weights``).
    """
    dtype = np.dtype(dtype)
    d = np.arange(out_size, dtype=dtype)  # [out]
    src = _fma(dtype.type(scale), d + dtype.type(0.5), dtype.type(-0.5), dtype)  # [out], no clamp
    # torch floors in float32 even for float64 images (``floorf``); the last pixel's source
    # index never passes in_size - 1 (the min is a guard), and t is kept in [0, 1].
    i = np.minimum(np.floor(src.astype(np.float32)).astype(np.int64), in_size - 1)  # [out]
    t = np.clip(src - i.astype(dtype), 0, 1).astype(dtype)  # [out]
    idx = np.clip(i[:, None] + np.arange(-1, 3), 0, in_size - 1)  # [out, 4]
    return idx, cubic_weights(t, dtype)


def _pass(x, idx, w, axis):
    """One 1-D pass along ``axis`` of ``x``:
    ``out[..., o, ...] = sum_j w[o, j] * x[..., idx[o, j], ...]`` for the table ``idx, w`` [out, 4].

    The sum is taken in torch's order and with its roundings: ``x0 w0 + x1 w1`` as one FMA
    over the rounded product ``x1 w1``, then ``+ x2 w2`` and ``+ x3 w3`` as FMAs.
    """
    shape = [1] * x.ndim
    shape[axis] = idx.shape[0]
    dtype = x.dtype
    x64, w64 = x.astype(np.float64, copy=False), w.astype(np.float64)  # widen once (see _fma)
    tap = [np.take(x64, idx[:, j], axis=axis) for j in range(4)]  # 4 x [..., out, ...]
    wj = [w64[:, j].reshape(shape) for j in range(4)]  # 4 x [out] as a column along axis
    out = (tap[1] * wj[1]).astype(dtype)  # a rounded product
    out = _fma(tap[0], wj[0], out, dtype)
    out = _fma(tap[2], wj[2], out, dtype)
    return _fma(tap[3], wj[3], out, dtype)


def interpolate_bicubic(x, size=None, scale_factor=None, recompute_scale_factor=None):
    """Bicubic resize, as ``F.interpolate(x, ..., mode="bicubic", align_corners=False)``.

    Args:
        x: [N, C, H, W] float array (float32 or float64; the dtype is kept).
        size: int or (out_h, out_w); or else
        scale_factor: float or (s_h, s_w); the output is ``floor(H * s_h), floor(W * s_w)``.
        recompute_scale_factor: with ``scale_factor``, ``True`` resamples with ``H / out_h``;
            ``False``/``None`` with ``1 / s_h`` (as ``resample.interpolate_bilinear``).
    Returns:
        [N, C, out_h, out_w] array of x's dtype.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"bicubic interpolation needs a float32 or float64 array, got {x.dtype}")
    dtype = x.dtype
    H, W = x.shape[-2:]
    (out_h, out_w), (f_h, f_w) = _output_size_and_scales((H, W), size, scale_factor,
                                                         recompute_scale_factor)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"output size must be positive, got {(out_h, out_w)}")
    if H == 0 or W == 0:
        raise ValueError(f"input size must be positive, got {(H, W)}")
    ih, wh = cubic_indices_weights(H, out_h, _kernel_scale(H, out_h, f_h, dtype), dtype)  # [oh, 4]
    iw, ww = cubic_indices_weights(W, out_w, _kernel_scale(W, out_w, f_w, dtype), dtype)  # [ow, 4]
    rows = _pass(x, iw, ww, axis=3)  # [N, C, H, out_w]: every input row mixed along the width
    return _pass(rows, ih, wh, axis=2)  # [N, C, out_h, out_w]
