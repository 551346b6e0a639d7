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
# # Chapter 03 — Boxes and anchors
#
# A detector speaks in boxes. Before the network can propose a box it needs three things:
# a way to write a box down, a way to say how much two boxes agree (IoU), and a fixed set of
# reference boxes to start from (anchors). This chapter builds all three with
# `mrcnn_np.ops` and checks the numbers on a real photograph.
#
# The conventions of this repository (and of torchvision):
#
# * a box is `(x1, y1, x2, y2)`: left, top, right, bottom, in pixels;
# * coordinates are **continuous**: pixel `(i, j)` covers the square `[j, j+1) x [i, i+1)`,
#   so a box from `x1 = 0` to `x2 = 10` is 10 pixels wide, and its area is
#   `(x2 - x1) * (y2 - y1)` with **no `+1`**;
# * many boxes are an array `[N, 4]`.

# %%
# %matplotlib inline
import inspect

import matplotlib.cbook as cbook
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from mrcnn_np.ops import AnchorGenerator, box_area, box_iou, matterport_anchors
from mrcnn_np.ops.anchors import base_anchors, matterport_feature_sizes

np.set_printoptions(precision=3, suppress=True)

# %% [markdown]
# ## 1. Box formats
#
# The same box can be written four common ways. Only the first is used inside this
# repository; the others appear at its edges (COCO files use `xywh`; matterport's code uses
# `yxyx`; some heads predict `cxcywh`).
#
# | format | fields | example |
# | --- | --- | --- |
# | `xyxy` (ours) | left, top, right, bottom | `(20, 10, 60, 30)` |
# | `xywh` (COCO) | left, top, width, height | `(20, 10, 40, 20)` |
# | `cxcywh` | centre x, centre y, width, height | `(40, 20, 40, 20)` |
# | `yxyx` (matterport) | top, left, bottom, right | `(10, 20, 30, 60)` |

# %%
xyxy = np.array([[20.0, 10.0, 60.0, 30.0]])                  # [1, 4] = (x1, y1, x2, y2)
xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
cxcywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1)
yxyx = xyxy[:, [1, 0, 3, 2]]
print("xyxy  ", xyxy[0], "\nxywh  ", xywh[0], "\ncxcywh", cxcywh[0], "\nyxyx  ", yxyx[0])
print("area:", box_area(xyxy)[0], "= 40 * 20")
assert box_area(xyxy)[0] == 40 * 20

# %% [markdown]
# ## 2. Intersection over union
#
# For boxes $A$ and $B$,
#
# $$\mathrm{IoU}(A, B) = \frac{|A \cap B|}{|A \cup B|} = \frac{|A \cap B|}{|A| + |B| - |A \cap B|}.$$
#
# The intersection of two axis-aligned boxes is again a box: its left edge is the larger of
# the two left edges, its right edge the smaller of the two right edges (the same for top and
# bottom). If right < left the boxes miss each other and the width is clamped to 0.
# `box_iou` does this for every pair of an `[N, 4]` and an `[M, 4]` array at once, by
# broadcasting to `[N, M, 2]`:

# %%
from mrcnn_np.ops import boxes as boxes_module  # noqa: E402

print(inspect.getsource(boxes_module.box_inter_union))

# %% [markdown]
# A tiny example worked by hand. `a = (0, 0, 4, 4)` and `b = (2, 2, 6, 6)` both have area 16;
# they share the square `(2, 2, 4, 4)` of area 4; the union is `16 + 16 - 4 = 28`, so the IoU
# is `4 / 28 = 1/7 ≈ 0.143`. A box that only touches `a` along an edge has IoU 0, and a box
# inside `a` with a quarter of its area has IoU 0.25.

# %%
a = np.array([[0, 0, 4, 4]], np.float32)
others = np.array([[2, 2, 6, 6], [4, 0, 8, 4], [1, 1, 3, 3], [0, 0, 4, 4]], np.float32)
print(box_iou(a, others))
assert np.allclose(box_iou(a, others), [[1 / 7, 0, 0.25, 1]])

# %% [markdown]
# IoU drawn: the same box `A` against boxes slid to the right. IoU falls fast: a box shifted
# by a third of its width already scores only 0.5. This is why the thresholds of the next
# chapters (0.7, 0.5, 0.3) are demanding.

