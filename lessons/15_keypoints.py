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
# # Chapter 15 — Keypoints
#
# A detector answers two questions about each object: **what** is it, and **where** is its
# box. Mask R-CNN adds a third, its **contour** (the mask). Section 5 of the paper adds a
# fourth, its **skeleton**: where are the person's eyes, shoulders, wrists, hips, knees and
# ankles (COCO's 17 keypoints)? It does
# so without new machinery. The RPN, the RoI sampling, RoIAlign and the box head stay as they
# are; one more head reads each positive RoI and draws one small map per keypoint. That is the
# paper's larger point: detection, instance masks and keypoints are all *instance-level*
# tasks, and a two-stage detector that pools good features per RoI serves any of them.
#
# This chapter puts the three heads side by side, makes a stick-figure data set, and then
# follows one keypoint through the branch: its **one-hot 56 x 56 target**, the **softmax over
# positions** that trains it (where masks use a sigmoid per pixel), the **half-pixel offset**
# that turns a heatmap back into a coordinate, the **flip convention**, and **OKS**, the
# similarity that keypoint AP is built on, computed by hand and checked against pycocotools.

# %%
# %matplotlib inline
import contextlib
import io
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle
from pycocotools.cocoeval import COCOeval

from mrcnn_np.config import tiny_keypoints, torchvision_keypoint_r50_fpn
from mrcnn_np.data import CocoDataset
from mrcnn_np.data.coco import flip_indices_of
from mrcnn_np.data.stickfigures import (FLIP_INDICES, KEYPOINT_NAMES, OKS_SIGMAS, SKELETON,
                                        make_figures_dataset)
from mrcnn_np.eval.coco_eval import COCO_PERSON_KEYPOINTS, COCO_PERSON_SIGMAS
from mrcnn_np.keypoint_heads import KeypointRCNNHeads, KeypointRCNNPredictor
from mrcnn_np.nn.bicubic import interpolate_bicubic
from mrcnn_np.nn.gradcheck import numerical_grad
from mrcnn_np.ops.keypoints import (HEATMAP_SIZE, heatmaps_to_keypoints, keypointrcnn_loss_backward,
                                    keypointrcnn_loss_forward, keypoints_to_heatmap)
from mrcnn_np.viz import draw_keypoints

np.set_printoptions(precision=3, suppress=True)
t_chapter = time.perf_counter()
work = Path(tempfile.mkdtemp(prefix="mrcnn_ch15_"))
K = len(KEYPOINT_NAMES)
S = HEATMAP_SIZE

# %% [markdown]
# ## 1. Three heads on one set of RoIs
#
# Every head starts from the same place: a positive RoI, and its features pooled from the FPN
# by RoIAlign. What differs is the size of the pooled grid and what the head draws on it:
#
# | task | RoIAlign | head | output per RoI | loss |
# | --- | --- | --- | --- | --- |
# | what + where (box head, ch. 09) | 7 x 7 | 2 fc layers | class logits, 4 deltas per class | softmax CE + smooth L1 |
# | contour (mask head, ch. 09) | 14 x 14 | 4 convs, deconv x 2 | one 28 x 28 map per class | sigmoid per pixel |
# | skeleton (keypoint head) | 14 x 14 | n convs, deconv x 2, bilinear x 2 | one 56 x 56 map per keypoint | softmax over positions |
#
# The keypoint head is the mask head's twin with a finer output. torchvision's
# `keypointrcnn_resnet50_fpn` stacks eight 3 x 3 convolutions of 512 channels; a 4 x 4,
# stride-2 transposed convolution doubles 14 to 28, and a fixed 2x bilinear upsampling
# doubles 28 to 56. The paper found the finer output necessary: keypoints need a higher
# resolution than masks to be placed accurately. The tiny preset of this chapter keeps the
# shape and shrinks the widths:

# %%
r50k, cfg = torchvision_keypoint_r50_fpn(), tiny_keypoints()
for name, c in (("torchvision_keypoint_r50_fpn", r50k), ("tiny_keypoints", cfg)):
    print(f"{name:29s} K = {c.keypoints:2d}, RoIAlign {c.keypoint_roi_output_size} x "
          f"{c.keypoint_roi_output_size}, convs {c.keypoint_layers}, heatmap "
          f"{c.keypoint_heatmap_size} x {c.keypoint_heatmap_size}, mask branch {c.masks}")
rng = np.random.default_rng(0)
head = KeypointRCNNHeads(cfg.fpn_channels, cfg.keypoint_layers, rng)
predictor = KeypointRCNNPredictor(cfg.keypoint_layers[-1], cfg.keypoints, rng)
x = rng.normal(size=(3, cfg.fpn_channels, 14, 14)).astype(np.float32)  # [R, C, 14, 14], 3 RoIs
print(f"{'pooled RoI features':30s} {x.shape}")
x, _ = head.forward(x)
print(f"{f'{len(cfg.keypoint_layers)} x (conv 3x3 + ReLU)':30s} {x.shape}")
low, _ = predictor.kps_score_lowres.forward(x)
print(f"{'deconv 4x4, stride 2':30s} {low.shape}")
maps, _ = predictor.forward(x)
print(f"{'bilinear x 2':30s} {maps.shape}   (one 56 x 56 map per keypoint)")
assert maps.shape == (3, K, S, S) and low.shape == (3, K, 28, 28)
assert (r50k.keypoints, r50k.keypoint_layers, r50k.masks) == (17, (512,) * 8, False)

# %% [markdown]
# The paper's Table 4 shows that the branches share well: on COCO test-dev, a ResNet-50-FPN
# model trained for keypoints alone scores 62.7 keypoint AP, and 63.1 when the mask branch
# is trained with it. Its Table 6 shows what RoIAlign is worth here: 64.2 keypoint AP against
# 59.8 with RoIPool: a keypoint must be placed to a few pixels, and RoIPool's rounding
# (chapter 08) shifts the pooled grid by up to a feature stride. torchvision's keypoint model
# has no mask branch (`masks=False` above); our tiny preset keeps both, as the paper's best
# model does.
#
# ## 2. The stick figures
#
# We have no photographs of people, so the project ships a synthetic pose data set: stick
# figures with a head, a torso, two arms and two two-part legs, drawn on the shapes data set's
# textured backgrounds and written to disk as a real COCO keypoints data set. Each figure has
# nine named keypoints and a skeleton of eight edges (COCO numbers keypoints from 1). Left and
# right are the figure's own: it faces us, so its left hand is on the image's right, as in
# COCO.

