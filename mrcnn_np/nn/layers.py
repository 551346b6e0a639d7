"""The other layers of Mask R-CNN, each a forward/backward pair with an explicit cache.

linear, relu, sigmoid, max_pool2d, batchnorm2d (trainable), frozen_batchnorm2d (the detection
backbone's), groupnorm (per image, for training from scratch), add (residual and FPN sums),
flatten. (upsample_nearest, FPN's top-down layer, lives with the other resamplers in
``resample.py``.)
Shapes use the letters of ``mrcnn_np/__init__.py``. Every backward returns fresh arrays.
"""
import numpy as np

from ..ops._backend import DEFAULT_BACKEND, resolve_backend

POOL_KERNELS = ("numba",)  # max_pool2d's forward and backward in kernels/pool_numba.py

# -- linear --------------------------------------------------------------------------------
def linear_forward(x, w, b=None):
    """Fully connected layer, ``out = x @ w.T + b`` (torch's ``F.linear``).

    Inputs   x : [N, D];  w : [F, D];  b : [F] or None
    Returns  out : [N, F];  cache
    """
    out = x @ w.T.astype(x.dtype, copy=False)                      # [N, F]
    if b is not None:
        out += b.astype(x.dtype, copy=False)
    return out, (x, w, b is not None)


def linear_backward(dout, cache):
    """Returns dx : [N, D] = dout @ w;  dw : [F, D] = dout.T @ x;  db : [F] (None without bias)."""
    x, w, has_bias = cache
    dx = dout @ w.astype(dout.dtype, copy=False)                   # [N, D]
    dw = (dout.T @ x).astype(w.dtype, copy=False)                  # [F, D]
    db = dout.sum(axis=0) if has_bias else None                    # [F]
    return dx, dw, db


def linear(input, weight, bias=None):
    """``torch.nn.functional.linear``: forward only."""
    return linear_forward(input, weight, bias)[0]


# -- element-wise --------------------------------------------------------------------------
def relu_forward(x, keep_mask=True):
    """``max(x, 0)``. Inputs x : any shape. Returns out (same shape), cache (the mask x > 0;
    None with ``keep_mask=False``, for inference: a module passes its ``keep_cache``).

    ``np.maximum`` and ``*`` below are SIMD loops; ``np.where(mask, x, 0)`` computes the same
    numbers about 15x slower (0.59 vs 0.04 ms for a 64 x 48 x 48 map), and a tiny training step
    calls relu 25 times. A NaN stays NaN, as in torch."""
    out = np.maximum(x, x.dtype.type(0))
    out += 0  # max(-0.0, 0) may return -0.0; -0.0 + 0 = +0.0, so out is exactly where(x > 0, x, 0)
    return out, (x > 0 if keep_mask else None)


def relu_backward(dout, cache):
    """``dx = dout where x > 0, else 0``. At exactly x = 0 the gradient is 0 (torch's choice).
    A product with the 0/1 mask (a negative ``dout`` times 0 is -0.0, which adds as 0)."""
    return dout * cache


def sigmoid(x):
    """``1 / (1 + exp(-x))`` in x's dtype, without overflow for large |x|: for x >= 0 it is
    ``1 / (1 + e^-x)``, for x < 0 the same number as ``e^x / (1 + e^x)``. The one sigmoid of the
    repo (layers, the BCE loss, RPN scores, mask probabilities)."""
    x = np.asarray(x)
    e = np.exp(-np.abs(x))                                         # in (0, 1], never overflows
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_forward(x):
    """``sigmoid(x)``. Returns out (same shape as x), cache (out itself: the derivative is
    out * (1 - out))."""
    out = sigmoid(x)
    return out, out


def sigmoid_backward(dout, cache):
    """``dx = dout * s * (1 - s)`` with s the forward output."""
    s = cache
    return dout * s * (1 - s)


