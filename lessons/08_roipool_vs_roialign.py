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
# # Chapter 08 — RoIPool vs RoIAlign: why masks need sub-pixel precision
#
# The box head and the mask head need a **fixed-size feature** for every proposal: a 7x7 (box
# head) or 14x14 (mask head) grid of C-channel features, cut out of a feature map whose pixels
# are 4 to 32 image pixels wide. The operation that cuts it out is a *RoI feature extractor*.
#
# Fast R-CNN's **RoIPool** rounds the box to whole feature pixels, cuts it into bins whose
# edges are rounded again, and takes each bin's maximum. For classification that is fine: a
# box off by half a feature pixel still shows the same object. For a mask it is not: on a
# stride-16 map, half a feature pixel is 8 image pixels, and a 28x28 mask predicted from
# features that are 8 pixels off is 8 pixels off.
#
# Mask R-CNN's **RoIAlign** rounds nothing. It places a few sample points in each bin at
# exact, fractional positions, reads each one by **bilinear interpolation** of the four
# nearest feature pixels, and averages them. In the paper that single change gave about 3 mask
# AP on stride-16 features, most of it at high IoU (AP75; its Table 2c), and 7.3 AP on
# stride-32 features (Table 2d).
#
# This chapter compares four extractors on the same feature grid:
#
# | extractor | where it samples | how it reads | from |
# | --- | --- | --- | --- |
# | `roi_pool` | every pixel of rounded bins | max | Fast R-CNN |
# | `roi_warp` | bilinear samples in the *rounded* box | average | MNC, Mask R-CNN Table 2c |
# | `roi_align` | bilinear samples in the exact box | average | Mask R-CNN |
# | `crop_and_resize` | one bilinear sample per cell, on the box *corners* | — | TensorFlow, matterport |

# %%
# %matplotlib inline
import inspect

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from mrcnn_np.ops import (LevelMapper, crop_and_resize, roi_align, roi_align_backward,
                          roi_align_forward, roi_pool, roi_pool_backward, roi_pool_forward,
                          roi_warp)
from mrcnn_np.ops.crop_and_resize import corner_positions
from mrcnn_np.ops.roi_align import roi_align_params, sample_positions
from mrcnn_np.ops.roi_pool import roi_pool_bins
from mrcnn_np.ops.roi_warp import quantize_rois

# %% [markdown]
# ## The math
#
# A RoI is `(batch_index, x1, y1, x2, y2)` in image pixels; `spatial_scale` s (1/16 for a
# stride-16 map) takes it to feature pixels. With an output of S x S bins:
#
# **RoIPool** (torchvision's rules): `start = round(x1 s)`, `end = round(x2 s)`, the RoI covers
# feature pixels `start .. end` *inclusive*, `bin = (end - start + 1) / S`, and bin `p` covers
# pixels `start + floor(p bin) .. start + ceil((p+1) bin) - 1`. Output: the max over the bin.
#
# **RoIAlign**: nothing is rounded.
#
# $$\text{roi\_start} = x_1 s - o,\quad \text{bin} = \frac{(x_2 - x_1)s}{S},\quad
# x_{p,g} = \text{roi\_start} + p\,\text{bin} + (g + \tfrac12)\frac{\text{bin}}{G}$$
#
# with G samples per bin per axis (`sampling_ratio`, or `ceil(bin)` when it is -1) and the
# offset `o = 0.5` when `aligned=True`, `0` otherwise. A sample at `(y, x)` reads
#
# $$v(y, x) = (1-l_y)(1-l_x)\,v_{00} + (1-l_y)\,l_x\,v_{01} + l_y(1-l_x)\,v_{10} + l_y l_x\,v_{11}$$
#
# where `v00 .. v11` are the four pixels around it and `l_y = y - floor(y)`, `l_x = x - floor(x)`.
# A bin's output is the mean of its G x G samples.
#
# **Why `aligned`?** Bilinear interpolation puts pixel `i`'s value at coordinate `i`. But pixel
# `i` *covers* `[i, i+1)` in feature units, so its centre is at `i + 0.5`. `aligned=True`
# subtracts that half pixel, so the samples land where the box really is. torchvision's
# default, `aligned=False`, keeps the original paper code's half-pixel shift (pretrained
# weights were trained with it); the figure below shows the shift.
#
# Here is the reference code for the sample positions, straight from the library:

