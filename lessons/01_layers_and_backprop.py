# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 01 — Layers and backprop
#
# Mask R-CNN is built from a handful of layers: convolution, batch norm, ReLU, max pooling,
# nearest upsampling, a fully connected layer and one transposed convolution, plus three
# losses. This chapter writes each one as **two plain functions**:
#
# ```
# out, cache = x_forward(inputs..., params...)
# dinputs..., dparams... = x_backward(dout, cache)
# ```
#
# `forward` computes the output and keeps in `cache` what the backward pass will need.
# `backward` receives `dout = dL/dout`, the gradient of the final loss `L` with respect to this
# layer's output, and returns the gradient with respect to each input and parameter. That is
# the chain rule, one layer at a time: no autograd, no tape, every array in plain sight.
#
# How do we know a backward is right? We **check it with finite differences**: nudge one input
# by ±h and watch the loss move. We do that here, and the test suite does it for every op
# (in float64, on shapes drawn at random), and compares every value and gradient with PyTorch.

# %%
# %matplotlib inline
import os

# This notebook times code. On a machine shared with other jobs, multi-threaded BLAS can lose
# far more time waiting for busy cores than it gains, so we ask OpenBLAS for one thread.
# (This only works before numpy is first imported; the numbers below are single-threaded.)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import inspect  # noqa: E402
import time  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mrcnn_np import nn  # noqa: E402

np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## A gradient check you can run on anything
#
# For a layer `f` and an upstream gradient `dout`, the quantity that backward differentiates
# is the scalar `L(x) = sum(dout * f(x))`. Its derivative along one entry `x_i` is, up to
# an error of order h², the central difference
#
# $$\frac{\partial L}{\partial x_i} \approx \frac{L(x + h e_i) - L(x - h e_i)}{2h}.$$
#
# We use float64 and h = 1e-6: the truncation error (~h²) and the rounding error (~1e-16/h)
# are then both around 1e-10. The ten lines below are all it takes; the tests and the later
# chapters use this same function, `mrcnn_np.nn.gradcheck.numerical_grad`.

# %%
from mrcnn_np.nn.gradcheck import numerical_grad, rel_error

print(inspect.getsource(numerical_grad))


# %% [markdown]
# ## Linear: `out = x @ W.T + b`
#
# With `x` `[N, D]`, `W` `[F, D]`, `b` `[F]`: each output is a sum of products, so each
# input's gradient collects the upstream gradients of every output it fed:
#
# $$dx = dout\,W \quad [N, D], \qquad dW = dout^\top x \quad [F, D], \qquad db = \textstyle\sum_n dout_n \quad [F].$$

# %%
print(inspect.getsource(nn.linear_backward))

# %%
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3))
W = rng.standard_normal((4, 3))
b = rng.standard_normal(4)
out, cache = nn.linear_forward(x, W, b)
dout = rng.standard_normal(out.shape)
dx, dW, db = nn.linear_backward(dout, cache)
print("dx  error:", rel_error(dx, numerical_grad(lambda v: nn.linear_forward(v, W, b)[0], x, dout)))
print("dW  error:", rel_error(dW, numerical_grad(lambda v: nn.linear_forward(x, v, b)[0], W, dout)))

# %% [markdown]
# ## ReLU and sigmoid
#
# ReLU passes the gradient where the input was positive and blocks it elsewhere:
# `dx = dout * (x > 0)`. At exactly `x = 0` the derivative does not exist; like PyTorch we
# return 0. The sigmoid `s = 1/(1 + e^{-x})` has derivative `s (1 - s)`, so its cache is the
# output itself. Computed naively, `e^{-x}` overflows for `x = -1000`; our forward uses
# `e^{-|x|}`, which never exceeds 1.

# %%
out, cache = nn.sigmoid_forward(np.array([-1000.0, -1.0, 0.0, 1.0, 1000.0]))
print("sigmoid :", out)
print("gradient:", nn.sigmoid_backward(np.ones(5), cache))