# -- max pooling -----------------------------------------------------------------------------
def max_pool2d_forward(x, kernel_size, stride=None, padding=0, backend=DEFAULT_BACKEND):
    """Max pooling (torch's ``F.max_pool2d``, ceil_mode=False, dilation 1).

    Padding is -inf, so a padded cell never wins. ResNet's stem uses kernel 3, stride 2,
    padding 1; FPN's P6 ("LastLevelMaxPool") uses kernel 1, stride 2, padding 0.

    Inputs   x : [N, C, H, W]; kernel_size, stride (default kernel_size), padding : ints;
             backend : "numpy" | "numba" | "auto": ``kernels/pool_numba.py`` visits each window
             once (the stem's pool 3.5x faster on one thread) with the same comparisons in the
             same order, so the same maximum, the same winner and the same gradient bits
    Returns  out : [N, C, Ho, Wo], ``Ho = (H + 2*padding - k) // stride + 1``;  cache
    Ties: the first maximum in row-major window order takes the whole gradient (torch's CPU
    rule: it only replaces its running maximum on a strictly larger value). NaN inputs are not
    supported.
    """
    k = kernel_size
    s = stride if stride is not None else k
    N, C, H, W = x.shape
    if padding > k // 2:
        raise ValueError("padding must be at most half the kernel size (as in torch)")
    Ho, Wo = (H + 2 * padding - k) // s + 1, (W + 2 * padding - k) // s + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"kernel {k} does not fit input {H}x{W} with padding {padding}")
    if resolve_backend(backend, "max_pool2d", POOL_KERNELS) == "numba":
        from kernels.pool_numba import max_pool2d_forward as max_pool_numba
        out, flat = max_pool_numba(np.ascontiguousarray(x), k, s, padding, Ho, Wo)
        return out, (x.shape, k, s, padding, flat, "numba")
    Hp, Wp = H + 2 * padding, W + 2 * padding
    xp = np.full((N, C, Hp, Wp), -np.inf, dtype=x.dtype)           # [N, C, Hp, Wp]
    xp[:, :, padding:padding + H, padding:padding + W] = x
    # A running maximum over the k*k offsets (a, b) of the window, in row-major order: the
    # values at offset (a, b) of every window are one strided view [N, C, Ho, Wo]. Only a
    # strictly larger value replaces the maximum, so the first one wins a tie. (The same
    # numbers as stacking the k*k views and taking argmax over them; 9 whole-map passes are
    # 2.5x faster than argmax over short rows of 9: the stem's 16 x 96 x 96 map, 0.8 vs 2.1 ms.)
    out = arg = None
    for a in range(k):
        for b in range(k):
            v = xp[:, :, a:a + s * (Ho - 1) + 1:s, b:b + s * (Wo - 1) + 1:s]  # [N, C, Ho, Wo]
            if out is None:
                out, arg = v.copy(), np.zeros(v.shape, np.int32)
                continue
            better = v > out                                       # [N, C, Ho, Wo]
            out = np.maximum(out, v)  # equal values are equal numbers: same as where(better)
            arg += better * np.int32(a * k + b) - better * arg      # offset of the maximum
    # Where the winner sits in the padded map, as a flat index into one [Hp, Wp] plane.
    oh = np.arange(Ho)[:, None] * s                                # [Ho, 1]
    ow = np.arange(Wo)[None, :] * s                                # [1, Wo]
    flat = (oh + arg // k) * Wp + (ow + arg % k)                   # [N, C, Ho, Wo]
    cache = (x.shape, k, s, padding, flat, "numpy")
    return out, cache


def max_pool2d_backward(dout, cache):
    """Route each output gradient to the input cell that won its window; overlapping windows
    that share a winner add up. Returns dx : [N, C, H, W] (zero where nothing won).
    The backend is the forward's (its cache says which)."""
    (N, C, H, W), k, s, padding, flat, backend = cache
    if backend == "numba":
        from kernels.pool_numba import max_pool2d_backward as max_pool_backward_numba
        return max_pool_backward_numba(np.ascontiguousarray(dout), flat, H, W, padding)
    Hp, Wp = H + 2 * padding, W + 2 * padding
    plane = np.arange(N * C).reshape(N, C, 1, 1) * (Hp * Wp)       # [N, C, 1, 1] plane offsets
    idx = (flat + plane).ravel()                                   # [N*C*Ho*Wo]
    dxp = np.bincount(idx, weights=dout.ravel(), minlength=N * C * Hp * Wp)  # float64 sums
    dxp = dxp.reshape(N, C, Hp, Wp)
    return np.ascontiguousarray(dxp[:, :, padding:padding + H, padding:padding + W],
                                dtype=dout.dtype)


def max_pool2d(input, kernel_size, stride=None, padding=0, backend=DEFAULT_BACKEND):
    """``torch.nn.functional.max_pool2d`` (ceil_mode=False, dilation 1): forward only."""
    return max_pool2d_forward(input, kernel_size, stride, padding, backend)[0]


# -- batch norm ------------------------------------------------------------------------------
def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1,
                        eps=1e-5):
    """Batch normalisation over (N, H, W) for each channel (torch's ``F.batch_norm``).

    Inputs
        x : [N, C, H, W];  gamma, beta : [C] (torch's ``weight``, ``bias``)
        running_mean, running_var : [C], updated IN PLACE when training
        training : use batch statistics (True) or the running ones (False)
    Returns
        out : [N, C, H, W] = gamma * (x - mean) / sqrt(var + eps) + beta;  cache

    Training normalises with the biased batch variance (divide by m = N*H*W) and, as torch
    does, updates the running estimates with the *unbiased* one (divide by m - 1):
    ``running = (1 - momentum) * running + momentum * batch``. It needs m > 1, except that an
    empty batch (m = 0) gives an empty output and leaves the running statistics alone (torch).
    """
    N, C, H, W = x.shape
    dt = x.dtype
    if training and x.size == 0:
        return x.copy(), (x.copy(), np.ones(C, dt), gamma, False)
    if training:
        m = N * H * W
        if m <= 1:
            raise ValueError(f"batch norm in training needs more than 1 value per channel, got {m}")
        mean = x.mean(axis=(0, 2, 3))                              # [C]
        var = x.var(axis=(0, 2, 3))                                # [C], biased
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += momentum * var * (m / (m - 1))
    else:
        mean, var = running_mean.astype(dt), running_var.astype(dt)
    invstd = (1 / np.sqrt(var + eps)).astype(dt)                   # [C]
    xhat = (x - mean[:, None, None]) * invstd[:, None, None]       # [N, C, H, W]
    out = xhat * gamma.astype(dt)[:, None, None] + beta.astype(dt)[:, None, None]
    return out, (xhat, invstd, gamma, training)


