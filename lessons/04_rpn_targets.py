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
# # Chapter 04 — RPN targets: which anchors should say "object"?
#
# The RPN makes two predictions per anchor: an objectness logit ("is there an object?") and
# four box deltas ("how should this anchor move to fit it?"). To train it we need, for every
# anchor, the right answers. They come from the ground-truth (GT) boxes in three steps:
#
# 1. **Match** each anchor to the GT box it overlaps most (IoU), and sort it by that IoU:
#    at least 0.7 is a **positive**, below 0.3 a **negative**, in between is **ignored**
#    (Faster R-CNN paper, Sec. 3.1.2).
# 2. **Best-match rule**: a GT box whose anchors all stay below 0.7 would teach the RPN
#    nothing, so each GT box's best anchor(s) also become positive, however low the IoU.
# 3. **Sample** 256 anchors per image, at most half of them positive: an image has tens of
#    thousands of negatives and a few dozen positives, and a loss over all of them would be
#    swamped by the easy negatives.
#
# The positives also get **regression targets**: the deltas that move the anchor onto its GT
# box.

# %%
# %matplotlib inline
import inspect

import matplotlib.cbook as cbook
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from mrcnn_np.ops import (AnchorGenerator, BalancedPositiveNegativeSampler, BoxCoder, Matcher,
                          box_iou, build_rpn_targets)

np.set_printoptions(precision=3, suppress=True)

# %% [markdown]
# ## 1. The matcher
#
# `Matcher` works on the IoU matrix `[G, A]` (GT boxes in rows, anchors in columns) and
# returns, for each anchor, the index of its GT box or a named sentinel:
# `Matcher.BELOW_LOW_THRESHOLD = -1` (negative) or `Matcher.BETWEEN_THRESHOLDS = -2`
# (ignored). It follows torchvision's rule exactly, ties included:

# %%
print(inspect.getsource(Matcher.__call__))
print(inspect.getsource(Matcher.set_low_quality_matches_))

# %% [markdown]
# A tiny example, worked by hand. Two GT boxes, five anchors:
#
# |     | a0 | a1 | a2 | a3 | a4 |
# | --- | --- | --- | --- | --- | --- |
# | gt0 | **0.80** | 0.50 | 0.10 | 0.20 | 0.00 |
# | gt1 | 0.60 | 0.20 | **0.65** | 0.20 | 0.00 |
#
# * a0: best GT is gt0 with 0.80 >= 0.7: matched to 0.
# * a1: best 0.50 is between 0.3 and 0.7: ignored (-2).
# * a2: best is gt1 with 0.65: between, so -2 at first...
# * a3: gt0 and gt1 tie at 0.20; the lower index wins (gt0); 0.20 < 0.3: negative (-1).
# * a4: 0.00: negative.
#
# Then the best-match rule: gt1's highest IoU is 0.65, at a2, so a2 gets its own best match
# back: gt1. Without the rule gt1 would have no positive anchor at all.

# %%
q = np.array([[0.80, 0.50, 0.10, 0.20, 0.0],
              [0.60, 0.20, 0.65, 0.20, 0.0]], np.float32)
print("without the best-match rule:", Matcher(0.7, 0.3)(q))
print("with it:                    ", Matcher(0.7, 0.3, allow_low_quality_matches=True)(q))
assert list(Matcher(0.7, 0.3, True)(q)) == [0, -2, 1, -1, -1]

# %% [markdown]
# Note a subtlety of the rule: it gives the best anchor of a GT box *its own* best match,
# which need not be that GT box. If gt1's best anchor were a0 (whose best is gt0), gt1 would
# still go without an anchor. torchvision does the same; we copy it, and the tests compare
# with torchvision on thousands of random (and tied) matrices.
#
# ## 2. On a real picture
#
# The photograph of chapter 03, padded to 640 x 512, and four GT boxes we drew by hand:
# the face, the cap, the name badge and the ribbons.