# %% [markdown]
# ## Convolution is a matrix product
#
# A convolution slides `F` filters of size `C x kh x kw` over the (zero-padded) input. Each
# output value is a dot product between one filter and the patch under it. If we copy every
# patch into a **column** of a matrix (this copy is called *im2col*, "image to columns"),
# all the dot products become one matrix product:
#
# $$\underbrace{out}_{[F,\ H_o W_o]} = \underbrace{W}_{[F,\ C k_h k_w]}\ \underbrace{cols}_{[C k_h k_w,\ H_o W_o]},
# \qquad H_o = \left\lfloor \frac{H + 2p - k_h}{s} \right\rfloor + 1.$$
#
# For a batch of N images the columns of all images sit side by side, `cols` is
# `[C kh kw, N Ho Wo]`, and ONE product serves the whole batch (the mask head's convolutions
# run on every positive RoI of a batch at once, where one large product is much faster than
# one small product per RoI).
#
# The picture shows it for one channel, a 4x4 image and a 3x3 kernel (stride 1, no padding):
# four patches, four columns of nine numbers.

# %%
img = np.arange(16.0).reshape(1, 1, 4, 4)
cols = nn.im2col(img, 3, 3, 1, 2, 2)                         # [9, 4] = [C*kh*kw, N*Ho*Wo]
print(cols)
assert cols.shape == (9, 4)                                   # four patches of nine numbers

fig, axes = plt.subplots(1, 5, figsize=(13, 3), gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.3]})
colours = ["tab:red", "tab:blue", "tab:green", "tab:orange"]
for p, ax in enumerate(axes[:4]):
    ax.imshow(img[0, 0], cmap="Greys", vmin=-8, vmax=24)
    oh, ow = divmod(p, 2)
    ax.add_patch(plt.Rectangle((ow - 0.5, oh - 0.5), 3, 3, fill=False, lw=3, ec=colours[p]))
    for (r, c), v in np.ndenumerate(img[0, 0]):
        ax.text(c, r, int(v), ha="center", va="center", fontsize=9)
    ax.set_title(f"patch {p} (output {oh},{ow})")
    ax.axis("off")
ax = axes[4]
ax.imshow(cols, cmap="Greys", vmin=-40, vmax=60, aspect="auto")
for (r, c), v in np.ndenumerate(cols):
    ax.text(c, r, int(v), ha="center", va="center", fontsize=9, color=colours[c], weight="bold")
ax.set_title("cols [9, 4]: one column per patch")
ax.set_xticks(range(4))
ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# The backward pass is two more matrix products and the reverse of im2col:
#
# - `dW = dout @ cols.T`: each filter weight meets every patch value it multiplied;
# - `dcols = W.T @ dout`: each patch entry's share of the gradient;
# - `dx = col2im(dcols)`: patches overlap, so the shares of one pixel are **added** back.
#
# `col2im` is written as `kh*kw` vectorised adds: for each kernel offset `(i, j)` one whole
# `[C, N, Ho, Wo]` slab is added into the padded gradient at stride `s`. A 1x1 convolution
# needs no im2col at all (its patches are the pixels): a reshape and one matrix product.
# When nothing needs the input's gradient (the first layer, whose input is the image),
# `need_dx=False` skips `dcols` and `col2im`.

# %%
print(inspect.getsource(nn.conv2d_backward))

# %% [markdown]
# A hand-sized example, checked by finite differences: stride 2, padding 1, a bias.

# %%
x = rng.standard_normal((2, 3, 5, 5))
W = rng.standard_normal((4, 3, 3, 3))
b = rng.standard_normal(4)
out, cache = nn.conv2d_forward(x, W, b, stride=2, padding=1)
print("out shape:", out.shape, "(Ho = (5 + 2 - 3) // 2 + 1 = 3)")
assert out.shape == (2, 4, 3, 3)
dout = rng.standard_normal(out.shape)
dx, dW, db = nn.conv2d_backward(dout, cache)
f_x = lambda v: nn.conv2d_forward(v, W, b, 2, 1)[0]  # noqa: E731
f_w = lambda v: nn.conv2d_forward(x, v, b, 2, 1)[0]  # noqa: E731
print("dx error:", rel_error(dx, numerical_grad(f_x, x, dout)))
print("dW error:", rel_error(dW, numerical_grad(f_w, W, dout)))