# %%
print(inspect.getsource(sample_positions))

# %% [markdown]
# ## A tiny example: RoIPool and RoIAlign on a 5x5 `arange` map
#
# `v = 5 y + x`. The RoI `(0.6, 1.2, 3.4, 3.5)` rounds to pixels x 1..3, y 1..4 for RoIPool. The
# map is linear, so a bilinear sample returns exactly `5 y + x` at its position, and RoIAlign's
# bins are just the values at the bin centres.

# %%
x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)          # [N=1, C=1, H=5, W=5]
roi = np.array([[0, 0.6, 1.2, 3.4, 3.5]])                          # [R=1, 5]
print("map:\n", x[0, 0])
print("RoIPool 2x2:\n", roi_pool(x, roi, 2)[0, 0])
print("RoIAlign 2x2 (aligned=False, sampling 2):\n", roi_align(x, roi, 2, sampling_ratio=2)[0, 0])
print("RoIAlign 2x2 (aligned=True,  sampling 2):\n",
      roi_align(x, roi, 2, sampling_ratio=2, aligned=True)[0, 0])

# %% [markdown]
# RoIPool's answer only changes when a rounded edge jumps to the next pixel. RoIAlign's moves
# with the box: with `aligned=False` the bin centres are at `y = 1.2 + 1.15 (p + 0.5)`,
# `x = 0.6 + 1.4 (q + 0.5)`, so bin (0, 0) is `5 * 1.775 + 1.3 = 10.175`; `aligned=True`
# subtracts half a pixel on both axes: `10.175 - 2.5 - 0.5 = 7.175`.
#
# ## Where each extractor looks
#
# One RoI on a stride-16 feature map (a 12 x 12 window of it), output 3 x 3, 2 x 2 samples per
# bin. We draw in feature-pixel units, with pixel `j` covering `[j, j+1)`: the grid lines are
# pixel borders and the dashed rectangle is the true box. A bilinear sample at coordinate `t`
# reads the value stored at `t`, which lives at the centre of pixel `t`, drawn at `t + 0.5`.

# %%
stride = 16
box = np.array([[0, 37.0, 51.0, 141.0, 139.0]])       # image pixels; RoI [1, 5]
s = 1 / stride
S, G = 3, 2
u1, v1, u2, v2 = box[0, 1:] * s                        # the true box in feature units


def align_points(rois, scale, aligned, sampling=G):
    """Sample points of roi_align, drawn where they read (pixel-centre + 0.5)."""
    prm = roi_align_params(rois, scale, S, S, sampling, aligned)
    ys, _ = sample_positions(prm["roi_start_h"], prm["bin_size_h"], prm["roi_bin_grid_h"], S)
    xs, _ = sample_positions(prm["roi_start_w"], prm["bin_size_w"], prm["roi_bin_grid_w"], S)
    X, Y = np.meshgrid(xs[0].ravel() + 0.5, ys[0].ravel() + 0.5)
    return X, Y


def draw_grid(ax, title):
    for k in range(13):
        ax.axhline(k, color="0.85", lw=0.8)
        ax.axvline(k, color="0.85", lw=0.8)
    ax.add_patch(Rectangle((u1, v1), u2 - u1, v2 - v1, fill=False, ls="--", lw=2, ec="k"))
    ax.set_xlim(1, 11)
    ax.set_ylim(11, 1)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)


fig, axes = plt.subplots(2, 3, figsize=(15, 10))
axes = axes.ravel()
# RoIPool: the rounded bins, shaded pixel by pixel.
hs, he, ws, we = roi_pool_bins(box, s, S, S, 12, 12)
draw_grid(axes[0], "RoIPool: rounded bins (max)")
for p in range(S):
    for q in range(S):
        axes[0].add_patch(Rectangle((ws[0, q], hs[0, p]), we[0, q] - ws[0, q], he[0, p] - hs[0, p],
                                    alpha=0.25, color=plt.cm.tab10((p * S + q) % 10)))