# %%
image = plt.imread(cbook.get_sample_data("grace_hopper.jpg"))        # [600, 512, 3]
padded = np.zeros((640, 512, 3), np.uint8)
padded[:600] = image
image_size = (640, 512)
feature_sizes = [(640 // s, 512 // s) for s in (4, 8, 16, 32, 64)]
gen = AnchorGenerator()
anchors = gen(image_size, feature_sizes)                              # [A, 4]
gt_names = ["face", "cap", "badge", "ribbons"]
gt_boxes = np.array([[150, 150, 295, 330],
                     [150, 40, 300, 165],
                     [78, 485, 165, 525],
                     [335, 505, 450, 555]], np.float32)                # [G, 4]
print("anchors:", anchors.shape, " GT boxes:", gt_boxes.shape)

# %% [markdown]
# How well can the anchors fit each object? For each GT box: its best IoU with any anchor,
# and how many anchors reach 0.7.

# %%
iou = box_iou(gt_boxes, anchors)                                     # [G, A]
for g, name in enumerate(gt_names):
    best = iou[g].max()
    print(f"{name:8s} {gt_boxes[g]}: best IoU {best:.3f} at anchor {iou[g].argmax():6d}, "
          f"{(iou[g] >= 0.7).sum():3d} anchors >= 0.7")
assert round(float(iou[0].max()), 3) == 0.628 and np.all(iou[1:].max(axis=1) >= 0.7)
assert tuple(gt_boxes[0, 2:] - gt_boxes[0, :2]) == (145, 180)    # between anchor sizes 128, 256

# %% [markdown]
# The face is the hard one: at 145 x 180 pixels it falls between the anchor sizes 128 and
# 256, and no anchor reaches 0.7 (its best is 0.628). Without the best-match rule the RPN would never learn it.
# With the rule, the anchors that share its best IoU (a tie: several anchors score exactly
# the same) become positive:

# %%
matched = Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou)     # [A]
strict = Matcher(0.7, 0.3)(iou)                                      # [A]
for g, name in enumerate(gt_names):
    print(f"{name:8s} positives: {(strict == g).sum():3d} by IoU >= 0.7, "
          f"{(matched == g).sum():3d} with the best-match rule")
print("negatives:", (matched == -1).sum(), " ignored:", (matched == -2).sum())
rescued = np.nonzero(matched == 0)[0]
print("the face's best-match anchors:\n", anchors[rescued], "\nIoU:", iou[0, rescued])
assert (strict == 0).sum() == 0 and len(rescued) > 1        # no anchor >= 0.7; a tie rescues
assert np.all(iou[0, rescued] == iou[0].max()) and iou[0].max() < 0.7

# %% [markdown]
# ## 3. Sampling
#
# `build_rpn_targets` runs the matcher, turns matches into labels (1 positive, 0 negative,
# -1 ignored), computes the regression targets, and samples with an explicit random
# generator. After sampling, every anchor that was not drawn is also -1, so that the loss
# sees exactly 256 anchors.

# %%
print(inspect.getsource(BalancedPositiveNegativeSampler.__call__))

# %%
rng = np.random.default_rng(0)
labels, reg_targets, matched_idxs = build_rpn_targets(anchors, gt_boxes, rng)
n_pos, n_neg = (labels == 1).sum(), (labels == 0).sum()
print(f"sampled: {n_pos} positives + {n_neg} negatives = {n_pos + n_neg};"
      f" not sampled or ignored: {(labels == -1).sum():,}")
assert n_pos + n_neg == 256 and n_pos < 128          # fewer positives than half: all are kept
assert n_pos == (matched >= 0).sum()

# %% [markdown]
# The picture. Left, the matcher's verdict: every positive anchor in the colour of its GT box
# (solid: IoU >= 0.7; dashed: made positive by the best-match rule) and, in faint yellow, the
# ignored anchors whose best IoU lies between 0.3 and 0.7; they crowd around each object, and
# the loss never sees them. The negatives are far too many to draw. Right, the 256 sampled
# anchors: every positive (there are fewer than 128) and the negatives that fill the batch,
# drawn at random from the whole image.

# %%
from matplotlib.lines import Line2D  # noqa: E402
import matplotlib.patheffects as pe  # noqa: E402

colours = ["lime", "cyan", "magenta", "tab:orange"]          # positives, by their GT box
IGNORED, NEGATIVE = "yellow", "red"
outlined = [pe.withStroke(linewidth=4.5, foreground="black")]  # white GT boxes, black rim
rim = [pe.withStroke(linewidth=3.5, foreground="black")]       # positives stand out


def draw(ax, a, **style):
    x1, y1, x2, y2 = anchors[a]
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, **style))


fig, axes = plt.subplots(1, 2, figsize=(13, 8.4))
for ax in axes:
    ax.imshow(padded)
    ax.axis("off")
ignored = np.flatnonzero(matched == Matcher.BETWEEN_THRESHOLDS)          # [I]
for a in ignored:
    draw(axes[0], a, ec=IGNORED, lw=0.35, alpha=0.3)
