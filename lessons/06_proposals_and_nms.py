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
# # Chapter 06 — Proposals and non-maximum suppression
#
# The RPN scores every anchor (81,840 of them for a 640 x 512 image) and predicts deltas for
# each. The second stage wants a short list: a thousand boxes or so, each likely to hold an
# object, and not twenty copies of the same one. The **proposal layer** makes that list:
#
# 1. per FPN level, keep the `pre_nms_top_n` anchors with the highest objectness logits
#    (torchvision: 2000 in training, 1000 at test time);
# 2. decode their deltas into boxes (`BoxCoder`, weights 1, chapter 04);
# 3. score = `sigmoid(logit)`;
# 4. clip the boxes to the image and drop the tiny ones (a side below 0.001 px);
# 5. **non-maximum suppression** (NMS) at IoU 0.7, separately per level;
# 6. keep the `post_nms_top_n` best (2000 / 1000).
#
# The layer is pure NumPy and has no backward: proposals are constants for the second stage,
# as in Faster R-CNN and torchvision. The RPN learns only from its own loss (chapter 05).

# %%
# %matplotlib inline
import inspect
import time

import matplotlib.cbook as cbook
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from mrcnn_np.ops import AnchorGenerator, box_iou, encode_boxes, generate_proposals, nms
from mrcnn_np.ops.nms import nms_numpy, nms_steps

np.set_printoptions(precision=3, suppress=True)

# %% [markdown]
# ## 1. Greedy NMS
#
# A good detector fires many times on one object: neighbouring anchors all decode to nearly
# the same box. Greedy NMS keeps one box per cluster:
#
# 1. sort the boxes by score, highest first;
# 2. take the first box still in play: **keep** it;
# 3. remove every box in play whose IoU with it is **greater than** the threshold;
# 4. repeat from 2 until no box is left.
#
# The readable definition does exactly this, one Python step per kept box:

# %%
print(inspect.getsource(nms_numpy))

# %% [markdown]
# ## 2. The walk-through: six boxes, two people
#
# Two people stand side by side. The detector fired six times, scores 0.95, 0.9, 0.9, 0.8,
# 0.7, 0.7. Three boxes are on person A, three on person B:

# %%
boxes = np.array([[10, 20, 60, 140],    # 0: A, 0.95
                  [12, 22, 62, 142],    # 1: A, 0.90
                  [70, 30, 120, 150],   # 2: B, 0.90
                  [74, 34, 122, 150],   # 3: B, 0.80
                  [5, 15, 58, 138],     # 4: A, 0.70
                  [66, 26, 118, 146]],  # 5: B, 0.70
                 np.float32)
scores = np.array([0.95, 0.9, 0.9, 0.8, 0.7, 0.7], np.float32)
pair_iou = box_iou(boxes, boxes)                                  # [6, 6]
print(pair_iou)
A, B = [0, 1, 4], [2, 3, 5]
within = {name: pair_iou[np.ix_(c, c)][~np.eye(3, dtype=bool)] for name, c in (("A", A), ("B", B))}
print({name: (round(float(v.min()), 3), round(float(v.max()), 3)) for name, v in within.items()})
assert np.all(pair_iou[np.ix_(A, B)] == 0)                        # no box of A touches one of B
assert 0.74 < within["A"].min() and within["A"].max() < 0.90      # 0.743 .. 0.894
assert 0.71 < within["B"].min() and within["B"].max() < 0.86      # 0.716 .. 0.856

# %% [markdown]
# The IoU matrix shows the two clusters: boxes 0, 1, 4 overlap each other at 0.743 to 0.894,
# boxes 2, 3, 5 at 0.716 to 0.856, and no box of A touches a box of B. With threshold 0.6:
#
# * **Pass 1.** The best box is 0 (0.95): keep it. Its IoU with 1 is 0.894 and with 4 is
#   0.826, both above 0.6: remove them. Boxes 2 (0.9), 3 (0.8) and 5 (0.7) are left.
# * **Pass 2.** The best left is 2 (0.9): keep it. Its IoU with 3 is 0.856 and with 5 is
#   0.835: remove them. Nothing is left.
#
# The result is `[0, 2]`: the 0.95 box and the 0.9 box, one per person. `nms_steps` records
# the passes:

