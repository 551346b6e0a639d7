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
# # Chapter 02 — The backbone: ResNet and the feature pyramid
#
# Every later stage of Mask R-CNN (anchors, the RPN, RoIAlign, the box and mask heads) reads
# **feature maps**, not pixels. The backbone makes them. It has two parts:
#
# 1. a **ResNet body**, which halves the resolution again and again while it adds channels.
#    Its stage outputs are called C2, C3, C4, C5: C_k is 2^k times smaller than the image.
# 2. a **feature pyramid network (FPN)**, which turns C2..C5 into P2..P6: one map per scale,
#    all with the same number of channels, each both *sharp* (from its own C_k) and
#    *semantically strong* (from the coarser levels above it).
#
# Small objects are then found on P2 (stride 4) and large ones on P5 or P6 (stride 32 or 64).
#
# Our code is `mrcnn_np/backbone.py`. Its parameter names are torchvision's, key for key, so
# torchvision's weights load into it with a table of renames and nothing else.

# %%
# %matplotlib inline
import os

# This notebook times code. On a machine shared with other jobs, multi-threaded BLAS can lose
# more time waiting for busy cores than it gains, so we ask OpenBLAS for one thread.
# (This only works before numpy is first imported; the timings below are single-threaded.)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import inspect  # noqa: E402
import time  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mrcnn_np import backbone  # noqa: E402
from mrcnn_np.backbone import (FEATURE_NAMES, FEATURE_STRIDES, TINY, FPN, Bottleneck,  # noqa: E402
                               ResNetFPN, resnet50_fpn, resnet_fpn_tiny)

np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## 1. The ResNet body
#
# A ResNet-50 is a **stem** and four **stages**:
#
# | part | what it does | output, for an H x W image |
# | --- | --- | --- |
# | stem: `conv1` 7x7 stride 2, `bn1`, ReLU | first features | C1: 64 channels, H/2 x W/2 |
# | max-pool 3x3 stride 2 | halve again | 64 channels, H/4 x W/4 |
# | `layer1`: 3 bottlenecks | stride 1 | C2: 256 channels, H/4 |
# | `layer2`: 4 bottlenecks | first one has stride 2 | C3: 512 channels, H/8 |
# | `layer3`: 6 bottlenecks | first one has stride 2 | C4: 1024 channels, H/16 |
# | `layer4`: 3 bottlenecks | first one has stride 2 | C5: 2048 channels, H/32 |
#
# A **bottleneck** squeezes the channels with a 1x1 convolution, does the spatial work with a
# cheap 3x3 convolution on the few channels, expands them 4x with another 1x1, and adds its
# input back (the *residual* connection):
#
# $$\text{out} = \mathrm{relu}\Big(\mathrm{bn}_3\,\mathrm{conv}_3\;\mathrm{relu}\,\mathrm{bn}_2\,\mathrm{conv}_2\;\mathrm{relu}\,\mathrm{bn}_1\,\mathrm{conv}_1(x) \;+\; \mathrm{shortcut}(x)\Big)$$
#
# The shortcut is `x` itself, or, when the shape changes (the first block of a stage), a 1x1
# convolution with the stage's stride and a norm: torchvision calls it `downsample`.
# torchvision puts the stride on the 3x3 convolution (the "v1.5" layout); the original paper
# put it on the first 1x1. We follow torchvision, so that its weights mean the same thing here.
#
# Here is our bottleneck's forward pass. Each line keeps its cache for the backward pass.

# %%
print(inspect.getsource(Bottleneck.forward))

# %% [markdown]
# The backward pass runs the same lines in reverse. The two paths meet again at `x`, so their
# gradients add:

# %%
print(inspect.getsource(Bottleneck.backward))

# %% [markdown]
# ## 2. The shapes, for a 1024 x 1024 image
#
# Every stride-2 step with "same" padding maps a side of length s to
# floor((s - 1) / 2) + 1 = ceil(s / 2). For 1024 every step divides exactly:
# 1024 → 512 (C1) → 256 (max-pool, C2) → 128 (C3) → 64 (C4) → 32 (C5), and P6 = 16.
#
# We do not need a ResNet-50 forward pass (145 billion multiply-adds at this size, counted
# below from the shapes alone) to check that: the spatial sizes depend only on the strides,
# which the tiny network shares with ResNet-50. So we run the tiny network at 1024 and take
# ResNet-50's channel counts from its constructor.