# %%
paths = make_figures_dataset(work / "figures", num_train=0, num_val=16, image_size=(128, 128),
                             seed=0)
ds = CocoDataset(paths["val_images"], paths["val_annotations"])
n_figures = sum(len(ds.get(i)["boxes"]) for i in range(len(ds)))
print(f"{len(ds)} validation images of 128 x 128 px, {n_figures} figures")
for k, name in enumerate(KEYPOINT_NAMES):
    print(f"{k + 1}. {name}", end="   ")
print("\nskeleton (1-based):", [tuple(e) for e in SKELETON])
assert list(ds.keypoint_names) == list(KEYPOINT_NAMES) and K == 9 and len(SKELETON) == 8

# %% [markdown]
# Each keypoint is `(x, y, v)` in pixels, with COCO's visibility flag: **v = 2** visible,
# **v = 1** labelled but hidden (here: a figure painted later covers it), **v = 0** not
# labelled (here: outside the image; then x = y = 0). Training uses both v = 1 and v = 2: the
# annotator knows where an occluded knee is, and so should the model. Counted over the split:

# %%
all_kp = np.concatenate([ds.get(i)["keypoints"] for i in range(len(ds))])   # [G, K, 3]
counts = np.bincount(all_kp[..., 2].astype(int).ravel(), minlength=3)
print(f"{len(all_kp)} figures, {all_kp.shape[0] * K} keypoints: "
      f"v = 2 visible {counts[2]}, v = 1 hidden {counts[1]}, v = 0 outside {counts[0]}")
assert counts.sum() == len(all_kp) * K and counts.min() > 0

# %% [markdown]
# Four of the images, drawn with `viz.draw_keypoints`. Dots are visible keypoints, rings are
# hidden ones, and a keypoint with v = 0 is not drawn, nor are its edges. Blue marks the
# figure's left side, magenta its right, and yellow the middle (head, neck, pelvis).

# %%
shown = [0, 1, 9, 10]
fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
for ax, i in zip(axes, shown):
    s = ds.get(i)
    ax.imshow(s["image"].transpose(1, 2, 0))
    draw_keypoints(ax, s["keypoints"], SKELETON, KEYPOINT_NAMES, linewidth=1.5)
    v = s["keypoints"][..., 2].astype(int)
    ax.set_title(f"image {i}: v = 2/1/0: {(v == 2).sum()}/{(v == 1).sum()}/{(v == 0).sum()}",
                 fontsize=10)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. The target: one bin of a 56 x 56 grid
#
# The mask head learns a 28 x 28 picture of the object. The keypoint head learns, for each
# keypoint, a 56 x 56 map with **one** bin switched on: the paper's "one-hot m x m binary mask
# where only a single pixel is labelled as foreground". `keypoints_to_heatmap` cuts the RoI's
# width into 56 bins of `(x2 - x1) / 56` pixels and its height likewise, and gives each
# keypoint the index of its bin,
#
# $$i_x = \left\lfloor (x - x_1)\,\frac{56}{x_2 - x_1} \right\rfloor,\quad
#   i_y = \left\lfloor (y - y_1)\,\frac{56}{y_2 - y_1} \right\rfloor,\quad
#   \text{index} = 56\, i_y + i_x .$$
#
# A keypoint counts (`valid`) when it is labelled (v > 0) and its bin lies in the grid. For
# one figure, with its ground-truth box as the RoI:

# %%
s0 = ds.get(0)
kp0 = s0["keypoints"][:1].astype(np.float64)                        # [1, K, 3], figure 0
roi0 = s0["boxes"][:1].astype(np.float64)                           # [1, 4], its box as the RoI
heat, valid = keypoints_to_heatmap(kp0, roi0, S)                    # [1, K] each
x1, y1, x2, y2 = roi0[0]
print(f"RoI ({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}): bins of {(x2 - x1) / S:.3f} x "
      f"{(y2 - y1) / S:.3f} px")
print(f"{'keypoint':11s} {'x':>6s} {'y':>6s} v   i_x  i_y  index  valid")
for k in range(K):
    x, y, v = kp0[0, k]
    ix, iy = int(np.floor((x - x1) * S / (x2 - x1))), int(np.floor((y - y1) * S / (y2 - y1)))
    print(f"{KEYPOINT_NAMES[k]:11s} {x:6.1f} {y:6.1f} {int(v)}   {ix:3d}  {iy:3d}  "
          f"{heat[0, k]:5d}  {bool(valid[0, k])}")
    assert not valid[0, k] or heat[0, k] == S * iy + ix             # the formula, by hand
outside = [KEYPOINT_NAMES[k] for k in np.flatnonzero(~valid[0])]
print("not valid:", outside)
assert outside == ["right_hand", "right_foot"] and (kp0[0, ~valid[0], 2] == 1).all()

# %% [markdown]
# Two keypoints are not valid, and both are hidden ones (v = 1). Another figure covers this
# figure's right hand and right foot, and the box is drawn round the *visible* pixels, so these
# two keypoints fall outside it: the right hand lies to the left of the box ($i_x < 0$) and
# the right foot below it ($i_y = 56$). A keypoint outside its RoI has no bin, so this RoI
# gets no loss for it. Their annotations are still correct, and a larger proposal around the
# same figure would train on them.

# %% [markdown]
# The grid drawn over the figure (every bin line would be too dense: the lines are every 8
# bins), with the target bins of three valid keypoints filled in red. A bin is a fraction of
# a pixel here: the box is smaller than 56 px across.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 5.2))
img0 = s0["image"].transpose(1, 2, 0)
ax = axes[0]
ax.imshow(img0, extent=(0, 128, 128, 0))                            # continuous coordinates
bw, bh = (x2 - x1) / S, (y2 - y1) / S
for j in range(0, S + 1, 8):
    ax.plot([x1 + j * bw] * 2, [y1, y2], color="w", lw=0.6)
    ax.plot([x1, x2], [y1 + j * bh] * 2, color="w", lw=0.6)