# %%
steps = nms_steps(boxes, scores, 0.6)
for k, step in enumerate(steps, 1):
    print(f"pass {k}: keep {step['keep']} ({scores[step['keep']]:.2f}), "
          f"suppress {step['suppressed']} (IoU {np.round(step['ious'], 3).tolist()}), "
          f"left {step['remaining']}")
keep = nms(boxes, scores, 0.6)
print("nms:", keep)
assert list(keep) == [0, 2]
assert [(st["keep"], st["suppressed"]) for st in steps] == [(0, [1, 4]), (2, [3, 5])]
assert np.allclose(steps[0]["ious"], [0.894, 0.826], atol=5e-4)
assert np.allclose(steps[1]["ious"], [0.856, 0.835], atol=5e-4)

# %%
colour = {0: "tab:green", 1: "tab:orange", 4: "tab:purple",      # person A
          2: "tab:blue", 3: "tab:red", 5: "tab:olive"}           # person B
label_y = {4: 30, 0: 75, 1: 120, 5: 36, 2: 81, 3: 126}          # one row per box, no two alike
verdict = {}                                                     # box -> (pass, text)
for p, step in enumerate(steps, 1):
    verdict[step["keep"]] = (p, "kept")
    for j, v in zip(step["suppressed"], step["ious"]):
        verdict[j] = (p, f"removed by {step['keep']}\nIoU {v:.3f}")
fig, axes = plt.subplots(1, 2, figsize=(13, 6.2))
titles = ["pass 1: keep 0 (0.95), remove 1 and 4", "pass 2: keep 2 (0.90), remove 3 and 5"]
for p, ax in enumerate(axes, 1):
    for i in (4, 0, 1, 5, 2, 3):
        x1, y1, x2, y2 = boxes[i]
        done, text = verdict[i]
        if p > done and text != "kept":
            continue                                       # removed in an earlier pass
        kept, removed_now = p >= done and text == "kept", p == done and text != "kept"
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=colour[i],
                               lw=3 if kept else 1.5, ls="--" if removed_now else "-"))
        left = i in (0, 1, 4)                              # person A: labels on the left
        edge, ty = (x1 if left else x2), label_y[i]
        tx = -4 if left else 134
        ax.plot([tx + (2 if left else -2), edge], [ty, ty], color=colour[i], lw=0.8)
        ax.plot([edge], [ty], "o", color=colour[i], ms=3)
        label = f"{i}: {scores[i]:.2f}"
        if p >= done and text == "kept":
            label += " kept"
        elif removed_now:
            label += "\n" + text
        ax.text(tx, ty, label, color=colour[i], fontsize=11, ha="right" if left else "left",
                va="center", fontweight="bold" if kept else "normal")
    ax.set_xlim(-62, 190)
    ax.set_ylim(160, 5)
    ax.set_aspect("equal")
    ax.set_title(titles[p - 1], fontsize=12)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# Each box has its own colour and its own label row; the thin line joins a label to its box.
# Thick: kept. Dashed: removed in this pass, with the kept box that removed it and their IoU.
# Thin: still in play. (Pass 1 shows all six detections; boxes removed in pass 1 are gone
# from pass 2.)
#
# ## 3. Ties, and what "greedy" means here
#
# Boxes 1 and 2 both scored 0.9. Which one is visited first? Our rule, shared by every
# backend: a **stable** sort by descending score, so among equal scores the lower index comes
# first. torchvision's CPU kernel sorts with an unstable sort; we measured that it keeps index
# order for up to 16 boxes and scrambles equal scores above that, so our result equals
# torchvision's whenever scores are distinct (and for ties among at most 16 boxes). Here the
# tie does not matter: box 1 is removed in pass 1 before its turn comes.
#
# Two more details that follow torchvision exactly: a box is removed only when IoU is
# **strictly greater** than the threshold, and the IoU is computed in the boxes' dtype and
# compared in float64. (So in float32 the same two boxes behave differently: their IoU rounds
# to 0.33333334, just above 1/3, and the second box is removed even at threshold 1/3.)

