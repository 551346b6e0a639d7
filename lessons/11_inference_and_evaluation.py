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
# # Chapter 11 — Inference and evaluation
#
# At inference there are no targets and no losses. The model turns each proposal into
# scored, class-labelled boxes, keeps the good ones, draws a 28 x 28 mask for each and pastes
# it into the image. Then we ask: **how good are these detections?** The answer used by every
# paper since 2015 is COCO's average precision (AP). This chapter
#
# 1. walks through the post-processing of one real prediction: softmax, one box per class,
#    score threshold, NMS per class, top-k;
# 2. pastes a 28 x 28 mask into the image, explains the 1-pixel zero border, and measures
#    what torchvision's whole-pixel paste costs on small images (the tiny preset pastes at
#    sub-pixel positions instead, as detectron2 does);
# 3. shows predictions on validation images;
# 4. computes AP by hand, then with our from-scratch code, then with pycocotools, and settles
#    **AP50 versus AP**;
# 5. shows four ways detections go wrong.
#
# **The weights.** `assets/tiny_shapes.npz` holds the weights of the tiny preset (4 classes:
# background, circle, square, triangle) trained by `make demo` on `make_shapes_dataset(seed=0)`
# (chapter 10 shows that run, from `assets/demo_run.json`; to make them again, run `make demo`
# and `python tools/demo_assets.py runs/demo`). They are good, and still imperfect enough to
# show the failure modes at the end.

# %%
# %matplotlib inline
import inspect
import json
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from mrcnn_np.config import tiny
from mrcnn_np.data.shapes import make_shapes_dataset, make_shapes_image
from mrcnn_np.eval.ap import RECALL_POINTS, coco_average_precision, interpolated_precision
from mrcnn_np.eval.coco_eval import (coco_evaluate, format_table, object_recall,
                                     predictions_to_coco_results)
from mrcnn_np.model import MaskRCNN
from mrcnn_np.ops.anchors import AnchorGenerator
from mrcnn_np.ops.box_coder import BoxCoder
from mrcnn_np.ops.boxes import box_iou, clip_boxes_to_image, remove_small_boxes
from mrcnn_np.ops.nms import batched_nms
from mrcnn_np.ops.roi_align import roi_align
from mrcnn_np.postprocess import (expand_boxes, expand_masks, masks_from_logits,
                                  paste_mask_subpixel, paste_masks_in_image,
                                  postprocess_detections)
from mrcnn_np.roi_heads import project_masks_on_boxes
from mrcnn_np.train import load_split
from mrcnn_np.viz import draw_instances

np.set_printoptions(precision=3, suppress=True)
t_chapter = time.perf_counter()
work = Path(tempfile.mkdtemp(prefix="mrcnn_ch11_"))

cfg = tiny(num_classes=4)
# notebooks/ is the working folder when the notebook runs; the repository root works too
ASSETS = Path("assets") if Path("assets").is_dir() else Path("notebooks") / "assets"
model = MaskRCNN(cfg).load(ASSETS / "tiny_shapes.npz")
demo_run = json.loads((ASSETS / "demo_run.json").read_text())
print(f"weights: make demo, {demo_run['iterations']} iterations on "
      f"{demo_run['settings']['num_train']} training images, {demo_run['wall_s'] / 60:.1f} min; "
      f"validation mask AP50 {demo_run['eval']['segm']['AP50']:.3f}, "
      f"mask AP {demo_run['eval']['segm']['AP']:.3f}")
# The demo's validation split: each image has its own seed, so writing only the 50 validation
# images (num_train=0) gives exactly the images the demo evaluated on.
make_shapes_dataset(work / "shapes", num_train=0, num_val=50, image_size=(128, 128), seed=0)
val = load_split(work / "shapes", "val")
names = val.class_names
print(val)
print("classes:", names)

# %% [markdown]
# ## 1. Post-processing, step by step
#
# `MaskRCNN.predict` runs the backbone and the RPN (300 proposals per image at test time);
# its `detect` pools a 7 x 7 feature for every proposal, and the box head gives, per proposal,
# K = 4 class logits and 4K box deltas. `postprocess_detections` turns those into detections:

# %%
print(inspect.getsource(MaskRCNN.predict))
print(inspect.getsource(MaskRCNN.detect).split("mask_feats, _")[0])

# %% [markdown]
# We run the same stages on one validation image (with the model's own helpers, the ones
# `predict` calls) and stop at the box head's outputs. For a clear example we take the first
# validation image whose best detection is right (its class, and IoU >= 0.7 with a
# ground-truth box).

# %%
def best_detection_is_right(s):
    p = model.predict([s["image"]])[0]
    if len(p["scores"]) == 0 or len(s["labels"]) == 0:
        return False
    iou = box_iou(p["boxes"][:1].astype(np.float32), s["boxes"])[0]  # [G]
    return iou.max() >= 0.7 and s["labels"][iou.argmax()] == p["labels"][0]


pick = next((i for i in range(len(val)) if best_detection_is_right(val.get(i))), 0)
sample = val.get(pick)
image = sample["image"]  # [3, H, W]
batch, image_sizes, _ = model.transform([image], None, training=False)
model.train(False)
features = model.features_forward(batch)  # backbone + RPN head
feats = features.maps  # P2..P6
proposals = model.propose(features, image_sizes, training=False)
box_feats, _ = model._pool(feats, proposals, cfg.box_roi_output_size, cfg.box_sampling_ratio,
                           image_sizes)  # [P, C, 7, 7]
h, _ = model.roi_heads.box_head.forward(box_feats)  # [P, rep]
class_logits, box_regression, _ = model.roi_heads.box_predictor.forward(h)  # [P, K], [P, 4K]
P, K = class_logits.shape
print(f"image {sample['image_id']}, objects: {len(sample['labels'])} "
      f"{[names[l] for l in sample['labels']]}; resized to {image_sizes[0]}")
print(f"{P} proposals -> class_logits {class_logits.shape}, box_regression {box_regression.shape}")

# %% [markdown]
# **Softmax.** Each proposal gets a probability for each of the K classes, background included;
# the K probabilities sum to 1:
# $p_k = e^{z_k} / \sum_j e^{z_j}$.
#
# **One box per class.** The deltas of class k move the proposal to class k's box (chapter 04's
# decoding, with weights (10, 10, 5, 5)). Each box is clipped to the image.
#
# **Candidates.** Every (proposal, foreground class) pair is one candidate with score $p_k$:
# P x (K - 1) of them. The background column is dropped: "background" is not something we
# report.