def batchnorm2d_backward(dout, cache):
    """Gradients of :func:`batchnorm2d_forward`.

    With g = dout * gamma and m = N*H*W, per channel:
        training: dx = invstd * (g - mean(g) - xhat * mean(g * xhat))
                  (the batch mean and variance depend on x, so two correction terms appear)
        eval:     dx = invstd * g      (running statistics are constants)
        dgamma = sum(dout * xhat),  dbeta = sum(dout)
    The running statistics receive no gradient: they are buffers, not parameters.
    Returns dx : [N, C, H, W];  dgamma, dbeta : [C]
    """
    xhat, invstd, gamma, training = cache
    dt = xhat.dtype
    dbeta = dout.sum(axis=(0, 2, 3))                               # [C]
    dgamma = (dout * xhat).sum(axis=(0, 2, 3))                     # [C]
    g = dout * gamma.astype(dt)[:, None, None]                     # [N, C, H, W]
    if training:
        m = xhat.shape[0] * xhat.shape[2] * xhat.shape[3]
        mean_g = (dbeta * gamma / m).astype(dt)                    # [C] = mean(g)
        mean_gx = (dgamma * gamma / m).astype(dt)                  # [C] = mean(g * xhat)
        dx = (g - mean_g[:, None, None] - xhat * mean_gx[:, None, None]) * invstd[:, None, None]
    else:
        dx = g * invstd[:, None, None]
    return dx, dgamma.astype(gamma.dtype, copy=False), dbeta.astype(gamma.dtype, copy=False)


def frozen_batchnorm2d_forward(x, weight, bias, running_mean, running_var, eps=1e-5):
    """torchvision's ``FrozenBatchNorm2d``: a fixed per-channel affine map.

        scale = weight / sqrt(running_var + eps);  shift = bias - running_mean * scale
        out = x * scale + shift
    Inputs x : [N, C, H, W]; the four others : [C]. Returns out : [N, C, H, W]; cache (scale).
    torchvision's default eps is 1e-5 (``FrozenBatchNorm2d.__init__``).
    """
    dt = x.dtype
    scale = (weight.astype(dt) / np.sqrt(running_var.astype(dt) + dt.type(eps)))  # [C]
    shift = bias.astype(dt) - running_mean.astype(dt) * scale      # [C]
    return x * scale[:, None, None] + shift[:, None, None], scale


def frozen_batchnorm2d_backward(dout, cache):
    """``dx = dout * scale``. Weight, bias and statistics are frozen buffers: no gradient."""
    return dout * cache[:, None, None]