for g in range(len(gt_boxes)):
    for a in np.flatnonzero(matched == g):
        best_match_only = strict[a] != g
        draw(axes[0], a, ec=colours[g], lw=2 if best_match_only else 1.5,
             ls="--" if best_match_only else "-", path_effects=rim)
for a in np.flatnonzero(labels == 0):
    draw(axes[1], a, ec=NEGATIVE, lw=0.7, alpha=0.8)
for a in np.flatnonzero(labels == 1):
    draw(axes[1], a, ec=colours[matched_idxs[a]], lw=1.5, path_effects=rim)
for ax in axes:
    for x1, y1, x2, y2 in gt_boxes:
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=2.5, ec="white",
                               path_effects=outlined))
    ax.set_xlim(-120, 632)
    ax.set_ylim(700, -60)
axes[0].set_title(f"the matcher: {(matched >= 0).sum()} positive, {len(ignored)} ignored "
                  f"(the {(matched == -1).sum():,} negatives not drawn)")
axes[1].set_title(f"the sample: {n_pos} positives + {n_neg} negatives = {n_pos + n_neg}")
handles = ([Line2D([], [], color=c, lw=2, label=f"positive, matched to the {name}")
            for c, name in zip(colours, gt_names)]
           + [Line2D([], [], color="0.3", lw=2, label="solid: IoU ≥ 0.7"),
              Line2D([], [], color="0.3", lw=2, ls="--", label="dashed: by the best-match rule"),
              Line2D([], [], color=IGNORED, lw=2, label="ignored (0.3 ≤ IoU < 0.7)"),
              Line2D([], [], color=NEGATIVE, lw=2, label="negative (IoU < 0.3), sampled"),
              Line2D([], [], color="white", lw=2.5, path_effects=outlined, label="GT box")])
fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.11), ncol=3,
           fontsize=11, frameon=False)
plt.tight_layout()
plt.show()

# %% [markdown]
# The same seed gives the same sample; another seed gives another one with the same counts:

# %%
again = build_rpn_targets(anchors, gt_boxes, np.random.default_rng(0))[0]
other = build_rpn_targets(anchors, gt_boxes, np.random.default_rng(1))[0]
assert np.array_equal(again, labels)
assert not np.array_equal(other, labels) and (other == 1).sum() == n_pos
print("reproducible; a different seed draws", (other != labels).sum(), "different labels")

# %% [markdown]
# An image with no objects is all background: every anchor is a negative candidate and 256
# of them are sampled; the regression targets are zeros (they are never used).

# %%
empty_labels, empty_targets, _ = build_rpn_targets(anchors, np.zeros((0, 4), np.float32), rng)
print("no GT:", (empty_labels == 0).sum(), "negatives,", (empty_labels == 1).sum(), "positives")
assert (empty_labels == 0).sum() == 256 and (empty_labels == 1).sum() == 0 and not empty_targets.any()

# %% [markdown]
# ## 4. Box deltas, by hand
#
# For a positive anchor $(x_a, y_a, w_a, h_a)$ (centre and size) and its GT box
# $(x, y, w, h)$, the regression targets are (Fast R-CNN, Eqn. 6-9; the RPN uses weights 1):
#
# $$d_x = \frac{x - x_a}{w_a}, \quad d_y = \frac{y - y_a}{h_a}, \quad
#   d_w = \log\frac{w}{w_a}, \quad d_h = \log\frac{h}{h_a}.$$
#
# Dividing by the anchor size makes the targets the same for a small and a big object that
# are off by the same *fraction*; the log makes growing and shrinking symmetric.
# Take the face's best anchor:

# %%
a = int(iou[0].argmax())
ax1, ay1, ax2, ay2 = anchors[a].astype(np.float64)
gx1, gy1, gx2, gy2 = gt_boxes[0].astype(np.float64)
wa, ha, xa, ya = ax2 - ax1, ay2 - ay1, ax1 + (ax2 - ax1) / 2, ay1 + (ay2 - ay1) / 2
w, h, x, y = gx2 - gx1, gy2 - gy1, gx1 + (gx2 - gx1) / 2, gy1 + (gy2 - gy1) / 2
print(f"anchor {anchors[a]}: centre ({xa}, {ya}), size {wa} x {ha}")
print(f"GT     {gt_boxes[0]}: centre ({x}, {y}), size {w} x {h}")
by_hand = [(x - xa) / wa, (y - ya) / ha, np.log(w / wa), np.log(h / ha)]
print(f"dx = ({x} - {xa}) / {wa} = {by_hand[0]:.4f}")
print(f"dy = ({y} - {ya}) / {ha} = {by_hand[1]:.4f}")
print(f"dw = log({w} / {wa}) = {by_hand[2]:.4f}")
print(f"dh = log({h} / {ha}) = {by_hand[3]:.4f}")
print("build_rpn_targets:", reg_targets[a])
assert np.allclose(reg_targets[a], by_hand, rtol=1e-5, atol=1e-6)