# %%
probs = np.exp(class_logits - class_logits.max(1, keepdims=True))
probs /= probs.sum(1, keepdims=True)  # [P, K] softmax, rows sum to 1
boxes_all = BoxCoder(cfg.bbox_reg_weights).decode(box_regression, proposals[0])  # [P, K, 4]
boxes_all = clip_boxes_to_image(boxes_all, image_sizes[0])  # [P, K, 4]
print("probabilities of the first 3 proposals (columns: background, circle, square, triangle):")
print(probs[:3])
print("most likely class over all proposals:",
      {names[k]: int(n) for k, n in enumerate(np.bincount(probs.argmax(1), minlength=K))})

cand_boxes = boxes_all[:, 1:].reshape(-1, 4)  # [P*(K-1), 4]
cand_scores = probs[:, 1:].reshape(-1)  # [P*(K-1)]
cand_labels = np.tile(np.arange(1, K), P)  # [P*(K-1)]
steps = {"candidates (proposal, class)": len(cand_scores)}

keep = np.nonzero(cand_scores > cfg.box_score_thresh)[0]  # score threshold 0.05 (strict)
cand_boxes, cand_scores, cand_labels = cand_boxes[keep], cand_scores[keep], cand_labels[keep]
steps[f"score > {cfg.box_score_thresh}"] = len(keep)
keep = remove_small_boxes(cand_boxes, 1e-2)  # boxes at least 0.01 px wide and high
cand_boxes, cand_scores, cand_labels = cand_boxes[keep], cand_scores[keep], cand_labels[keep]
steps["not tiny"] = len(keep)
before_nms = (cand_boxes, cand_scores, cand_labels)
keep = batched_nms(cand_boxes, cand_scores, cand_labels, cfg.box_nms_thresh)  # NMS per class
steps[f"NMS per class (IoU {cfg.box_nms_thresh})"] = len(keep)
keep = keep[:cfg.box_detections_per_img]  # top-k, best first
steps[f"top {cfg.box_detections_per_img}"] = len(keep)
det_boxes, det_scores, det_labels = cand_boxes[keep], cand_scores[keep], cand_labels[keep]
for what, n in steps.items():
    print(f"{what:30s} {n:5d}")

# The library function does exactly these steps:
lib_boxes, lib_scores, lib_labels = postprocess_detections(
    class_logits, box_regression, proposals, image_sizes, cfg.box_score_thresh,
    cfg.box_nms_thresh, cfg.box_detections_per_img, cfg.bbox_reg_weights)
assert np.array_equal(lib_boxes[0], det_boxes) and np.array_equal(lib_labels[0], det_labels)
print("\nbest 5 detections (x1, y1, x2, y2 in the network input's pixels, score, label):")
for b, s, l in zip(det_boxes[:5], det_scores[:5], det_labels[:5]):
    print(np.round(b, 1), f"{s:.3f}", names[l])

# %% [markdown]
# NMS runs **per class**: a circle box never suppresses a square box, however much they
# overlap. So one proposal can become several detections of different classes, and a weak
# model often reports one object twice, once per class it hesitates between. The low
# threshold 0.05 keeps many weak detections on purpose: AP rewards ranking, not a cut-off
# (section 4), so the cut-off for *pictures* (0.5 below) is chosen later, by the user.

# Proposals and detections live in the resized image the network saw (`image_sizes[0]`);
# to draw them on the image as it was loaded, scale them back, as `postprocess` does.

# %%
(h_net, w_net), (h_img, w_img) = image_sizes[0], image.shape[1:]
net_to_image = np.array([w_img / w_net, h_img / h_net] * 2, np.float32)  # network -> image pixels
print(f"network input {w_net}x{h_net} -> image {w_img}x{h_img}: boxes times {net_to_image[:2]}")
fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
panels = [("ground truth", sample["boxes"], sample["labels"], None),
          (f"{P} proposals", proposals[0] * net_to_image, np.zeros(P, int), None),
          (f"{len(before_nms[1])} candidates with score > 0.05", before_nms[0] * net_to_image,
           before_nms[2], before_nms[1]),
          (f"{len(det_scores)} detections after NMS", det_boxes * net_to_image, det_labels, det_scores)]
for ax, (title, b, l, s) in zip(axes, panels):
    ax.imshow(image.transpose(1, 2, 0))
    for k in range(len(b)):
        alpha = 0.25 if s is None and title != "ground truth" else \
            (1.0 if s is None else 0.2 + 0.8 * float(s[k]))
        colour = "w" if l[k] == 0 else f"C{int(l[k])}"
        x1, y1, x2, y2 = b[k]
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=colour,
                                   lw=0.8 if title.endswith("proposals") else 1.4, alpha=alpha))
    ax.set_title(title, fontsize=10)
    ax.axis("off")
fig.suptitle("From proposals to detections (colour = class: orange circle, green square, red "
             "triangle; opacity = score)", fontsize=10)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Pasting a 28 x 28 mask into the image
#
# The mask head gives, for each detection, 28 x 28 logits per class; we keep the channel of the
# detection's own class and apply a sigmoid (`masks_from_logits`). That map covers the
# detection's **box**, not the image. Pasting resizes it to the box's size and writes it at the
# box's place.
#
# torchvision (and we) first put a **1-pixel ring of zeros** around the 28 x 28 map (30 x 30),
# and grow the box about its centre by 30/28, so the original 28 x 28 part still covers the
# original box. Then the padded map is resized bilinearly to the grown box, whose corners are
# cut to integers; columns $x_1..x_2$ *inclusive* are covered, so a box is $x_2 - x_1 + 1$
# pixels wide (a leftover of the old "+1" box convention, kept to match torchvision).
#
# Why the ring: bilinear resizing interpolates between neighbouring cells. Without the ring, the
# outer cells of the map are stretched to the box's edge and stop there: a mask that is "on" at
# the border of the 28 x 28 map is "on" right up to the box's edge and then drops to 0 in one
# pixel, a hard cut along the box. With the ring, the map fades from its border value to 0 over
# one cell, as it would if the head had seen a little beyond the box.