# %% [markdown]
# ### Why im2col, and how fast it is
#
# The alternatives are loops over pixels (hopelessly slow in Python), loops compiled with
# Numba (fast for small channel counts, but a hand-written loop nest cannot compete with a
# tuned matrix multiply when `C*kh*kw` is in the hundreds or thousands), or im2col + GEMM,
# which hands the work to OpenBLAS: cache-blocked, vectorised, multi-threaded. im2col costs
# memory (the stem's matrix is `147 x 217,600` for an 800x1088 image) but ResNet-50 spends
# most of its time in convolutions with many channels, where GEMM is at its best. Below, the
# same convolution three ways on a small layer: plain loops over the output, a loop over the
# nine kernel offsets (each a vectorised product), and im2col + one GEMM.
#
# First the memory, from the `cols` a forward pass keeps in its cache: the stem's for one
# 800x1088 image (one filter is enough to see the matrix), and a 3x3, stride-1 layer's
# against the size of its input.

# %%
_, stem_cache = nn.conv2d_forward(np.zeros((1, 3, 800, 1088), np.float32),
                                  np.zeros((1, 3, 7, 7), np.float32), None, 2, 3)
stem_cols = stem_cache[5]                                     # [C*kh*kw, N*Ho*Wo]
print(f"stem cols: {stem_cols.shape[0]} x {stem_cols.shape[1]:,} "
      f"({stem_cols.nbytes / 2**20:.0f} MiB of float32)")
assert stem_cols.shape == (3 * 7 * 7, 400 * 544) == (147, 217_600)
del stem_cols, stem_cache
x3 = np.zeros((1, 256, 50, 68), np.float32)
_, cache3 = nn.conv2d_forward(x3, np.zeros((8, 256, 3, 3), np.float32), None, 1, 1)
print("3x3 layer: cols / input =", cache3[5].size / x3.size)
assert cache3[5].size == 9 * x3.size


# %%
def conv_loops(x, W, pad):
    N, C, H, Wd = x.shape
    F, _, kh, kw = W.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = H + 2 * pad - kh + 1, Wd + 2 * pad - kw + 1
    out = np.zeros((N, F, Ho, Wo))
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    out[n, f, i, j] = np.sum(xp[n, :, i:i + kh, j:j + kw] * W[f])
    return out


def conv_offsets(x, W, pad):
    N, C, H, Wd = x.shape
    F, _, kh, kw = W.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = H + 2 * pad - kh + 1, Wd + 2 * pad - kw + 1
    out = np.zeros((N, F, Ho, Wo))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("fc,nchw->nfhw", W[:, :, i, j], xp[:, :, i:i + Ho, j:j + Wo])
    return out