# %%
same = np.array([[0, 0, 10, 10]] * 3, np.float32)
print("three identical boxes, equal scores ->", nms(same, np.ones(3, np.float32), 0.5))
two = np.array([[0, 0, 2, 1], [1, 0, 3, 1]], np.float64)       # IoU exactly 1/3
two_scores = np.array([1, 0.5], np.float32)
print("IoU = 1/3 at threshold 1/3 ->", nms(two, two_scores, 1 / 3),
      " at 0.33 ->", nms(two, two_scores, 0.33))
two32 = two.astype(np.float32)
print(f"in float32: IoU {box_iou(two32, two32)[0, 1]:.8f} -> at threshold 1/3:",
      nms(two32, two_scores, 1 / 3))
assert list(nms(same, np.ones(3, np.float32), 0.5)) == [0]
assert list(nms(two, two_scores, 1 / 3)) == [0, 1] and list(nms(two, two_scores, 0.33)) == [0]
assert box_iou(two32, two32)[0, 1] > np.float64(1 / 3) and list(nms(two32, two_scores, 1 / 3)) == [0]

# %% [markdown]
# **Greedy order matters.** A removed box suppresses nothing: it is out of play before its
# turn comes. Three boxes in a row, A (0.9), B (0.8) and C (0.7), threshold 0.5: A overlaps B
# by more than 0.5 and B overlaps C by more than 0.5, but A and C overlap less. Pass 1 keeps A
# and removes B; pass 2 keeps C, because B, which would have removed it, is already gone. A
# rule without order ("remove every box that overlaps a higher-scored box by more than the
# threshold") would remove C as well and keep A alone.

# %%
chain = np.array([[0, 0, 40, 40],      # A, 0.9
                  [10, 2, 50, 42],     # B, 0.8
                  [20, 4, 60, 44]],    # C, 0.7
                 np.float32)
chain_scores = np.array([0.9, 0.8, 0.7], np.float32)
q = box_iou(chain, chain)                                        # [3, 3]
print(q)
kept_chain = nms(chain, chain_scores, 0.5)
print("nms at 0.5 ->", kept_chain, "= A and C")
assert list(kept_chain) == [0, 2]
assert q[0, 1] > 0.5 and q[1, 2] > 0.5 and q[0, 2] <= 0.5     # A hits B, B would hit C, A misses C
# the rule without order, "remove every box that overlaps a higher-scored box by > 0.5", would
# let the removed B take C with it:
higher = np.triu(q > 0.5, k=1)                                    # [3, 3]: row scored higher
assert list(np.flatnonzero(~higher.any(axis=0))) == [0]

fig, ax = plt.subplots(figsize=(11, 4.2))
for i, (name, c, ls, lw) in enumerate([("A", "tab:green", "-", 3), ("B", "tab:orange", "--", 2),
                                       ("C", "tab:blue", "-", 3)]):
    x1, y1, x2, y2 = chain[i]
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=c, lw=lw, ls=ls))
    tx, ty, ha = [(x1 - 2, 20, "right"), (x1 + 20, y2 + 9, "center"), (x2 + 2, 24, "left")][i]
    ax.text(tx, ty, f"{name}: {chain_scores[i]:.1f}" + (" removed" if i == 1 else "\nkept"),
            color=c, fontsize=11, ha=ha, va="center")
ax.text(78, 22, f"IoU(A, B) = {q[0, 1]:.3f} > 0.5: A removes B\n"
                f"IoU(B, C) = {q[1, 2]:.3f} > 0.5, but B is already gone\n"
                f"IoU(A, C) = {q[0, 2]:.3f} ≤ 0.5: C stays",
        fontsize=11, va="center", linespacing=1.6)
ax.set_xlim(-22, 160)
ax.set_ylim(60, -6)
ax.set_aspect("equal")
ax.set_title("greedy order: the removed box B suppresses nothing (threshold 0.5)", fontsize=12)
ax.axis("off")
plt.show()

# %% [markdown]
# ## 4. Proposals on a real picture
#
# We have no trained RPN yet (that is chapter 10), so we fake its output on the photograph of
# chapters 03 and 04, the way a half-trained RPN behaves: anchors that overlap an object get
# high logits and deltas that point roughly at the object, everything else gets noise.