# %%
def without_docstring(fn):
    """A function's source with its docstring cut out (the docstrings are long)."""
    head, _doc, body = inspect.getsource(fn).split('"""', 2)
    return head + '"""..."""' + body


for fn in (paste_masks_in_image, expand_masks, expand_boxes):
    print(without_docstring(fn))

# %%
mask_feats, _ = model._pool(feats, [det_boxes], cfg.mask_roi_output_size, cfg.mask_sampling_ratio,
                            image_sizes)  # [D, C, 14, 14]
m, _ = model.roi_heads.mask_head.forward(mask_feats)
mask_logits, _ = model.roi_heads.mask_predictor.forward(m)  # [D, K, 28, 28]
mask_probs = masks_from_logits(mask_logits, det_labels)  # [D, 1, 28, 28]
d = 0  # the best detection
box = det_boxes[d:d + 1] * net_to_image  # [1, 4], in image pixels
padded, scale = expand_masks(mask_probs[d:d + 1])  # [1, 1, 30, 30], 30 / 28
grown = expand_boxes(box, scale)  # [1, 4]
pasted = paste_masks_in_image(mask_probs[d:d + 1], box, image.shape[1:])[0, 0]  # [H, W]
no_pad = paste_masks_in_image(mask_probs[d:d + 1], box, image.shape[1:], padding=0)[0, 0]
print(f"detection {d}: {names[det_labels[d]]} {det_scores[d]:.2f}, box {np.round(box[0], 2)}")
print(f"scale {scale:.4f}; grown box {np.round(grown[0], 2)}; as integers {np.trunc(grown[0])}")

fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
axes[0].imshow(mask_probs[d, 0], vmin=0, vmax=1, cmap="viridis")
axes[0].set_title("28 x 28 probabilities")
axes[1].imshow(padded[0, 0], vmin=0, vmax=1, cmap="viridis")
axes[1].add_patch(plt.Rectangle((0.5, 0.5), 28, 28, fill=False, ec="r", lw=1))
axes[1].set_title("padded to 30 x 30 (red: the 28 x 28)")
g = grown[0]
for ax, (title, pm) in zip(axes[2:4], (("pasted with the 1-px pad", pasted),
                                        ("pasted without a pad", no_pad))):
    ax.imshow(image.transpose(1, 2, 0))
    ax.imshow(np.ma.masked_where(pm == 0, pm), vmin=0, vmax=1, cmap="viridis", alpha=0.85)
    ax.contour(pm > 0.5, levels=[0.5], colors="w", linewidths=1)
    x1, y1, x2, y2 = box[0]
    ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="r", lw=1))
    ax.add_patch(plt.Rectangle((g[0], g[1]), g[2] - g[0], g[3] - g[1], fill=False, ec="y",
                               lw=1, ls="--"))
    ax.set_xlim(g[0] - 6, g[2] + 6)  # zoom on the box
    ax.set_ylim(g[3] + 6, g[1] - 6)
    ax.set_title(title + "\n(red: box, yellow: grown box, white: p = 0.5)", fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# To see the difference clearly, take a map that is 1 everywhere: the head says "the whole
# box is object". We paste it into the box x = 10..30 (20 pixels wide) and print one row.
# With the pad, the 28 cells land on the box's 20 columns (10..29) and the ring of zeros on the
# grown part, so the row is 1 on the box and fades over one column on each side. Without the
# pad, the map is stretched over columns 10..30 *inclusive*: 21 columns, one too many, and
# it stops with a cliff.

# %%
ones = np.ones((1, 1, 28, 28), np.float32)
box20 = np.array([[10.0, 10.0, 30.0, 30.0]], np.float32)
row_pad = paste_masks_in_image(ones, box20, (40, 40))[0, 0, 20, 6:34]  # columns 6..33
row_nopad = paste_masks_in_image(ones, box20, (40, 40), padding=0)[0, 0, 20, 6:34]
print("columns         ", np.arange(6, 34))
print("with the pad    ", np.round(row_pad, 2))
print("without the pad ", np.round(row_nopad, 2))
print("pixels above 0.5: with pad", int((row_pad > 0.5).sum()),
      "| without", int((row_nopad > 0.5).sum()), "| the box is 20 wide")
assert (row_pad > 0.5).sum() == 20 and (row_nopad > 0.5).sum() == 21

fig, ax = plt.subplots(figsize=(7, 2.6))
ax.step(np.arange(6, 34) + 0.5, row_pad, where="mid", label="with the pad")
ax.step(np.arange(6, 34) + 0.5, row_nopad, where="mid", ls="--", label="without the pad")
ax.axvspan(10, 30, color="r", alpha=0.1, label="the box, x = 10..30")
ax.set_xlabel("x (pixels; column c covers c..c+1)")
ax.set_ylabel("pasted value")
ax.set_title("a 28 x 28 map of ones pasted into a 20-pixel box, one row")
ax.legend(fontsize=8, loc="center")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### 2.1 Where the pixels land: whole-pixel and sub-pixel pasting
#
# torchvision's paste cuts the grown box to **whole pixels** (towards zero) before it resizes.
# A box edge at x = 10.6 becomes column 9 or 10, and the mask is stretched over
# $x_2 - x_1 + 1$ columns: the pasted mask can be up to about a pixel too wide, and shifted.
# On an 800-px COCO image a pixel hardly matters. On our 128-px shapes, most of them a few tens
# of pixels across (their sizes are printed below), a pixel on each side is several points of
# IoU, and AP at the strict thresholds (0.85-0.95) is made of exactly those points.
#
# detectron2 pastes differently (`method="subpixel"` here, `paste_mask_subpixel`): the box
# keeps its real-valued corners, the mask's 28 cells tile it evenly, and each pixel's
# *centre* is looked up in the mask by bilinear interpolation, with 0 outside. No rounding,
# no +1. The **tiny preset uses it** (`cfg.mask_paste = "subpixel"`, so `model.predict` and the
# evaluation paste that way); the torchvision presets keep torchvision's paste, so that their
# outputs match torchvision's number for number.
#
# The map of ones again, now in a box whose edges are not on pixel borders, x = 10.6..29.6. The
# pixel centres inside it are those of columns 11..29: 19 pixels.

# %%
print(without_docstring(paste_mask_subpixel))
extent = np.array([max(a["bbox"][2:]) for a in val.coco.dataset["annotations"]])  # [G] px
print(f"the validation shapes' extents: median {np.median(extent):.1f} px, 10-90% "
      f"{np.percentile(extent, 10):.0f}-{np.percentile(extent, 90):.0f} px")
assert np.median(extent) < 40
box_frac = np.array([[10.6, 10.6, 29.6, 29.6]], np.float32)
rows = {m: paste_masks_in_image(ones, box_frac, (40, 40), method=m)[0, 0, 20, 6:34]
        for m in ("torchvision", "subpixel")}
centres_inside = int(((np.arange(40) + 0.5 > 10.6) & (np.arange(40) + 0.5 < 29.6)).sum())
print("columns     ", np.arange(6, 34))
for m, row in rows.items():
    on = np.arange(6, 34)[row > 0.5]
    print(f"{m:12s}", np.round(row, 2), f"\n{'':12s} > 0.5 at columns {on[0]}..{on[-1]}: "
          f"{len(on)} pixels")
print("pixel centres inside the box:", centres_inside)
assert (rows["subpixel"] > 0.5).sum() == centres_inside == 19
assert (rows["torchvision"] > 0.5).sum() != centres_inside

# %% [markdown]
# How much does it cost? Take the **perfect** answer on the 50 validation images: every
# ground-truth box as a detection of score 1, with its 28 x 28 training target as the mask
# (the ground-truth mask cut out by RoIAlign in the 192-px network input, as in chapter 07),
# pasted back into the 128-px image both ways. A model cannot do better than its targets,
# so this is the ceiling each paste puts on mask AP.

# %%
def perfect_masks_ap(ds, method):
    """Mask AP of the ground truth itself, as 28 x 28 targets pasted by ``method``."""
    preds, ids = [], []
    for i in range(len(ds)):
        s = ds.get(i)
        _, sizes, tgt = model.transform([s["image"]], [dict(boxes=s["boxes"], masks=s["masks"])])
        b = tgt[0]["boxes"].astype(np.float32)  # [G, 4] in the 192-px input
        targets = project_masks_on_boxes(tgt[0]["masks"], b, np.arange(len(b)), 28)  # [G, 28, 28]
        boxes = s["boxes"].astype(np.float32)  # [G, 4], the same boxes in the 128-px image
        preds.append(dict(boxes=boxes, labels=s["labels"], scores=np.ones(len(b), np.float32),
                          masks=paste_masks_in_image(targets[:, None], boxes, s["orig_size"],
                                                     method=method)))
        ids.append(s["image_id"])
    stats = coco_evaluate(ds.coco, predictions_to_coco_results(preds, ids, ds.label_to_cat_id),
                          ("segm",))["segm"]
    return stats


ceiling = {m: perfect_masks_ap(val, m) for m in ("torchvision", "subpixel")}
for m, st in ceiling.items():
    print(f"perfect masks, {m:11s} paste: mask AP {st['AP']:.3f}   "
          + "  ".join(f"AP@{t} {st[f'AP@{t}']:.3f}" for t in (75, 85, 90, 95)))
assert ceiling["subpixel"]["AP"] > 0.99 > ceiling["torchvision"]["AP"] + 0.05
assert round(ceiling["torchvision"]["AP"], 2) == 0.90  # the summary's figure

# %% [markdown]
# With torchvision's paste even the perfect masks lose about a tenth of mask AP, nearly all of
# it at IoU 0.9 and 0.95; pasted at sub-pixel positions, they are perfect. Section 4 shows
# what this is worth for the trained model.

# %% [markdown]
# ## 3. Predictions on validation images
#
# `model.predict(images)` does all of the above and returns, per image, torchvision's format:
# `boxes [D, 4]`, `labels [D]`, `scores [D]` and `masks [D, 1, H, W]` (soft, 0..1, already
# pasted). We predict all 50 validation images (for section 4) and draw the first eight,
# keeping detections with score >= 0.5, the usual cut-off for pictures.

# %%
t0 = time.perf_counter()
predictions, image_ids = [], []
for i in range(len(val)):
    s = val.get(i)
    predictions.append(model.predict([s["image"]])[0])
    image_ids.append(s["image_id"])
print(f"predicted {len(val)} images in {time.perf_counter() - t0:.1f} s")
p0 = predictions[0]
print({k: (v.shape, v.dtype.name) for k, v in p0.items()})

fig, axes = plt.subplots(4, 4, figsize=(12, 12.6))
for j in range(8):
    s = val.get(j)
    p = predictions[j]
    top, col = 2 * (j // 4), j % 4  # ground truth above, the prediction below it
    # drawn at 2x (256 px), so that the captions are readable; one caption per object: where
    # detections of any class overlap by IoU > 0.5 only the top-scoring one is drawn
    axes[top, col].imshow(draw_instances(s["image"], s["boxes"], s["labels"], masks=s["masks"],
                                         class_names=names, scale=2))
    axes[top + 1, col].imshow(draw_instances(s["image"], p["boxes"], p["labels"], p["scores"],
                                             p["masks"], class_names=names, score_threshold=0.5,
                                             scale=2))
    axes[top, col].set_title(f"image {s['image_id']}: ground truth", fontsize=10)
    axes[top + 1, col].set_title(f"predicted: {int((p['scores'] >= 0.5).sum())} of "
                                 f"{len(p['scores'])} with score >= 0.5", fontsize=10)
for ax in axes.ravel():
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# What to look for: most shapes are found with the right class and a mask that follows the
# outline. Where a second detection survives on an object (of the same class with a box that
# overlaps the first by less than 0.5, or of another class) it is drawn too, with its own
# caption: those are real errors of the model, and AP counts them. Below the 0.5 cut-off
# there are many more detections (the captions count them); they do not appear in the
# pictures, but they all count in AP.
#
# **What the model confuses, on all 50 images.** For each ground-truth object, its best
# detection is the highest-scoring one of any class whose box overlaps it by IoU >= 0.5
# (`object_recall`, chapter 10's count of objects read right). A row is the true class; a
# column is the class of that best detection with score >= 0.5, or "(none)" when no detection
# reaches 0.5 over it. Below the matrix: the confident detections that are no object's best
# (duplicates), and those on no object at all.

# %%
rec = object_recall(val.coco, predictions_to_coco_results(predictions, image_ids,
                                                           val.label_to_cat_id))
classes = names[1:]
cols = classes + ["(none)"]
matrix = np.array([[rec["confusion"].get(f"{t} -> {p}", 0) for p in cols] for t in classes])
fig, ax = plt.subplots(figsize=(6, 4.2))
ax.imshow(matrix, cmap="Blues")
for (r, c), n in np.ndenumerate(matrix):
    ax.text(c, r, str(n), ha="center", va="center", fontsize=12,
            color="white" if n > matrix.max() / 2 else "black")
ax.set_xticks(range(len(cols)), cols)
ax.set_yticks(range(len(classes)), classes)
ax.set_xlabel("class of the best detection (score >= 0.5)")
ax.set_ylabel("true class")
ax.set_title(f"{rec['found']} of {rec['objects']} objects read right "
             f"({rec['wrong_class']} wrong class, {rec['missed']} missed)", fontsize=10)
plt.tight_layout()
plt.show()
print(f"objects {rec['objects']}: right {rec['found']}, wrong class {rec['wrong_class']}, "
      f"missed {rec['missed']}; duplicates (confident, no object's best) {rec['duplicates']}; "
      f"confident detections on no object: {rec['on_nothing'] or 'none'}")
assert matrix.sum() == rec["objects"] and np.trace(matrix) == rec["found"]
assert rec["found"] == demo_run["object_recall"]["found"]  # the count chapter 10 shows
worst = max(((t, p) for t in classes for p in classes if t != p),
            key=lambda tp: rec["confusion"].get(f"{tp[0]} -> {tp[1]}", 0))
print(f"the most frequent confusion: {worst[0]} read as {worst[1]} "
      f"({rec['confusion'].get(f'{worst[0]} -> {worst[1]}', 0)} times)")

# %% [markdown]
# ## 4. Average precision
#
# ### 4.1 The idea, on a list worked by hand
#
# For one class, put all detections of all images in one list, best score first. Walk down the
# list. A detection is a **true positive** (TP) when it overlaps a still-unmatched ground-truth
# object of its class with IoU >= t, else a **false positive** (FP). After each detection,
#
# $$\text{recall} = \frac{\#TP}{\#\text{ground truth}}, \qquad
#   \text{precision} = \frac{\#TP}{\#TP + \#FP}.$$
#
# COCO then (1) makes precision non-increasing from the right (each point takes the best
# precision at any higher recall), and (2) reads it at the 101 recall levels
# 0, 0.01, ..., 1, taking the first detection whose recall reaches the level, and 0 where
# recall never gets there. AP is the mean of those 101 numbers.
#
# By hand: 4 ground-truth objects, 5 detections in score order: TP, TP, FP, TP, FP.
#
#     detection        1     2     3     4     5
#     TP / FP          TP    TP    FP    TP    FP
#     recall           1/4   2/4   2/4   3/4   3/4
#     precision        1     1     2/3   3/4   3/5
#     envelope         1     1     3/4   3/4   3/5     (max of itself and everything right of it)
#
#     recall levels 0.00 .. 0.25  (26 levels) -> first reached at detection 1 -> 1
#     recall levels 0.26 .. 0.50  (25 levels) -> detection 2                  -> 1
#     recall levels 0.51 .. 0.75  (25 levels) -> detection 4                  -> 3/4
#     recall levels 0.76 .. 1.00  (25 levels) -> never reached                -> 0
#
#     AP = (26 * 1 + 25 * 1 + 25 * 0.75 + 25 * 0) / 101 = 69.75 / 101 = 0.6906
#
# The area under the envelope's step curve would be 0.25 + 0.25 + 0.1875 = 0.6875; the
# 101-point rule differs a little because the level 0 is one more point read at the first
# step's precision. The library's `interpolated_precision` gives the same 0.6906:

# %%
print(inspect.getsource(interpolated_precision))
scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
is_tp = np.array([True, True, False, True, False])
prec101 = interpolated_precision(scores, is_tp, np.zeros(5, bool), num_gt=4)  # [101]
print("precision at recall 0, .25, .26, .50, .51, .75, .76, 1:",
      prec101[[0, 25, 26, 50, 51, 75, 76, 100]])
print(f"AP = {prec101.mean():.4f}; by hand 69.75 / 101 = {69.75 / 101:.4f}")
assert np.isclose(prec101.mean(), 69.75 / 101)

# %% [markdown]
# ### 4.2 AP50 and AP: settled
#
# * **AP50** is the AP above with the IoU threshold t = 0.50, averaged over the classes. A box
#   that overlaps its object by half counts as found (PASCAL VOC's criterion).
# * **AP** (COCO's main number, written AP or AP@[.5:.95], and often called "mAP") is the same
#   computation at **ten** thresholds t = 0.50, 0.55, ..., 0.95, averaged over thresholds and
#   classes. It rewards precise boxes and masks: at t = 0.95 a detection must be nearly exact.
#
# So a paper's "mAP 37.1" on COCO is AP@[.5:.95], and "AP50 58.0" the loose one; AP is always
# the smaller. For masks ("segm") the IoU is between masks instead of boxes. APs, APm, APl
# restrict it to small (area < 32^2), medium and large objects (-1: none of that size).
#
# Our from-scratch evaluation (`mrcnn_np/eval/ap.py`) and pycocotools, on the same 50 images:

# %%
results = predictions_to_coco_results(predictions, image_ids, val.label_to_cat_id)
print(len(results), "COCO results; one:",
      {k: v for k, v in results[0].items() if k != "segmentation"})
t0 = time.perf_counter()
ours = {t: coco_average_precision(val.coco, results, t) for t in ("bbox", "segm")}
t_ours = time.perf_counter() - t0
t0 = time.perf_counter()
theirs = coco_evaluate(val.coco, results)  # pycocotools COCOeval
t_theirs = time.perf_counter() - t0
keys = ("AP", "AP50", "AP75", "APs", "APm", "APl")
print("from scratch (mrcnn_np.eval.ap), %.1f s" % t_ours)
print(format_table({t: {k: ours[t][k] for k in keys} for t in ours}))
print("pycocotools COCOeval, %.1f s" % t_theirs)
print(format_table(theirs))
for t in ("bbox", "segm"):
    for k in keys:
        assert abs(ours[t][k] - theirs[t][k]) < 1e-9, (t, k)

# %% [markdown]
# The two agree to every printed digit (to 1e-9 in fact): they take the same steps in the same
# order. Below, the precision-recall curves of one class at three IoU thresholds, and AP as a
# function of the threshold: AP50 is the curve's left end; AP is its mean height.

# %%
precision = ours["segm"]["precision"]  # [T, 101, K-1, 4 areas]
thresholds = np.linspace(0.5, 0.95, 10)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
c = 0  # circle
for t in (0, 5, 9):
    ax1.plot(RECALL_POINTS, np.maximum(precision[t, :, c, 0], 0),
             label=f"IoU >= {thresholds[t]:.2f}: AP {np.mean(precision[t, :, c, 0]):.3f}")
ax1.set_xlabel("recall")
ax1.set_ylabel("interpolated precision")
ax1.set_title(f"'{names[c + 1]}' masks: precision-recall")
ax1.legend(fontsize=8)
ap_t = [np.mean(precision[t, :, :, 0][precision[t, :, :, 0] > -1]) for t in range(10)]
ax2.plot(thresholds, ap_t, "o-")
ax2.axhline(np.mean(ap_t), color="k", ls="--", label=f"mean = AP = {np.mean(ap_t):.3f}")
ax2.annotate(f"AP50 = {ap_t[0]:.3f}", (0.5, ap_t[0]), (0.15, 0.3), textcoords="axes fraction",
             arrowprops=dict(arrowstyle="->"))  # lower left: clear of the curve and the mean
ax2.set_xlabel("IoU threshold t")
ax2.set_ylabel("AP at t (mean over classes)")
ax2.set_title("masks: AP falls as the match must be tighter")
ax2.legend(fontsize=8)
plt.tight_layout()
plt.show()
assert np.isclose(np.mean(ap_t), ours["segm"]["AP"]) and np.isclose(ap_t[0], ours["segm"]["AP50"])

# %% [markdown]
# ### 4.3 What the paste is worth
#
# The masks above were pasted at sub-pixel positions (the tiny preset's `mask_paste`). The
# same detections pasted torchvision's way, for comparison with section 2.1:

# %%
model.transform.mask_paste = "torchvision"
whole_pixel = [model.predict([val.get(i)["image"]])[0] for i in range(len(val))]
model.transform.mask_paste = cfg.mask_paste
tv_paste = coco_evaluate(val.coco, predictions_to_coco_results(whole_pixel, image_ids,
                                                                val.label_to_cat_id), ("segm",))
for m, st in (("torchvision", tv_paste["segm"]), (cfg.mask_paste, theirs["segm"])):
    print(f"the demo's weights, {m:11s} paste: mask AP {st['AP']:.3f}  AP50 {st['AP50']:.3f}  "
          f"AP@90 {st['AP@90']:.3f}  AP@95 {st['AP@95']:.3f}")
assert cfg.mask_paste == "subpixel" and theirs["segm"]["AP"] > tv_paste["segm"]["AP"]
assert abs(theirs["segm"]["AP50"] - tv_paste["segm"]["AP50"]) < 0.02

# %% [markdown]
# AP50 hardly moves: a pixel at the edge does not decide whether a mask overlaps its object
# by half. The gain is at the strict thresholds, where the whole-pixel paste was spending
# the edges' pixels.

# %% [markdown]
# ## 5. How detections go wrong
#
# ### 5.1 Stair-stepped masks on large objects
#
# A mask is 28 x 28 cells, whatever the object's size. For a star 400 pixels across, each cell
# is about 14 pixels wide: even a *perfect* mask head, one that outputs exactly its training
# target, cannot draw detail finer than that. Bilinear pasting smooths the cells into a
# wobbly outline that steps along the edges, and the star's points come out rounded. We take
# the training target of the exact box (the ground-truth mask cut out by RoIAlign, as in
# chapter 07), paste it back, threshold at 0.5 and compare with the truth.

# %%
def round_trip(truth, box, method="torchvision", aligned=False):
    """The 28 x 28 target of a ground-truth mask [H, W] in its box [1, 4] (cut as training
    does, RoIAlign with ``aligned=False``; or ``aligned=True``), pasted back into the image by
    ``method`` and thresholded at 0.5. Returns (target [28, 28], pasted [H, W] bool, IoU)."""
    if aligned:
        rois = np.concatenate([np.zeros((1, 1), np.float32), box], 1)  # [1, 5]
        target = roi_align(truth[None, None].astype(np.float32), rois, (28, 28), 1.0,
                           sampling_ratio=-1, aligned=True)[:, 0]  # [1, 28, 28]
    else:
        target = project_masks_on_boxes(truth[None], box, np.zeros(1, np.int64), 28)
    back = paste_masks_in_image(target[:, None], box, truth.shape,
                                method=method)[0, 0] > 0.5  # [H, W]
    iou = (back & (truth > 0)).sum() / (back | (truth > 0)).sum()
    return target[0], back, float(iou)


def star(size, image_size):
    """A star of the given extent in an image of image_size x image_size (shapes generator)."""
    s = make_shapes_image(np.random.default_rng(3), image_size, image_size, shapes=("star",),
                          max_objects=1, min_size=size, max_size_fraction=size / image_size)
    return s["masks"][0].astype(np.uint8), s["boxes"][:1].astype(np.float32)


truth, box_star = star(400, 420)
target, back, iou_big = round_trip(truth, box_star)
sizes = [20, 40, 80, 160, 320, 640]
ious = [round_trip(*star(sz, sz + 20))[2] for sz in sizes]
ious_sub = [round_trip(*star(sz, sz + 20), method="subpixel")[2] for sz in sizes]
ious_al = [round_trip(*star(sz, sz + 20), method="subpixel", aligned=True)[2] for sz in sizes]

fig, axes = plt.subplots(1, 4, figsize=(16, 4))
axes[0].imshow(target, cmap="gray")
axes[0].set_title("28 x 28 target of a 400 px star")
axes[1].imshow(truth, cmap="gray", alpha=0.4)
axes[1].contour(back, levels=[0.5], colors="r", linewidths=1)
axes[1].set_title(f"truth (grey) and pasted mask (red): IoU {iou_big:.3f}")
tip = np.argwhere(truth)[0]  # the topmost pixel of the star: one of its points
y0, x0 = max(tip[0] - 10, 0), max(tip[1] - 45, 0)
axes[2].imshow(truth[y0:y0 + 90, x0:x0 + 90], cmap="gray", alpha=0.4)
axes[2].contour(back[y0:y0 + 90, x0:x0 + 90], levels=[0.5], colors="r", linewidths=1)
axes[2].set_title("zoom on a point: rounded, stepped")
axes[3].semilogx(sizes, ious, "o-", base=2, label="torchvision's paste")
axes[3].semilogx(sizes, ious_sub, "s--", base=2, label="sub-pixel paste")
axes[3].semilogx(sizes, ious_al, "^:", base=2, label="sub-pixel, targets aligned=True")
axes[3].legend(fontsize=8)
axes[3].set_xlabel("star size (px)")
axes[3].set_ylabel("IoU, perfect 28 x 28 mask pasted")
axes[3].set_title("a perfect 28 x 28 mask, pasted back")
axes[3].grid(alpha=0.3)
plt.tight_layout()
plt.show()
print("mask IoU of a perfect 28 x 28 mask, torchvision's paste:",
      {sz: round(i, 4) for sz, i in zip(sizes, ious)})
print("                                    sub-pixel paste:    ",
      {sz: round(i, 4) for sz, i in zip(sizes, ious_sub)})
print("      sub-pixel paste, targets cut with aligned=True:",
      {sz: round(i, 4) for sz, i in zip(sizes, ious_al)})
# the note below: the first two curves cross
assert ious_sub[0] < ious[0] and ious_sub[1] < ious[1]  # 20 and 40 px
assert ious_sub[2] > ious[2] and ious_sub[3] > ious[3]  # 80 and 160 px
assert abs(ious_sub[4] - ious[4]) < 0.002 and abs(ious_sub[5] - ious[5]) < 0.002
assert ious_al[0] > 0.99 and min(ious_al) > max(ious[0], ious_sub[0])

# %% [markdown]
# The loss is a thin rim, small in area, but it caps the IoU below 1 and so costs AP at the
# strict thresholds (0.9, 0.95); and the steps and rounded points are plain to see in pictures
# of large objects. This is why PointRend and later work refine masks at higher resolution
# near the boundary.
#
# The first two curves cross: the sub-pixel paste loses on the 20- and 40-px stars, wins at 80
# and 160 px, and from 320 px on the two differ by about 0.001. It loses on the small stars
# because it puts the mask exactly where the target says, and these
# targets are cut by torchvision's RoIAlign with `aligned=False`, which reads the image half a
# pixel off (chapter 07). Cut with `aligned=True` (the third curve), the small stars come back
# nearly whole: what costs them IoU is that half pixel, not the 28 cells; the cells are the
# limit only for the large stars. In the demo's input, upsampled 1.5x, the nearest-neighbour
# upsampling of the masks shifts them back by about as much, which is why section 2.1's
# perfect masks, cut with `aligned=False` as in training, score 1.000 pasted sub-pixel.
#
# ### 5.2 Objects smaller than the smallest anchor
#
# The tiny preset's smallest anchors are 16 px on P2 (stride 4). An object of 6 x 6 pixels
# overlaps its best anchor with IoU at most $36 / 256 \approx 0.14$, below the RPN's 0.3
# background threshold. Training still gives it one positive anchor (the "best match" rule of
# chapter 04), but the regression must shrink a 16 px box to 6 px, and the RoI features of such
# a box are a fraction of one P2 cell. We draw an image with only tiny shapes and predict.
# (The shape drawn below is 7 x 8 pixels and lies inside a 16 x 16 anchor: IoU 56/256 = 0.22.)

# %%
rng = np.random.default_rng(5)
tiny_scene = make_shapes_image(rng, 128, 128, max_objects=4, min_size=5, max_size_fraction=0.06)
gen = AnchorGenerator(cfg.anchor_sizes, cfg.aspect_ratios)
anchors = gen((128, 128), [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)])  # [A, 4]
best_iou = box_iou(tiny_scene["boxes"].astype(np.float32), anchors).max(1)  # [G]
img_small = tiny_scene["image"].transpose(2, 0, 1).astype(np.float32) / 255  # [3, H, W]
pred_small = model.predict([img_small])[0]
print("object sizes (w x h):",
      [f"{int(b[2] - b[0])}x{int(b[3] - b[1])}" for b in tiny_scene["boxes"]])
print("best anchor IoU of each object:", np.round(best_iou, 3))
iou_small = box_iou(pred_small["boxes"], tiny_scene["boxes"][:1].astype(np.float32))[:, 0]  # [D]
hits = np.flatnonzero((iou_small >= 0.5) & (pred_small["labels"] == tiny_scene["labels"][0]))
print("best scores:", np.round(pred_small["scores"][:3], 3), "| right class and IoU >= 0.5:",
      [(round(float(pred_small["scores"][k]), 3), round(float(iou_small[k]), 2)) for k in hits])
all_scores = np.concatenate([p["scores"] for p in predictions])
typical = float(np.median(all_scores[all_scores >= 0.5]))
print(f"median score of the validation detections >= 0.5: {typical:.3f}")
assert len(hits) >= 1  # the summary says so: the best-match rule saves this one ...
assert pred_small["scores"][hits[0]] < typical  # ... though with a lower score than usual

# %% [markdown]
# ### 5.3 An image with no objects
#
# About 5% of the shapes images are empty. Every detection there is a false positive. It
# cannot lower recall (there is nothing to find) but, if its score is high, it sits high in the
# ranked list and lowers precision for every object found after it.

# %%
empty = [i for i in range(len(val)) if len(val.get(i)["labels"]) == 0]
for i in empty:
    p = predictions[i]
    print(f"empty image {image_ids[i]}: {len(p['scores'])} detections, best scores "
          f"{np.round(p['scores'][:3], 3)}, labels {[names[l] for l in p['labels'][:3]]}")
assert all((predictions[i]["scores"] >= 0.5).sum() == 0 for i in empty)  # as the summary says

fig, axes = plt.subplots(1, 1 + len(empty[:2]), figsize=(3.4 * (1 + len(empty[:2])), 3.6))
axes = np.atleast_1d(axes)
best_anchor = anchors[box_iou(tiny_scene["boxes"][:1].astype(np.float32), anchors)[0].argmax()]
axes[0].imshow(draw_instances(img_small, pred_small["boxes"], pred_small["labels"],
                              pred_small["scores"], class_names=names, score_threshold=0.1))
for b, colour in ((tiny_scene["boxes"][0], "w"), (best_anchor, "y")):
    axes[0].add_patch(plt.Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False,
                                    ec=colour, lw=1.2))