for k in (2, 4, 5):                                                 # left hand, pelvis, left knee
    assert valid[0, k]
    iy, ix = divmod(int(heat[0, k]), S)
    ax.add_patch(Rectangle((x1 + ix * bw, y1 + iy * bh), bw, bh, color="r"))
    ax.annotate(KEYPOINT_NAMES[k], (x1 + ix * bw, y1 + iy * bh), xytext=(6, -10),
                textcoords="offset points", color="w", fontsize=9,
                bbox=dict(fc="k", ec="none", alpha=0.6, pad=1))
ax.set_xlim(x1 - 4, x2 + 4)
ax.set_ylim(y2 + 4, y1 - 4)
ax.set_title("the RoI's 56 x 56 bins (a line every 8 bins)")
target = np.zeros(S * S)
target[heat[0, 2]] = 1
axes[1].imshow(target.reshape(S, S), cmap="gray_r")
axes[1].set_title(f"the target of left_hand: one 1 at index {heat[0, 2]}, 3,135 zeros")
plt.tight_layout()
plt.show()
assert target.sum() == 1 and S * S - 1 == 3135

# %% [markdown]
# **The boundary case.** Bin 0 covers $[x_1, x_1 + w/56)$, so a keypoint exactly on the left
# edge is in bin 0. A keypoint exactly on the right edge $x = x_2$ would land in bin 56, one
# past the grid; torchvision counts it in the last bin, 55, so the box is closed on all four
# sides. Anything beyond an edge is not valid. A 28-pixel-wide RoI (half a pixel per bin) makes
# the arithmetic easy, $i_x = \lfloor 2 (x - 10) \rfloor$:

# %%
roi = np.array([[10.0, 20.0, 38.0, 48.0]])                          # 28 x 28 px
xs = [10.0, 10.49, 10.5, 37.99, 38.0, 38.01, 9.99]
probe = np.array([[[x, 30.0, 2] for x in xs] + [[20.0, 30.0, 0]]])  # [1, 8, 3], the last v = 0
h, ok = keypoints_to_heatmap(probe, roi, S)
iy = int(np.floor((30.0 - 20.0) * 2))                               # row 20 for every probe
for x, idx, good in zip(xs + [20.0], h[0], ok[0]):
    print(f"x = {x:6.2f}: valid {str(bool(good)):5s} i_x = {idx - S * iy if good else '-'}")
assert list(h[0, :5] - S * iy) == [0, 0, 1, 55, 55]                 # 38.0 is the closed edge
assert list(ok[0]) == [True] * 5 + [False] * 3                      # beyond x2, before x1, v = 0

# %% [markdown]
# ## 4. Softmax over positions, not a sigmoid per pixel
#
# The mask loss (chapter 09) asks $M^2$ separate yes/no questions: is this pixel part of the
# object? Each pixel's answer is its own sigmoid, and many pixels can say yes at once. A
# keypoint is different: the left hand is at **exactly one place**. The $56^2$ logits of its
# map are scores of $56^2$ mutually exclusive answers to one question, "where is the hand?", so
# the loss is a cross-entropy over a softmax across all positions:
#
# $$L_{\text{kp}} = \frac{1}{V}\sum_{(r,k)\ \text{valid}} -\log
#   \frac{e^{z_{r,k,t_{rk}}}}{\sum_{p=1}^{S^2} e^{z_{r,k,p}}},
#   \qquad \frac{\partial L_{\text{kp}}}{\partial z_{r,k,p}} =
#   \frac{\text{softmax}(z_{r,k})_p - [p = t_{rk}]}{V},$$
#
# with $t_{rk}$ the target index and $V$ the number of valid keypoints of all positive RoIs.
# The gradient is chapter 09's "softmax minus one-hot" again, over positions instead of
# classes: raising the right bin's score lowers the probability of every other bin. Invalid
# keypoints are not in the sum and get no gradient. On a toy problem, two RoIs with K = 2 maps
# of 4 x 4 logits, three valid keypoints, in float64:

# %%
rng = np.random.default_rng(3)
z = rng.normal(size=(2, 2, 4, 4))                                  # [R, K, S', S'], S' = 4
t = np.array([5, 10, 0, 15])                                       # [R * K] target indices
val = np.array([True, True, False, True])                          # keypoint (1, 0) invalid
loss, cache = keypointrcnn_loss_forward(z, t, val)
grad = keypointrcnn_loss_backward(1.0, cache)                       # [R, K, 4, 4]
flat = z.reshape(4, 16)
p = np.exp(flat - flat.max(1, keepdims=True))
p /= p.sum(1, keepdims=True)                                       # [R * K, 16] softmax per map
by_hand = np.mean([-np.log(p[r, t[r]]) for r in np.flatnonzero(val)])
onehot = np.eye(16)[t]
g_hand = np.where(val[:, None], (p - onehot) / val.sum(), 0.0).reshape(z.shape)
num = numerical_grad(lambda v: keypointrcnn_loss_forward(v, t, val)[0], z.copy(), 1.0)
print(f"loss {float(loss):.6f}, by hand {by_hand:.6f}")
print(f"largest |gradient - (softmax - onehot)/V| = {np.abs(grad - g_hand).max():.1e}, "
      f"largest |gradient - finite differences| = {np.abs(grad - num).max():.1e}")
print("each map's gradient sums to", grad.reshape(4, 16).sum(1).round(12))
print("the target bin's gradient of map (0, 0):", round(float(grad[0, 0].ravel()[5]), 4))
assert np.isclose(loss, by_hand) and np.allclose(grad, g_hand, atol=1e-15)
assert np.allclose(grad, num, atol=1e-8)
assert np.all(grad[1, 0] == 0) and np.allclose(grad.reshape(4, 16).sum(1), 0)

# %% [markdown]
# Each valid map's gradient sums to zero: the softmax moves probability from bin to bin,
# pulling it towards the target (the only negative entry) and away from everywhere else.
#
# Why not the mask's sigmoid with the one-hot map as the target? Because then 3,135 of the
# 3,136 questions have the answer "no", and the loss is nearly satisfied by a map that says
# "no" everywhere and knows nothing about where the hand is. Take a **constant** map, every
# logit equal to c. With the softmax its loss is $\log 3136$ whatever c is: it can only fall
# by putting mass on the right bin. The per-pixel BCE of a constant map is smallest when
# $\sigma(c) = 1/3136$, and that minimum is already tiny:

# %%
n = S * S
c = np.log(1 / (n - 1))                                            # sigmoid(c) = 1 / n
softplus = np.logaddexp(0, c)                                       # -log(1 - sigmoid(c))
bce = ((n - 1) * softplus + np.logaddexp(0, -c)) / n               # the per-pixel BCE of the map
print(f"constant map, sigmoid {1 / (1 + np.exp(-c)):.2e}: per-pixel BCE {bce:.5f};  "
      f"softmax CE log(3136) = {np.log(n):.3f}")
const = np.full((1, 1, S, S), c)
ce, _ = keypointrcnn_loss_forward(const, np.array([heat[0, 2]]), np.array([True]))
assert np.isclose(ce, np.log(n)) and bce < 0.003

# %% [markdown]
# A BCE of 0.003 for a map that has not found the hand, against 8.05 for the softmax's
# cross-entropy. The picture: one keypoint's target, and the two gradients that random logits
# receive from it. The sigmoid's gradient is $\sigma(z) - y$ at each pixel on its own: the
# target is pulled up about as hard as each of the 3,135 other pixels is pushed down, so the
# pushes outweigh the pull thousands of times over. The softmax pushes each other bin by its
# probability, about 1/3136 here, and its one pull at the target is exactly as large as all
# the pushes together.

# %%
zz = np.random.default_rng(4).normal(size=(1, 1, S, S))
g_soft = keypointrcnn_loss_backward(1.0, keypointrcnn_loss_forward(
    zz, np.array([heat[0, 2]]), np.array([True]))[1])[0, 0]          # [S, S]
g_sig = (1 / (1 + np.exp(-zz[0, 0])) - target.reshape(S, S)) / n    # BCE, mean over pixels
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
axes[0].imshow(target.reshape(S, S), cmap="gray_r")
axes[0].set_title("one-hot target (left_hand)")
for ax, g, name in ((axes[1], g_sig, "sigmoid per pixel"),
                    (axes[2], g_soft, "softmax over positions")):
    m = np.abs(g).max()
    im = ax.imshow(g, cmap="RdBu_r", vmin=-m, vmax=m)
    ax.set_title(f"{name}: dL/dz\n{(g > 0).sum()} pixels pushed down, {(g < 0).sum()} up")
    fig.colorbar(im, ax=ax, shrink=0.8)
for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
plt.tight_layout()
plt.show()
push, pull = g_sig[g_sig > 0].sum(), -g_sig[g_sig < 0].sum()
print(f"sigmoid: pushes / pull = {push / pull:.0f};  softmax: pushes / pull = "
      f"{g_soft[g_soft > 0].sum() / -g_soft[g_soft < 0].sum():.6f}")
assert (g_soft < 0).sum() == 1 and np.isclose(g_soft.sum(), 0) and push / pull > 1000

# %% [markdown]
# ## 5. From a heatmap back to a coordinate
#
# At inference the head gives each detected box K maps of 56 x 56 logits.
# `heatmaps_to_keypoints` (torchvision's name and arithmetic) reads one keypoint from each:
#
# 1. resize the maps **bicubically** to the box's size in pixels, `ceil(h) x ceil(w)`
#    (torch's bicubic: Keys' cubic with a = -0.75, `align_corners=False`; our NumPy version
#    is `nn.bicubic.interpolate_bicubic`, equal to torch bit for bit in float32), so that one
#    map pixel is about one image pixel;
# 2. take the **argmax** pixel `(x_int, y_int)`; its logit is the keypoint's score;
# 3. go back to image coordinates through the pixel's **centre**:
#
# $$x = (x_\text{int} + 0.5)\,\frac{w}{\lceil w\rceil} + x_1, \qquad
#   y = (y_\text{int} + 0.5)\,\frac{h}{\lceil h\rceil} + y_1 .$$
#
# The +0.5 is the convention of section 3 read backwards: a discrete pixel d covers the
# continuous span [d, d + 1), so the best single guess of where inside it the keypoint lies is
# its centre (Heckbert's d + 0.5). Without it every keypoint would sit on the corner of its
# pixel, half a pixel up and to the left of where it belongs.
#
# To see it on one map, we make the logits a network would ideally draw: a smooth bump
# centred on the target bin of the figure's left hand.

# %%
def bump_maps(heat, valid, sigma=1.5):
    """Ideal logits [R, K, S, S]: -(distance to the target bin's centre)^2 / (2 sigma^2),
    distances in bins; 0 where the keypoint is not valid."""
    iy, ix = np.divmod(heat, S)                                      # [R, K] each
    grid = np.arange(S) + 0.5                                        # bin centres
    dy = grid[None, None, :, None] - (iy + 0.5)[..., None, None]     # [R, K, S, 1]
    dx = grid[None, None, None, :] - (ix + 0.5)[..., None, None]     # [R, K, 1, S]
    return np.where(valid[..., None, None], -(dx ** 2 + dy ** 2) / (2 * sigma ** 2), 0.0)


def softmax2d(m):
    """The softmax of a whole map (what the loss trains), for the pictures."""
    e = np.exp(m - m.max())
    return e / e.sum()


ideal = bump_maps(heat, valid).astype(np.float32)                    # [1, K, S, S]
xy, score = heatmaps_to_keypoints(ideal, roi0.astype(np.float32))    # [1, K, 3], [1, K]
w, hgt = x2 - x1, y2 - y1
cw, ch = int(np.ceil(w)), int(np.ceil(hgt))
big = interpolate_bicubic(ideal[:, 2:3], size=(ch, cw))[0, 0]        # [ceil(h), ceil(w)]
y_int, x_int = np.unravel_index(big.argmax(), big.shape)
true_x, true_y = kp0[0, 2, :2]
print(f"left_hand: box {w:.0f} x {hgt:.0f} px -> map resized to {ch} x {cw}; argmax pixel "
      f"(x_int, y_int) = ({x_int}, {y_int})")