# %% [markdown]
# Decoding the targets moves the anchor exactly onto the GT box (this is what the RPN will
# learn to do from its predicted deltas):

# %%
decoded = BoxCoder().decode(reg_targets[a][None], anchors[a][None])[0, 0]
print(decoded)
assert np.allclose(decoded, gt_boxes[0], atol=1e-3)

# %% [markdown]
# ## Summary
#
# * The matcher sorts anchors by their best IoU: >= 0.7 positive, < 0.3 negative, between
#   ignored; ties go to the lower GT index.
# * The best-match rule rescues GT boxes that no anchor fits well (here: the face).
# * The sampler keeps 256 anchors, at most half positive, drawn with an explicit
#   `numpy.random.Generator`: the same seed, the same sample.
# * Regression targets are `(dx, dy, dw, dh)`, relative to the anchor's size.
# * Nothing here has a gradient: labels and targets are constants for the RPN loss.
#
# ## Exercises
#
# Each exercise: the task, a collapsed solution (try first, then open it), and a cell that
# checks your answer.

# %% [markdown]
# **1.** With `batch_size_per_image = 256` and `positive_fraction = 0.5`, an image has 40
# positives and 10,000 negatives. How many negatives are sampled? Into `answer_1`.

# %% jupyter={"source_hidden": true}
# at most 128 positives are allowed and there are only 40, so all 40 are taken; the
# negatives fill the rest of the 256
answer_1 = 256 - 40

# %%
lab = np.array([1] * 40 + [0] * 10_000)
(p,), (n,) = BalancedPositiveNegativeSampler(256, 0.5)([lab], np.random.default_rng(0))
assert n.sum() == answer_1 and p.sum() == 40
print(answer_1)

# %% [markdown]
# **2.** An anchor `(0, 0, 10, 10)` and a GT box `(2, 0, 12, 20)`. Compute the regression
# target `(dx, dy, dw, dh)` into `answer_2`.

# %% jupyter={"source_hidden": true}
# anchor: centre (5, 5), size 10 x 10.  GT: centre (7, 10), size 10 x 20
answer_2 = [(7 - 5) / 10, (10 - 5) / 10, np.log(10 / 10), np.log(20 / 10)]

# %%
assert np.allclose(answer_2, BoxCoder().encode(np.array([[2, 0, 12, 20.0]]),
                                               np.array([[0, 0, 10, 10.0]]))[0])
# and decoding the answer must put the anchor onto the GT box
assert np.allclose(BoxCoder().decode(np.array([answer_2]), np.array([[0, 0, 10, 10.0]]))[0, 0],
                   [2, 0, 12, 20])
print(np.round(answer_2, 4))

# %% [markdown]
# **3.** In the IoU matrix `q3` below (GT boxes in rows, anchors in columns), what does the
# matcher return for each anchor with the best-match rule, thresholds 0.7 / 0.3? A list of
# three entries (a GT index, -1 negative or -2 ignored) into `answer_3`.

# %%
q3 = np.array([[0.2, 0.5, 0.5],
               [0.1, 0.6, 0.2]], np.float32)

# %% jupyter={"source_hidden": true}
# a0: best 0.2 < 0.3, negative. a1: best is gt1 (0.6), between the thresholds. a2: best is gt0
# (0.5), between. Then the rule: gt0's best IoU, 0.5, ties at a1 and a2, so both get their own
# best match back: a1 -> gt1, a2 -> gt0. gt1's best, 0.6, is at a1 (already restored).
answer_3 = [-1, 1, 0]

# %%
assert list(answer_3) == list(Matcher(0.7, 0.3, allow_low_quality_matches=True)(q3))
assert list(Matcher(0.7, 0.3)(q3)) == [-1, -2, -2]    # without the rule nothing is positive
print(answer_3)