axes[0].set_title("a tiny shape: truth (white), best anchor (yellow),\n"
                  "detections with score >= 0.1", fontsize=9)
for ax, i in zip(axes[1:], empty[:2]):
    p = predictions[i]
    ax.imshow(draw_instances(val.get(i)["image"], p["boxes"], p["labels"], p["scores"],
                             p["masks"], class_names=names, score_threshold=0.1))
    ax.set_title(f"empty image {image_ids[i]}: detections with score >= 0.1", fontsize=9)
for ax in axes:
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### 5.4 Forgetting the background class
#
# Label 0 is background, and the softmax has K = 4 columns: background and three shapes.
# Two ways to forget it:
#
# * **At inference, drop the background from the softmax** (a softmax over the three shapes
#   only). Each proposal must then be *some* shape, with probability at least 1/3, far above
#   the 0.05 threshold: every proposal becomes a detection. We can see this with the real
#   logits: setting the background logit to $-\infty$ removes it from the softmax.
# * **In the data, number the classes from 0** (circle = 0, square = 1, ...). Then every
#   circle is a background example: the model is *taught* not to detect circles, and circles
#   are never found however long you train.

# %%
no_bg = class_logits.copy()
no_bg[:, 0] = -np.inf  # as if the softmax had no background column
b_nobg, s_nobg, l_nobg = postprocess_detections(no_bg, box_regression, proposals, image_sizes,
                                                cfg.box_score_thresh, cfg.box_nms_thresh,
                                                cfg.box_detections_per_img, cfg.bbox_reg_weights)