def best_of(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


x = rng.standard_normal((1, 64, 32, 32)).astype(np.float32)
W = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
ref = nn.conv2d(x, W, padding=1)
assert np.allclose(conv_loops(x, W, 1), ref, atol=1e-3)
assert np.allclose(conv_offsets(x, W, 1), ref, atol=1e-3)
t_loops = best_of(lambda: conv_loops(x, W, 1), 1)
t_offsets = best_of(lambda: conv_offsets(x, W, 1), 5)
t_gemm = best_of(lambda: nn.conv2d(x, W, padding=1), 5)
for name, t in [("loops over outputs", t_loops), ("9 offset products", t_offsets),
                ("im2col + GEMM", t_gemm)]:
    print(f"{name:20s} {t * 1e3:8.2f} ms   ({t / t_gemm:6.1f} x im2col)")

# %% [markdown]
# Against PyTorch on ResNet-50-FPN's own conv shapes at an 800x1088 input, forward +
# backward, batch 1, one thread each (`python benchmarks/bench_conv.py --threads 1`, medians
# of 3 on the shared 2-core machine where this chapter was written; your numbers will differ):
#
# | layer (C→F, kernel/stride, input) | count | ours (ms) | torch (ms) | ours / torch |
# | --- | ---: | ---: | ---: | ---: |
# | stem, 3→64, 7/2, 800x1088 | 1 | 718 | 1174 | 0.61 |
# | layer1 3x3, 64→64, 3/1, 200x272 | 3 | 429 | 298 | 1.44 |
# | layer1 1x1, 64→256, 1/1, 200x272 | 4 | 152 | 278 | 0.55 |
# | FPN 3x3, 256→256, 3/1, 200x272 | 1 | 4038 | 2789 | 1.45 |
# | layer3 3x3, 256→256, 3/1, 50x68 | 5 | 191 | 163 | 1.17 |
# | layer4 1x1, 2048→512, 1/1, 25x34 | 2 | 86 | 100 | 0.86 |
# | **all 61 convs (count-weighted)** | | **15290** | **14977** | **1.02** |
#
# The 1x1 convolutions are at parity or faster; the 3x3 ones pay for the im2col copy
# (a 3x3 layer's `cols` is nine times the size of its input) and are 1.1-1.6x slower.
# Over the whole stack we are at torch's speed.
#
# Two measured details shaped the code (the counts of convolutions are the cell's below).
# First, the 1x1 convolutions (more than half of ResNet-50's convs) skip im2col entirely. Second, for the weight gradient `dout @ cols.T`
# OpenBLAS was up to 8x faster when asked for the transposed product `(cols @ dout.T).T`
# whenever `cols` has more rows than `dout` (the stem: 147 rows against 64), so
# `conv2d_backward` picks the orientation by shape. On one core col2im's `kh*kw` slab
# additions cost less than a fifth of a 3x3 layer's time; but BLAS uses every core and NumPy's
# copies use one, so for training on two cores im2col and col2im also exist as Numba kernels
# (`kernels/conv_numba.py`, chosen by `backend=`) that split the copies over the cores. They
# are pure copies and in-order sums, so they give exactly the NumPy version's numbers.
# We also tried skipping im2col for stride-1 3x3 layers (nine matrix products, one per kernel
# offset, on shifted views of the flattened padded image): measured, it was no faster
# (1.0-2.1x slower), so im2col stayed.

# %%
from mrcnn_np.backbone import ResNetFPN  # noqa: E402

convs = {name: m.params["weight"].shape for name, m in ResNetFPN().named_modules()
         if isinstance(m, nn.Conv2d)}                        # ResNet-50 + FPN, 256 channels
body = [k for name, k in convs.items() if name.startswith("body")]
one_by_one = sum(k[2:] == (1, 1) for k in body)
print(f"ResNet-50-FPN: {len(convs)} convs; ResNet-50: {len(body)}, {one_by_one} of them 1x1")
assert len(convs) == 61 and one_by_one > len(body) / 2

# %%
x = rng.standard_normal((2, 16, 40, 40)).astype(np.float32)  # cols: 115,200 numbers
W = rng.standard_normal((8, 16, 3, 3)).astype(np.float32)
out_np, cache_np = nn.conv2d_forward(x, W, None, 2, 1, backend="numpy")
out_nb, cache_nb = nn.conv2d_forward(x, W, None, 2, 1, backend="numba")
dout = rng.standard_normal(out_np.shape).astype(np.float32)
assert np.array_equal(out_nb, out_np)
assert all(np.array_equal(a, b) for a, b in zip(nn.conv2d_backward(dout, cache_nb)[:2],
                                                nn.conv2d_backward(dout, cache_np)[:2]))
print("numba im2col/col2im == NumPy, bit for bit: forward, dx and dW")

# %% [markdown]
# ## Transposed convolution: painting kernels
#
# The mask head turns 14x14 features into 28x28 masks with a 2x2, stride-2 transposed
# convolution. Each input pixel **paints** a copy of the kernel, scaled by its value, onto
# the output; with kernel = stride the copies tile the output without overlap. This is
# exactly the input-gradient of a convolution (col2im after a matrix product), so the
# forward of one is the backward of the other, and vice versa: the backward of a transposed
# convolution is an ordinary convolution of `dout`.

# %%
x = np.array([[1.0, 2.0], [3.0, 0.0]]).reshape(1, 1, 2, 2)
k = np.array([[1.0, 0.5], [0.5, 0.25]]).reshape(1, 1, 2, 2)
out, _ = nn.conv_transpose2d_forward(x, k, stride=2)
print(out[0, 0])
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for ax, a, t in zip(axes, [x[0, 0], k[0, 0], out[0, 0]], ["input 2x2", "kernel 2x2", "output 4x4"]):
    ax.imshow(a, cmap="Blues", vmin=0, vmax=4)
    for (r, c), v in np.ndenumerate(a):
        ax.text(c, r, f"{v:g}", ha="center", va="center")
    ax.set_title(t)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Max pooling, and who gets the gradient on a tie
#
# Max pooling passes each output's gradient to the one input that won its window. When two
# inputs tie, someone has to be chosen; we follow PyTorch's CPU rule: **the first maximum in
# row-major window order** wins, and it takes the whole gradient. Padding is `-inf`, so it
# never wins. Windows overlap for ResNet's 3x3 stride-2 pool, so an input that wins two
# windows collects both gradients.

# %%
x = np.array([[5.0, 5.0, 1.0], [0.0, 2.0, 5.0], [1.0, 1.0, 1.0]]).reshape(1, 1, 3, 3)
out, cache = nn.max_pool2d_forward(x, kernel_size=2, stride=1)
print("out:\n", out[0, 0])
print("dx (dout = 1 everywhere):\n", nn.max_pool2d_backward(np.ones_like(out), cache)[0, 0])
winners = {}
for (i, j), _ in np.ndenumerate(out[0, 0]):                  # one window at a time
    one = np.zeros_like(out)
    one[0, 0, i, j] = 1
    winners[(i, j)] = tuple(int(v) for v in np.argwhere(nn.max_pool2d_backward(one, cache)[0, 0])[0])
print("window -> winning input:", winners)
assert winners[(0, 0)] == (0, 0) and winners[(0, 1)] == (0, 1)

# %% [markdown]
# The top-left window holds two 5s; the first, `x[0, 0]`, wins. The top-right window holds
# the 5 at `x[0, 1]` (first in row-major order) and the 5 at `x[1, 2]`; `x[0, 1]` wins.
#
# ## Batch norm
#
# Per channel, over the `m = N*H*W` values of a batch:
# `x̂ = (x - μ) / sqrt(σ² + ε)`, `out = γ x̂ + β`. In training μ and σ² are the batch's own
# statistics, so every input moves them, and the backward pass has two correction terms
# (with `g = dout * γ`):
#
# $$dx = \frac{1}{\sqrt{\sigma^2 + \varepsilon}} \left( g - \overline{g} - \hat{x}\, \overline{g \hat{x}} \right), \qquad
# d\gamma = \textstyle\sum dout\, \hat{x}, \qquad d\beta = \textstyle\sum dout,$$
#
# with bars for means over the batch. The running averages used in evaluation follow
# PyTorch: `running = 0.9 running + 0.1 batch`, with the *unbiased* variance (÷ (m-1)).
# Detection backbones use **FrozenBatchNorm2d** instead: all four vectors are fixed (a batch
# of 1-2 images is too small to estimate statistics), so it is just `x * scale + shift` and
# its backward is `dout * scale`.

# %%
print(inspect.getsource(nn.batchnorm2d_backward))

# %%
x = rng.standard_normal((3, 2, 2, 2))
gamma, beta = rng.standard_normal(2), rng.standard_normal(2)
running_mean, running_var = np.zeros(2), np.ones(2)


def bn(v):
    return nn.batchnorm2d_forward(v, gamma, beta, running_mean.copy(), running_var.copy(), True)[0]


out, cache = nn.batchnorm2d_forward(x, gamma, beta, running_mean, running_var, training=True)
dout = rng.standard_normal(out.shape)
dx, dgamma, dbeta = nn.batchnorm2d_backward(dout, cache)
print("batch-norm dx error:", rel_error(dx, numerical_grad(bn, x, dout)))
print("running mean after one step:", running_mean, "= 0.1 * batch mean", 0.1 * x.mean(axis=(0, 2, 3)))
m = x.shape[0] * x.shape[2] * x.shape[3]                      # values per channel
unbiased = x.var(axis=(0, 2, 3)) * m / (m - 1)
print("running var after one step: ", running_var, "= 0.9 + 0.1 * unbiased batch var", 0.9 + 0.1 * unbiased)
assert np.allclose(running_mean, 0.1 * x.mean(axis=(0, 2, 3)))
assert np.allclose(running_var, 0.9 * 1 + 0.1 * unbiased)

# %% [markdown]
# ## Nearest upsampling (FPN's top-down path)
#
# `out[i, j] = x[floor(i * H/Ho), floor(j * W/Wo)]`, as PyTorch computes it (the ratio held in
# float32). Backward: each input pixel receives the sum of the gradients of all its copies.

# %%
out, cache = nn.upsample_nearest_forward(np.array([[1.0, 2.0, 3.0]]).reshape(1, 1, 1, 3), (1, 7))
print("1x3 -> 1x7:", out[0, 0, 0])
print("gradient of ones:", nn.upsample_nearest_backward(np.ones((1, 1, 1, 7)), cache)[0, 0, 0])

# %% [markdown]
# ## Losses take logits
#
# - **Cross entropy** (box head classes): `loss = logsumexp(z) - z_y`; its gradient is
#   `softmax(z) - onehot(y)`, divided by the number of rows counted.
# - **BCE with logits** (RPN objectness, per-pixel masks): `max(z, 0) - z y + log(1 + e^{-|z|})`,
#   a form that never takes the log of 0; gradient `sigmoid(z) - y`.
# - **Smooth L1** (box regression) with threshold β: quadratic `0.5 d²/β` for `|d| < β`,
#   linear `|d| - β/2` beyond; gradient `d/β` or `sign(d)`. torchvision uses β = 1/9 (our
#   `RPN_BOX_BETA` and `BOX_BETA`).
#
# A mean over nothing (an image without RoIs) is 0/0. PyTorch returns nan, and so do we by
# default, so the two agree number by number; the detector passes `zero_if_empty=True` to get
# a loss of 0 with zero gradient instead.

# %%
z = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
loss, cache = nn.cross_entropy_forward(z, np.array([0, 2]))
print("cross entropy:", loss, "\ngradient:\n", nn.cross_entropy_backward(1.0, cache))
print("empty, default:", nn.cross_entropy_forward(np.zeros((0, 3)), np.zeros(0, int))[0],
      "| empty, zero_if_empty:", nn.cross_entropy_forward(np.zeros((0, 3)), np.zeros(0, int),
                                                          zero_if_empty=True)[0])
assert np.isnan(nn.cross_entropy_forward(np.zeros((0, 3)), np.zeros(0, int))[0])
assert nn.cross_entropy_forward(np.zeros((0, 3)), np.zeros(0, int), zero_if_empty=True)[0] == 0
from mrcnn_np.roi_heads import BOX_BETA  # noqa: E402
from mrcnn_np.rpn import RPN_BOX_BETA  # noqa: E402

print("smooth-L1 beta: RPN", RPN_BOX_BETA, " box head", BOX_BETA)
assert RPN_BOX_BETA == BOX_BETA == 1 / 9

# %% [markdown]
# ## Training the parameters: SGD with momentum and a warm-up
#
# Layer objects (`nn.Conv2d`, `nn.BatchNorm2d`, ...) hold parameters and **add** their
# gradients into `grads` on every backward call. `nn.SGD` then updates each parameter in place
# exactly as `torch.optim.SGD` does (weight decay folded into the gradient, the momentum buffer
# starting at the first gradient), and `nn.warmup_multistep_lr` gives the learning rate of
# every iteration: a linear warm-up, then ×0.1 at each milestone.

# %%
its = np.arange(120)
base_lr, warmup, milestones = 0.02, 20, [80, 100]
lrs = np.array([nn.warmup_multistep_lr(i, base_lr=base_lr, warmup_iters=warmup,
                                       warmup_factor=0.001, milestones=milestones) for i in its])
print(f"lr at 0: {lrs[0]:.2g}, at {warmup}: {lrs[warmup]:.2g}, at 79: {lrs[79]:.2g}, "
      f"at 80: {lrs[80]:.2g}, at 100: {lrs[100]:.2g}")
assert np.isclose(lrs[0], base_lr * 0.001) and np.isclose(lrs[warmup], base_lr)
assert np.isclose(lrs[79], base_lr) and np.isclose(lrs[80], base_lr * 0.1)
assert np.isclose(lrs[99], base_lr * 0.1) and np.isclose(lrs[100], base_lr * 0.01)

fig, ax = plt.subplots(figsize=(8, 3.2))
ax.step(its, lrs, where="post", lw=2)
ax.set_yscale("log")                          # on a log scale each x0.1 step is the same drop
for it, text, side in [(warmup, f"warm-up ends at {warmup}: lr = {lrs[warmup]:g}", 1),
                       (milestones[0], f"x0.1 at {milestones[0]}: {lrs[milestones[0]]:g}", -1),
                       (milestones[1], f"x0.1 at {milestones[1]}: {lrs[milestones[1]]:g}", -1)]:
    ax.axvline(it, color="grey", ls=":", lw=1)
    ax.annotate(text, (it, lrs[it]), xytext=(6 * side, -8), textcoords="offset points",
                ha="left" if side > 0 else "right", va="top", fontsize=9)
ax.set_xlabel("iteration")
ax.set_ylabel("learning rate (log scale)")
ax.set_title("linear warm-up over 20 iterations from 0.001 x 0.02, then x0.1 at 80 and 100")
plt.tight_layout()
plt.show()

# %% [markdown]
# A two-layer model learning to fit a target with these pieces:

# %%
model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=np.random.default_rng(1)), nn.ReLU(),
                      nn.Conv2d(4, 1, 1, rng=np.random.default_rng(2)))