# %%
r50 = resnet50_fpn(np.random.default_rng(0))   # builds the weights only (no forward pass)
tiny = resnet_fpn_tiny(np.random.default_rng(0)).eval()

x = np.zeros((1, 3, 1024, 1024), np.float32)             # [N, 3, H, W]
c1, _ = tiny.body.conv1.forward(x)                       # [1, 16, 512, 512]
cs, _ = tiny.body.forward(x)                             # [C2, C3, C4, C5]
ps, _ = tiny.fpn.forward(cs)                             # [P2, P3, P4, P5, P6]

r50_channels = [64] + r50.body.out_channels              # C1, C2..C5
print(f"{'map':5} {'stride':>6}  {'ResNet-50 shape':>24}  {'tiny shape':>22}")
for k, (t, ch) in enumerate(zip([c1] + cs, r50_channels), start=1):
    print(f"C{k:<4} {2 ** k:>6}  {str((1, ch) + t.shape[2:]):>24}  {str(t.shape):>22}")
for name, p, s in zip(FEATURE_NAMES, ps, FEATURE_STRIDES):
    k = int(np.log2(s))
    print(f"P{k:<4} {s:>6}  {str((1, r50.out_channels) + p.shape[2:]):>24}  {str(p.shape):>22}"
          f"   torchvision name {name!r}")
assert [p.shape[2] for p in ps] == [256, 128, 64, 32, 16] and c1.shape[2] == 512
r50_macs = sum(backbone.multiply_adds(r50, 1024, 1024).values())
print(f"ResNet-50-FPN forward at 1024 x 1024: {r50_macs / 1e9:.1f} billion multiply-adds")
assert round(r50_macs / 1e9) == 145

# %% [markdown]
# ResNet-50 at 1024 x 1024 carries 256 + 512 + 1024 + 2048 channels on maps of 256², 128², 64²
# and 32² cells; the FPN turns them into five maps of 256 channels. Those five maps are all
# that the rest of Mask R-CNN ever sees of the image.
#
# ## 3. The feature pyramid
#
# Why not just use C5 for everything? C5 knows *what* is in the image (it has seen a large
# window through 50 layers) but not precisely *where*: one C5 cell covers 32 x 32 pixels. C2 is
# sharp but shallow: it mostly knows about edges and colours. The FPN (Lin et al., 2017)
# gets both with two paths:
#
# * **lateral**: a 1x1 convolution brings every C_k to the same F channels (256 in ResNet-50);
# * **top-down**: starting from C5, each coarser map is upsampled (nearest neighbour) to the
#   size of the next finer lateral and *added* to it, so meaning flows down to the sharp maps.
#
# Then a 3x3 convolution smooths each sum into P_k, and P6 is P5 sampled at every second pixel
# (torchvision's `LastLevelMaxPool`: a max-pool with a 1x1 window and stride 2):
#
# $$\text{top}_5 = \text{lat}_5(C_5), \qquad \text{top}_k = \text{lat}_k(C_k) + \mathrm{up}(\text{top}_{k+1}), \qquad P_k = \mathrm{conv}_{3\times3}(\text{top}_k), \qquad P_6 = P_5[::2, ::2].$$
#
# The upsampling goes **to the lateral's size**, not by a fixed factor 2, so an image whose
# side is not a multiple of 32 still works (a 65-pixel side gives 17, 9, 5, 3: upsampling 3 to
# 5 repeats rows 0, 0, 1, 1, 2 by torch's nearest rule src = floor(dst * 3 / 5)). The next
# cell checks both.

# %%
from mrcnn_np.nn.resample import upsample_nearest_forward  # noqa: E402

c65, _ = tiny.body.forward(np.zeros((1, 3, 65, 65), np.float32))          # [C2 .. C5]
print("65-px image, C2..C5 sides:", [c.shape[2] for c in c65])
rows = np.arange(3, dtype=np.float32).reshape(1, 1, 3, 1)                # rows 0, 1, 2
up, _ = upsample_nearest_forward(rows, (5, 1))                           # [1, 1, 5, 1]
print("upsampling rows 0, 1, 2 to 5 rows gives", up[0, 0, :, 0])
assert [c.shape[2] for c in c65] == [17, 9, 5, 3]
assert list(up[0, 0, :, 0]) == [0, 0, 1, 1, 2]