print(f"with the background column: {len(det_scores)} detections, "
      f"{int((det_scores >= 0.5).sum())} with score >= 0.5")
print(f"without it:                 {len(s_nobg[0])} detections (capped at "
      f"{cfg.box_detections_per_img}), {int((s_nobg[0] >= 0.5).sum())} with score >= 0.5")

fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
panels = (("softmax with background", det_boxes * net_to_image, det_labels, det_scores),
          ("softmax without background", b_nobg[0] * net_to_image, l_nobg[0], s_nobg[0]))
for ax, (title, b, l, s) in zip(axes, panels):
    ax.imshow(draw_instances(image, b, l, s, class_names=names, score_threshold=0.5))
    ax.set_title(title + f": {int((s >= 0.5).sum())} at >= 0.5", fontsize=9)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Summary
#
# * Post-processing: softmax over K classes (background included), one decoded box per class,
#   clip, drop background, score > 0.05, drop tiny boxes, **NMS per class**, best 50.
# * A mask is 28 x 28 over its box. Pasting pads it with a ring of zeros and grows the box by
#   30/28 so the mask fades out across the box's edge instead of being cut off there.
#   torchvision then cuts the box to whole pixels; on 128-px images that caps even perfect
#   masks at mask AP 0.90, so the tiny preset pastes at sub-pixel positions (detectron2's way).
# * AP for one class: rank, make precision non-increasing, read it at 101 recall levels,
#   average. **AP50** uses IoU >= 0.5; **AP** averages IoU 0.50..0.95. Our code and
#   pycocotools agree.
# * The demo model's errors: a few objects read as another class, a few missed, confident
#   duplicates, and a few detections on nothing (the confusion matrix and its counts).
# * Failure modes: 28 x 28 masks cap large objects' IoU; an object below the smallest anchor
#   rests on the best-match rule (the 7 x 8 shape is still found, with the right class, but
#   with a lower score than the shapes of usual size); empty images can only add
#   false positives (the demo model adds none at score >= 0.5); a forgotten background class
#   makes every proposal an object.

