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
# # Chapter 07 — RoI sampling and targets
#
# After NMS (chapter 06) the RPN hands a few hundred **proposals** per image to the second
# stage. The box head will classify each one (which class, or background?) and refine its
# box; the mask head will draw a 28 x 28 mask inside each positive one. To train them we need,
# for every RoI (region of interest) we train on, the right answers:
#
# 1. **Match** each proposal to the ground-truth (GT) box it overlaps most. IoU >= 0.5 makes it
#    a **positive** with that GT's class label; IoU < 0.5 makes it **background** (label 0).
#    There is no "ignored" band and no best-match rule here, unlike the RPN (torchvision's
#    `fg_iou_thresh = bg_iou_thresh = 0.5`). The Fast R-CNN paper (Sec. 2.3) took background
#    RoIs only from IoU in [0.1, 0.5); torchvision and Detectron use everything below 0.5,
#    and so do we.
# 2. **Sample** a fixed number of RoIs per image (512 in torchvision, 64 in our tiny preset),
#    at most 25% positive, so the classifier sees about one object for every three
#    background boxes instead of one in a hundred.
# 3. For each positive: the **box target**, the deltas that move the RoI onto its GT box, and
#    the **mask target**, the GT mask cut out by the RoI and resampled to 28 x 28.
#
# Before matching, the GT boxes are **appended to the proposals**; section 3 shows why.

# %%
# %matplotlib inline
import inspect

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from mrcnn_np import MaskRCNN
from mrcnn_np.config import tiny
from mrcnn_np.data.shapes import make_shapes_image
from mrcnn_np.ops import (BalancedPositiveNegativeSampler, BoxCoder, Matcher, box_iou,
                          clip_boxes_to_image, generate_proposals)
from mrcnn_np.roi_heads import project_masks_on_boxes, select_training_samples
from mrcnn_np.rpn import flatten_predictions, objectness_logit

np.set_printoptions(precision=4, suppress=True)
cfg = tiny()
print("tiny preset: fg/bg IoU", cfg.box_fg_iou_thresh, cfg.box_bg_iou_thresh,
      "| RoIs per image", cfg.box_batch_size_per_image, "| positive fraction",
      cfg.box_positive_fraction, "| box weights", cfg.bbox_reg_weights)

# %% [markdown]
# ## 1. An image, its ground truth, and proposals
#
# One 128 x 128 image of the shapes data set (the same as in chapter 05), with four objects
# of all three classes.

# %%
sample = make_shapes_image(np.random.default_rng(1), 128, 128)
gt_boxes = sample["boxes"].astype(np.float32)                  # [G, 4]
gt_labels = sample["labels"]                                   # [G], 1 circle, 2 square, 3 triangle
gt_masks = sample["masks"].astype(np.uint8)                    # [G, 128, 128]
names = ["background", "circle", "square", "triangle"]
for g in range(len(gt_boxes)):
    print(f"GT {g}: {names[gt_labels[g]]:8s} box {gt_boxes[g]}")

# %% [markdown]
# **Which proposals?** An untrained RPN proposes boxes that have little to do with the
# objects (section 3), and training a good one takes chapter 10. So that this chapter shows
# the sampling of a *working* detector, we make stand-in proposals ourselves: for each GT box,
# 40 **jittered copies** (centre moved by a Gaussian with 15% of the box size, width and height
# scaled by $e^{\mathcal N(0,\,0.25^2)}$), plus 300 **random boxes** anywhere in the image,
# clipped to it. They are not a network's output, but they look like one: many boxes near
# each object and many on the background.

# %%
rng = np.random.default_rng(0)
jitter = []
for x1, y1, x2, y2 in gt_boxes.astype(np.float64):
    w, h, cx, cy = x2 - x1, y2 - y1, (x1 + x2) / 2, (y1 + y2) / 2
    ncx = cx + rng.normal(0, 0.15 * w, 40)                     # [40]
    ncy = cy + rng.normal(0, 0.15 * h, 40)
    nw, nh = w * np.exp(rng.normal(0, 0.25, 40)), h * np.exp(rng.normal(0, 0.25, 40))
    jitter.append(np.stack([ncx - nw / 2, ncy - nh / 2, ncx + nw / 2, ncy + nh / 2], 1))