# %%
print(inspect.getsource(FPN.forward))

# %% [markdown]
# Backward walks the top-down path in reverse, from fine to coarse: each level's gradient goes
# into its lateral convolution, and its upsampled share goes back up to the coarser level.
# A level that got no gradient (`None`) costs nothing.

# %%
print(inspect.getsource(FPN.backward))

# %% [markdown]
# ## 4. What the feature maps look like
#
# We draw an image of the shapes data set (chapter 10 trains on it) and push it through the
# tiny backbone. Its weights are random, so the features mean nothing yet; still, the picture
# shows the geometry: each level is the image seen through a coarser grid. We plot the mean
# absolute activation over the channels.

# %%
from mrcnn_np.data.shapes import make_shapes_image  # noqa: E402

sample = make_shapes_image(np.random.default_rng(3), 256, 256)
img = sample["image"].astype(np.float32) / 255.0                    # [H, W, 3] in [0, 1]
mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])  # ImageNet
x = ((img - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)  # [1, 3, 256, 256]

tiny = resnet_fpn_tiny(np.random.default_rng(0)).eval()
feats, cache = tiny.forward(x)                                      # [P2 .. P6]
cs, _ = tiny.body.forward(x)                                        # [C2 .. C5], again

fig, axes = plt.subplots(2, 5, figsize=(15, 6.8))
axes[0, 0].imshow(img)
axes[0, 0].set_title("image 256 x 256", fontsize=10)
for ax, c, k in zip(axes[0, 1:], cs, (2, 3, 4, 5)):
    ax.imshow(np.abs(c[0]).mean(axis=0), cmap="magma")             # [H/2^k, W/2^k]
    ax.set_title(f"C{k}: {c.shape[1]} ch, {c.shape[2]} x {c.shape[3]}", fontsize=10)
for ax, p, s in zip(axes[1], feats, FEATURE_STRIDES):
    ax.imshow(np.abs(p[0]).mean(axis=0), cmap="magma")             # [H/s, W/s]
    ax.set_title(f"P{int(np.log2(s))}: {p.shape[1]} ch, {p.shape[2]} x {p.shape[3]} (stride {s})",
                 fontsize=10)
for ax in axes.ravel():
    ax.set_xticks([]), ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# Top row: the body's outputs, bottom row: the pyramid. Each P_k has C_k's grid, but 64
# channels everywhere, and it mixes in the coarser levels through the top-down sums: look
# closely at P2 and P3, and you see faint blocks, the nearest-upsampled coarser maps added in.
# Training (chapter 10) is what gives the channels a meaning.

# %% [markdown]
# ## 5. Frozen batch norm, and which layers train
#
# In evaluation, a batch norm is a fixed affine map per channel:
#
# $$y = \frac{x - \mu}{\sqrt{\sigma^2 + \varepsilon}}\,\gamma + \beta = x \cdot \text{scale} + \text{shift},
# \qquad \text{scale} = \frac{\gamma}{\sqrt{\sigma^2+\varepsilon}},\quad \text{shift} = \beta - \mu\,\text{scale}.$$
#
# Detection trains on 1 or 2 large images per step. Batch statistics from so few images are
# noisy, so torchvision **freezes** the norm layers of an ImageNet-trained backbone:
# `FrozenBatchNorm2d` keeps μ, σ², γ and β as fixed buffers. Only the input gradient flows
# through it (`dx = dout * scale`). Our `norm="frozen"` does the same.
#
# torchvision also freezes the first stages: `trainable_layers=3` (its default with pretrained
# weights) trains `layer2`, `layer3`, `layer4` and the FPN; the stem and `layer1` keep their
# ImageNet weights (they detect edges and colours, which transfer well from ImageNet). Frozen
# modules keep their weights in the state dict but leave `named_parameters()`, so the optimiser
# never sees them. Backward also **stops** there: nothing below `layer2` trains, so no gradient
# is sent into C2, `layer1` and the stem are never visited, and the image never gets a gradient
# (it is data, not a parameter).
#
# How many parameters train, for each setting, in ResNet-50-FPN?

# %%
print("trainable_layers  trained parameters  (frozen norm layers, so only convolutions train)")
for t in range(6):
    r50.freeze(t)                                   # what the constructor does with trainable_layers
    n = sum(p.size for _, p, _ in r50.named_parameters())
    parts = [s for s in ("conv1", "layer1", "layer2", "layer3", "layer4")
             if any(k.startswith(f"body.{s}") for k, _, _ in r50.named_parameters())]
    print(f"{t:>16}  {n / 1e6:8.2f}M           {' '.join(parts + ['fpn'])}")
_ = r50.freeze(3)                                   # back to torchvision's default

# %% [markdown]
# Our `r50` was built with torchvision's default, `trainable_layers=3`; its optimiser sees the
# row for 3, while the state dict keeps every number (frozen weights and norm buffers too):

# %%
n3 = sum(p.size for _, p, _ in r50.named_parameters())
n_state = sum(v.size for v in r50.state_dict().values())
print(f"r50.named_parameters(): {n3:,} parameters ({len(list(r50.named_parameters()))} tensors) "
      f"of {n_state:,} numbers in the state dict")
print("a few state-dict keys:", [k for k in r50.state_dict()][:3], "...",
      [k for k in r50.state_dict()][-2:])

# %% [markdown]
# ## 6. The tiny preset and its speed
#
# ResNet-50-FPN costs 9 billion multiply-adds for one 256 x 256 image; a 2-core CPU cannot
# train it. For the shapes data set (128-256 px images, three classes) we use the same code
# with fewer and thinner blocks:
#
# * one bottleneck per stage (`block_counts=(1, 1, 1, 1)`),
# * width 16 (C2..C5 have 64, 128, 256, 512 channels: ResNet-50's divided by 4),
# * 64 FPN channels (the RPN and the mask head then work on 64 channels too),
# * **no normalization** (`norm="none"`). We measured the choice on the shapes data set
#   (1,500 iterations, batch 2, same everything else): mask AP50 0.37 with trainable
#   `BatchNorm2d`, 0.63 with `GroupNorm`, 0.71 with no norm at all. Batch norm suffers from
#   the batch of 2 images: in evaluation it uses running statistics that disagree with the
#   per-batch statistics it trained with (evaluating the same weights with batch statistics
#   gave 0.57). A network of four blocks trains from scratch without any normalization,
# * all layers train (`trainable_layers=5`).
#
# Where does the work go? `multiply_adds` counts the convolutions' multiply-adds by part,
# from shapes alone (a convolution costs F·C·kh·kw per output pixel):

# %%
print(inspect.getsource(backbone.multiply_adds).split('"""')[1])
print("TINY =", TINY)
variants = {
    "tiny (the preset)": TINY,
    "two blocks per stage": {**TINY, "block_counts": (2, 2, 2, 2)},
    "width 32": {**TINY, "width": 32},
    "FPN 32 channels": {**TINY, "fpn_channels": 32},
}
models = {name: ResNetFPN(**kw, rng=np.random.default_rng(0)) for name, kw in variants.items()}
models["ResNet-50-FPN"] = r50
parts = ("stem", "layer1", "layer2", "layer3", "layer4", "fpn")
print(f"\nmillions of multiply-adds, one 256 x 256 image, forward\n{'variant':22}"
      + "".join(f"{p:>8}" for p in parts) + f"{'total':>9}")
for name, m in models.items():
    macs = backbone.multiply_adds(m, 256, 256)
    print(f"{name:22}" + "".join(f"{macs[p] / 1e6:8.0f}" for p in parts)
          + f"{sum(macs.values()) / 1e6:9.0f}")
total = {name: sum(backbone.multiply_adds(m, 256, 256).values()) for name, m in models.items()}
preset = models["tiny (the preset)"]
tiny_macs = backbone.multiply_adds(preset, 256, 256)
p2_smooth = 64 * 64 * (64 * 64 * 9)                  # P2's 3x3 output conv: cells x F*C*3*3
print(f"\ntiny: FPN {tiny_macs['fpn'] / total['tiny (the preset)']:.0%} of the total; "
      f"P2's 3x3 conv {p2_smooth / 1e6:.0f}M of the FPN's {tiny_macs['fpn'] / 1e6:.0f}M")
for name in list(variants)[1:]:
    print(f"{name}: {total[name] / total['tiny (the preset)']:.2f} x the preset")
assert round(100 * tiny_macs["fpn"] / total["tiny (the preset)"]) == 61
assert round(p2_smooth / 1e6) == 151 and p2_smooth < tiny_macs["fpn"]
assert round(total["two blocks per stage"] / total["tiny (the preset)"], 2) == 1.19   # +19%
assert 1.9 < total["width 32"] / total["tiny (the preset)"] < 2.1                    # doubles
assert 0.5 < total["FPN 32 channels"] / total["tiny (the preset)"] < 0.6             # halves
assert round(total["ResNet-50-FPN"] / 1e9) == 9

# %% [markdown]
# In the tiny preset the FPN is 61% of the work, and most of that is one layer: the 3x3 output
# convolution on P2, 64 x 64 cells x 64 x 64 x 9 = 151 million multiply-adds. The body is cheap.
# Two blocks per stage would add 19%; width 32 doubles the total; 32 FPN channels would halve
# it, but then the RPN and the mask head would also have only 32 channels to work with.
#
# Now the measured time: forward + backward for a batch of 2, on one thread (backward costs
# about twice the forward, so a step is about three forwards' worth of multiply-adds).

# %%
def time_step(model, size, repeats=3):
    """CPU seconds of forward + backward, batch 2, training mode: the best of ``repeats`` runs.

    We measure the CPU time of this process (``time.process_time``), not the wall clock: with
    one BLAS thread the two are equal on a quiet machine, but on a machine shared with other
    jobs the wall clock also counts the time spent waiting for a core."""
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        feats, cache = model.forward(x)
        model.backward([np.ones_like(f) for f in feats], cache)
        times.append(time.process_time() - t0)
    return min(times)


t128, t256 = time_step(preset, 128), time_step(preset, 256)
print(f"tiny preset, batch 2, forward + backward: 128 x 128 {t128 * 1e3:.0f} ms, "
      f"256 x 256 {t256 * 1e3:.0f} ms ({t256 / t128:.1f} x)\n")
print(f"{'variant':22} {'params':>8} {'128 x 128':>10}")
for name in variants:
    m = models[name]
    n = sum(p.size for _, p, _ in m.named_parameters())
    print(f"{name:22} {n / 1e6:7.2f}M {time_step(m, 128) * 1e3:8.0f} ms")

# %% [markdown]
# Why this preset: it is the cheapest of these that keeps 64 channels for the heads. A 256-px
# step has 4 times the pixels and 4 times the multiply-adds of a 128-px step, but its measured
# time (the ratio printed above) grows by less: part of a step's time does not grow with the
# pixels. The time follows the multiply-add counts roughly, not exactly: small layers pay more
# per multiply-add than large ones (Python overhead, copies for im2col, norms and ReLUs). We have not compared how well the
# variants *learn*: the choice is by cost, and chapter 10 shows that the tiny preset is enough to
# learn three simple shapes on a CPU. Timings vary with the machine: run the cell to see yours.
#
# ## Summary
#
# * The body gives C2..C5 at strides 4, 8, 16, 32 (256..2048 channels in ResNet-50); the FPN
#   gives P2..P6 at strides 4..64, all with F channels (256), named "0", "1", "2", "3", "pool"
#   by torchvision.
# * A side s becomes ceil(s / 2) at each stride-2 step; the FPN upsamples to the lateral's
#   size, so any input size works.
# * Frozen BN is a fixed per-channel affine map; `trainable_layers` freezes the first stages;
#   backward stops at the lowest stage that trains.
# * The tiny preset is the same code with 1 block per stage, width 16, 64 FPN channels and
#   no normalization at all (`norm="none"`; chapter 10's levers table says why).
#
# ## Exercises
#
# Each exercise: the task, a collapsed solution (try first, then open it), and a cell that
# checks your answer.
#
# **1.** For a 600 x 1000 image, what are the sizes (height, width) of P2..P6? P_k is k
# stride-2 steps away from the image, and each step maps s → ceil(s / 2). A list of five
# `(height, width)` pairs into `answer_1`.

# %% jupyter={"source_hidden": true}
def halve(s, times):
    for _ in range(times):
        s = -(-s // 2)                      # ceil(s / 2)
    return s


answer_1 = [(halve(600, k), halve(1000, k)) for k in (2, 3, 4, 5, 6)]

# %%
feats_600, _ = tiny.forward(np.zeros((1, 3, 600, 1000), np.float32))   # the network decides
assert [tuple(f.shape[2:]) for f in feats_600] == [tuple(hw) for hw in answer_1]
print(answer_1)

# %% [markdown]
# **2.** Count the weights of ResNet-50's first bottleneck, `layer1.0` (in 64 channels, inner
# width 64, out 256), by hand: conv1 is 1x1 from 64 to 64, conv2 3x3 from 64 to 64, conv3 1x1
# from 64 to 256, and the downsample 1x1 from 64 to 256; with frozen norms nothing else
# trains, and the convolutions have no bias. Into `answer_2`.

# %% jupyter={"source_hidden": true}
answer_2 = 64 * 64 + 64 * 64 * 9 + 64 * 256 + 64 * 256

# %%
block = Bottleneck(64, 64, stride=1, norm="frozen")
assert answer_2 == sum(p.size for _, p, _ in block.named_parameters())
print("layer1.0 weights:", answer_2)

# %% [markdown]
# **3.** P6 is P5 sampled at every second pixel. Make P6 from `p5` (the P5 of section 4's
# image) into `answer_3`.

# %%
p5 = tiny.forward(x)[0][3]                                        # [1, 64, 8, 8]

# %% jupyter={"source_hidden": true}
answer_3 = p5[:, :, ::2, ::2]                                      # [1, 64, 4, 4]

# %%
p6 = tiny.forward(x)[0][4]                                        # the FPN's own P6
assert np.array_equal(answer_3, p6)
print("P6 == P5[:, :, ::2, ::2]:", p6.shape, "from", p5.shape)

# %% [markdown]
# **4.** With `trainable_layers=2`, which top-level parts of the backbone have trainable
# parameters? A set of names such as `"body.layer1"` or `"fpn"` into `answer_4`.

# %% jupyter={"source_hidden": true}
# trainable_layers counts down from the top: layer4, then layer3; the FPN always trains
answer_4 = {"body.layer3", "body.layer4", "fpn"}

# %%
m2 = ResNetFPN((1, 1, 1, 1), 8, 16, "frozen", trainable_layers=2)
parts_trained = {".".join(k.split(".")[:2]) if k.startswith("body") else k.split(".")[0]
                 for k, _, _ in m2.named_parameters()}
assert answer_4 == parts_trained
print(sorted(answer_4))

# %% [markdown]
# **5.** A gradient check through the whole backbone. The cell below builds a float64
# backbone, a loss L = Σ P·g over its five outputs, and runs `backward`. Nudge one weight of
# `layer2`'s 3x3 convolution, `w[i]`, by ±h, and put the central finite difference
# (L(w + h) - L(w - h)) / 2h into `answer_5`; leave `w` as you found it. (We use 64 x 64
# images: at 32 x 32, C5 is 1 x 1, and a training-mode batch norm over 2 numbers per channel
# is so curved that the finite difference itself is off.)

# %%
rng = np.random.default_rng(1)
m = ResNetFPN((1, 1, 1, 1), 4, 8, "batch", 5, rng, np.float64)
xg = rng.standard_normal((2, 3, 64, 64))
feats_g, cache = m.forward(xg)
g = [rng.standard_normal(f.shape) for f in feats_g]
m.backward(g, cache)
w = m.body.layer2[0].conv2.params["weight"]
w_before = w.copy()
i, h = (1, 2, 0, 1), 1e-6


def loss():
    return sum(np.sum(f * gi) for f, gi in zip(m.forward(xg)[0], g))

# %% jupyter={"source_hidden": true}
w[i] += h
lp = loss()
w[i] -= 2 * h
lm = loss()
w[i] += h
answer_5 = (lp - lm) / (2 * h)

# %%
analytic = m.body.layer2[0].conv2.grads["weight"][i]
print(f"finite difference {answer_5:.8f}   backward {analytic:.8f}")
assert np.allclose(w, w_before, rtol=0, atol=1e-12)               # the weight is back
assert abs(answer_5 - analytic) < 1e-7 * max(1.0, abs(analytic))