# %%
A = np.array([0, 0, 30, 30], np.float32)
shifts = [0, 5, 10, 15, 22]
fig, axes = plt.subplots(1, len(shifts), figsize=(13, 2.8))
for ax, s in zip(axes, shifts):
    B = A + np.array([s, 0, s, 0], np.float32)
    iou = box_iou(A[None], B[None])[0, 0]
    ix1, ix2 = max(A[0], B[0]), min(A[2], B[2])
    ax.add_patch(Rectangle((A[0], A[1]), 30, 30, fill=False, lw=2, ec="tab:blue"))
    ax.add_patch(Rectangle((B[0], B[1]), 30, 30, fill=False, lw=2, ec="tab:orange"))
    ax.add_patch(Rectangle((ix1, 0), max(ix2 - ix1, 0), 30, color="tab:green", alpha=0.35))
    ax.set_xlim(-3, 55)
    ax.set_ylim(33, -3)
    ax.set_aspect("equal")
    ax.set_title(f"shift {s}: IoU = {iou:.2f}")
    ax.axis("off")
plt.show()
third = box_iou(A[None], (A + np.array([10, 0, 10, 0], np.float32))[None])[0, 0]
print("shifted by a third of its width (10 of 30 px): IoU =", third)
assert np.isclose(third, 0.5)                # (20 * 30) / (900 + 900 - 600)

# %% [markdown]
# Two details that the tests pin down: an empty input gives an empty `[0, M]` matrix, and two
# zero-area boxes give `0 / 0 = nan`, exactly as torchvision does. `box_iou` also has a numba
# kernel (`backend="numba"`, the default "auto"): one fused loop with the same arithmetic,
# bit-identical, and about 15x faster than torchvision on 261,888 x 50 boxes
# (`benchmarks/bench_nms.py`; that speed is measured there, not here).

# %%
empty = box_iou(np.zeros((0, 4), np.float32), others)
flat = np.array([[1, 1, 1, 5]], np.float32)                  # zero width: area 0
print("empty input:", empty.shape, "| two zero-area boxes:", box_iou(flat, flat)[0, 0])
assert empty.shape == (0, len(others)) and np.isnan(box_iou(flat, flat)[0, 0])
rng = np.random.default_rng(0)
xy = rng.uniform(0, 100, (2, 200, 2)).astype(np.float32)
boxes = np.concatenate([xy.min(0), xy.max(0)], axis=1)       # [200, 4], x1 <= x2, y1 <= y2
assert np.array_equal(box_iou(boxes, boxes[:50], backend="numba"),
                      box_iou(boxes, boxes[:50], backend="numpy"))
print("numba box_iou == NumPy box_iou, bit for bit, on 200 x 50 random boxes")

# %% [markdown]
# ## 3. Anchors
#
# The RPN does not draw boxes from nothing. At every location of every feature map it starts
# from a few fixed **anchors** and predicts, for each one, "is there an object here?" and "how
# should this box move to fit it?". The anchors of one location are the same shape
# everywhere, so we first make them centred at `(0, 0)`.
#
# For size $s$ and aspect ratio $r = h / w$ (torchvision's definition), the anchor has
# $h = s\sqrt{r}$ and $w = s / \sqrt{r}$, so its area is always $s^2$. torchvision rounds the
# half-width and half-height to whole pixels:

# %%
print(inspect.getsource(base_anchors))
cell = base_anchors((32,), (0.5, 1.0, 2.0))
print(cell)
r = 0.5
print(f"ratio 0.5: w = {32 / np.sqrt(r):.2f}, h = {32 * np.sqrt(r):.2f}")
assert np.array_equal(cell, [[-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23]])

# %% [markdown]
# By hand, for $s = 32$: ratio 0.5 gives $w = 45.25$, $h = 22.63$, half-sizes
# $(22.63, 11.31)$, rounded to $(23, 11)$: the **wide** box `(-23, -11, 23, 11)`. Ratio 2 gives
# the tall one, ratio 1 the square `(-16, -16, 16, 16)`.
#
# Each FPN level $P_k$ has stride $2^k$ (4, 8, 16, 32, 64 pixels for P2..P6) and gets one
# anchor size (32, 64, 128, 256, 512): small anchors on the fine maps, big ones on the
# coarse maps. The anchor of the location in row $y$, column $x$ is the cell anchor shifted
# by $(x \cdot \text{stride}, y \cdot \text{stride})$. The order of the `[A, 4]` array is
# torchvision's, so that the RPN head's outputs line up with it anchor for anchor: level by
# level; within a level row by row, then column by column; within a location, the three
# anchors.
#
# We use a real photograph (it ships with matplotlib), padded to 640 x 512 so that every
# stride divides the image exactly.