xy = rng.uniform(0, 128, (300, 2))
wh = np.exp(rng.uniform(np.log(8), np.log(80), (300, 2)))
random_boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1)    # [300, 4]
proposals = clip_boxes_to_image(np.concatenate(jitter + [random_boxes]), (128, 128))
proposals = proposals.astype(np.float32)                        # [P, 4], P = 4*40 + 300 = 460
print("proposals:", proposals.shape)
assert proposals.shape == (4 * 40 + 300, 4) == (460, 4)

# %% [markdown]
# ## 2. Matching and sampling: `select_training_samples`
#
# The library function does the whole step for a batch of images:

# %%
print(inspect.getsource(select_training_samples))

# %% [markdown]
# Before sampling, the matcher's verdict on all 460 + 4 boxes (the 4 appended GT boxes
# match themselves with IoU 1):

# %%
with_gt = np.concatenate([proposals, gt_boxes])                 # [P+G, 4]
iou = box_iou(gt_boxes, with_gt)                                # [G, P+G]
matches = Matcher(0.5, 0.5)(iou)                                # [P+G]: GT index, or -1
n_pos_all = int(np.sum(matches >= 0))
print(f"positives (IoU >= 0.5): {n_pos_all}   background (IoU < 0.5): {np.sum(matches == -1)}")
print("positives per GT:", np.bincount(matches[matches >= 0], minlength=len(gt_boxes)))
assert np.all(matches[-4:] == np.arange(4))                      # each GT box matches itself
assert n_pos_all > 64 * 0.25                                     # more positives than the 16 allowed

# %% [markdown]
# The tiny preset samples 64 RoIs per image (torchvision samples 512 for COCO's crowded
# images; a shapes image has at most 4 objects). The sampler keeps at most 64 x 0.25 = 16
# positives, drawn at random, and fills the rest of the 64 with background RoIs. Here there are
# more than 16 positives, so the sample is exactly 16 : 48 = 1 : 3. (With fewer positives, all
# of them are kept and more background fills the batch.) The random choices come from the
# explicit generator `rng`.

# %%
rois, matched, labels, box_targets = select_training_samples(
    [proposals], [gt_boxes], [gt_labels], np.random.default_rng(0),
    batch_size_per_image=cfg.box_batch_size_per_image,
    positive_fraction=cfg.box_positive_fraction)
rois, matched, labels, box_targets = rois[0], matched[0], labels[0], box_targets[0]
pos = labels > 0
print(f"sampled {len(rois)} RoIs: {pos.sum()} positive, {(~pos).sum()} background")
print("labels of the positives:", labels[pos])
assert len(rois) == 64 and pos.sum() == 16

# %% [markdown]
# The picture: left, all 464 candidate boxes coloured by the matcher's verdict; right, the
# 64 sampled RoIs. Green: positive, red: background, white: the GT boxes.

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 6))
for ax, boxes, is_pos, title in [
        (axes[0], with_gt, matches >= 0, f"all {len(with_gt)} candidates: {n_pos_all} positive"),
        (axes[1], rois, pos, f"sampled: {pos.sum()} positive, {(~pos).sum()} background")]:
    ax.imshow(sample["image"])
    for b, p in zip(boxes, is_pos):
        ax.add_patch(Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, lw=0.7,
                               ec="lime" if p else "red", alpha=0.9 if p else 0.5))
    for b in gt_boxes:
        ax.add_patch(Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, lw=2.5, ec="white"))
    ax.set_title(title)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Why the GT boxes are appended
#
# At the start of training the RPN is random. What does it propose? We run the untrained
# tiny model's backbone and RPN head on our image and decode its proposals (chapter 06), and
# ask how many of them overlap each object with IoU >= 0.5:

# %%
model = MaskRCNN(tiny(min_size=(128,), max_size=128), rng=np.random.default_rng(0))  # keep 128 px
model.train(False)
image = (sample["image"].transpose(2, 0, 1) / 255).astype(np.float32)   # [3, 128, 128]
batch, image_sizes, _ = model.transform([image], None, training=False)  # [1, 3, 128, 128]
features, _ = model.backbone.forward(batch)                    # P2..P6
obj_l, deltas_l, _ = model.rpn.head.forward(features)
obj, deltas, shapes = flatten_predictions(obj_l, deltas_l)     # [1, A, 1], [1, A, 4]
anchors = model.anchor_generator(batch.shape[-2:], [f.shape[-2:] for f in features])
young, _ = generate_proposals(objectness_logit(obj), deltas, anchors, image_sizes,
                              [s[1] * s[3] * s[4] for s in shapes], pre_nms_top_n=1000,
                              post_nms_top_n=500, nms_thresh=0.7)
young = young[0]                                                # [P_young, 4]
iou_young = box_iou(gt_boxes, young)                            # [G, P_young]
print("untrained RPN proposals:", young.shape)
print("proposals with IoU >= 0.5, per GT:", (iou_young >= 0.5).sum(1))
print("best IoU per GT:                 ", iou_young.max(1))
young_hits = (iou_young >= 0.5).sum(1)                          # [G]
assert names[gt_labels[3]] == "triangle" and young_hits[3] == 0
assert np.all((1 <= young_hits[:3]) & (young_hits[:3] <= 3))

# %% [markdown]
# The random RPN's proposals are essentially its anchors (its deltas are near 0) ranked by
# meaningless scores, so an object gets a positive RoI only where an anchor happens to fit
# it: here one to three per object, and none at all for the triangle.
# Without help, the box and mask heads would see few or no positives of some objects for the
# first thousands of iterations. Appending the GT boxes guarantees every object at least one
# perfect positive RoI from the first step on. (It is also harmless later: a GT box is just
# one more, very good, proposal.)
#
# ## 4. Box targets, by hand
#
# The box head's targets use the same encoding as the RPN's (chapter 04), with **weights**
# $(w_x, w_y, w_w, w_h) = (10, 10, 5, 5)$:
#
# $$t_x = 10\,\frac{x - x_p}{w_p},\quad t_y = 10\,\frac{y - y_p}{h_p},\quad
#   t_w = 5 \log\frac{w}{w_p},\quad t_h = 5 \log\frac{h}{h_p}$$
#
# for a RoI with centre $(x_p, y_p)$ and size $w_p \times h_p$, matched to a GT box
# $(x, y, w, h)$. The weights only rescale the targets (and the predictions, which are
# divided by the same weights when decoding). Why bother? Positive RoIs already overlap their
# GT by IoU >= 0.5, so their raw deltas are small (standard deviations of 0.08 to 0.22 with our
# stand-in proposals, printed below); multiplying by 10 and 5 brings them to roughly unit
# scale, which suits smooth L1 (beta = 1/9) and the learning rate. The
# values are the inverses of the standard deviations (0.1, 0.1, 0.2, 0.2) that the original
# Faster R-CNN code divided its targets by; Detectron and torchvision kept them as weights.
# Take the first positive RoI:

# %%
r = int(np.flatnonzero(pos)[0])
px1, py1, px2, py2 = rois[r].astype(np.float64)
gx1, gy1, gx2, gy2 = gt_boxes[matched[r]].astype(np.float64)
wp, hp, xp, yp = px2 - px1, py2 - py1, (px1 + px2) / 2, (py1 + py2) / 2
w, h, x, y = gx2 - gx1, gy2 - gy1, (gx1 + gx2) / 2, (gy1 + gy2) / 2
print(f"RoI {rois[r]}: centre ({xp:.3f}, {yp:.3f}), size {wp:.3f} x {hp:.3f}")
print(f"GT  {gt_boxes[matched[r]]}: centre ({x:.3f}, {y:.3f}), size {w:.3f} x {h:.3f}")
by_hand = np.array([10 * (x - xp) / wp, 10 * (y - yp) / hp, 5 * np.log(w / wp), 5 * np.log(h / hp)])
print(f"t_x = 10 * ({x:.3f} - {xp:.3f}) / {wp:.3f} = {by_hand[0]:.4f}")
print(f"t_y = 10 * ({y:.3f} - {yp:.3f}) / {hp:.3f} = {by_hand[1]:.4f}")
print(f"t_w = 5 * log({w:.3f} / {wp:.3f}) = {by_hand[2]:.4f}")
print(f"t_h = 5 * log({h:.3f} / {hp:.3f}) = {by_hand[3]:.4f}")
print("select_training_samples:", box_targets[r])
assert np.allclose(box_targets[r], by_hand, rtol=1e-4, atol=1e-4)