print(f"  plain argmax      x = x_int + x1        = {x_int + x1:.2f},  y = {y_int + y1:.2f}")
print(f"  with the offset   x = x_int + 0.5 + x1  = {xy[0, 2, 0]:.2f},  y = {xy[0, 2, 1]:.2f}")
print(f"  true keypoint     x = {true_x:.2f},  y = {true_y:.2f};  score (logit) {score[0, 2]:.3f}")
assert np.isclose(xy[0, 2, 0], (x_int + 0.5) * w / cw + x1, atol=1e-4)

fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
axes[0].imshow(softmax2d(ideal[0, 2]), cmap="magma")
axes[0].set_title("softmax of the 56 x 56 logits of left_hand")
ax = axes[1]
x_lo, x_hi = max(0, x_int - 4), min(cw, x_int + 5)                  # a window on the argmax
y_lo, y_hi = max(0, y_int - 4), min(ch, y_int + 5)
ax.imshow(softmax2d(big), cmap="magma", extent=(0, cw, ch, 0),       # continuous map pixels
          vmin=softmax2d(big)[y_lo:y_hi, x_lo:x_hi].min())
for j in range(x_lo, x_hi + 1):
    ax.axvline(j, color="w", lw=0.4, alpha=0.5)
for j in range(y_lo, y_hi + 1):
    ax.axhline(j, color="w", lw=0.4, alpha=0.5)
ax.add_patch(Rectangle((x_int, y_int), 1, 1, fill=False, ec="c", lw=2))
ax.plot(x_int, y_int, "x", color="w", ms=10, mew=2, label="plain argmax (corner)")
ax.plot(x_int + 0.5, y_int + 0.5, "o", color="c", ms=8, label="argmax + 0.5 (centre)")
ax.plot((true_x - x1) * cw / w, (true_y - y1) * ch / hgt, "+", color="lime", ms=14, mew=2,
        label="true keypoint")
ax.set_xlim(x_lo, x_hi)
ax.set_ylim(y_hi, y_lo)
ax.legend(loc="lower right", fontsize=8)
ax.set_title(f"resized to {ch} x {cw} (one cell per pixel), zoomed")
plt.tight_layout()
plt.show()

# %% [markdown]
# Over every valid keypoint of the 16 validation images (each figure's box as its RoI),
# encoded to its bin and decoded from the ideal bump, the error of the two versions:

# %%
errs = {"plain": [], "+0.5": []}
for i in range(len(ds)):
    smp = ds.get(i)
    if len(smp["boxes"]) == 0:
        continue
    kp, rois = smp["keypoints"].astype(np.float64), smp["boxes"].astype(np.float64)
    hm, ok = keypoints_to_heatmap(kp, rois, S)                       # [G, K] each
    pred, _ = heatmaps_to_keypoints(bump_maps(hm, ok).astype(np.float32), rois.astype(np.float32))
    wd = np.maximum(rois[:, 2] - rois[:, 0], 1)
    ht = np.maximum(rois[:, 3] - rois[:, 1], 1)
    half = 0.5 * np.stack([wd / np.ceil(wd), ht / np.ceil(ht)], 1)[:, None]   # [G, 1, 2]
    errs["+0.5"].append((pred[..., :2] - kp[..., :2])[ok])
    errs["plain"].append((pred[..., :2] - half - kp[..., :2])[ok])
for name in errs:
    e = np.concatenate(errs[name])                                   # [N, 2] (dx, dy)
    errs[name] = e
    print(f"{name:6s} {len(e)} keypoints: mean error (dx, dy) = ({e[:, 0].mean():+.3f}, "
          f"{e[:, 1].mean():+.3f}) px, mean distance {np.hypot(*e.T).mean():.3f} px")
assert np.abs(errs["+0.5"].mean(0)).max() < 0.15
assert np.all(np.abs(errs["plain"].mean(0) + 0.5) < 0.15)
assert np.hypot(*errs["+0.5"].T).mean() < np.hypot(*errs["plain"].T).mean()

# %% [markdown]
# The plain argmax is biased by about half a pixel up and to the left; the offset removes the
# bias, and what is left is the rounding to a bin and a pixel. On a small figure half a pixel
# is a real share of OKS's tolerance (section 7).
#
# ## 6. The flip convention
#
# Training flips half the images left to right (chapter 10). For boxes and masks a flip is
# pure geometry: $x \to W - x$. For keypoints it is not, because keypoints have **names**.
# Mirror a photograph of a person and the hand that was their left is now where a right hand
# would be: the mirrored person's left hand is the original's right hand. So a flip must also
# swap every `left_*` keypoint with its `right_*` partner. torchvision's reference scripts do it
# with a list `flip_inds`; ours is `FLIP_INDICES`, derived from the names by
# `flip_indices_of`, and `CocoDataset.get(i, flip=True)` applies both steps.

# %%
print("FLIP_INDICES:", FLIP_INDICES)
for k, j in enumerate(FLIP_INDICES):
    if j != k:
        print(f"  flipped {KEYPOINT_NAMES[k]:10s} <- original {KEYPOINT_NAMES[j]}")
assert tuple(flip_indices_of(KEYPOINT_NAMES)) == FLIP_INDICES

# %% [markdown]
# What goes wrong without the swap. Figure 1 of image 3 (all nine keypoints visible), flipped
# the right way and the wrong way (x mirrored, names kept):

# %%
i_flip, g, W = 3, 1, 128
orig, flipped = ds.get(i_flip), ds.get(i_flip, flip=True)
wrong = orig["keypoints"].copy()
wrong[..., 0] = np.where(wrong[..., 2] > 0, W - wrong[..., 0], 0)   # mirrored, NOT swapped
LH, RH = KEYPOINT_NAMES.index("left_hand"), KEYPOINT_NAMES.index("right_hand")
fig, axes = plt.subplots(1, 3, figsize=(13, 4.8))
panels = ((orig["image"], orig["keypoints"], "original"),
          (flipped["image"], flipped["keypoints"], "flipped, left/right swapped"),
          (flipped["image"], wrong, "flipped, NOT swapped (wrong)"))
for ax, (im, kp, title) in zip(axes, panels):
    ax.imshow(im.transpose(1, 2, 0))
    draw_keypoints(ax, kp[g], SKELETON, KEYPOINT_NAMES)
    for k in (LH, RH):
        ax.annotate(KEYPOINT_NAMES[k], kp[g, k, :2] - 0.5, xytext=(0, -16),
                    textcoords="offset points", ha="center", fontsize=10, color="w",
                    bbox=dict(fc="k", ec="none", alpha=0.7, pad=1.5))
    ax.set_title(title)
    ax.axis("off")