opt = nn.SGD(model, lr=0.05, momentum=0.9)
x = rng.standard_normal((4, 1, 6, 6)).astype(np.float32)
target = np.roll(x, 1, axis=3)                      # learn to shift the image one pixel right
losses = []
for step in range(60):
    out, caches = model.forward(x)
    loss, lcache = nn.smooth_l1_forward(out, target, beta=1.0)
    model.zero_grad()
    model.backward(nn.smooth_l1_backward(1.0, lcache), caches)
    opt.step()
    losses.append(float(loss))
    if step % 15 == 0 or step == 59:
        print(f"step {step:2d}  loss {float(loss):.4f}")
print(f"loss fell {losses[0] / losses[-1]:.0f}x in 60 steps")
assert losses[-1] < losses[0] / 5

# %% [markdown]
# ## Summary
#
# - Every layer is a `forward`/`backward` pair with an explicit cache; the backward is the
#   chain rule for that one layer, and a finite-difference check verifies it in seconds.
# - Convolution = im2col + one matrix product; its backward = two matrix products + col2im.
#   1x1 convolutions skip im2col. The speed comes from BLAS.
# - Transposed convolution is the convolution's backward run forwards.
# - Ties in max pooling go to the first maximum (PyTorch's CPU rule); ReLU's gradient at 0 is 0.
# - Batch norm in training has two extra gradient terms because the batch statistics depend
#   on the input; frozen batch norm is an affine map.
# - Losses take logits and are written in forms that cannot overflow.
#
# ## Exercises
#
# Each exercise names the variable its answer goes into. The solution is in a collapsed cell
# (click to open it, after trying); the cell after it checks your answer with `assert`s.

