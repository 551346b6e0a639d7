"""Convolution and transposed convolution, forward and backward, as matrix products.

Why a convolution is a matrix product (im2col)
----------------------------------------------
Output pixel ``(n, f, oh, ow)`` is a dot product of the filter ``w[f]`` (``C*kh*kw`` numbers)
with the input patch under it (the same ``C*kh*kw`` numbers). Copy every patch of every image
into a column of one matrix ``cols`` (``[C*kh*kw, N*Ho*Wo]``: "image to columns", the images'
columns side by side), and the whole layer is ONE matrix product ``w.reshape(F, C*kh*kw) @ cols``
for the whole batch. The product runs in BLAS (OpenBLAS), which is where the speed comes from.

The backward pass is two more products and the inverse of im2col:

    dw    = dout @ cols.T          # [F, C*kh*kw]: every patch weighted by its output gradient
    dcols = w.T  @ dout            # [C*kh*kw, N*Ho*Wo]: each patch's share of the gradient
    dx    = col2im(dcols)          # patches overlap, so their gradients are *added* back

Here ``dout`` is laid out as ``[F, N*Ho*Wo]``, the same column order as ``cols``. Putting the
batch into the columns (rather than one product per image) matters when N is large: the mask
head runs its 3x3 convolutions on N = 32 RoIs of 14x14, and 32 small products cost more than
one large one, and the weight gradient becomes a single product instead of a sum over images.

``col2im`` is written as ``kh*kw`` vectorised strided adds, one per kernel offset ``(i, j)``:
each adds a whole ``[C, N, Ho, Wo]`` slab into the padded gradient. A 1x1 convolution needs no
im2col at all: its patches are the pixels, so it is a reshape and one matrix product per image
(a stride-2 1x1 convolution first keeps every second pixel).

For maps of ``PER_IMAGE_MIN_PIXELS`` output pixels and more (24x24 and up), the forward fills
``cols`` one image at a time and multiplies each image's block while it is still in the cache,
writing straight into the [N, F, Ho, Wo] output (:func:`_conv_per_image`). ``cols`` is the same
matrix and every output the same dot product; only the time changes.

When nothing needs the input gradient (the stem, whose input is the image), ``need_dx=False``
skips ``dcols`` and ``col2im``: that is a third of the stem's backward.

Backends: the two copies, im2col and col2im, also exist as numba kernels that split them over
all cores (``kernels/conv_numba.py``; ``backend="numba"``, or ``"auto"``, the default). They
are pure copies and in-order sums, so they give the NumPy reference's numbers bit for bit;
the matrix products are BLAS's either way (``OPENBLAS_NUM_THREADS`` sets its cores).

Shapes use the letters of ``mrcnn_np/__init__.py``: N images, C channels in, F channels out,
kh x kw kernel, Ho x Wo output size ``Ho = (H + 2*padding - kh) // stride + 1``, P = Ho*Wo.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..ops._backend import DEFAULT_BACKEND, resolve_backend

CONV_KERNELS = ("numba",)  # im2col / col2im kernels in kernels/conv_numba.py
# Below this many elements of ``cols`` the copy takes a few microseconds and starting the
# kernel's threads costs more than it saves (gradient checks, 1x1 maps): NumPy does it.
KERNEL_MIN_ELEMENTS = 1 << 16
# From this many output pixels per image on, a batch's 3x3 convolution copies and multiplies
# one image at a time (:func:`_conv_per_image`, the same numbers, faster on maps of 24x24 and
# more); below it, one product for the whole batch is faster (the mask head's 14x14 RoIs).
PER_IMAGE_MIN_PIXELS = 512
# Inference streams the patches through a buffer of about this size (:func:`_conv_streamed`):
# it stays in one core's 2 MB L2 next to the weights and the output block.
STREAM_BUFFER_BYTES = 384 << 10


def _use_kernel(backend, n_elements):
    """True when the numba im2col/col2im should do a copy of ``n_elements`` numbers."""
    return (resolve_backend(backend, "conv2d", CONV_KERNELS) == "numba"
            and n_elements >= KERNEL_MIN_ELEMENTS)


def _out_size(size, k, stride, padding):
    out = (size + 2 * padding - k) // stride + 1
    if out < 1:
        raise ValueError(f"kernel {k} with padding {padding} does not fit input size {size}")
    return out


def _pad(x, padding):
    """Zero-pad the two spatial axes of ``x`` [N, C, H, W] by ``padding`` on every side."""
    if padding == 0:
        return x
    N, C, H, W = x.shape
    # zeros and one copy: the same array as np.pad's, 1.4-2x faster (np.pad is general)
    xp = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=x.dtype)
    xp[:, :, padding:padding + H, padding:padding + W] = x
    return xp


def im2col(xp, kh, kw, stride, Ho, Wo):
    """Gather every kh x kw patch of a batch of (already padded) images into a column.

    Inputs
        xp : [N, C, Hp, Wp] padded input
    Returns
        cols : [C*kh*kw, N*Ho*Wo]; row ``(c*kh + i)*kw + j`` holds
               ``xp[n, c, oh*stride + i, ow*stride + j]`` at column ``(n*Ho + oh)*Wo + ow``.
    The rows are ordered as ``w.reshape(F, C*kh*kw)`` orders a filter, so a convolution is
    ``w.reshape(F, -1) @ cols``.
    """
    N, C = xp.shape[:2]
    sN, sC, sH, sW = xp.strides
    # A view, no copy: patches[c, i, j, n, oh, ow] = xp[n, c, oh*stride + i, ow*stride + j]
    patches = as_strided(xp, shape=(C, kh, kw, N, Ho, Wo),
                         strides=(sC, sH, sW, sN, sH * stride, sW * stride),
                         writeable=False)                          # [C, kh, kw, N, Ho, Wo]
    # reshape copies, except for a few tiny shapes where a strided view fits; those come
    # out column-major, and BLAS then adds a product in another order (a last-bit difference
    # against the numba im2col's row-major copy): always hand back row-major
    return np.ascontiguousarray(patches.reshape(C * kh * kw, N * Ho * Wo))  # [C*kh*kw, N*Ho*Wo]


def col2im(cols, padded_shape, kh, kw, stride, Ho, Wo):
    """The adjoint of :func:`im2col`: add every column back onto the pixels it came from.

    Inputs
        cols : [C*kh*kw, N*Ho*Wo]
        padded_shape : (N, C, Hp, Wp)
    Returns
        xp : [N, C, Hp, Wp]; overlapping patches add up.
    One vectorised strided add per kernel offset (i, j): kh*kw adds of a [C, N, Ho, Wo] slab.
    """
    N, C, Hp, Wp = padded_shape
    xp = np.zeros(padded_shape, dtype=cols.dtype)                  # [N, C, Hp, Wp]
    xpt = xp.transpose(1, 0, 2, 3)                                 # [C, N, Hp, Wp], a view
    c6 = cols.reshape(C, kh, kw, N, Ho, Wo)                        # [C, kh, kw, N, Ho, Wo]
    for i in range(kh):
        for j in range(kw):
            xpt[:, :, i:i + stride * Ho:stride, j:j + stride * Wo:stride] += c6[:, i, j]
    return xp


def _im2col(x, kh, kw, stride, padding, Ho, Wo, backend):
    """im2col of ``x`` [N, C, H, W] zero-padded by ``padding``: [C*kh*kw, N*Ho*Wo]."""
    xp = _pad(x, padding)                                          # [N, C, Hp, Wp]
    if _use_kernel(backend, x.shape[0] * x.shape[1] * kh * kw * Ho * Wo):
        import numba
        # The kernel splits the copy over threads; on one thread NumPy's nine strided copies
        # are as fast or faster (2026-12-01, 1 thread: mask head 32 RoIs x 64 ch 3.0 vs 4.7
        # ms, the stem 0.26 vs 0.76 ms), so a DataParallel worker copies with NumPy.
        if numba.get_num_threads() > 1:
            from kernels.conv_numba import im2col as im2col_numba
            return im2col_numba(np.ascontiguousarray(xp), kh, kw, stride, Ho, Wo)
    return im2col(xp, kh, kw, stride, Ho, Wo)


def _threaded_im2col(backend, x, kh, kw, Ho, Wo):
    """True when :func:`_im2col` hands the copy to the numba kernel (more than one thread)."""
    if not _use_kernel(backend, x.shape[0] * x.shape[1] * kh * kw * Ho * Wo):
        return False
    import numba
    return numba.get_num_threads() > 1


def _conv_per_image(x, w2, kh, kw, stride, padding, Ho, Wo):
    """The same ``cols`` and the same products as ``w2 @ im2col(x)``, one image at a time.

    Image n's patches are copied into its block of columns ``cols[:, n*P:(n+1)*P]`` and
    multiplied at once, while they are still in the cache, straight into ``out[n]``: no
    [F, N*P] -> [N, F, P] copy afterwards. Every output number is the same dot product over
    the same K = C*kh*kw terms as in the one product for the batch, so BLAS gives the same
    bits (checked on this machine: ``tests/test_nn_conv.py``).
    Measured on one thread (2026-12-03, medians of 35, same run, the tiny preset's maps of 2
    images): 0.80-0.96x the time of the batch product for maps of 24x24 and more (stem 0.87,
    P2's 64-channel 3x3 0.96, 16 channels at 48x48 0.80), but 1.09-1.13x for the mask head's
    14x14 RoIs: hence ``PER_IMAGE_MIN_PIXELS``.

    Returns  cols : [C*kh*kw, N*P] (what the backward needs), out : [N, F, P]
    """
    xp = _pad(x, padding)                                          # [N, C, Hp, Wp]
    N, C = x.shape[:2]
    F, P = w2.shape[0], Ho * Wo
    sN, sC, sH, sW = xp.strides
    cols = np.empty((C * kh * kw, N * P), dtype=x.dtype)           # [C*kh*kw, N*P]
    cols6 = cols.reshape(C, kh, kw, N, Ho, Wo)                     # a view of cols
    out = np.empty((N, F, P), dtype=x.dtype)                       # [N, F, P]
    for n in range(N):
        # patches[c, i, j, oh, ow] = xp[n, c, oh*stride + i, ow*stride + j], a view
        patches = as_strided(xp[n], shape=(C, kh, kw, Ho, Wo),
                             strides=(sC, sH, sW, sH * stride, sW * stride), writeable=False)
        cols6[:, :, :, n] = patches
        np.matmul(w2, cols[:, n * P:(n + 1) * P], out=out[n])      # [F, P]
    return cols, out


def _conv_streamed(x, w2, kh, kw, stride, padding, Ho, Wo):
    """``w2 @ im2col(x)`` laid out as [N, F, Ho*Wo], for inference: no ``cols`` is kept.

    The patches are copied a few output rows (or a few small images) at a time into one
    buffer of about ``STREAM_BUFFER_BYTES``, which stays in the core's cache, and multiplied
    from there straight into the output. Keeping a whole ``cols`` for a backward means writing
    it to fresh memory and reading it back: for P2's 3x3 conv (2 images, 64 channels, 48x48:
    a 10.6 MB ``cols``) that is 6.3 ms, streamed 4.0-4.2; the stem 4.3 -> 2.1-2.5 (one
    thread, 2026-12-03, medians of 25, the same run, each result kept as a model keeps it).
    Every output is the same dot product over the same K = C*kh*kw terms, so BLAS gives the
    same numbers (on the 2-core machine, every output of ``predict`` had the same bits as the
    cached path's; ``test_streamed_inference_conv_is_the_cached_conv`` compares the two paths
    on both branches to float32 rounding).
    """
    xp = _pad(x, padding)                                          # [N, C, Hp, Wp]
    N, C = x.shape[:2]
    F, K = w2.shape
    P = Ho * Wo
    sN, sC, sH, sW = xp.strides
    out = np.empty((N, F, P), dtype=x.dtype)                       # [N, F, P]
    per_row = K * Wo * x.itemsize                                  # bytes of one output row
    if P * K * x.itemsize >= STREAM_BUFFER_BYTES:
        # big maps: a few output rows of one image at a time
        rows = max(1, min(Ho, STREAM_BUFFER_BYTES // per_row))
        buf = np.empty((K, rows * Wo), dtype=x.dtype)              # [K, rows*Wo]
        for n in range(N):
            for r0 in range(0, Ho, rows):
                r = min(rows, Ho - r0)
                # patches[c, i, j, oh, ow] = xp[n, c, (r0 + oh)*stride + i, ow*stride + j]
                patches = as_strided(xp[n, :, r0 * stride:], shape=(C, kh, kw, r, Wo),
                                     strides=(sC, sH, sW, sH * stride, sW * stride),
                                     writeable=False)
                block = buf[:, :r * Wo]                            # [K, r*Wo]
                block.reshape(C, kh, kw, r, Wo)[...] = patches
                np.matmul(w2, block, out=out[n, :, r0 * Wo:(r0 + r) * Wo])
        return out
    # small maps (the mask head's RoIs): a few whole images at a time
    g = max(1, min(N, STREAM_BUFFER_BYTES // (P * K * x.itemsize)))
    buf = np.empty((K, g * P), dtype=x.dtype)                      # [K, g*P]
    prod = np.empty((F, g * P), dtype=x.dtype)                     # [F, g*P]
    for n0 in range(0, N, g):
        m = min(g, N - n0)
        patches = as_strided(xp[n0:], shape=(C, kh, kw, m, Ho, Wo),
                             strides=(sC, sH, sW, sN, sH * stride, sW * stride), writeable=False)
        block = buf[:, :m * P]                                     # [K, m*P]
        block.reshape(C, kh, kw, m, Ho, Wo)[...] = patches
        np.matmul(w2, block, out=prod[:, :m * P])                  # [F, m*P]
        out[n0:n0 + m] = prod[:, :m * P].reshape(F, m, P).transpose(1, 0, 2)
    return out


def _col2im(cols, padded_shape, kh, kw, stride, Ho, Wo, backend):
    """col2im with the chosen backend: [C*kh*kw, N*Ho*Wo] -> [N, C, Hp, Wp]."""
    if _use_kernel(backend, cols.size):
        from kernels.conv_numba import col2im as col2im_numba
        return col2im_numba(np.ascontiguousarray(cols), *padded_shape, kh, kw, stride, Ho, Wo)
    return col2im(cols, padded_shape, kh, kw, stride, Ho, Wo)


def _matmul_nt(a, b):
    """``a @ b.T`` for a [M, P], b [K, P] with long rows (P = pixels): [M, K].

    Measured with OpenBLAS 0.3 on 2 cores: when b has more rows than a (K >= M, e.g. the stem's
    147 x 217600 patches against 64 filters), computing ``(b @ a.T).T`` is 2-8x faster than
    ``a @ b.T``; with K < M the direct form wins. Same numbers either way, up to rounding.
    """
    if b.shape[0] >= a.shape[0]:
        return (b @ a.T).T
    return a @ b.T


def _nchw_to_columns(a):
    """[N, F, Ho, Wo] -> [F, N*Ho*Wo], the column order of :func:`im2col` (a copy unless N == 1)."""
    N, F = a.shape[:2]
    return a.transpose(1, 0, 2, 3).reshape(F, -1)                 # [F, N*Ho*Wo]


def _columns_to_nchw(a, N, Ho, Wo):
    """[F, N*Ho*Wo] -> [N, F, Ho, Wo], contiguous (a copy unless N == 1)."""
    F = a.shape[0]
    return np.ascontiguousarray(a.reshape(F, N, Ho, Wo).transpose(1, 0, 2, 3))


def conv2d_forward(x, w, b=None, stride=1, padding=0, backend=DEFAULT_BACKEND, keep_cols=True):
    """2-D convolution (cross-correlation, as torch's ``F.conv2d``), zero padding.

    Inputs
        x : [N, C, H, W]
        w : [F, C, kh, kw]
        b : [F] or None
        stride, padding : ints, the same for both spatial axes
        backend : "numpy" | "numba" | "auto": who does the im2col copy (same numbers)
        keep_cols : False when nothing runs backward (inference, ``Module.no_cache``): the
              patches go through one small reused buffer (:func:`_conv_streamed`, the same
              numbers) and the cache is None
    Returns
        out : [N, F, Ho, Wo], ``Ho = (H + 2*padding - kh) // stride + 1`` (likewise Wo),
              dtype of x
        cache : what :func:`conv2d_backward` needs (None when ``keep_cols`` is False)
    """
    N, C, H, W = x.shape
    F, Cw, kh, kw = w.shape
    if Cw != C:
        raise ValueError(f"x has {C} channels but w expects {Cw}")
    Ho, Wo = _out_size(H, kh, stride, padding), _out_size(W, kw, stride, padding)
    w2 = w.reshape(F, C * kh * kw).astype(x.dtype, copy=False)     # [F, C*kh*kw]
    if kh == kw == 1 and padding == 0:
        # 1x1: the patches are the pixels (every stride-th one). No im2col: one product per
        # image on [C, Ho*Wo], which is already x's layout (no copy at stride 1).
        xs = x[:, :, ::stride, ::stride] if stride > 1 else x      # [N, C, Ho, Wo]
        cols = np.ascontiguousarray(xs).reshape(N, C, Ho * Wo)     # [N, C, Ho*Wo]
        out = np.matmul(w2, cols)                                  # [N, F, Ho*Wo]
        if b is not None:
            out += b.astype(x.dtype, copy=False)[:, None]
        out = out.reshape(N, F, Ho, Wo)                            # [N, F, Ho, Wo]
    elif not keep_cols:
        out = _conv_streamed(x, w2, kh, kw, stride, padding, Ho, Wo)  # [N, F, Ho*Wo]
        if b is not None:
            out += b.astype(x.dtype, copy=False)[:, None]
        return out.reshape(N, F, Ho, Wo), None                     # [N, F, Ho, Wo]
    elif N > 1 and Ho * Wo >= PER_IMAGE_MIN_PIXELS and not _threaded_im2col(backend, x, kh, kw,
                                                                              Ho, Wo):
        cols, out = _conv_per_image(x, w2, kh, kw, stride, padding, Ho, Wo)
        if b is not None:
            out += b.astype(x.dtype, copy=False)[:, None]          # [N, F, Ho*Wo]
        out = out.reshape(N, F, Ho, Wo)                            # [N, F, Ho, Wo]
    else:
        cols = _im2col(x, kh, kw, stride, padding, Ho, Wo, backend)  # [C*kh*kw, N*Ho*Wo]
        out = w2 @ cols                                            # [F, N*Ho*Wo]
        if b is not None:
            out += b.astype(x.dtype, copy=False)[:, None]
        out = _columns_to_nchw(out, N, Ho, Wo)                     # [N, F, Ho, Wo]
    cache = (x.shape, w, b is not None, stride, padding, cols, backend)
    return out, cache


def conv2d_backward(dout, cache, need_dx=True):
    """Gradients of :func:`conv2d_forward`.

    Inputs
        dout : [N, F, Ho, Wo]
        need_dx : False when nothing uses the input gradient (the image): dx is not computed
    Returns
        dx : [N, C, H, W] (None when ``need_dx`` is False); dw : [F, C, kh, kw];
        db : [F], or None when the forward had no bias
    """
    x_shape, w, has_bias, stride, padding, cols, backend = cache
    N, C, H, W = x_shape
    F, _, kh, kw = w.shape
    Ho, Wo = dout.shape[2:]
    dtype = cols.dtype
    dout = dout.astype(dtype, copy=False)
    w2 = w.reshape(F, C * kh * kw).astype(dtype, copy=False)       # [F, C*kh*kw]
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None            # [F]
    if kh == kw == 1 and padding == 0:
        d3 = dout.reshape(N, F, Ho * Wo)                           # [N, F, Ho*Wo]
        # dw[f, c] = sum over images n and pixels p of dout[n, f, p] * x[n, c, p]
        dw = sum(_matmul_nt(d3[n], cols[n]) for n in range(N)) if N else np.zeros((F, C), dtype)
        dw = dw.reshape(w.shape).astype(w.dtype, copy=False)       # [F, C, 1, 1]
        if not need_dx:
            return None, dw, db
        dcols = np.matmul(np.ascontiguousarray(w2.T), d3)          # [N, C, Ho*Wo]
        if stride == 1:
            return dcols.reshape(N, C, H, W), dw, db               # [N, C, H, W]
        dx = np.zeros((N, C, H, W), dtype=dtype)                   # pixels skipped get 0
        dx[:, :, ::stride, ::stride] = dcols.reshape(N, C, Ho, Wo)
        return dx, dw, db
    d2 = _nchw_to_columns(dout)                                    # [F, N*Ho*Wo]
    # dw[f, k] = sum over images and output pixels of dout[n, f, p] * cols[k, (n, p)]
    dw = _matmul_nt(d2, cols).reshape(w.shape).astype(w.dtype, copy=False)  # [F, C, kh, kw]
    if not need_dx:
        return None, dw, db
    dcols = np.ascontiguousarray(w2.T) @ d2                        # [C*kh*kw, N*Ho*Wo]
    Hp, Wp = H + 2 * padding, W + 2 * padding
    dxp = _col2im(dcols, (N, C, Hp, Wp), kh, kw, stride, Ho, Wo, backend)  # [N, C, Hp, Wp]
    dx = np.ascontiguousarray(dxp[:, :, padding:padding + H, padding:padding + W])  # [N, C, H, W]
    return dx, dw, db


def conv2d(input, weight, bias=None, stride=1, padding=0, backend=DEFAULT_BACKEND):
    """``torch.nn.functional.conv2d`` (square stride/padding, no dilation/groups): forward only."""
    return conv2d_forward(input, weight, bias, stride, padding, backend)[0]


def conv_transpose2d_forward(x, w, b=None, stride=1, padding=0, backend=DEFAULT_BACKEND):
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
    cols = wT @ _nchw_to_columns(x)                                # [F*kh*kw, N*H*W]
    outp = _col2im(cols, (N, F, Ho + 2 * padding, Wo + 2 * padding), kh, kw, stride, H, W,
                   backend)                                        # [N, F, Hp, Wp]
    out = outp[:, :, padding:padding + Ho, padding:padding + Wo]   # [N, F, Ho, Wo]
    out = np.ascontiguousarray(out)
    if b is not None:
        out += b.astype(x.dtype, copy=False)[:, None, None]
    cache = (x, w, b is not None, stride, padding, backend)
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
    x, w, has_bias, stride, padding, backend = cache
    N, C, H, W = x.shape
    _, F, kh, kw = w.shape
    dout = dout.astype(x.dtype, copy=False)
    # The im2col of dout has one column per input pixel (N*H*W of them).
    dx, cconv = conv2d_forward(dout, w.astype(x.dtype, copy=False), None, stride, padding,
                               backend)
    dcols = cconv[5]                                               # [F*kh*kw, N*H*W]
    if dcols.ndim == 3:  # a 1x1 kernel: conv2d kept its per-image [N, F, H*W] pixels
        dcols = dcols.transpose(1, 0, 2).reshape(F, -1)            # [F, N*H*W]
    dw = _matmul_nt(_nchw_to_columns(x), dcols)                    # [C, F*kh*kw]
    dw = dw.reshape(w.shape).astype(w.dtype, copy=False)           # [C, F, kh, kw]
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None            # [F]
    return dx, dw, db


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, backend=DEFAULT_BACKEND):
    """``torch.nn.functional.conv_transpose2d`` (no output_padding/groups/dilation): forward only."""
    return conv_transpose2d_forward(input, weight, bias, stride, padding, backend)[0]