# %%
image = plt.imread(cbook.get_sample_data("grace_hopper.jpg"))        # [600, 512, 3] uint8
padded = np.zeros((640, 512, 3), np.uint8)
padded[:600] = image                                                  # pad the bottom
image_size = padded.shape[:2]                                         # (h, w) = (640, 512)
strides = [4, 8, 16, 32, 64]
feature_sizes = [(image_size[0] // s, image_size[1] // s) for s in strides]
assert image.shape == (600, 512, 3) and all(image_size[0] % s == image_size[1] % s == 0
                                            for s in strides)   # every stride divides it

gen = AnchorGenerator()                      # torchvision's maskrcnn_resnet50_fpn settings
anchors = gen(image_size, feature_sizes)     # [A, 4]
per_level = gen.num_anchors_per_level(feature_sizes)
print("feature sizes:", feature_sizes)
print("anchors per level:", per_level, " total:", anchors.shape)
print("strides:", gen.strides(image_size, feature_sizes), " sizes:", gen.sizes)
assert [h for h, _ in gen.strides(image_size, feature_sizes)] == [2 ** k for k in range(2, 7)]
assert [sz for (sz,) in gen.sizes] == [32, 64, 128, 256, 512]

# %% [markdown]
# The figure: for each level, the yellow dots are the anchor centres, every location of the
# level at its true stride, and the three boxes are the anchors of one location near the
# middle of the face. All five panels have the same scale, so the spacing of the dots can be
# compared from panel to panel; P6's anchors (size 512, the wide one 724 px wide) reach past
# the image and are cut at the panel's edge. P2's
# centres, 4 px apart, are too dense to tell apart at this scale: the last panel zooms into
# the white square drawn on P2, 48 x 48 px around the face location, with the centres of P2,
# P3 and P4 in it.

# %%
offsets = np.cumsum([0] + per_level)
level_anchors = [anchors[offsets[l]:offsets[l + 1]].reshape(*feature_sizes[l], 3, 4)
                 for l in range(5)]                                  # [H_l, W_l, 3, 4] each
face = (222, 230)                                                    # (x, y) of a point on the face
drawn = [la[face[1] // s, face[0] // s] for la, s in zip(level_anchors, strides)]  # [3, 4] each
x_lim, y_lim = (-40, image_size[1] + 40), (image_size[0] + 40, -40)   # one scale for all panels
wide_p6 = drawn[4][0]                                                # ratio 0.5 comes first
print("P6's wide anchor:", wide_p6, f"{wide_p6[2] - wide_p6[0]:.0f} px wide")
assert wide_p6[2] - wide_p6[0] == 724 > image_size[1]
zoom = (face[0] - 24, face[1] - 24, 48)                              # x0, y0, side of the zoom window
colours = ["tab:red", "tab:green", "tab:cyan"]

fig, axes = plt.subplots(2, 3, figsize=(13, 10.5))
for lvl, ax in enumerate(axes.flat[:5]):
    H_l, W_l = feature_sizes[lvl]
    s = strides[lvl]
    ax.imshow(padded)
    ys, xs = np.mgrid[0:H_l, 0:W_l]                                  # every location of the level
    dense = s < 16                      # P2, P3: closer than the panel's pixels can show
    ax.plot(xs.ravel() * s, ys.ravel() * s, ".", ms=1 if dense else 2.5, color="yellow",
            alpha=0.25 if s == 4 else 0.6 if dense else 1)
    for (x1, y1, x2, y2), colour in zip(drawn[lvl], colours):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=2, ec=colour))
    ax.set_title(f"P{lvl + 2}: centres every {s} px, anchor size {gen.sizes[lvl][0]}\n"
                 f"{H_l} x {W_l} x 3 = {per_level[lvl]:,} anchors", fontsize=11)
    ax.set_xlim(*x_lim)
    ax.set_ylim(*y_lim)
    ax.axis("off")
axes[0, 0].add_patch(Rectangle(zoom[:2], zoom[2], zoom[2], fill=False, lw=2.5, ec="white"))

ax = axes[1, 2]                                                      # the zoom
x0, y0, side = zoom
ax.imshow(padded[y0:y0 + side, x0:x0 + side], extent=(x0, x0 + side, y0 + side, y0))
for lvl, (ms, marker, colour) in enumerate([(4, "o", "yellow"), (9, "s", "tab:orange"),
                                             (14, "D", "tab:red")]):
    s = strides[lvl]
    c = np.arange(0, 640, s)                                          # centres of the level
    cx, cy = c[(c >= x0) & (c <= x0 + side)], c[(c >= y0) & (c <= y0 + side)]
    gx, gy = np.meshgrid(cx, cy)
    ax.plot(gx.ravel(), gy.ravel(), marker, ms=ms, mfc="none" if lvl else colour, mec=colour,
            mew=1.8, ls="none", label=f"P{lvl + 2}: every {s} px")
ax.set_xlim(x0, x0 + side)
ax.set_ylim(y0 + side, y0)
ax.set_title(f"zoom: the {side} x {side} px square of P2's panel", fontsize=11)
ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.04), ncol=3, fontsize=9.5, frameon=False)
ax.set_xticks([])
ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Where 261,888 comes from
#
# matterport's Mask R-CNN resizes every image to a 1024 x 1024 square. Its feature maps
# P2..P6 have strides 4, 8, 16, 32, 64, so they are 256², 128², 64², 32² and 16² locations,
# and each location has one scale and three ratios:
#
# $$3 \cdot (256^2 + 128^2 + 64^2 + 32^2 + 16^2) = 3 \cdot 87{,}296 = 261{,}888.$$