# %% [markdown]
# **1.** The ResNet stem is a 7x7 convolution with stride 2 and padding 3. Predict its output
# height and width for a 64x96 image, from the formula for $H_o$, into `Ho` and `Wo`.

# %% jupyter={"source_hidden": true}
# a solution: H_o = floor((H + 2p - k) / s) + 1
H, W = 64, 96
Ho = (H + 2 * 3 - 7) // 2 + 1
Wo = (W + 2 * 3 - 7) // 2 + 1

# %%
out, _ = nn.conv2d_forward(np.zeros((1, 3, 64, 96), np.float32),
                           np.zeros((8, 3, 7, 7), np.float32), stride=2, padding=3)
assert out.shape[2:] == (Ho, Wo), (out.shape, Ho, Wo)
print("stem output:", out.shape)

# %% [markdown]
# **2.** A 1x1 convolution is a linear layer applied at every pixel. Compute the 1x1
# convolution of `x` with `W` (below) using only `nn.linear_forward`, on the pixels laid out as
# rows, and put the result, back in `[N, F, H, W]` layout, into `lin`.

# %%
x = rng.standard_normal((2, 5, 3, 4))                   # [N, C, H, W]
W = rng.standard_normal((6, 5, 1, 1))                   # [F, C, 1, 1]

