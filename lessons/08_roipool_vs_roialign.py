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
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

import mrcnn_np
from mrcnn_np import figures
from mrcnn_np.ops import (LevelMapper, crop_and_resize, roi_align, roi_align_backward,
                          roi_align_forward, roi_pool, roi_pool_backward, roi_pool_forward)
from mrcnn_np.ops.roi_align import bilinear_axis, roi_align_params, round_half_away, sample_positions
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
# weights were trained with it); the last figure of the next section shows the shift.
#
# Here is the reference code for the sample positions, straight from the library:

# %%
print(inspect.getsource(sample_positions))

# %% [markdown]
# ## A tiny example: RoIPool and RoIAlign on a 5x5 `arange` map
#
# `v = 5 y + x`. The RoI `(0.6, 1.2, 3.4, 3.5)` rounds to pixels x 1..3, y 1..4 for RoIPool
# (the cell prints the rounded corners). The map is linear, so a bilinear sample returns
# exactly `5 y + x` at its position, and RoIAlign's bins are just the values at the bin centres.

# %%
x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)          # [N=1, C=1, H=5, W=5]
roi = np.array([[0, 0.6, 1.2, 3.4, 3.5]])                          # [R=1, 5]
corners = round_half_away(roi[0, 1:]).astype(int)                  # (x1, y1, x2, y2) rounded
print("rounded corners (x1, y1, x2, y2):", corners)
assert corners.tolist() == [1, 1, 3, 4]                             # x 1..3, y 1..4
print("map:\n", x[0, 0])
print("RoIPool 2x2:\n", roi_pool(x, roi, 2)[0, 0])
align_false = roi_align(x, roi, 2, sampling_ratio=2)[0, 0]
align_true = roi_align(x, roi, 2, sampling_ratio=2, aligned=True)[0, 0]
print("RoIAlign 2x2 (aligned=False, sampling 2):\n", align_false)
print("RoIAlign 2x2 (aligned=True,  sampling 2):\n", align_true)
assert np.isclose(align_false[0, 0], 5 * (1.2 + 1.15 * 0.5) + (0.6 + 1.4 * 0.5))   # 10.175
assert np.isclose(align_true[0, 0], align_false[0, 0] - 5 * 0.5 - 0.5)              # 7.175

# %% [markdown]
# RoIPool's answer only changes when a rounded edge jumps to the next pixel. RoIAlign's moves
# with the box: with `aligned=False` the bin centres are at `y = 1.2 + 1.15 (p + 0.5)`,
# `x = 0.6 + 1.4 (q + 0.5)`, so bin (0, 0) is `5 * 1.775 + 1.3 = 10.175`; `aligned=True`
# subtracts half a pixel on both axes: `10.175 - 2.5 - 0.5 = 7.175` (both asserted above).
#
# ## Where each extractor looks (the paper's Figure 3, for all four)
#
# One RoI on a stride-16 feature map, 2 x 2 bins, 2 x 2 samples per bin, the setting of the
# paper's Figure 3. We draw in feature pixels, with pixel `j` covering `[j, j+1)`: the dashed
# grid is the feature map, the dashed black rectangle is the true RoI, solid lines are what
# each extractor uses. A bilinear sample at coordinate `t` reads the value stored at `t`, the
# centre of pixel `t`, drawn at `t + 0.5`.
#
# The box is chosen so that RoIPool's rounding goes both ways: the rounded box extends past
# the true box on one edge and cuts into it on another. The cell prints each edge.

# %%
stride = 16
s = 1 / stride
box = np.array([[0, 27.2, 20.8, 99.2, 89.6]])          # image pixels; RoI [1, 5]
S, G = 2, 2
u1, v1, u2, v2 = box[0, 1:] * s                        # the true box in feature units
panel_map = np.random.default_rng(3).integers(0, 10, (1, 1, 8, 8)).astype(np.float64)  # [1, 1, 8, 8]
hs, he, ws, we = (a[0] for a in roi_pool_bins(box, s, S, S, 8, 8))   # bins, [start, end) cells
rounded = {"left": ws[0], "top": hs[0], "right": we[-1], "bottom": he[-1]}   # RoIPool's box
true = {"left": u1, "top": v1, "right": u2, "bottom": v2}
outward = {"left": -1, "top": -1, "right": 1, "bottom": 1}    # the direction that overshoots
print(f"true box (feature px): x {u1:.2f}..{u2:.2f}, y {v1:.2f}..{v2:.2f}")
over = {}
for edge in rounded:
    over[edge] = outward[edge] * (rounded[edge] - true[edge])   # > 0: past the box, < 0: cuts in
    what = "overshoots" if over[edge] > 0 else "cuts into the box"
    print(f"{edge:6s} edge: true {true[edge]:.2f}, RoIPool's {rounded[edge]:d}: {what} by "
          f"{abs(over[edge]):.2f} feature px = {abs(over[edge]) * stride:.1f} image px")