# %%
sizes_1024 = matterport_feature_sizes((1024, 1024))
counts = [3 * h * w for h, w in sizes_1024]
for (h, w), c in zip(sizes_1024, counts):
    print(f"{h:>4} x {w:<4} x 3 = {c:>8,}")
print(f"{'total':>15} = {sum(counts):>8,}")
assert sizes_1024 == [(256, 256), (128, 128), (64, 64), (32, 32), (16, 16)]
assert sum(h * w for h, w in sizes_1024) == 87_296
mp = matterport_anchors()
assert len(mp) == sum(counts) == 261_888
print("matterport_anchors():", mp.shape, mp.dtype)
tv_1024 = AnchorGenerator()((1024, 1024), sizes_1024)
print("torchvision's preset, 1024 x 1024:", tv_1024.shape)
assert len(tv_1024) == 261_888

# %% [markdown]
# For a 1024 x 1024 image torchvision's preset gives the same count (three ratios, one size
# per level, same strides); the boxes differ in the details of the next table.
#
# ## 5. The Rosetta stone: conventions that trip people up
#
# Reading another implementation, check these five rows first. Each row has a test in
# `tests/test_anchors.py`; the cell below repeats the checks.
#
# | convention | here (and torchvision) | elsewhere | test |
# | --- | --- | --- | --- |
# | aspect ratio | `h / w` (0.5 is wide) | matterport, d2l: `w / h` (0.5 is tall) | `test_rosetta_aspect_ratio_h_over_w_vs_w_over_h` |
# | anchor centre | `(x * stride, y * stride)` | some code: `((x + 0.5) * stride, ...)`, the cell centre | `test_rosetta_anchor_centres_at_i_times_stride` |
# | box width | `x2 - x1` | Detectron/matterport era: `x2 - x1 + 1` (pixels as points) | `test_rosetta_no_plus_one_in_width` |
# | coordinate order | `(x1, y1, x2, y2)` | matterport: `(y1, x1, y2, x2)` | `test_rosetta_yxyx_vs_xyxy` |
# | background class | label 0, objects 1..K-1 | some code: background last | `test_rosetta_background_class_zero_vs_k` |
#
# Where matterport and torchvision differ we follow torchvision, because the model is checked
# against torchvision number by number; `matterport_anchors` keeps matterport's geometry
# (ratios `w / h`, no rounding) but writes the boxes in our `(x1, y1, x2, y2)` order.

# %%
tv_half = AnchorGenerator(((32,),), ((0.5,),)).cell_anchors[0][0]
mp_half = matterport_anchors(ratios=(0.5,))[0]
print("ratio 0.5, torchvision:", tv_half, " matterport:", mp_half)
assert tv_half[2] - tv_half[0] > tv_half[3] - tv_half[1]          # wide
assert mp_half[2] - mp_half[0] < mp_half[3] - mp_half[1]          # tall