# %% jupyter={"source_hidden": true}
# a solution: pixels as rows, one linear layer, then back to NCHW
rows = x.transpose(0, 2, 3, 1).reshape(-1, 5)                          # [N*H*W, C]
lin = nn.linear_forward(rows, W[:, :, 0, 0])[0].reshape(2, 3, 4, 6).transpose(0, 3, 1, 2)

# %%
assert lin.shape == (2, 6, 3, 4)
assert np.allclose(lin, nn.conv2d(x, W))

# %% [markdown]
# **3.** The transposed convolution is the *adjoint* of the convolution with the same weight:
# for any `x` and `y`, `<conv2d(x), y> = <x, conv_transpose2d(y)>`. With `x`, `W` and `y`
# below (stride 2, padding 1, kernel 3, so that the sizes go 7 -> 4 -> 7), compute the
# right-hand side, `<x, conv_transpose2d(y)>`, into `answer_3`.

# %%
x = rng.standard_normal((1, 3, 7, 7))
W = rng.standard_normal((4, 3, 3, 3))           # conv: 3 -> 4 channels; transposed: 4 -> 3
y = rng.standard_normal((1, 4, 4, 4))

# %% jupyter={"source_hidden": true}
# a solution: one transposed convolution and a sum of products
answer_3 = np.sum(x * nn.conv_transpose2d(y, W, stride=2, padding=1))