# %% [markdown]
# Decoding with the same weights puts the RoI back onto the GT box:

# %%
decoded = BoxCoder((10.0, 10.0, 5.0, 5.0)).decode(box_targets[r][None], rois[r][None])[0, 0]
print(decoded, "vs GT", gt_boxes[matched[r]])
assert np.allclose(decoded, gt_boxes[matched[r]], atol=1e-3)
weights = np.array([10.0, 10.0, 5.0, 5.0])
raw_std, scaled_std = (box_targets[pos] / weights).std(0), box_targets[pos].std(0)   # [4], [4]
print("standard deviation of the positive targets (our stand-in proposals):")
print("  raw deltas      ", raw_std, "\n  times the weights", scaled_std)
assert 0.07 < raw_std.min() and raw_std.max() < 0.23 and 0.5 < scaled_std.min() and scaled_std.max() < 1.5

# %% [markdown]
# The background RoIs get targets too (computed against GT 0, a placeholder), but the box
# loss never looks at them (chapter 09).
#
# ## 5. Mask targets: 28 x 28, cut out by the RoI
#
# A positive RoI's mask target is its matched GT mask **inside the RoI**, resampled to
# 28 x 28 with RoIAlign (chapter 08) exactly as torchvision does it: `aligned=False`, an
# adaptive number of samples per bin. The mask is binary (0/1) but RoIAlign interpolates
# bilinearly between pixels, so the target is **soft** where the object's edge crosses a bin:
# values between 0 and 1. The mask loss (chapter 09) is a cross-entropy, which accepts such
# soft targets. Note also that the target is relative to the RoI, not the GT box: a RoI that
# is too small cuts the object off, one that is too big leaves a margin of zeros. The mask
# head learns to draw the object *as seen from the RoI it is given*.

# %%
print(inspect.getsource(project_masks_on_boxes))
pos_rois, pos_matched = rois[pos], matched[pos]                 # [Rp, 4], [Rp]
mask_targets = project_masks_on_boxes(gt_masks, pos_rois, pos_matched, 28)   # [Rp, 28, 28]
print("mask targets:", mask_targets.shape, mask_targets.dtype,
      f" values from {mask_targets.min():.3f} to {mask_targets.max():.3f}")
soft = (mask_targets > 1e-3) & (mask_targets < 1 - 1e-3)          # float32 rounding aside
print(f"soft (strictly between 0 and 1): {soft.mean():.1%} of all target pixels")
assert mask_targets.shape == (pos.sum(), 28, 28) and soft.any()

# %% [markdown]
# Four positive RoIs, one per object. Top: the GT mask over the image, its GT box (white)
# and the RoI (green). Middle: the 28 x 28 target. Bottom: a zoom on a 10 x 10 corner of the
# target where the edge passes, with the values of its soft bins (0.05 to 0.95): the soft band
# is one to two bins wide. The first circle's RoI reaches below the object (asserted under the
# picture), so the bottom of its target is background; the square's target shows where the
# circle covers it.