# RoIWarp: bilinear samples in the rounded box.
draw_grid(axes[1], "RoIWarp: samples in the rounded box")
X, Y = align_points(quantize_rois(box, s), 1.0, False)
axes[1].plot(X, Y, "o", color="tab:orange", ms=4)
# RoIAlign, aligned=False: the samples sit half a pixel right of and below the box.
draw_grid(axes[2], "RoIAlign aligned=False (+0.5 px shift)")
X, Y = align_points(box, s, False)
axes[2].plot(X, Y, "o", color="tab:red", ms=4)
# RoIAlign, aligned=True: centred in the box.
draw_grid(axes[3], "RoIAlign aligned=True")
X, Y = align_points(box, s, True)
axes[3].plot(X, Y, "o", color="tab:green", ms=4)
# crop_and_resize: one sample per cell, the corners on the box edges. Its pixel-centre
# coordinates put pixel j's centre at j, so the true box is (u1 - 0.5 .. u2 - 0.5).
draw_grid(axes[4], "crop_and_resize: box corners, 1 per cell")
cx = corner_positions(np.array([u1 - 0.5]), np.array([u2 - 0.5]), S)[0] + 0.5
cy = corner_positions(np.array([v1 - 0.5]), np.array([v2 - 0.5]), S)[0] + 0.5
X, Y = np.meshgrid(cx, cy)
axes[4].plot(X, Y, "s", color="tab:purple", ms=5)
# aligned=False vs True on one grid: the whole pattern moves by half a pixel on both axes.
draw_grid(axes[5], "aligned=False (red) vs aligned=True (green)")
for aligned, colour in [(False, "tab:red"), (True, "tab:green")]:
    X, Y = align_points(box, s, aligned)
    axes[5].plot(X, Y, "o", color=colour, ms=4, alpha=0.8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the figure left to right. RoIPool's bins are whole pixels: the shaded cells stick out of
# the dashed box on one side and miss part of it on the other, and neighbouring bins share a
# column. RoIWarp samples evenly, but inside the *rounded* box, so it inherits the same
# misalignment. RoIAlign with `aligned=False` samples the right size but half a pixel (8 image
# pixels here) down and right; with `aligned=True` the samples sit exactly inside the box.
# crop_and_resize puts its first and last samples *on* the edges, one per output cell.
#
# ## The sub-pixel shift experiment
#
# Slide a RoI to the right in steps of 0.1 feature pixel and watch one output value of each
# extractor. The feature map is smooth (a sum of sines), so a good extractor should give a
# smooth curve.

# %%
yy, xx = np.mgrid[:16, :16]
smooth = (np.sin(0.7 * xx) + np.cos(0.45 * yy + 0.3 * xx))[None, None]   # [1, 1, 16, 16]
shifts = np.arange(0, 3.01, 0.1)
rois = np.array([[0, 3.0 + d, 4.0, 9.0 + d, 10.0] for d in shifts])     # [31, 5]
curves = {
    "roi_pool": roi_pool(smooth, rois, 2)[:, 0, 0, 0],
    "roi_warp": roi_warp(smooth, rois, 2)[:, 0, 0, 0],
    "roi_align (aligned=True)": roi_align(smooth, rois, 2, sampling_ratio=2, aligned=True)[:, 0, 0, 0],
    "crop_and_resize": crop_and_resize(smooth, rois[:, 1:], np.zeros(len(rois), int), 2)[:, 0, 0, 0],
}
fig, ax = plt.subplots(figsize=(8, 4))
for name, c in curves.items():
    ax.plot(shifts, c, "-o", ms=3, label=name)
ax.set_xlabel("shift of the RoI (feature pixels)")
ax.set_ylabel("output bin (0, 0)")
ax.legend()
ax.set_title("Slide a RoI by 0.1 px: RoIPool and RoIWarp jump, RoIAlign moves smoothly")
plt.show()
for name, c in curves.items():
    print(f"{name:26s} distinct values over 31 shifts: {len(np.unique(np.round(c, 9)))}")

# %% [markdown]
# RoIPool and RoIWarp are *flat* until a rounded edge crosses a half-pixel, then they jump:
# they cannot tell apart boxes that differ by less than a feature pixel. RoIAlign and
# crop_and_resize change with every step. A network fed by RoIPool therefore cannot learn to
# place a mask more precisely than a feature pixel; one fed by RoIAlign can.
#
# Move the slider to shift the RoI yourself (live in Jupyter; the static figures above are
# what GitHub shows).

# %%
try:
    import ipywidgets as widgets

    def show_shift(shift=0.0):
        r = np.array([[0, 3.0 + shift, 4.0, 9.0 + shift, 10.0]])
        fig, axs = plt.subplots(1, 2, figsize=(8, 3.5))
        axs[0].imshow(roi_pool(smooth, r, 2)[0, 0], vmin=-2, vmax=2)
        axs[0].set_title(f"roi_pool, shift {shift:.1f}")
        axs[1].imshow(roi_align(smooth, r, 2, sampling_ratio=2, aligned=True)[0, 0], vmin=-2, vmax=2)
        axs[1].set_title(f"roi_align, shift {shift:.1f}")
        plt.show()

    widgets.interact(show_shift, shift=widgets.FloatSlider(min=0, max=3, step=0.1, value=0))
except ImportError:
    print("ipywidgets is not installed: the static figures above show the same thing.")

# %% [markdown]
# ## What it does to a mask
#
# The mask target of chapter 07 is the ground-truth mask resampled into the proposal's box at
# 28 x 28, and at inference the predicted 28 x 28 mask is pasted back into the box. If the
# features the mask head sees came from a *rounded* box, the head learns a mask of the rounded
# box, and pasting it into the real box shifts and stretches it.
#
# Below, an object (an asymmetric blob) and a proposal box. Left: the 28 x 28 crop of the
# object taken from the exact box. Right: the crop taken from the box rounded to a stride-16
# grid, the region RoIPool would read. Both are pasted back into the exact box (with
# `crop_and_resize`, which is exactly a paste when the box is given in the crop's own pixel
# coordinates) and outlined over the object.

# %%
H = W = 160
yy, xx = np.mgrid[:H, :W] + 0.5
blob = (((xx - 78) / 42) ** 2 + ((yy - 84) / 30) ** 2 <= 1) | (((xx - 104) / 16) ** 2 + ((yy - 52) / 22) ** 2 <= 1)
mask = blob.astype(np.float64)[None, None]                                # [1, 1, H, W]
box = np.array([[0, 35.0, 28.0, 122.0, 116.0]])                           # a proposal, image px
q = quantize_rois(box, 1 / 16)                                            # rounded feature px
box_q = np.array([[0, q[0, 1] * 16, q[0, 2] * 16, (q[0, 3] + 1) * 16, (q[0, 4] + 1) * 16]])
M = 28
target_exact = roi_align(mask, box, M, sampling_ratio=2, aligned=True)[0, 0]     # [28, 28]
target_round = roi_align(mask, box_q, M, sampling_ratio=2, aligned=True)[0, 0]   # [28, 28]


def paste(target, b):
    """Paste a 28x28 mask into box b of an H x W image (bilinear), threshold 0.5."""
    x1, y1, x2, y2 = b
    # image pixel centre x + 0.5 sits at crop coordinate (x + 0.5 - x1) * M / w - 0.5
    tx = (np.array([0.5, W - 0.5]) - x1) * M / (x2 - x1) - 0.5
    ty = (np.array([0.5, H - 0.5]) - y1) * M / (y2 - y1) - 0.5
    return crop_and_resize(target[None, None], [[tx[0], ty[0], tx[1], ty[1]]], [0], (H, W))[0, 0] >= 0.5


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


pasted = {"exact box": paste(target_exact, box[0, 1:]), "rounded box (stride 16)": paste(target_round, box[0, 1:])}
fig, axes = plt.subplots(1, 3, figsize=(14, 4.8))
axes[0].imshow(target_exact, cmap="gray")
axes[0].set_title("28x28 target, exact box")
for ax, (name, m) in zip(axes[1:], pasted.items()):
    ax.imshow(blob, cmap="Greys", alpha=0.5)
    ax.contour(m, levels=[0.5], colors="r", linewidths=2)
    ax.add_patch(Rectangle((box[0, 1], box[0, 2]), box[0, 3] - box[0, 1], box[0, 4] - box[0, 2],
                           fill=False, ec="b", lw=1.5))
    if name.startswith("rounded"):
        ax.add_patch(Rectangle((box_q[0, 1], box_q[0, 2]), box_q[0, 3] - box_q[0, 1],
                               box_q[0, 4] - box_q[0, 2], fill=False, ec="orange", ls="--", lw=1.5))
    ax.set_title(f"{name}: mask IoU {iou(m, blob):.3f}")
plt.tight_layout()
plt.show()
print("exact box  :", box[0, 1:], "\nrounded box:", box_q[0, 1:])

# %% [markdown]
# The blue box is the proposal, the dashed orange one the region a stride-16 RoIPool reads. The
# mask built from the rounded box (red outline, right) is shifted and stretched against the
# object, and its IoU with the object drops; the exact box's mask follows the object up to the
# 28 x 28 resolution.
#
# ## The backward: a scatter of the same weights
#
# RoIAlign is **linear** in its input: every output is a weighted sum of input pixels, with
# weights that depend only on the box. So the gradient of a loss with respect to the input is
# the transpose of that sum: each output's gradient, divided by the number of samples, is
# scattered back onto the four pixels of each of its samples, with the same bilinear weights.
# Pixels shared by several samples, bins or RoIs receive the sum. RoIPool's gradient goes to one
# pixel per bin and channel: the argmax (the first one in row-major order when values tie).
#
# The RoI coordinates get no gradient: proposals are treated as constants, as in the paper and
# in torchvision (the box is refined by the box-regression loss, not through the features).

# %%
rng = np.random.default_rng(0)
feat = rng.standard_normal((1, 1, 12, 12))
r = np.array([[0, 2.3, 3.1, 9.6, 9.2]])
dout = np.zeros((1, 1, 2, 2))
dout[0, 0, 1, 0] = 1.0                                   # the gradient of one bin only
_, cache_a = roi_align_forward(feat, r, 2, 1.0, 2, True)
_, cache_p = roi_pool_forward(feat, r, 2)
g_align = roi_align_backward(dout, cache_a)[0, 0]        # [12, 12]
g_pool = roi_pool_backward(dout, cache_p)[0, 0]          # [12, 12]
fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
for ax, g, t in [(axes[0], g_pool, "RoIPool backward: one pixel (the argmax)"),
                 (axes[1], g_align, "RoIAlign backward: bilinear weights / 4 samples")]:
    im = ax.imshow(g, cmap="viridis", extent=(0, 12, 12, 0))
    ax.add_patch(Rectangle((r[0, 1], r[0, 2]), r[0, 3] - r[0, 1], r[0, 4] - r[0, 2], fill=False, ec="w", ls="--"))
    ax.set_title(t, fontsize=10)
    plt.colorbar(im, ax=ax, fraction=0.046)
prm = roi_align_params(r, 1.0, 2, 2, 2, True)
ys, _ = sample_positions(prm["roi_start_h"], prm["bin_size_h"], prm["roi_bin_grid_h"], 2)
xs, _ = sample_positions(prm["roi_start_w"], prm["bin_size_w"], prm["roi_bin_grid_w"], 2)
X, Y = np.meshgrid(xs[0, 0] + 0.5, ys[0, 1] + 0.5)      # bin (1, 0): y bin 1, x bin 0
axes[1].plot(X, Y, "r+", ms=10)
plt.tight_layout()
plt.show()
print("RoIAlign gradient sums to", g_align.sum(), "(the weights of a bin sum to 1)")
print("RoIPool gradient is nonzero at", np.argwhere(g_pool))

# %% [markdown]
# ## Which FPN level? (FPN paper, Eqn. 1)
#
# With a feature pyramid P2..P5, each RoI is pooled from one level, chosen by its size:
#
# $$k = \left\lfloor k_0 + \log_2\frac{\sqrt{wh}}{224} \right\rfloor,\quad k_0 = 4,
# \quad\text{clamped to } [2, 5]$$
#
# A 224 x 224 RoI (ImageNet's size) goes to P4; halve its side and it goes one level finer. We
# use `floor`, as torchvision's `LevelMapper` does (with `eps = 1e-6` so that exact powers of
# two do not fall a level by a rounding error); matterport uses `round`, which moves every
# threshold by a factor sqrt(2). torchvision's `MultiScaleRoIAlign` pools with
# `aligned=False`, so `multi_scale_roi_align` defaults to it; pass `aligned=True` for the
# correct geometry when you train from scratch.

# %%
mapper = LevelMapper(2, 5)
sizes = np.exp(rng.normal(np.log(90), 0.9, 2000))                     # typical RoI sides, px
aspect = np.exp(rng.normal(0, 0.5, 2000))
boxes = np.stack([np.zeros(2000), np.zeros(2000), sizes * aspect, sizes / aspect], 1)
levels = mapper.levels(boxes)
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
side = np.linspace(8, 900, 2000)
axes[0].plot(side, mapper.levels(np.stack([0 * side, 0 * side, side, side], 1)), lw=2)
axes[0].plot(side, 4 + np.log2(side / 224), "--", label="k0 + log2(side / 224)")
for k in (2, 3, 4, 5):
    axes[0].axvline(224 * 2.0 ** (k - 4), color="0.8", lw=0.8)
axes[0].set_xscale("log")
axes[0].set_xlabel("sqrt(w h) (image pixels)")
axes[0].set_ylabel("level k")
axes[0].legend()
axes[0].set_title("k = floor(4 + log2(sqrt(wh)/224)), clamped to [2, 5]")
axes[1].bar([2, 3, 4, 5], np.bincount(levels, minlength=6)[2:], color="tab:blue")
axes[1].set_xticks([2, 3, 4, 5], ["P2 (1/4)", "P3 (1/8)", "P4 (1/16)", "P5 (1/32)"])
axes[1].set_title("levels of 2000 RoIs with sides around 90 px")
plt.tight_layout()
plt.show()
print({f"P{k}": int(n) for k, n in zip(range(2, 6), np.bincount(levels, minlength=6)[2:])})

# %% [markdown]
# Most RoIs of a typical image are small, so P2 and P3 do most of the pooling; P5 gets only
# the largest objects. The mask head's 14 x 14 RoIAlign runs on the same levels.
#
# ## Summary
#
# - RoIPool rounds twice (the box, then the bin edges) and takes a max: its output is a step
#   function of the box position, up to half a feature pixel off (8 image pixels at stride 16).
# - RoIWarp samples bilinearly but in the rounded box: the same steps. The rounding, not the max,
#   is the problem.
# - RoIAlign rounds nothing: G x G bilinear samples per bin, averaged. `aligned=True` removes the
#   legacy half-pixel shift that `aligned=False` (torchvision's default) keeps.
# - crop_and_resize (TensorFlow, matterport) samples one point per cell on the box corners.
# - All the bilinear extractors are linear in the input; their backward scatters the same
#   weights back. RoIPool's backward routes each bin's gradient to its argmax.
# - FPN picks the level `floor(4 + log2(sqrt(wh)/224))`, clamped to the pyramid.
#
# ## Exercises (each cell checks itself)
#
# **1.** On the 5x5 `arange` map, what does a 1x1 RoIPool of the RoI `(1.4, 0.5, 2.6, 2.49)`
# return? (Round the corners, find the pixels, take the max.)

# %%
# x: round(1.4) = 1, round(2.6) = 3 -> columns 1..3; y: round(0.5) = 1 (halves go away from
# zero), round(2.49) = 2 -> rows 1..2. The max of v = 5y + x there is at (2, 3): 13.
answer_1 = 13.0
assert roi_pool(x, np.array([[0, 1.4, 0.5, 2.6, 2.49]]), 1)[0, 0, 0, 0] == answer_1

# %% [markdown]
# **2.** Which FPN level does a 300 x 200 box go to? And a 112 x 112 box?

# %%
# sqrt(300 * 200) = 244.9 -> 4 + log2(1.093) = 4.13 -> 4.   112 = 224 / 2 -> exactly 3.
answer_2 = [4, 3]
assert mapper.levels(np.array([[0, 0, 300, 200], [0, 0, 112, 112]])).tolist() == answer_2

# %% [markdown]
# **3.** The backward is the transpose of the forward. Check it with the defining identity
# `<roi_align(x), d> == <x, roi_align_backward(d)>` for random `x` and `d`.

# %%
xr = rng.standard_normal((2, 3, 9, 9))
rr = np.array([[0, 1.2, 0.3, 7.7, 5.1], [1, -2.0, 3.0, 4.5, 11.0]])
out, cache = roi_align_forward(xr, rr, 3, 1.0, -1, True)
d = rng.standard_normal(out.shape)
lhs = np.sum(out * d)
rhs = np.sum(xr * roi_align_backward(d, cache))
print(lhs, rhs)
assert np.isclose(lhs, rhs)

# %% [markdown]
# **4.** With `aligned=True`, `sampling_ratio=1` and one bin per pixel, RoIAlign of a box that
# covers whole pixels returns the pixels themselves. Check it on the 5x5 map for the box
# `(1, 1, 4, 3)` (3 pixels wide, 2 high).

# %%
answer_4 = x[0, 0, 1:3, 1:4]
assert np.allclose(roi_align(x, np.array([[0, 1, 1, 4, 3]]), (2, 3), sampling_ratio=1, aligned=True)[0, 0], answer_4)