assert over["right"] > 0 and over["left"] < 0     # past the box on the right, short on the left
assert over["right"] >= 0.5 and over["bottom"] >= 0.5
# The far edges always overshoot by >= 0.5: RoIPool's end pixel is inclusive (round(x2) + 1).
far = np.random.default_rng(1).uniform(0, 50, 1000)
assert np.all(round_half_away(far) + 1 - far >= 0.5)
# A near edge rounds inward exactly when its fraction is at least one half.
assert np.array_equal(round_half_away(far) > far, far % 1 >= 0.5)

# %% [markdown]
# Only a near edge (left or top) can cut into the box: one whose coordinate's fraction is at
# least one half, like the left edge here, rounds *inward* (asserted). The far edges always overshoot
# (by at least half a pixel, asserted over random coordinates), because RoIPool counts its end
# pixel inclusively. Now the four extractors on this RoI:

# %%
roi_f = (u1, v1, u2, v2)
highlight = (0, 0, 1, 0)              # bin (0, 0), its sample in row 1, column 0
fig = figures.roi_extractors_figure(panel_map, roi_f, S, G, highlight)
fig   # a matplotlib Figure displays itself

# %% [markdown]
# * **RoIPool** (top left, the numbers are the feature values): the orange box is the rounded
#   RoI; each coloured outline is one bin's cells; the star of its colour is the bin's max,
#   the cell its gradient goes to. Neighbouring bins share a column (the rounded box is 5
#   cells wide, so a bin is 2.5 cells, floored and ceiled to 3).
# * **RoIAlign** (top right): the bins are the true box cut exactly in 2 x 2; each dot is a
#   sample. The red sample reads the four shaded cells, each with the weight written on it.
# * **RoIWarp** (bottom left): RoIAlign's samples, but in the rounded box -- the same
#   misalignment as RoIPool, without the max.
# * **crop_and_resize** (bottom right): one sample per output cell, the first and last *on*
#   the box edges; with 2 x 2 cells, the samples are the box's four corners.
#
# The cell below checks the pictures' claims from the numbers: RoIPool's stars are each bin's
# first maximum, and the red sample's weights are the ones worked from the formula of the
# math section, the weights the library's `bilinear_axis` gives, and they sum to 1.