# %%
image = plt.imread(cbook.get_sample_data("grace_hopper.jpg"))        # [600, 512, 3]
image_size = (640, 512)                                               # padded batch size
feature_sizes = [(640 // s, 512 // s) for s in (4, 8, 16, 32, 64)]
gen = AnchorGenerator()
anchors = gen(image_size, feature_sizes)                              # [A, 4]
per_level = gen.num_anchors_per_level(feature_sizes)                  # [L]
gt_boxes = np.array([[150, 150, 295, 330], [150, 40, 300, 165],
                     [78, 485, 165, 525], [335, 505, 450, 555]], np.float32)

rng = np.random.default_rng(0)
iou = box_iou(gt_boxes, anchors)                                      # [G, A]
best_iou, best_gt = iou.max(axis=0), iou.argmax(axis=0)               # [A], [A]
objectness = (10 * best_iou - 5 + rng.normal(0, 1.0, len(anchors))).astype(np.float32)  # [A]
towards_gt = encode_boxes(gt_boxes[best_gt], anchors)                 # [A, 4] perfect deltas
deltas = (0.7 * towards_gt * (best_iou[:, None] > 0.2)
          + rng.normal(0, 0.1, (len(anchors), 4))).astype(np.float32)  # [A, 4]

common = dict(anchors=anchors, image_sizes=[(600, 512)], num_anchors_per_level=per_level,
              pre_nms_top_n=1000, post_nms_top_n=5000)           # no cut after NMS, to count
(before,), (before_scores,) = generate_proposals(objectness[None], deltas[None], nms_thresh=1.0,
                                                 **common)           # IoU > 1 never: no NMS
(after,), (after_scores,) = generate_proposals(objectness[None], deltas[None], nms_thresh=0.7,
                                               **common)
print(f"{len(anchors):,} anchors -> top-k per level, clipped, tiny removed: {len(before):,} boxes"
      f" -> NMS 0.7 per level: {len(after):,} boxes")

# %% [markdown]
# The picture shows the confident proposals (score > 0.5). Before NMS (left) they pile up in
# dense stacks on each object. NMS (right) thins every stack to a few boxes that differ from
# each other by IoU 0.7 or less. The threshold is gentle on purpose: the second stage
# classifies and refines the proposals, and a little variety per object helps it.

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 7))
for ax, b, s, title in [(axes[0], before, before_scores, "no NMS"),
                        (axes[1], after, after_scores, "after NMS at 0.7")]:
    ax.imshow(image)
    confident = s > 0.5
    for x1, y1, x2, y2 in b[confident]:
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=0.8, ec="yellow"))
    ax.set_title(f"{title}: {confident.sum()} proposals with score > 0.5")
    ax.axis("off")
plt.tight_layout()
plt.show()
names = ["face", "cap", "badge", "ribbons"]
for name, g_before, g_after in zip(names,
                                   (box_iou(gt_boxes, before[before_scores > 0.5]) > 0.5).sum(1),
                                   (box_iou(gt_boxes, after[after_scores > 0.5]) > 0.5).sum(1)):
    print(f"{name:8s}: {g_before:3d} confident boxes with IoU > 0.5 before NMS, {g_after:3d} after")

# %% [markdown]
# NMS in `generate_proposals` runs per FPN level (`batched_nms` with the level as the class),
# as torchvision does: a big box from P5 does not suppress a small one from P3. The function
# reproduces torchvision's `RegionProposalNetwork.filter_proposals` (tested on random inputs).
#
# ## 5. Speed
#
# The greedy loop is sequential, but each step is cheap. The numba backend runs torchvision's
# loop in compiled code and scans, for each kept box, only the boxes that can overlap it
# (sorted by `x1`); the result is identical to the NumPy definition. A quick check on 6,000
# clustered boxes (the full benchmark against torchvision is `benchmarks/bench_nms.py`):

# %%
c = rng.uniform(0, 700, (300, 2))
ctr = c[rng.integers(0, 300, 6000)] + rng.normal(0, 6, (6000, 2))
wh = rng.uniform(40, 80, (6000, 2))
many = np.concatenate([ctr - wh / 2, ctr + wh / 2], 1).astype(np.float32)
many_scores = rng.uniform(0, 1, 6000).astype(np.float32)
nms(many, many_scores, 0.7, backend="numba")                      # compile once
for backend in ("numpy", "numba"):
    t0 = time.perf_counter()
    k = nms(many, many_scores, 0.7, backend=backend)
    print(f"{backend:6s} {1e3 * (time.perf_counter() - t0):7.1f} ms, kept {len(k)} of 6000")