# -- group norm ------------------------------------------------------------------------------
def groupnorm_forward(x, gamma, beta, num_groups, eps=1e-5):
    """Group normalisation (Wu & He, 2018; torch's ``F.group_norm``), per image.

    The C channels are split into ``num_groups`` = G consecutive groups of C/G channels; each
    image's group is normalised with its own mean and biased variance over its C/G * H * W
    values, then each channel gets its own affine map. Nothing depends on the other images of
    the batch, so training and evaluation compute the same thing (no running statistics).

    Inputs
        x : [N, C, H, W], C divisible by G;  gamma, beta : [C] (torch's ``weight``, ``bias``)
        num_groups : G (G = 1 is layer norm over (C, H, W); G = C is instance norm)
        eps : added to the variance; torch's default 1e-5 (``nn.GroupNorm``)
    Returns
        out : [N, C, H, W] = gamma * (x - mean) / sqrt(var + eps) + beta;  cache
    A group of one value (C/G = 1 and a 1x1 map) has var 0, xhat 0 and out = beta, as in torch.
    N = 0 gives an empty output.
    """
    N, C, H, W = x.shape
    G = int(num_groups)
    if G < 1 or C % G:
        raise ValueError(f"group norm needs channels divisible by num_groups, got C={C}, G={G}")
    dt = x.dtype
    xg = x.reshape(N, G, (C // G) * H * W)                         # [N, G, m], m = C/G*H*W
    if xg.size == 0:
        mean = np.zeros((N, G, 1), dt)
        var = np.zeros((N, G, 1), dt)
    else:
        mean = xg.mean(axis=2, keepdims=True)                       # [N, G, 1]
        var = xg.var(axis=2, keepdims=True)                         # [N, G, 1], biased
    invstd = (1 / np.sqrt(var + dt.type(eps))).astype(dt)          # [N, G, 1]
    xhat = ((xg - mean) * invstd).reshape(N, C, H, W)              # [N, C, H, W]
    out = xhat * gamma.astype(dt)[:, None, None] + beta.astype(dt)[:, None, None]
    return out, (xhat, invstd, gamma, G)


def groupnorm_backward(dout, cache):
    """Gradients of :func:`groupnorm_forward`.

    With g = dout * gamma (per channel) and m = C/G * H * W values in a group, per (image, group):
        dx = invstd * (g - mean(g) - xhat * mean(g * xhat))
    (the group's mean and variance depend on every x of the group, hence the two correction
    terms; it is batch norm's formula with the group of one image in place of the channel of
    the batch). Summing over images and positions, per channel:
        dgamma = sum(dout * xhat),  dbeta = sum(dout)
    Returns dx : [N, C, H, W];  dgamma, dbeta : [C] in gamma's dtype.
    """
    xhat, invstd, gamma, G = cache
    N, C, H, W = xhat.shape
    dt = xhat.dtype
    dbeta = dout.sum(axis=(0, 2, 3))                               # [C]
    dgamma = (dout * xhat).sum(axis=(0, 2, 3))                     # [C]
    m = (C // G) * H * W                                           # values in a group
    g = (dout * gamma.astype(dt)[:, None, None]).reshape(N, G, m)  # [N, G, m]
    xh = xhat.reshape(N, G, m)                                     # [N, G, m]
    if g.size == 0:
        dx = np.zeros((N, C, H, W), dt)
    else:
        mean_g = g.mean(axis=2, keepdims=True)                     # [N, G, 1]
        mean_gx = (g * xh).mean(axis=2, keepdims=True)             # [N, G, 1]
        dx = ((g - mean_g - xh * mean_gx) * invstd).reshape(N, C, H, W)  # [N, C, H, W]
    return dx, dgamma.astype(gamma.dtype, copy=False), dbeta.astype(gamma.dtype, copy=False)


# -- plumbing --------------------------------------------------------------------------------
def add_forward(a, b):
    """``a + b`` for same-shape arrays (residual connections, FPN's lateral + top-down sum)."""
    return a + b, None


def add_backward(dout, cache):
    """Both inputs receive the gradient unchanged. Returns (da, db), two fresh arrays."""
    return dout.copy(), dout.copy()


def flatten_forward(x):
    """``[N, ...] -> [N, D]`` with D the product of the other axes (C-order, as torch.flatten(x, 1))."""
    return x.reshape(x.shape[0], int(np.prod(x.shape[1:]))), x.shape


def flatten_backward(dout, cache):
    """Reshape the gradient back to the input's shape. Returns dx (a fresh array)."""
    return dout.reshape(cache).copy()