plt.tight_layout()
plt.show()
for _, kp, title in panels:
    print(f"{title:29s} x of left_hand {kp[g, LH, 0]:5.1f}, of right_hand {kp[g, RH, 0]:5.1f}")
assert (orig["keypoints"][g, [LH, RH], 2] == 2).all()
assert orig["keypoints"][g, LH, 0] > orig["keypoints"][g, RH, 0]
assert flipped["keypoints"][g, LH, 0] > flipped["keypoints"][g, RH, 0]
assert wrong[g, LH, 0] < wrong[g, RH, 0]

# %% [markdown]
# Facing us, a figure's left hand is on the image's right. The correct flip keeps that true:
# the mirrored figure is an ordinary figure, like the ones in the data set. The wrong flip
# labels the hand on the image's left "left_hand", a figure that no unflipped image contains.
# Across the split:

# %%
def left_of_right(kps):
    both = (kps[:, LH, 2] > 0) & (kps[:, RH, 2] > 0)                 # both hands labelled
    return (kps[both, LH, 0] > kps[both, RH, 0]).mean(), both.sum()


flip_all = np.concatenate([ds.get(i, flip=True)["keypoints"] for i in range(len(ds))])
wrong_all = all_kp.copy()
wrong_all[..., 0] = np.where(wrong_all[..., 2] > 0, W - wrong_all[..., 0], 0)
share = {name: left_of_right(k) for name, k in
         (("original", all_kp), ("correct flip", flip_all), ("wrong flip", wrong_all))}
for name, (f, n) in share.items():
    print(f"{name:13s} left_hand right of right_hand in {f:.0%} of {n} figures")
assert share["original"][0] == share["correct flip"][0] == 1.0 and share["wrong flip"][0] == 0.0

# %% [markdown]
# Trained with the wrong flip, half the images say the left hand is on the image's right and
# half say it is on the left. The head cannot satisfy both; its best answer is a map with a
# peak on each side, and the argmax picks one of them, often the wrong one.
#
# ## 7. OKS: how close is a predicted skeleton?
#
# To score a box, COCO uses IoU; to score a skeleton it uses the **object keypoint
# similarity**, a number in [0, 1] that plays the same role:
#
# $$\text{OKS} = \frac{\sum_i \exp\!\big(-d_i^2 / (2 s^2 k_i^2)\big)\,[v_i > 0]}{\sum_i [v_i > 0]},
#   \qquad k_i = 2\sigma_i .$$
#
# * $d_i$ is the distance from the predicted keypoint $i$ to the true one;
# * $s^2$ is the object's **area** (the ground truth's `area`, its mask's pixels): the same
#   pixel error is worse on a small figure than on a big one;
# * $\sigma_i$ is a **per-keypoint** tolerance. COCO measured it from how much human annotators
#   disagree on each body part: they agree on an eye (0.025) far better than on a hip (0.107).
#   Our sigmas reuse COCO's value of the nearest body part (the head as the nose, the neck as
#   the shoulders, hands as wrists, the pelvis as the hips, then knees and ankles);
# * only labelled keypoints ($v_i > 0$) count; a prediction for an unlabelled one is free.
#
# Each term is a Gaussian in the distance: it is 1 for a perfect keypoint and 1/2 at
# $d = k_i s \sqrt{2 \ln 2}$. Keypoint AP is then chapter 11's AP with OKS in place of IoU,
# averaged over the thresholds 0.50, 0.55, ..., 0.95.
#
# One detection, by hand: the third figure of image 10 (two of its keypoints are outside the
# image), and a prediction whose every keypoint is moved by a random amount of about 1.5 px.

# %%
img_id = ds.ids[10]
ann = ds.coco.loadAnns(ds.coco.getAnnIds(imgIds=[img_id]))[2]
gt = np.array(ann["keypoints"], np.float64).reshape(K, 3)           # [K, 3] (x, y, v)
area = ann["area"]
det = gt[:, :2] + np.random.default_rng(7).normal(0, 1.5, size=(K, 2))   # [K, 2]
sig = np.array(OKS_SIGMAS)
k2 = (2 * sig) ** 2                                                 # k_i^2
d2 = ((det - gt[:, :2]) ** 2).sum(1)                                # [K] squared distances
terms = np.exp(-d2 / (2 * area * k2))                               # [K]
labelled = gt[:, 2] > 0
print(f"area s^2 = {area:.0f} px (s = {np.sqrt(area):.1f} px)")
print(f"{'keypoint':11s} v  sigma   d (px)  half-score d  exp(-d^2/2s^2k^2)")
for k in range(K):
    half_at = 2 * sig[k] * np.sqrt(area) * np.sqrt(2 * np.log(2))
    term = f"{terms[k]:.4f}" if labelled[k] else "(not counted)"
    print(f"{KEYPOINT_NAMES[k]:11s} {int(gt[k, 2])}  {sig[k]:.3f}  {np.sqrt(d2[k]):6.2f}  "
          f"{half_at:8.2f}      {term}")
oks_by_hand = terms[labelled].mean()
print(f"OKS = mean of the {labelled.sum()} labelled terms = {oks_by_hand:.6f}")
coco_sigma = dict(zip(COCO_PERSON_KEYPOINTS, COCO_PERSON_SIGMAS))
nearest = ("nose", "left_shoulder", "left_wrist", "right_wrist", "left_hip", "left_knee",
           "right_knee", "left_ankle", "right_ankle")                # COCO's part for each of ours
assert [coco_sigma[n] for n in nearest] == list(OKS_SIGMAS)
assert (coco_sigma["left_eye"], coco_sigma["left_hip"]) == (0.025, 0.107)
assert np.isclose(0.026 / 0.107, 0.24, atol=0.01)

# %% [markdown]
# The same number from pycocotools, which computes OKS inside `COCOeval.computeOks` when it is
# set up with `iouType="keypoints"` and our sigmas. It compares the detection with every
# ground-truth figure of the image; ours is the column of our annotation.

# %%
result = {"image_id": img_id, "category_id": ann["category_id"], "score": 1.0,
          "keypoints": [float(v) for xy_ in det for v in (*xy_, 1)]}