# %% [markdown]
# ## Exercises
#
# **1.** One class, 2 ground-truth objects, 3 detections in score order: FP, TP, TP. What is
# the 101-point AP? Put it in `answer_1`.

# %% jupyter={"source_hidden": true}
# recall 0, 1/2, 1; precision 0, 1/2, 2/3; envelope 2/3, 2/3, 2/3: every level reads 2/3.
answer_1 = 2 / 3

# %%
p1 = interpolated_precision(np.array([0.9, 0.8, 0.7]), np.array([False, True, True]),
                            np.zeros(3, bool), num_gt=2)
assert np.isclose(p1.mean(), answer_1)
print(answer_1)

# %% [markdown]
# **2.** A detection box (10, 10, 38, 38) with a 28 x 28 mask. What box does pasting grow it
# to, and how many pixels wide is the pasted (padded) mask? Put both in `answer_2`
# (the box as an array, then the width).

# %% jupyter={"source_hidden": true}
# width 28, scale 30/28: half-width 14 * 30/28 = 15 about the centre 24 -> (9, 9, 39, 39);
# integer columns 9..39 inclusive: 31 pixels.
answer_2 = (np.array([9.0, 9.0, 39.0, 39.0]), 31)

# %%
g2 = expand_boxes(np.array([[10.0, 10.0, 38.0, 38.0]]), 30 / 28)[0]
assert np.allclose(g2, answer_2[0])
assert int(np.trunc(g2[2]) - np.trunc(g2[0]) + 1) == answer_2[1]

# %% [markdown]
# **3.** An 8 x 8 object centred exactly on a 16 x 16 anchor (aspect ratio 1). What is their
# IoU, and by the RPN's two thresholds alone (before chapter 04's best-match rule) is the
# anchor a positive (>= 0.7), a negative (< 0.3) or neither? Put the IoU and the word in
# `answer_3`.

# %% jupyter={"source_hidden": true}
answer_3 = (64 / 256, "negative")  # the object is a quarter of the anchor, inside it

# %%
iou3 = box_iou(np.array([[4.0, 4.0, 12.0, 12.0]]), np.array([[0.0, 0.0, 16.0, 16.0]]))[0, 0]
assert np.isclose(iou3, answer_3[0])
assert answer_3[1] == ("positive" if iou3 >= 0.7 else "negative" if iou3 < 0.3 else "neither")
print(answer_3, f"| chapter ran in {time.perf_counter() - t_chapter:.0f} s")
shutil.rmtree(work)  # the validation images written above