box = AnchorGenerator(((16,),), ((1.0,),))((32, 32), [(8, 8)])[1 * 8 + 2]  # row 1, column 2
assert ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2) == (2 * 4, 1 * 4)   # not (10, 6)

assert box_area(np.array([[0, 0, 9, 9]], np.float32))[0] == 81     # not (9 + 1)**2 = 100

ours = np.array([[20, 10, 60, 30]])
assert np.array_equal(ours[:, [1, 0, 3, 2]][:, [1, 0, 3, 2]], ours)   # yxyx <-> xyxy: its own inverse

K = 4
labels_bg_first = np.array([0, 1, 2, 3])
assert np.array_equal((labels_bg_first - 1) % K, [3, 0, 1, 2])      # to background-last
print("all five conventions checked")

# %% [markdown]
# ## Summary
#
# * Boxes are `(x1, y1, x2, y2)`, continuous, area without `+1`.
# * IoU = intersection / union; `box_iou` gives the `[N, M]` matrix, with torchvision's
#   arithmetic (and its `nan` for two empty boxes).
# * Anchors: per level one size, three ratios `h / w`, rounded, centred at
#   `(x * stride, y * stride)`, ordered level, row, column, anchor.
# * 1024 x 1024 with strides 4..64 gives 261,888 anchors.
#
# ## Exercises
#
# Each exercise names the variable its answer goes into. The solution is in a collapsed cell
# (click to open it, after trying); the cell after it checks your answer with `assert`s.

# %% [markdown]
# **1.** What is the IoU of `(0, 0, 10, 10)` and `(5, 0, 15, 10)`? Work it out on paper, as a
# fraction, into `answer_1`.

# %% jupyter={"source_hidden": true}
# a solution: intersection 5 x 10 = 50, union 100 + 100 - 50 = 150
answer_1 = 50 / 150

# %%
assert np.isclose(answer_1, box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10]]))[0, 0])
print(answer_1)

# %% [markdown]
# **2.** How many anchors does torchvision's preset give for an 800 x 1344 padded batch?
# (Feature sizes: the image size divided by 4, 8, 16, 32 and 64, rounded up; three anchors
# per location.) Count them with arithmetic, without calling the generator, into `answer_2`.

# %% jupyter={"source_hidden": true}
# a solution: 3 anchors at every location of every level
fs = [(-(-800 // s), -(-1344 // s)) for s in strides]
answer_2 = 3 * sum(h * w for h, w in fs)

# %%
sizes_800 = [(int(np.ceil(800 / s)), int(np.ceil(1344 / s))) for s in strides]
assert answer_2 == len(AnchorGenerator()((800, 1344), sizes_800))
print(answer_2)

# %% [markdown]
# **3.** Which row of the `[A, 4]` anchor array holds the tall (ratio 2) anchor of level P3 at
# row 5, column 7, for the 640 x 512 image above? Use the order level, row, column, anchor,
# and the arrays `per_level` and `feature_sizes`; put the row into `answer_3`.

# %% jupyter={"source_hidden": true}
# a solution: skip all of P2, then 5 whole rows and 7 locations of P3, then 2 anchors
H3, W3 = feature_sizes[1]
answer_3 = per_level[0] + (5 * W3 + 7) * 3 + 2

# %%
x1, y1, x2, y2 = anchors[answer_3]
assert ((x1 + x2) / 2, (y1 + y2) / 2) == (7 * 8, 5 * 8)       # centred at column 7, row 5 of P3
assert np.isclose((y2 - y1) * (x2 - x1), 64 ** 2, rtol=0.05)  # P3's size, 64
assert (y2 - y1) > (x2 - x1)                                  # tall
print(answer_3, anchors[answer_3])

# %% [markdown]
# **4.** A matterport anchor of scale 64 and ratio 2 (`w / h`): what are its width and height?
# Work them out into `w_4` and `h_4`; the check compares them with `matterport_anchors`.

# %% jupyter={"source_hidden": true}
# a solution: area 64^2 and w / h = 2, so w = 64 sqrt(2) and h = 64 / sqrt(2)
w_4, h_4 = 64 * np.sqrt(2), 64 / np.sqrt(2)

# %%
a4 = matterport_anchors(image_size=(64, 64), scales=(64,), ratios=(2.0,), feature_strides=(16,))[0]
assert np.allclose([a4[2] - a4[0], a4[3] - a4[1]], [w_4, h_4])
print(w_4, h_4)