assert np.array_equal(nms(many, many_scores, 0.7, backend="numpy"),
                      nms(many, many_scores, 0.7, backend="numba"))

# %% [markdown]
# ## Summary
#
# * The proposal layer: per-level top-k of logits, decode, sigmoid, clip, drop tiny boxes,
#   NMS per level at 0.7, keep the best 1000 (test) or 2000 (train). No gradient.
# * Greedy NMS keeps the best box, removes its neighbours with IoU > threshold, repeats. A
#   removed box removes nothing: A can remove B and keep C, which B overlaps.
# * Ties: stable sort, lower index first; equal to torchvision whenever its answer is defined.
# * Backends: `numpy` is the definition, `numba` the fast path, same output.
#
# ## Exercises
#
# Each exercise: the task, a collapsed solution (try first, then open it), and a cell that
# checks your answer.

# %% [markdown]
# **1.** Run the six-box example at threshold 0.9 instead of 0.6. Which boxes survive? Put
# their indices, in the order NMS keeps them, into `answer_1`.

# %% jupyter={"source_hidden": true}
# every IoU between two boxes is at most 0.894 <= 0.9: nothing is removed. All six are kept,
# by score; the tied 1 and 2 in index order, and so are the tied 4 and 5
answer_1 = [0, 1, 2, 3, 4, 5]

# %%
assert list(answer_1) == list(nms(boxes, scores, 0.9))
assert pair_iou[~np.eye(6, dtype=bool)].max() <= 0.9          # why: no pair is above 0.9
print(answer_1)

# %% [markdown]
# **2.** Now at 0.85. (Look at the IoU matrix: which pairs are above 0.85?) Indices into
# `answer_2`, in the order kept.

# %% jupyter={"source_hidden": true}
# pass 1: 0 removes 1 (0.894) but not 4 (0.826). pass 2: 2 removes 3 (0.856) but not 5 (0.835).
# then 4 and 5 (0.7 each, index order) overlap nothing left above 0.85: both kept
answer_2 = [0, 2, 4, 5]

# %%
assert list(answer_2) == list(nms(boxes, scores, 0.85))
print(answer_2)

# %% [markdown]
# **3.** Two classes, same boxes: give boxes 0-2 class 0 and boxes 3-5 class 1. Per-class
# NMS at 0.6: which boxes survive? (Box 2 is person B but class 0 here.) Their indices, in
# any order, into `answer_3`.

# %% jupyter={"source_hidden": true}
# class 0 = boxes 0, 1, 2: 0 removes 1 (0.894); 2 does not touch 0. class 1 = boxes 3, 4, 5:
# 3 (0.8) removes 5 (0.716); 4 is on person A and touches neither
answer_3 = [0, 2, 3, 4]

# %%
from mrcnn_np.ops import batched_nms  # noqa: E402

classes = np.array([0, 0, 0, 1, 1, 1])
per_class = [np.flatnonzero(classes == c) for c in (0, 1)]       # run plain NMS on each class
expected = np.concatenate([idx[nms(boxes[idx], scores[idx], 0.6)] for idx in per_class])
assert sorted(answer_3) == sorted(expected.tolist())
assert sorted(answer_3) == sorted(batched_nms(boxes, scores, classes, 0.6).tolist())
print(sorted(answer_3))

# %% [markdown]
# **4.** In the A, B, C example of section 3, give B the highest score: scores (0.8, 0.9, 0.7)
# for (A, B, C). Which boxes survive at threshold 0.5? Indices (A = 0, B = 1, C = 2) into
# `answer_4`.

# %% jupyter={"source_hidden": true}
# B goes first and overlaps A and C by 0.553 each: both removed, B alone stays
answer_4 = [1]

# %%
assert list(answer_4) == list(nms(chain, np.array([0.8, 0.9, 0.7], np.float32), 0.5))
print(answer_4)