# %%
lhs = np.sum(nn.conv2d(x, W, stride=2, padding=1) * y)     # the left-hand side, by the conv
assert abs(answer_3 - lhs) < 1e-9 * max(1.0, abs(lhs)), (answer_3, lhs)
print(answer_3, lhs)

# %% [markdown]
# **4.** Max-pool tie rule: in a 2x2 window holding `[[3, 7], [7, 1]]`, which input gets the
# gradient? Write its (row, column) into `winner`, from the rule, before running anything.

# %% jupyter={"source_hidden": true}
# a solution: the first 7 in row-major order
winner = (0, 1)

# %%
x = np.array([[3.0, 7.0], [7.0, 1.0]]).reshape(1, 1, 2, 2)
_, cache = nn.max_pool2d_forward(x, 2, 2)
dx = nn.max_pool2d_backward(np.ones((1, 1, 1, 1)), cache)[0, 0]
assert dx[winner] == 1 and dx.sum() == 1, dx
print(dx)

# %% [markdown]
# **5.** In evaluation mode batch norm's statistics are constants, so its input gradient is
# `dx = dout * γ / sqrt(var + eps)` (with `eps = 1e-5`). Compute it by that formula for the
# arrays below into `dx_5`; the check compares it with finite differences and with
# `nn.batchnorm2d_backward`.

# %%
x = rng.standard_normal((2, 3, 2, 2))
gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
rm, rv = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
dout = rng.standard_normal((2, 3, 2, 2))

# %% jupyter={"source_hidden": true}
# a solution: one scale per channel, broadcast over N, H and W
dx_5 = dout * (gamma / np.sqrt(rv + 1e-5))[:, None, None]

# %%
out, cache = nn.batchnorm2d_forward(x, gamma, beta, rm, rv, training=False)
num = numerical_grad(lambda v: nn.batchnorm2d_forward(v, gamma, beta, rm, rv, False)[0], x, dout)
assert rel_error(dx_5, num) < 1e-7
assert np.allclose(dx_5, nn.batchnorm2d_backward(dout, cache)[0])
print("dx error against finite differences:", rel_error(dx_5, num))