# %%
picks = [int(np.flatnonzero(pos_matched == g)[0]) for g in range(len(gt_boxes))]
fig, axes = plt.subplots(3, 4, figsize=(13, 10))
for col, k in enumerate(picks):
    g = pos_matched[k]
    ax = axes[0, col]
    ax.imshow(sample["image"])
    ax.imshow(np.ma.masked_where(gt_masks[g] == 0, gt_masks[g]), cmap="autumn", alpha=0.5)
    b, rb = gt_boxes[g], pos_rois[k]
    ax.add_patch(Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, lw=1.5, ec="white"))
    ax.add_patch(Rectangle(rb[:2], rb[2] - rb[0], rb[3] - rb[1], fill=False, lw=1.5, ec="lime"))
    ax.set_title(f"GT {g} ({names[gt_labels[g]]}), RoI {k}")
    ax.axis("off")
    axes[1, col].imshow(mask_targets[k], cmap="gray", vmin=0, vmax=1)
    axes[1, col].set_title("28 x 28 mask target")
    # the 10 x 10 window whose share of soft pixels is largest
    s = soft[k].astype(float)
    win = np.array([[s[i:i + 10, j:j + 10].sum() for j in range(19)] for i in range(19)])
    i0, j0 = np.unravel_index(np.argmax(win), win.shape)
    axes[1, col].add_patch(Rectangle((j0 - 0.5, i0 - 0.5), 10, 10, fill=False, ec="cyan"))
    zoom = mask_targets[k, i0:i0 + 10, j0:j0 + 10]
    axes[2, col].imshow(zoom, cmap="gray", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(zoom):
        if 0.05 < v < 0.95:
            axes[2, col].text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=6, color="tab:red")
    axes[2, col].set_title("zoom (cyan square): soft edge")
    for ax in axes[1:, col]:
        ax.set_xticks([])
        ax.set_yticks([])
plt.tight_layout()
plt.show()
k0 = picks[0]
print(f"GT 0 ({names[gt_labels[0]]}) box {gt_boxes[0]}, its RoI {k0}: {pos_rois[k0]}")
assert pos_matched[k0] == 0 and pos_rois[k0, 3] > gt_boxes[0, 3]   # the RoI reaches below it
assert np.all(mask_targets[k0, -1] == 0)                            # its bottom row: background

# %% [markdown]
# An appended GT box is a RoI too. Its target is the whole object filling the 28 x 28 square;
# for a jittered RoI the object is shifted and scaled inside the square.
#
# ## 6. An image with no objects
#
# Then every proposal is background; the sampler draws 128 of them (if there are that many),
# there are no positives and no mask targets, and the library handles it on purpose:

# %%
r0, m0, l0, t0 = select_training_samples([proposals], [np.zeros((0, 4), np.float32)],
                                         [np.zeros(0, np.int64)], np.random.default_rng(0),
                                         batch_size_per_image=128)
print("RoIs:", r0[0].shape, " positives:", np.sum(l0[0] > 0))
empty_targets = project_masks_on_boxes(np.zeros((0, 128, 128), np.uint8), np.zeros((0, 4), np.float32),
                                       np.zeros(0, np.int64), 28)
print("mask targets:", empty_targets.shape)
assert len(r0[0]) == 128 and np.all(l0[0] == 0) and empty_targets.shape == (0, 28, 28)

# %% [markdown]
# ## Where the gradient stops
#
# Everything in this chapter is a constant for the losses: the proposals (chapter 05 explains
# why they carry no gradient back to the RPN), the matching and sampling (integer choices),
# the box targets and the mask targets (functions of the GT only, for a given RoI). The
# gradient will flow from the losses into the heads' predictions and from there into the
# pooled features (chapter 09), never into these numbers.
#
# ## Summary
#
# * Proposals plus the GT boxes are matched at IoU 0.5: >= 0.5 positive with the GT's class,
#   < 0.5 background; no ignored band, no best-match rule.
# * Appending the GT boxes gives every object a perfect positive RoI, which matters most
#   while the RPN is still untrained.
# * 64 RoIs per image in the tiny preset (512 in torchvision), at most 25% positive: 1 : 3
#   when there are enough positives (printed in section 1).
# * Box targets are the chapter-04 deltas scaled by (10, 10, 5, 5).
# * Mask targets are the GT mask inside the RoI, resampled to 28 x 28 by RoIAlign: soft at
#   the edges, and relative to the RoI, not to the GT box.
#
# ## Exercises
#
# Each exercise: the task, a collapsed solution (try first, then open it), and a cell that
# checks your answer.

# %% [markdown]
# **1.** An image has 10 positive and 1000 background candidates. With 128 RoIs per image
# and 25% positive, how many of each are sampled? A pair `(positives, background)` into
# `answer_1`.

# %% jupyter={"source_hidden": true}
# at most 128 * 0.25 = 32 positives, but only 10 exist: all 10; background fills the rest
answer_1 = (10, 128 - 10)