# %%
_, cache = roi_pool_forward(panel_map, box, S, s)
for ph in range(S):
    for pw in range(S):
        cells = panel_map[0, 0, hs[ph]:he[ph], ws[pw]:we[pw]]
        i, j = divmod(int(cache["argmax"][0, 0, ph, pw]), 8)
        print(f"bin ({ph}, {pw}): rows {hs[ph]}..{he[ph] - 1}, columns {ws[pw]}..{we[pw] - 1}, "
              f"max {cells.max():g} at cell (row {i}, column {j})")
        assert panel_map[0, 0, i, j] == cells.max()
        assert (i, j) == (hs[ph] + np.argmax(cells) // cells.shape[1], ws[pw] + np.argmax(cells) % cells.shape[1])
assert we[-1] - ws[0] == 5 and we[0] - ws[0] == 3   # 5 cells wide: bins of 2.5, made 3
assert we[0] > ws[1]                                # so the bins of a row share a column

# The red sample, worked by hand (aligned=True: index coordinate = feature coordinate - 0.5).
ph, pw, iy, ix = highlight
bh, bw = (v2 - v1) / S, (u2 - u1) / S
ty = v1 - 0.5 + ph * bh + (iy + 0.5) * bh / G
tx = u1 - 0.5 + pw * bw + (ix + 0.5) * bw / G
ly, lx = ty - np.floor(ty), tx - np.floor(tx)
y0, x0 = int(np.floor(ty)), int(np.floor(tx))
hand = {(y0, x0): (1 - ly) * (1 - lx), (y0, x0 + 1): (1 - ly) * lx,
        (y0 + 1, x0): ly * (1 - lx), (y0 + 1, x0 + 1): ly * lx}
print(f"sample at (y, x) = ({ty:.4f}, {tx:.4f}); weights:",
      {k: round(float(w), 4) for k, w in hand.items()})
assert np.isclose(sum(hand.values()), 1.0)
# ... and the library's: the two taps per axis and their weights, from RoIAlign's own tables.
prm = roi_align_params(box, s, S, S, G, True)
yl, yh, wyl, wyh = (a[0, ph, iy] for a in bilinear_axis(prm["roi_start_h"], prm["bin_size_h"],
                                                        prm["roi_bin_grid_h"], S, 8))
xl, xh, wxl, wxh = (a[0, pw, ix] for a in bilinear_axis(prm["roi_start_w"], prm["bin_size_w"],
                                                        prm["roi_bin_grid_w"], S, 8))
lib = {(yl, xl): wyl * wxl, (yl, xh): wyl * wxh, (yh, xl): wyh * wxl, (yh, xh): wyh * wxh}
assert set(lib) == set(hand) and all(np.isclose(lib[k], hand[k]) for k in hand)
# A 1-bin, 1-sample RoIAlign centred on the same point returns the same weighted sum.
one = roi_align(panel_map, np.array([[0, tx + 0.4, ty + 0.4, tx + 0.6, ty + 0.6]]), 1,
                sampling_ratio=1, aligned=True)[0, 0, 0, 0]
assert np.isclose(one, sum(w * panel_map[0, 0, i, j] for (i, j), w in hand.items()))

# %% [markdown]
# **`aligned=False` vs `aligned=True`.** The same RoIAlign samples with torchvision's default:
# the whole pattern moves half a pixel (8 image pixels at stride 16) right and down.

# %%
fig, ax = plt.subplots(figsize=(5.5, 5.5))
figures.draw_feature_grid(ax, panel_map[0, 0],
                          "RoIAlign samples: aligned=False (red) vs True (blue)")
ax.add_patch(Rectangle((u1, v1), u2 - u1, v2 - v1, fill=False, ec="k", lw=2, ls="--"))
pos = {}
for aligned, colour in [(False, "tab:red"), (True, "tab:blue")]:
    p = roi_align_params(box, s, S, S, G, aligned)
    ys, _ = sample_positions(p["roi_start_h"], p["bin_size_h"], p["roi_bin_grid_h"], S)
    xs, _ = sample_positions(p["roi_start_w"], p["bin_size_w"], p["roi_bin_grid_w"], S)
    pos[aligned] = (ys[0], xs[0])
    X, Y = np.meshgrid(xs[0].ravel() + 0.5, ys[0].ravel() + 0.5)
    ax.plot(X, Y, "o", color=colour, ms=6, alpha=0.85)
plt.show()
dx, dy = pos[False][1][0, 0] - pos[True][1][0, 0], pos[False][0][0, 0] - pos[True][0][0, 0]
print(f"aligned=False samples sit {dx:.2f} feature px right and {dy:.2f} below: "
      f"{dx * stride:.0f} and {dy * stride:.0f} image px")
assert np.allclose(pos[False][0] - pos[True][0], 0.5) and np.allclose(pos[False][1] - pos[True][1], 0.5)

# %% [markdown]
# ## The sub-pixel shift experiment
#
# Slide a RoI `(3, 4, 9, 10)` (feature pixels, 2 x 2 bins) to the right in steps of 0.1
# feature pixel and watch bin (0, 0) of each extractor. The feature map is smooth
# (`figures.smooth_map`, a sum of sines, sampled at the pixel centres), so we also know the
# **true** value at the exact centre of bin (0, 0): the function itself there, with no
# interpolation (the black dashed curve). `figures.sub_pixel_shift` computes the curves:

# %%
print(inspect.getsource(figures.sub_pixel_shift).split('"""')[2])

# %%
shifts = np.round(np.arange(0, 3.01, 0.1), 10)                           # [31]
curves = figures.sub_pixel_shift(shifts, roi=(3.0, 4.0, 9.0, 10.0), output_size=2)
smooth = figures.feature_map(figures.smooth_map, 16, 16)                # [1, 1, 16, 16]
fig = figures.sub_pixel_shift_figure(shifts, curves)
fig

# %%
for name, c in curves.items():
    jumps = shifts[1:][np.diff(c) != 0]
    print(f"{name:16s} distinct values over {len(shifts)} shifts: "
          f"{len(np.unique(np.round(c, 9))):2d}; largest gap to true: {np.abs(c - curves['true']).max():.3f}"
          + (f"; changes at shifts {jumps.tolist()}" if len(jumps) < 5 else ""))
for name in ("roi_pool", "roi_warp"):
    assert shifts[1:][np.diff(curves[name]) != 0].tolist() == [0.5, 1.5, 2.5]
for name in ("true", "roi_align", "crop_and_resize"):
    assert len(np.unique(np.round(curves[name], 9))) == len(shifts)
assert np.abs(curves["roi_align"] - curves["true"]).max() < np.abs(curves["roi_pool"] - curves["true"]).max() / 4
# "true" is the map itself: bin (0, 0) of (3 + d .. 9 + d) x (4 .. 10) is centred at
# (x, y) = (4.5 + d, 5.5), pixel (row 5, column 4 + d) -- at whole shifts d, a pixel centre.
whole = np.isclose(shifts, np.round(shifts))
assert np.allclose(curves["true"][whole], smooth[0, 0, 5, 4 + shifts[whole].astype(int)])

# %% [markdown]
# RoIPool and RoIWarp are *flat* until the rounded left edge jumps, at shifts 0.5, 1.5 and 2.5
# (where `3 + d` crosses a half; asserted): they cannot tell apart boxes that differ by less
# than a feature pixel. RoIAlign changes with every step and follows the true curve; it is a
# little off it because it averages 2 x 2 samples spread over a bin 3 pixels wide, on a map
# that curves -- it measures the bin's mean, not its centre, and that is what it should do.
# A network fed by RoIPool cannot learn to place a mask more precisely than a feature pixel;
# one fed by RoIAlign can.
#
# **What crop_and_resize's bin (0, 0) is.** It is no bin at all: it is *one* bilinear sample
# at the RoI's top-left corner `(x1, y1)` (in its pixel-centre coordinates, `(x1 - 0.5, y1 - 0.5)`).
# So its curve is smooth but follows a different point, the corner, 1.5 pixels left of and
# above the bin centre; the cell below checks it against a bilinear read worked by hand.

# %%
def bilinear(plane, y, x):
    """The value of plane [H, W] at (y, x), pixel-centre coordinates, by hand."""
    i, j = int(np.floor(y)), int(np.floor(x))
    ly, lx = y - i, x - j
    return ((1 - ly) * (1 - lx) * plane[i, j] + (1 - ly) * lx * plane[i, j + 1]
            + ly * (1 - lx) * plane[i + 1, j] + ly * lx * plane[i + 1, j + 1])


corner = np.array([bilinear(smooth[0, 0], 4.0 - 0.5, 3.0 + d - 0.5) for d in shifts])   # [31]
assert np.allclose(curves["crop_and_resize"], corner)
half_bin = (9.0 - 3.0) / (2 * 2), (10.0 - 4.0) / (2 * 2)        # corner -> centre of bin (0, 0)
print("the corner is", half_bin, "pixels (x, y) left of and above the bin centre")
assert half_bin == (1.5, 1.5)
print("crop_and_resize bin (0, 0) = the map at the RoI's corner, for all", len(shifts), "shifts")

# %% [markdown]
# ### The same, at a few fixed shifts
#
# Here are the whole 2 x 2 outputs of RoIPool and RoIAlign at four shifts. RoIPool's stay
# the same from 0 to 0.4 and then jump; RoIAlign's change a little at every shift.

# %%
def show_shift(ax_pool, ax_align, shift):
    """RoIPool's and RoIAlign's 2 x 2 outputs for the RoI slid by ``shift``, values written."""
    r = np.array([[0, 3.0 + shift, 4.0, 9.0 + shift, 10.0]])
    outs = {}
    for ax, name, out in [(ax_pool, "roi_pool", roi_pool(smooth, r, 2)[0, 0]),
                          (ax_align, "roi_align", roi_align(smooth, r, 2, sampling_ratio=2,
                                                            aligned=True)[0, 0])]:
        ax.imshow(out, vmin=-2, vmax=2, cmap="coolwarm")
        for (i, j), v in np.ndenumerate(out):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=10)
        ax.set_title(f"{name}, shift {shift:.1f}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        outs[name] = out
    return outs


fixed = (0.0, 0.4, 0.8, 1.2)
fig, axs = plt.subplots(2, len(fixed), figsize=(9, 4.8))
outs = [show_shift(axs[0, k], axs[1, k], d) for k, d in enumerate(fixed)]
plt.tight_layout()
plt.show()
assert np.array_equal(outs[0]["roi_pool"], outs[1]["roi_pool"])          # 0.0 and 0.4: the same
assert not np.array_equal(outs[1]["roi_pool"], outs[2]["roi_pool"])      # 0.8: it jumped
assert all(not np.allclose(a["roi_align"], b["roi_align"]) for a, b in zip(outs, outs[1:]))

# %% [markdown]
# Move the slider to shift the RoI yourself. It is live only in a running Jupyter; on GitHub
# the cell shows the line `interactive(children=...)` in its place, and the figure above is
# the static version.

# %%
try:
    import ipywidgets as widgets

    def slide(shift=0.0):
        fig, axs = plt.subplots(1, 2, figsize=(6, 3))
        show_shift(axs[0], axs[1], shift)
        plt.show()

    widgets.interact(slide, shift=widgets.FloatSlider(min=0, max=3, step=0.1, value=0))
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
M = 28


def rounded_box(b, stride):
    """The image-pixel region a stride-``stride`` RoIPool reads for box b [1, 5]."""
    q = quantize_rois(b, 1 / stride)                                      # rounded feature px
    return np.array([[0, q[0, 1] * stride, q[0, 2] * stride,
                      (q[0, 3] + 1) * stride, (q[0, 4] + 1) * stride]])


def paste(target, b):
    """Paste a 28x28 mask into box b of an H x W image (bilinear), threshold 0.5."""
    x1, y1, x2, y2 = b
    # image pixel centre x + 0.5 sits at crop coordinate (x + 0.5 - x1) * M / w - 0.5
    tx = (np.array([0.5, W - 0.5]) - x1) * M / (x2 - x1) - 0.5
    ty = (np.array([0.5, H - 0.5]) - y1) * M / (y2 - y1) - 0.5
    return crop_and_resize(target[None, None], [[tx[0], ty[0], tx[1], ty[1]]], [0], (H, W))[0, 0] >= 0.5


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def mask_through(b_read):
    """Crop the object's mask from box b_read, paste it into the exact box."""
    target = roi_align(mask, b_read, M, sampling_ratio=2, aligned=True)[0, 0]   # [28, 28]
    return target, paste(target, box[0, 1:])


box_q = rounded_box(box, 16)
target_exact, pasted_exact = mask_through(box)
_, pasted_round = mask_through(box_q)
pasted = {"exact box": pasted_exact, "rounded box (stride 16)": pasted_round}
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
iou_exact, iou_16 = iou(pasted_exact, blob), iou(pasted_round, blob)
iou_4 = iou(mask_through(rounded_box(box, 4))[1], blob)
print(f"mask IoU with the object: exact box {iou_exact:.3f}, rounded at stride 16 {iou_16:.3f}, "
      f"rounded at stride 4 (P2) {iou_4:.3f}")
assert iou_exact > 0.95 and iou_16 < iou_exact - 0.3 and iou_16 < iou_4

# %% [markdown]
# The blue box is the proposal, the dashed orange one the region a stride-16 RoIPool reads. The
# mask built from the rounded box (red outline, right) is shifted and stretched against the
# object, and its IoU with the object drops (printed above); the exact box's mask follows the
# object up to the 28 x 28 resolution. Rounded on a stride-4 grid instead, the same box loses
# much less.
#
# **How large is this in a trained model?** Much smaller than this one picture, at the FPN
# levels. The picture rounds one box on a stride-16 grid and reads the whole mask from the
# rounded box. Chapter 14 trained the whole model with each extractor, 3 seeds per variant, on the shapes
# data set; the cell below prints its mask AP for RoIPool and RoIAlign at the FPN levels from
# the shipped results: the difference does not rise above the spread across seeds. Most
# shapes there are pooled from P2 (chapter 14 counts them), where a feature pixel is 4 image
# pixels and RoIPool's rounding moves a corner by at most half of one, 2 image pixels. The
# paper's gain (Table 2c) is at stride 16, on COCO, after full training.

# %%
table2 = json.loads((Path(mrcnn_np.__file__).resolve().parents[1] / "notebooks" / "assets"
                     / "ablation_table2.json").read_text())
ap = {v: table2["summary"][v]["segm"]["AP"] for v in ("pool", "align-avg")}
print(f"chapter 14, {table2['iters']} iterations, seeds {table2['seeds_done']}:")
for v, a in ap.items():
    print(f"  {v:9s} mask AP {a['mean']:.3f} +- {a['std']:.3f} (n = {a['n']})")
print(f"difference {ap['align-avg']['mean'] - ap['pool']['mean']:+.3f}")
assert abs(ap["align-avg"]["mean"] - ap["pool"]["mean"]) < max(a["std"] for a in ap.values())
corner_move = np.abs(round_half_away(far) - far).max()                 # feature px
print(f"largest move of a rounded corner over {len(far)} random corners: {corner_move:.3f} "
      f"feature px = {corner_move * 4:.2f} image px at P2 (stride 4), "
      f"{corner_move * 16:.2f} at stride 16")
assert 0.49 < corner_move <= 0.5

# %% [markdown]
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
print("RoIPool gradient is nonzero at", np.argwhere(g_pool).tolist())
assert np.isclose(g_align.sum(), 1.0) and np.count_nonzero(g_align) <= 16
assert np.count_nonzero(g_pool) == 1 and g_pool.sum() == 1.0

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
assert mapper.levels(np.array([[0, 0, 224, 224], [0, 0, 112, 112]])).tolist() == [4, 3]
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
counts = np.bincount(levels, minlength=6)[2:]                         # P2..P5
axes[1].bar([2, 3, 4, 5], counts, color="tab:blue")
axes[1].set_xticks([2, 3, 4, 5], ["P2 (1/4)", "P3 (1/8)", "P4 (1/16)", "P5 (1/32)"])
axes[1].set_title("levels of 2000 RoIs with sides around 90 px")
plt.tight_layout()
plt.show()
print({f"P{k}": int(n) for k, n in zip(range(2, 6), counts)})
assert counts[0] + counts[1] > counts.sum() / 2 and counts[3] == counts.min()

# %% [markdown]
# Most of these RoIs are small, so P2 and P3 do most of the pooling; P5 gets only the
# largest objects (both asserted). The mask head's 14 x 14 RoIAlign runs on the same levels.
#
# ## Summary
#
# - RoIPool rounds twice (the box, then the bin edges) and takes a max: its output is a step
#   function of the box position; each corner is rounded by up to half a feature pixel (8
#   image pixels at stride 16), and the far edges always overshoot.
# - RoIWarp samples bilinearly but in the rounded box: the same steps. The rounding, not the max,
#   is the problem.
# - RoIAlign rounds nothing: G x G bilinear samples per bin, averaged. `aligned=True` removes the
#   legacy half-pixel shift that `aligned=False` (torchvision's default) keeps.
# - crop_and_resize (TensorFlow, matterport) samples one point per cell on the box corners:
#   its cell (0, 0) is the value at the box's top-left corner.
# - All the bilinear extractors are linear in the input; their backward scatters the same
#   weights back. RoIPool's backward routes each bin's gradient to its argmax.
# - FPN picks the level `floor(4 + log2(sqrt(wh)/224))`, clamped to the pyramid. At P2 the
#   rounding is small, and in chapter 14's trained models the choice of extractor at the FPN
#   levels was lost in the seed noise.
#
# ## Exercises
#
# **1.** On the 5x5 `arange` map `x` (`v = 5 y + x`), what does a 1x1 RoIPool of the RoI
# `(1.4, 0.5, 2.6, 2.49)` return? Work it by hand (round the corners, find the pixels, take the
# max) and put the number in `answer_1`.

# %% jupyter={"source_hidden": true}
# x: round(1.4) = 1, round(2.6) = 3 -> columns 1..3; y: round(0.5) = 1 (halves go away from
# zero), round(2.49) = 2 -> rows 1..2. v = 5 y + x grows with both, so the max is the last
# pixel, (row 2, column 3).
answer_1 = 5 * 2 + 3

# %%
assert answer_1 == roi_pool(x, np.array([[0, 1.4, 0.5, 2.6, 2.49]]), 1)[0, 0, 0, 0]

# %% [markdown]
# **2.** Which FPN level does a 300 x 200 box go to? And a 112 x 112 box? Use the formula
# `k = floor(4 + log2(sqrt(w h) / 224))`, clamped to [2, 5], and put the two levels in the
# list `answer_2`.

# %% jupyter={"source_hidden": true}
# sqrt(300 * 200) = 244.9 -> 4 + log2(1.093) = 4.13 -> 4.   112 = 224 / 2 -> exactly 3.
answer_2 = [int(np.clip(np.floor(4 + np.log2(np.sqrt(w * h) / 224) + 1e-6), 2, 5))
            for w, h in [(300, 200), (112, 112)]]

# %%
assert answer_2 == mapper.levels(np.array([[0, 0, 300, 200], [0, 0, 112, 112]])).tolist()

# %% [markdown]
# **3.** The gradient of `L = sum(roi_align(xr, rr) * d)` with respect to `xr`: compute it
# with the library's backward into `answer_3` (same shape as `xr`). The check tests it two
# ways that do not use the backward: the adjoint identity `<roi_align(xr), d> == <xr, answer_3>`
# (true because RoIAlign is linear), and central finite differences at a few pixels.

# %%
xr = rng.standard_normal((2, 3, 9, 9))
rr = np.array([[0, 1.2, 0.3, 7.7, 5.1], [1, -2.0, 3.0, 4.5, 11.0]])
d = rng.standard_normal((2, 3, 3, 3))


def loss_3(inp):
    return np.sum(roi_align(inp, rr, 3, 1.0, -1, True) * d)

# %% jupyter={"source_hidden": true}
_, cache_3 = roi_align_forward(xr, rr, 3, 1.0, -1, True)
answer_3 = roi_align_backward(d, cache_3)

# %%
assert answer_3.shape == xr.shape
assert np.isclose(loss_3(xr), np.sum(xr * answer_3))
for idx in [(0, 0, 2, 3), (0, 2, 4, 6), (1, 1, 5, 1), (1, 0, 8, 0)]:
    e = np.zeros_like(xr)
    e[idx] = 1e-6
    fd = (loss_3(xr + e) - loss_3(xr - e)) / 2e-6
    assert np.isclose(answer_3[idx], fd, atol=1e-6), (idx, answer_3[idx], fd)

# %% [markdown]
# **4.** With `aligned=True`, `sampling_ratio=1` and one bin per pixel, what does RoIAlign of
# the box `(1, 1, 4, 3)` (3 pixels wide, 2 high) on the 5x5 map `x` return, as a 2 x 3 output?
# Work out where each single sample lands and put the 2 x 3 array in `answer_4`.

# %% jupyter={"source_hidden": true}
# aligned=True: roi_start = 1 - 0.5 = 0.5, bins 1 pixel wide, one sample at each bin centre:
# 0.5 + p + 0.5 = 1 + p, a whole pixel. So the samples read pixels rows 1..2, columns 1..3.
answer_4 = x[0, 0, 1:3, 1:4]

# %%
assert answer_4.shape == (2, 3)
assert np.allclose(answer_4, roi_align(x, np.array([[0, 1, 1, 4, 3]]), (2, 3), sampling_ratio=1,
                                       aligned=True)[0, 0])

# %% [markdown]
# **5.** The RoI `(2.7, 1.2, 6.4, 5.8)` (feature pixels, `spatial_scale=1`, 2 x 2 bins): which
# of its four edges does RoIPool's rounded box cut into, rather than overshoot? Put the edge
# names (from `"left"`, `"top"`, `"right"`, `"bottom"`) in the set `answer_5`. Use the rule of
# this chapter: a near edge rounds inward when its fraction is at least one half; the far
# edges end at `round(x2) + 1`.

# %% jupyter={"source_hidden": true}
# left: 2.7 -> 3 (inward); top: 1.2 -> 1 (outward); right: round(6.4) + 1 = 7 > 6.4;
# bottom: round(5.8) + 1 = 7 > 5.8. Only the left edge cuts in.
answer_5 = {"left"}

# %%
roi_5 = np.array([[0, 2.7, 1.2, 6.4, 5.8]])
h0, h1, w0, w1 = (a[0] for a in roi_pool_bins(roi_5, 1.0, 2, 2, 10, 10))
cuts = {"left": w0[0] > roi_5[0, 1], "top": h0[0] > roi_5[0, 2],
        "right": w1[-1] < roi_5[0, 3], "bottom": h1[-1] < roi_5[0, 4]}
assert answer_5 == {e for e, c in cuts.items() if c}