with contextlib.redirect_stdout(io.StringIO()):                      # pycocotools prints
    coco_dt = ds.coco.loadRes([result])
    ev = COCOeval(ds.coco, coco_dt, "keypoints")
    ev.params.kpt_oks_sigmas = sig
    ev.params.imgIds = [img_id]
    ev.evaluate()
oks_matrix = ev.computeOks(img_id, ann["category_id"])              # [D = 1, G]
column = [g["id"] for g in ev._gts[img_id, ann["category_id"]]].index(ann["id"])
print(f"pycocotools computeOks: {oks_matrix.round(6)} -> ours at column {column}: "
      f"{oks_matrix[0, column]:.6f}")
assert np.isclose(oks_matrix[0, column], oks_by_hand, rtol=1e-9, atol=1e-12)
assert 0.5 < oks_by_hand < 0.95 and (~labelled).sum() == 2

# %% [markdown]
# The head, with the smallest sigma, is the least forgiving: its score halves at about a
# quarter of the distance that the pelvis allows (0.026 / 0.107). And the whole scale is set
# by $s$, so a figure of a quarter of the area forgives only half the distance.
#
# ## 8. A gallery of predicted skeletons
#
# One command trains the `tiny_keypoints` preset on the stick figures and scores it, the
# keypoint twin of `make demo`: `python -m mrcnn_np demo --keypoints` writes 200 training and
# 50 validation images (seed 0), trains on both cores, and evaluates box, mask and keypoint AP
# with pycocotools. Its backbone and RPN start from a shapes demo's weights (a run of chapter
# 10's demo from before its dihedral flips, `assets/keypoint_init.npz`): the paper starts from
# ImageNet weights for the same reason,
# features that already see edges and blobs. The heads start fresh. (The README compares this
# run with one from scratch.) `assets/tiny_figures.npz` holds the weights of that run
# and `assets/keypoint_demo_run.json` its settings and numbers (to make them again: the
# command above with `--out runs/kpdemo`, then
# `python tools/demo_assets.py --keypoints runs/kpdemo`).

# %%
import json

from mrcnn_np.eval.coco_eval import format_table
from mrcnn_np.model import MaskRCNN
from mrcnn_np.train import evaluate_model
from mrcnn_np.viz import save_gallery

ASSETS = Path("assets")
kp_run = json.loads((ASSETS / "keypoint_demo_run.json").read_text())
st = kp_run["settings"]
print(f"{kp_run['command']}: {kp_run['iterations']} iterations of {st['batch_size']} images, "
      f"AdamW lr {st['lr']}, {st['workers']} workers; {kp_run['wall_s'] / 60:.1f} min on the "
      f"2-core machine; backbone and RPN from {Path(st['init_weights']).name}")
assert Path(st["init_weights"]).name == "keypoint_init.npz"
print(format_table(kp_run["eval"]))

# %% [markdown]
# The same weights, evaluated here on the same 50 validation images (made again from seed 0;
# the training images are not needed). The numbers agree with the shipped run to rounding (the
# run used one BLAS thread, this notebook may use more). The run predates the tiny presets'
# sub-pixel mask paste (chapter 11, section 2.1), so its masks were pasted torchvision's way,
# and so are they here; pasted sub-pixel, the mask AP of the same weights is printed after.

# %%
run_paste = kp_run["settings"].get("mask_paste", "torchvision")  # runs before it: torchvision
model = MaskRCNN(tiny_keypoints(mask_paste=run_paste)).load(ASSETS / "tiny_figures.npz")
val_paths = make_figures_dataset(work / "demo_val", num_train=0, num_val=50,
                                 image_size=(128, 128), seed=0)
val = CocoDataset(val_paths["val_images"], val_paths["val_annotations"])
with contextlib.redirect_stdout(io.StringIO()):
    stats, _ = evaluate_model(model, val)
print(format_table(stats))
for t in ("bbox", "segm", "keypoints"):
    assert abs(stats[t]["AP"] - kp_run["eval"][t]["AP"]) < 0.01, t
sub_model = MaskRCNN(tiny_keypoints()).load(ASSETS / "tiny_figures.npz")  # pastes sub-pixel
with contextlib.redirect_stdout(io.StringIO()):
    sub, _ = evaluate_model(sub_model, val)
print(f"mask AP pasted {run_paste}'s way {stats['segm']['AP']:.3f}, sub-pixel "
      f"{sub['segm']['AP']:.3f} (AP50 {stats['segm']['AP50']:.3f} and {sub['segm']['AP50']:.3f})")
anns = val.coco.dataset["annotations"]
fill = np.median([a["area"] / (a["bbox"][2] * a["bbox"][3]) for a in anns])
print(f"a figure's pixels fill a median {fill:.2f} of its box ({len(anns)} figures)")
assert stats["bbox"]["AP50"] > stats["keypoints"]["AP75"] and 0.25 < fill < 0.4

# %% [markdown]
# Eight of those images with the model's detections (score >= 0.5), their masks and their
# predicted skeletons (the keypoint colours say left, right and centre, as above):

# %%
items = []
for i in range(8):
    image = val.get(i)["image"]
    items.append((image, model.predict([image])[0]))
save_gallery(items, work / "kp_gallery.png", cols=4, class_names=["background", "person"],
             score_threshold=0.5, skeleton=SKELETON, keypoint_names=KEYPOINT_NAMES)
plt.figure(figsize=(12, 6.2))
plt.imshow(plt.imread(work / "kp_gallery.png"))
plt.axis("off")
plt.show()

# %% [markdown]
# Where figures stand apart, the skeletons sit on the limbs. Where they overlap, the RPN and
# the box head give several boxes over the crossing, and each box gets a whole skeleton: the
# keypoint head has no notion that a hand already belongs to another figure. Box AP50 is far
# above keypoint AP75 for the same reason OKS is strict for small figures (section 7): a
# stick figure fills about a third of its box, so its area, the scale of OKS, is small.