# %%
(p1,), (n1,) = BalancedPositiveNegativeSampler(128, 0.25)([np.array([1] * 10 + [0] * 1000)],
                                                          np.random.default_rng(0))
assert tuple(answer_1) == (p1.sum(), n1.sum())
print(answer_1)

# %% [markdown]
# **2.** A RoI `(10, 10, 30, 50)` is matched to the GT box `(12, 14, 36, 50)`. What is its box
# target `(t_x, t_y, t_w, t_h)` with weights (10, 10, 5, 5)? Into `answer_2`.

# %% jupyter={"source_hidden": true}
# RoI: centre (20, 30), size 20 x 40.  GT: centre (24, 32), size 24 x 36.
answer_2 = [10 * 4 / 20, 10 * 2 / 40, 5 * np.log(24 / 20), 5 * np.log(36 / 40)]  # 2, 0.5, 0.912, -0.527

# %%
coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
assert np.allclose(answer_2, coder.encode(np.array([[12, 14, 36, 50.0]]), np.array([[10, 10, 30, 50.0]]))[0])
# decoding the answer from the RoI must give the GT box back
assert np.allclose(coder.decode(np.array([answer_2]), np.array([[10, 10, 30, 50.0]]))[0, 0],
                   [12, 14, 36, 50])
print(np.round(answer_2, 4))

# %% [markdown]
# **3.** GT box `(0, 0, 10, 10)`, proposal `(0, 0, 10, 20)`. What is their IoU, and is the
# proposal a positive? A pair `(iou, is_positive)` into `answer_3`.

# %% jupyter={"source_hidden": true}
# intersection 10 x 10 = 100, union 100 + 200 - 100 = 200: IoU 0.5, and 0.5 >= 0.5 is positive
answer_3 = (100 / 200, True)

# %%
q = box_iou(np.array([[0, 0, 10, 10.0]]), np.array([[0, 0, 10, 20.0]]))
assert np.isclose(answer_3[0], q[0, 0]) and answer_3[1] == (Matcher(0.5, 0.5)(q)[0] >= 0)
print(answer_3)

# %% [markdown]
# **4.** A GT mask fills the square `[0, 32) x [0, 32)` of a 64 x 64 image (`square` below).
# What is the 28 x 28 mask target of the RoI `(8, 8, 24, 24)`? Into `answer_4a`, as a
# `[28, 28]` array. And for the RoI `(16, 16, 48, 48)`: bins 0..12 of each row are 1, bins
# 14.. are 0; what is the value of bin 13, the one the edge crosses (in rows 0..12)? Into
# `answer_4b`.
#
# Hints: with `aligned=False` pixel `i`'s value sits at coordinate `i`, so along x the mask is
# 1 up to x = 31, 0 from x = 32, and linear in between. A bin is 32/28 = 8/7 px wide and, since
# ceil(8/7) = 2, is sampled at 1/4 and 3/4 of its width.

# %%
square = np.zeros((1, 64, 64), np.uint8)
square[0, :32, :32] = 1

# %% jupyter={"source_hidden": true}
answer_4a = np.ones((28, 28))             # the RoI lies inside the object: all ones
# bin 13 samples x = 16 + (13.25)(8/7) = 31.143 and 16 + (13.75)(8/7) = 31.714, where the mask
# is 1 - 0.143 = 0.857 and 1 - 0.714 = 0.286: their mean
answer_4b = (0.857 + 0.286) / 2

# %%
t_in, t_half = project_masks_on_boxes(square, np.array([[8, 8, 24, 24], [16, 16, 48, 48]], np.float32),
                                      np.array([0, 0]), 28)
assert np.allclose(answer_4a, t_in, atol=1e-6)
assert np.allclose(t_half[:13, :13], 1, atol=1e-6)             # the statement's structure
assert np.all(t_half[14:] == 0) and np.all(t_half[:, 14:] == 0)
assert np.allclose(answer_4b, t_half[:13, 13], atol=1e-3)
assert np.isclose(t_half[13, 13], answer_4b ** 2, atol=1e-3)   # the corner: soft in x and y
print(np.round(t_half[11:15, 11:15], 3))
