"""Convolution and transposed convolution, forward and backward, as matrix products.

Why a convolution is a matrix product (im2col)
----------------------------------------------
Output pixel ``(n, f, oh, ow)`` is a dot product of the filter ``w[f]`` (``C*kh*kw`` numbers)
with the input patch under it (the same ``C*kh*kw`` numbers). Copy every patch into a column
of a matrix ``cols`` (``[C*kh*kw, Ho*Wo]`` per image: "image to columns"), and the whole layer
is one matrix product ``w.reshape(F, C*kh*kw) @ cols``. The product runs in BLAS (OpenBLAS,
multi-threaded), which is where the speed comes from.

The backward pass is two more products and the inverse of im2col:

    dw    = dout @ cols.T          # [F, C*kh*kw]: every patch weighted by its output gradient
    dcols = w.T  @ dout            # [C*kh*kw, Ho*Wo]: each patch's share of the gradient
    dx    = col2im(dcols)          # patches overlap, so their gradients are *added* back

``col2im`` is written as ``kh*kw`` vectorised strided adds, one per kernel offset ``(i, j)``:
each adds a whole ``[N, C, Ho, Wo]`` slab into the padded gradient. A 1x1 convolution needs no
im2col at all: its patches are the pixels, so it is a reshape and one matrix product (a stride-2
1x1 convolution first keeps every second pixel).

Shapes use the letters of ``mrcnn_np/__init__.py``: N images, C channels in, F channels out,
kh x kw kernel, Ho x Wo output size ``Ho = (H + 2*padding - kh) // stride + 1``.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided


def _out_size(size, k, stride, padding):
    out = (size + 2 * padding - k) // stride + 1
    if out < 1:
        raise ValueError(f"kernel {k} with padding {padding} does not fit input size {size}")
    return out


def _pad(x, padding):
    """Zero-pad the two spatial axes of ``x`` [N, C, H, W] by ``padding`` on every side."""
    if padding == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


def im2col(xp, kh, kw, stride, Ho, Wo):
    """Gather every kh x kw patch of an (already padded) image into a column.

    Inputs
        xp : [N, C, Hp, Wp] padded input
    Returns
        cols : [N, C*kh*kw, Ho*Wo]; row ``(c*kh + i)*kw + j`` holds
               ``xp[n, c, oh*stride + i, ow*stride + j]`` at column ``oh*Wo + ow``.
    The rows are ordered as ``w.reshape(F, C*kh*kw)`` orders a filter, so a convolution is
    ``w.reshape(F, -1) @ cols``.
    """
    N, C = xp.shape[:2]
    sN, sC, sH, sW = xp.strides
    # A view, no copy: patches[n, c, i, j, oh, ow] = xp[n, c, oh*stride + i, ow*stride + j]
    patches = as_strided(xp, shape=(N, C, kh, kw, Ho, Wo),
                         strides=(sN, sC, sH, sW, sH * stride, sW * stride),
                         writeable=False)                          # [N, C, kh, kw, Ho, Wo]
    return patches.reshape(N, C * kh * kw, Ho * Wo)               # [N, C*kh*kw, Ho*Wo] (a copy)


def col2im(cols, padded_shape, kh, kw, stride, Ho, Wo):
    """The adjoint of :func:`im2col`: add every column back onto the pixels it came from.

    Inputs
        cols : [N, C*kh*kw, Ho*Wo]
        padded_shape : (N, C, Hp, Wp)
    Returns
        xp : [N, C, Hp, Wp]; overlapping patches add up.
    One vectorised strided add per kernel offset (i, j): kh*kw adds of an [N, C, Ho, Wo] slab.
    """
    N, C, Hp, Wp = padded_shape
    xp = np.zeros(padded_shape, dtype=cols.dtype)                  # [N, C, Hp, Wp]
    c6 = cols.reshape(N, C, kh, kw, Ho, Wo)                        # [N, C, kh, kw, Ho, Wo]
    for i in range(kh):
        for j in range(kw):
            xp[:, :, i:i + stride * Ho:stride, j:j + stride * Wo:stride] += c6[:, :, i, j]
    return xp


def _matmul_w(w2, a):
    """``w2 @ a[n]`` for every n: [F, K] x [N, K, P] -> [N, F, P]. One BLAS call when N == 1."""
    if a.shape[0] == 1:
        return (w2 @ a[0])[None]
    return np.matmul(w2, a)


def _matmul_nt(a, b):
    """``a @ b.T`` for a [M, P], b [K, P] with long rows (P = pixels): [M, K].

    Measured with OpenBLAS 0.3 on 2 cores: when b has more rows than a (K >= M, e.g. the stem's
    147 x 217600 patches against 64 filters), computing ``(b @ a.T).T`` is 2-8x faster than
    ``a @ b.T``; with K < M the direct form wins. Same numbers either way, up to rounding.
    """
    if b.shape[0] >= a.shape[0]:
        return (b @ a.T).T
    return a @ b.T


def conv2d_forward(x, w, b=None, stride=1, padding=0):
    """2-D convolution (cross-correlation, as torch's ``F.conv2d``), zero padding.

    Inputs
        x : [N, C, H, W]
        w : [F, C, kh, kw]
        b : [F] or None
        stride, padding : ints, the same for both spatial axes
    Returns
        out : [N, F, Ho, Wo], ``Ho = (H + 2*padding - kh) // stride + 1`` (likewise Wo),
              dtype of x
        cache : what :func:`conv2d_backward` needs
    """
    N, C, H, W = x.shape
    F, Cw, kh, kw = w.shape
    if Cw != C:
        raise ValueError(f"x has {C} channels but w expects {Cw}")
    Ho, Wo = _out_size(H, kh, stride, padding), _out_size(W, kw, stride, padding)
    w2 = w.reshape(F, C * kh * kw).astype(x.dtype, copy=False)     # [F, C*kh*kw]
    if kh == kw == 1 and padding == 0:
        # 1x1: the patches are the pixels (every stride-th one). No im2col.
        xs = x[:, :, ::stride, ::stride] if stride > 1 else x      # [N, C, Ho, Wo]
        cols = np.ascontiguousarray(xs).reshape(N, C, Ho * Wo)     # [N, C, Ho*Wo]
    else:
        cols = im2col(_pad(x, padding), kh, kw, stride, Ho, Wo)    # [N, C*kh*kw, Ho*Wo]
    out = _matmul_w(w2, cols)                                      # [N, F, Ho*Wo]
    if b is not None:
        out += b.astype(x.dtype, copy=False)[:, None]
    out = out.reshape(N, F, Ho, Wo)                                # [N, F, Ho, Wo]
    cache = (x.shape, w, b is not None, stride, padding, cols)
    return out, cache


def conv2d_backward(dout, cache):
    """Gradients of :func:`conv2d_forward`.

    Inputs
        dout : [N, F, Ho, Wo]
    Returns
        dx : [N, C, H, W]; dw : [F, C, kh, kw]; db : [F], or None when the forward had no bias
    """
    x_shape, w, has_bias, stride, padding, cols = cache
    N, C, H, W = x_shape
    F, _, kh, kw = w.shape
    Ho, Wo = dout.shape[2:]
    dtype = cols.dtype
    d2 = dout.reshape(N, F, Ho * Wo).astype(dtype, copy=False)     # [N, F, Ho*Wo]
    w2 = w.reshape(F, C * kh * kw).astype(dtype, copy=False)       # [F, C*kh*kw]
    # dw[f, k] = sum over images and output pixels of dout[n, f, p] * cols[n, k, p]
    if N == 1:
        dw = _matmul_nt(d2[0], cols[0])                            # [F, C*kh*kw]
    else:
        dw = np.tensordot(d2, cols, axes=([0, 2], [0, 2]))         # [F, C*kh*kw]
    dw = dw.reshape(w.shape).astype(w.dtype, copy=False)           # [F, C, kh, kw]
    db = d2.sum(axis=(0, 2)) if has_bias else None                 # [F]
    dcols = _matmul_w(np.ascontiguousarray(w2.T), d2)              # [N, C*kh*kw, Ho*Wo]
    if kh == kw == 1 and padding == 0:
        if stride == 1:
            dx = dcols.reshape(N, C, H, W)                         # [N, C, H, W]
        else:
            dx = np.zeros((N, C, H, W), dtype=dtype)               # pixels skipped get 0
            dx[:, :, ::stride, ::stride] = dcols.reshape(N, C, Ho, Wo)
    else:
        Hp, Wp = H + 2 * padding, W + 2 * padding
        dxp = col2im(dcols, (N, C, Hp, Wp), kh, kw, stride, Ho, Wo)  # [N, C, Hp, Wp]
        dx = dxp[:, :, padding:padding + H, padding:padding + W]   # [N, C, H, W]
        dx = np.ascontiguousarray(dx)
    return dx, dw, db


def conv2d(input, weight, bias=None, stride=1, padding=0):
    """``torch.nn.functional.conv2d`` (square stride/padding, no dilation/groups): forward only."""
    return conv2d_forward(input, weight, bias, stride, padding)[0]


def conv_transpose2d_forward(x, w, b=None, stride=1, padding=0):
    """Transposed convolution (torch's ``F.conv_transpose2d``, output_padding 0, no groups).

    Each input pixel paints a copy of the kernel, scaled by its value, onto the output at
    ``stride`` spacing; overlaps add. That is exactly the backward (input gradient) of a conv2d
    with the same weight, so it is written with the same two pieces: a matrix product and col2im.

    Inputs
        x : [N, C, H, W]
        w : [C, F, kh, kw]  (torch's layout for transposed convolutions: in-channels first)
        b : [F] or None
    Returns
        out : [N, F, Ho, Wo], ``Ho = (H - 1)*stride - 2*padding + kh`` (likewise Wo)
        cache
    The mask head's 2x2 stride-2 layer (Mask R-CNN paper, Fig. 4) is the case ``kh = stride``:
    the painted copies tile the output without overlap.
    """
    N, C, H, W = x.shape
    Cw, F, kh, kw = w.shape
    if Cw != C:
        raise ValueError(f"x has {C} channels but w expects {Cw}")
    Ho = (H - 1) * stride - 2 * padding + kh
    Wo = (W - 1) * stride - 2 * padding + kw
    if Ho < 1 or Wo < 1:
        raise ValueError(f"padding {padding} leaves no output for input {H}x{W}")
    wT = np.ascontiguousarray(w.reshape(C, F * kh * kw).T).astype(x.dtype, copy=False)  # [F*kh*kw, C]
    cols = _matmul_w(wT, x.reshape(N, C, H * W))                   # [N, F*kh*kw, H*W]
    outp = col2im(cols, (N, F, Ho + 2 * padding, Wo + 2 * padding), kh, kw, stride, H, W)
    out = outp[:, :, padding:padding + Ho, padding:padding + Wo]   # [N, F, Ho, Wo]
    out = np.ascontiguousarray(out)
    if b is not None:
        out += b.astype(x.dtype, copy=False)[:, None, None]
    cache = (x, w, b is not None, stride, padding)
    return out, cache


def conv_transpose2d_backward(dout, cache):
    """Gradients of :func:`conv_transpose2d_forward`.

    The input gradient of a transposed convolution is an ordinary convolution of ``dout``
    with the same weight (read as ``[C, F, kh, kw]`` = [out, in, kh, kw]):

        dx = conv2d(dout, w, stride, padding)          # [N, C, H, W]
        dw[c, f, i, j] = sum x[n, c, h, w] * dout_padded[n, f, h*stride + i, w*stride + j]

    Returns
        dx : [N, C, H, W]; dw : [C, F, kh, kw]; db : [F] or None
    """
    x, w, has_bias, stride, padding = cache
    N, C, H, W = x.shape
    _, F, kh, kw = w.shape
    dout = dout.astype(x.dtype, copy=False)
    # The im2col of dout has one column per input pixel (H*W of them).
    dx, cconv = conv2d_forward(dout, w.astype(x.dtype, copy=False), None, stride, padding)
    dcols = cconv[-1]                                              # [N, F*kh*kw, H*W]
    x2 = x.reshape(N, C, H * W)                                    # [N, C, H*W]
    if N == 1:
        dw = _matmul_nt(x2[0], dcols[0])                           # [C, F*kh*kw]
    else:
        dw = np.tensordot(x2, dcols, axes=([0, 2], [0, 2]))        # [C, F*kh*kw]
    dw = dw.reshape(w.shape).astype(w.dtype, copy=False)           # [C, F, kh, kw]
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None            # [F]
    return dx, dw, db


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0):
    """``torch.nn.functional.conv_transpose2d`` (no output_padding/groups/dilation): forward only."""
    return conv_transpose2d_forward(input, weight, bias, stride, padding)[0]