# %% [markdown]
# ## Summary
#
# * Keypoints are one more head on the same RoIs, drawing one **56 x 56** map per keypoint.
# * A keypoint's target is one bin of its RoI's grid, $\lfloor (x - x_1)\,56/w \rfloor$; the
#   right and bottom edges belong to bin 55; a keypoint outside its RoI is not trained there.
# * The loss is a **softmax over the 3,136 positions**, since a keypoint is at one place; its
#   gradient is softmax minus one-hot. A per-pixel sigmoid is nearly satisfied by a map that
#   has found nothing.
# * Inference: bicubic resize to the box, argmax, **+0.5** to the pixel's centre.
# * A horizontal flip mirrors x **and swaps left and right** (`FLIP_INDICES`).
# * OKS: a Gaussian per labelled keypoint, scaled by a per-keypoint sigma and the object's
#   area; by hand it equals pycocotools' `computeOks`.
#
# ## Exercises
#
# Work each answer out by hand first; the solution cell is collapsed (click to open it), and
# the cell after it checks your answer against the library.

# %% [markdown]
# **1.** A RoI (12, 30, 40, 86) and two visible keypoints, (26.3, 50.0) and (40.0, 86.0).
# What are their target indices in the 56 x 56 grid? Put the pair in `answer_1`.

# %% jupyter={"source_hidden": true}
# a solution: 56 / 28 = 2 bins per pixel in x, 56 / 56 = 1 in y
# (26.3, 50.0): i_x = floor(2 * 14.3) = 28, i_y = floor(20.0) = 20 -> 20 * 56 + 28 = 1148
# (40.0, 86.0): exactly on the right and bottom edges -> bin 55 in both -> 55 * 56 + 55 = 3135
answer_1 = (20 * 56 + 28, 55 * 56 + 55)

# %%
h1, v1 = keypoints_to_heatmap(np.array([[[26.3, 50.0, 2], [40.0, 86.0, 2]]]),
                              np.array([[12.0, 30.0, 40.0, 86.0]]), 56)
assert v1.all() and tuple(int(i) for i in h1[0]) == tuple(answer_1)
print(answer_1)

# %% [markdown]
# **2.** A detected box starts at x1 = 4 and is 10.5 px wide. Its resized heatmap has its
# maximum in column 7 (counting from 0). What x does `heatmaps_to_keypoints` report? Put it
# in `answer_2`.

# %% jupyter={"source_hidden": true}
# a solution: the map is resized to ceil(10.5) = 11 columns; the centre of column 7 is 7.5,
# scaled back by 10.5 / 11 and shifted by x1
answer_2 = (7 + 0.5) * 10.5 / 11 + 4

# %%
# a map whose resized maximum is in column 7: a bump at the heatmap column that column 7's
# centre comes from, (7.5 * 56 / 11) bins
box2 = np.array([[4.0, 0.0, 14.5, 10.0]], np.float32)               # 10.5 x 10 px
cols = np.arange(S) + 0.5
m2 = np.tile(-(cols - 7.5 * S / 11) ** 2 / 8.0, (S, 1))                 # [S, S], a ridge
m2 = m2[None, None].astype(np.float32)                                  # [1, 1, S, S]
assert interpolate_bicubic(m2, size=(10, 11))[0, 0].argmax(1)[0] == 7   # the setting is right
xy2, _ = heatmaps_to_keypoints(m2, box2)
assert np.isclose(xy2[0, 0, 0], answer_2, atol=1e-5)
print(answer_2)

# %% [markdown]
# **3.** A figure of area s² = 400 px² with all 9 keypoints labelled. A detection is perfect
# except for its head. How far off (in px) can the head be for the head's term to be exactly
# 1/2, and what is the OKS then? Put the distance and the OKS in `answer_3`.

# %% jupyter={"source_hidden": true}
# a solution: exp(-d^2 / (2 s^2 k^2)) = 1/2 at d = k s sqrt(2 ln 2), k = 2 * 0.026, s = 20;
# the OKS is the mean of eight 1s and one 1/2
answer_3 = (2 * 0.026 * 20 * np.sqrt(2 * np.log(2)), (8 + 0.5) / 9)

# %%
from pycocotools.coco import COCO  # noqa: E402

true3 = np.array([[40.5 + 3 * k, 20.5 + 5 * k, 2] for k in range(K)])   # [K, 3]
gt3 = COCO()
gt3.dataset = {"images": [{"id": 1, "height": 100, "width": 100}],
               "categories": [{"id": 1, "name": "person", "keypoints": list(KEYPOINT_NAMES),
                               "skeleton": [list(e) for e in SKELETON]}],
               "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                                "area": 400.0, "bbox": [30, 10, 40, 60], "num_keypoints": K,
                                "keypoints": true3.ravel().tolist()}]}
pred3 = true3.copy()
pred3[KEYPOINT_NAMES.index("head"), 0] += answer_3[0]                  # the head moved right
with contextlib.redirect_stdout(io.StringIO()):
    gt3.createIndex()
    ev3 = COCOeval(gt3, gt3.loadRes([{"image_id": 1, "category_id": 1, "score": 1.0,
                                      "keypoints": pred3.ravel().tolist()}]), "keypoints")
    ev3.params.kpt_oks_sigmas = np.array(OKS_SIGMAS)
    ev3.evaluate()
assert np.isclose(ev3.ious[(1, 1)][0, 0], answer_3[1], rtol=1e-9)
print(answer_3)

# %% [markdown]
# **4.** COCO's 17 person keypoints are `COCO_PERSON_KEYPOINTS` (nose, left_eye, right_eye,
# left_ear, ..., right_ankle). Write the flip permutation for them: a list whose entry k is
# the index of the keypoint that becomes keypoint k after a horizontal flip. Put it in
# `answer_4`.

# %% jupyter={"source_hidden": true}
# a solution: swap the words left and right in each name and look the new name up
names4 = list(COCO_PERSON_KEYPOINTS)
swap = {"left": "right", "right": "left"}
answer_4 = [names4.index("_".join(swap.get(w, w) for w in n.split("_"))) for n in names4]

# %%
assert list(answer_4) == list(flip_indices_of(COCO_PERSON_KEYPOINTS))
assert [answer_4[j] for j in answer_4] == list(range(17))            # flipping twice: identity
assert answer_4[0] == 0 and sorted(answer_4) == list(range(17))     # the nose stays
print(answer_4, f"| chapter ran in {time.perf_counter() - t_chapter:.0f} s")
shutil.rmtree(work)  # the data set written above
