"""COCO average precision, written out from scratch (for teaching; chapter 11).

The library's real evaluation is pycocotools (``coco_eval.py``); this module does the same
computation in plain NumPy so that every step can be read and printed.  It agrees with
COCOeval to 1e-3 (tests/test_eval.py; in practice exactly, because the same steps run in the
same order).  The steps, for one category and one area range:

1. **Per image, sort** the detections by score (a stable sort: ties keep their order) and keep
   the first ``MAX_DETS`` = 100.
2. **IoU** of every detection with every ground truth (GT) of the image and category:
   boxes as (x, y, w, h) with area w * h, or masks (decoded to dense [H, W] arrays here and
   compared pixel by pixel).  Against a crowd GT the IoU is intersection / detection area: a
   crowd region covers many objects, so a detection inside it should not be punished.
3. **Ignore flags**: a GT is ignored when it is a crowd or its ``area`` (the annotation's own
   field) is outside the area range.  GTs are put in order, the non-ignored ones first.
4. **Greedy matching** at each IoU threshold t in .50, .55, ..., .95: detections in score
   order; each takes the GT with the highest IoU >= t that is still free (a crowd GT is never
   used up), preferring any non-ignored GT over an ignored one.  A detection matched to an
   ignored GT is ignored; so is an unmatched detection whose own area is outside the range
   (the mask area for masks, w * h for boxes).
5. **Precision-recall**: all the category's detections from all images, sorted by score
   (stable); running counts of true and false positives (ignored ones left out); recall =
   TP / (number of non-ignored GTs), precision = TP / (TP + FP).
6. **Interpolation**: precision is made non-increasing from the right (each point takes the
   best precision at any higher recall), then read at the 101 recall points 0, .01, ..., 1
   (the first detection whose recall reaches the point; 0 where recall never gets there).
   AP of the category = the mean of those 101 values.
7. **Averages**: AP is the mean over IoU thresholds and categories, AP50 / AP75 at one
   threshold; APs / APm / APl use the area ranges.  A category with no (non-ignored) GT in
   a setting has no AP there and is left out of the mean; with no AP at all the value is -1.
"""
import numpy as np
from pycocotools import mask as mask_utils

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)   # COCO: .50:.05:.95 (linspace, as COCOeval, so
                                              # 0.75 is exactly 0.75)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)    # COCO: 101-point interpolation
MAX_DETS = 100                                # COCO: at most 100 detections per image and category
AREA_RANGES = {                               # COCO: small < 32^2 <= medium < 96^2 <= large
    "all": (0.0, 1e10), "small": (0.0, 32.0 ** 2),
    "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e10),
}
NO_VALUE = -1.0                               # "no ground truth in this setting", as COCOeval


# ------------------------------------------------------------------------------------------
# Step 2: IoU
# ------------------------------------------------------------------------------------------
def box_iou_xywh(dt, gt, gt_crowd):
    """IoU of boxes given as (x, y, w, h); against a crowd GT, intersection / detection area.

    Inputs:  dt [D, 4], gt [G, 4] = (x, y, w, h); gt_crowd [G] bool
    Returns: [D, G] float64
    """
    dt = np.asarray(dt, np.float64).reshape(-1, 4)                       # [D, 4]
    gt = np.asarray(gt, np.float64).reshape(-1, 4)                       # [G, 4]
    area_d = dt[:, 2] * dt[:, 3]                                         # [D]
    area_g = gt[:, 2] * gt[:, 3]                                         # [G]
    w = (np.minimum(dt[:, None, 2] + dt[:, None, 0], gt[None, :, 2] + gt[None, :, 0])
         - np.maximum(dt[:, None, 0], gt[None, :, 0]))                   # [D, G]
    h = (np.minimum(dt[:, None, 3] + dt[:, None, 1], gt[None, :, 3] + gt[None, :, 1])
         - np.maximum(dt[:, None, 1], gt[None, :, 1]))                   # [D, G]
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)                      # [D, G]
    union = np.where(np.asarray(gt_crowd, bool)[None, :], area_d[:, None],
                     area_d[:, None] + area_g[None, :] - inter)          # [D, G]
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def mask_iou(dt, gt, gt_crowd):
    """IoU of binary masks; against a crowd GT, intersection / detection area.

    Inputs:  dt [D, H, W], gt [G, H, W] (0/1 or bool); gt_crowd [G] bool
    Returns: [D, G] float64
    """
    dt, gt = np.asarray(dt, bool), np.asarray(gt, bool)
    d = dt.reshape(dt.shape[0], int(np.prod(dt.shape[1:]))).astype(np.float64)                   # [D, H*W]
    g = gt.reshape(gt.shape[0], int(np.prod(gt.shape[1:]))).astype(np.float64)  # [G, H*W]
    inter = d @ g.T                                                      # [D, G] pixel counts
    area_d, area_g = d.sum(1), g.sum(1)                                  # [D], [G]
    union = np.where(np.asarray(gt_crowd, bool)[None, :], area_d[:, None],
                     area_d[:, None] + area_g[None, :] - inter)          # [D, G]
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


# ------------------------------------------------------------------------------------------
# Steps 3-4: matching in one image
# ------------------------------------------------------------------------------------------
def match_detections(ious, gt_ignore, gt_crowd, iou_threshold):
    """Greedy matching of score-sorted detections to GTs at one IoU threshold.

    Inputs:
      ious: [D, G] IoU, detections in descending score order, GTs non-ignored first
      gt_ignore: [G] bool; gt_crowd: [G] bool (a crowd GT may take any number of matches)
      iou_threshold: float
    Returns:
      dt_match: [D] int, index of the matched GT, or -1
    """
    D, G = ious.shape
    gt_taken = np.zeros(G, bool)
    dt_match = np.full(D, -1)
    for d in range(D):
        best_iou = min(iou_threshold, 1 - 1e-10)   # as COCOeval: IoU must reach the threshold
        m = -1
        for g in range(G):
            if gt_taken[g] and not gt_crowd[g]:
                continue                            # a non-crowd GT is used once
            if m > -1 and not gt_ignore[m] and gt_ignore[g]:
                break                               # have a real GT; the rest are ignored ones
            if ious[d, g] < best_iou:
                continue
            best_iou, m = ious[d, g], g             # ties: the later GT wins, as COCOeval
        if m > -1:
            dt_match[d] = m
            gt_taken[m] = True
    return dt_match


# ------------------------------------------------------------------------------------------
# Steps 5-6: precision at 101 recall points
# ------------------------------------------------------------------------------------------
def interpolated_precision(scores, is_tp, is_ignored, num_gt):
    """101-point interpolated precision of one category at one threshold and area range.

    Inputs:  scores, is_tp, is_ignored: [N] over all images' detections; num_gt: int > 0
    Returns: [101] float64 (precision at recall 0, .01, ..., 1)
    """
    order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")  # stable, as COCOeval
    tp = (is_tp & ~is_ignored)[order]                                  # [N]
    fp = (~is_tp & ~is_ignored)[order]                                 # [N]
    tp_sum = np.cumsum(tp).astype(np.float64)                          # [N]
    fp_sum = np.cumsum(fp).astype(np.float64)                          # [N]
    recall = tp_sum / num_gt                                           # [N]
    precision = tp_sum / (tp_sum + fp_sum + np.spacing(1))             # [N] (0/0 -> 0)
    precision = np.maximum.accumulate(precision[::-1])[::-1]           # non-increasing envelope
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")          # [101]
    out = np.zeros(len(RECALL_POINTS))
    ok = idx < len(precision)
    out[ok] = precision[idx[ok]]
    return out


# ------------------------------------------------------------------------------------------
# Everything
# ------------------------------------------------------------------------------------------
def _gather(coco_gt, results, iou_type):
    """Per (image, category): GT and detections with what matching needs (steps 1-2)."""
    gts, dts = {}, {}
    img_ids = sorted(coco_gt.imgs)
    cat_ids = sorted(coco_gt.cats)
    for ann in coco_gt.dataset["annotations"]:
        gts.setdefault((ann["image_id"], ann["category_id"]), []).append(ann)
    for r in results:
        if r["image_id"] not in coco_gt.imgs:
            raise ValueError(f"a result names image {r['image_id']}, which is not in the ground truth")
        dts.setdefault((r["image_id"], r["category_id"]), []).append(r)

    cells = {}
    for i in img_ids:
        info = coco_gt.imgs[i]
        for c in cat_ids:
            g, d = gts.get((i, c), []), dts.get((i, c), [])
            if not g and not d:
                continue
            order = np.argsort([-x["score"] for x in d], kind="mergesort")[:MAX_DETS]  # step 1
            d = [d[k] for k in order]
            crowd = np.array([bool(x.get("iscrowd", 0)) for x in g], bool)            # [G]
            if iou_type == "bbox":
                ious = box_iou_xywh([x["bbox"] for x in d], [x["bbox"] for x in g], crowd)
                dt_area = np.array([x["bbox"][2] * x["bbox"][3] for x in d], np.float64)
            else:
                gm = np.stack([coco_gt.annToMask(x) for x in g]) if g else \
                    np.zeros((0, info["height"], info["width"]), np.uint8)           # [G, H, W]
                dm = np.stack([mask_utils.decode(x["segmentation"]) for x in d]) if d else \
                    np.zeros((0, info["height"], info["width"]), np.uint8)           # [D, H, W]
                ious = mask_iou(dm, gm, crowd)
                dt_area = dm.sum(axis=(1, 2)).astype(np.float64)
            cells[i, c] = dict(ious=ious.reshape(len(d), len(g)), crowd=crowd,     # [D, G]
                               gt_area=np.array([x["area"] for x in g], np.float64),
                               scores=np.array([x["score"] for x in d], np.float64),
                               dt_area=dt_area)
    return img_ids, cat_ids, cells


def _evaluate_cell(cell, area_range):
    """Steps 3-4 in one image and category.  Returns is_tp [T, D], is_ignored [T, D], num_gt."""
    lo, hi = area_range
    ignore = cell["crowd"] | (cell["gt_area"] < lo) | (cell["gt_area"] > hi)   # [G]
    order = np.argsort(ignore, kind="mergesort")                               # non-ignored first
    ious, ignore, crowd = cell["ious"][:, order], ignore[order], cell["crowd"][order]
    D = len(cell["scores"])
    dt_out = (cell["dt_area"] < lo) | (cell["dt_area"] > hi)                   # [D]
    is_tp = np.zeros((len(IOU_THRESHOLDS), D), bool)                           # [T, D]
    is_ignored = np.zeros((len(IOU_THRESHOLDS), D), bool)                      # [T, D]
    for t, thr in enumerate(IOU_THRESHOLDS):
        m = match_detections(ious, ignore, crowd, thr) if ious.size else np.full(D, -1)
        matched = m > -1
        is_tp[t] = matched
        gt_of_dt = ignore[m] if len(ignore) else np.zeros(D, bool)              # [D]
        is_ignored[t] = np.where(matched, gt_of_dt, dt_out)
    return is_tp, is_ignored, int((~ignore).sum())


def coco_average_precision(coco_gt, results, iou_type="bbox"):
    """COCO AP from scratch; the same numbers as pycocotools COCOeval's first six stats.

    Inputs:
      coco_gt: pycocotools COCO of the ground truth (or a CocoDataset: its ``.coco``)
      results: COCO result dicts (image_id, category_id, score, and bbox = (x, y, w, h) for
        "bbox" or segmentation = RLE for "segm"), e.g. from ``predictions_to_coco_results``
      iou_type: "bbox" or "segm"

    Returns {"AP", "AP50", "AP75", "APs", "APm", "APl": float, "precision": [T, 101, K, 4]}
    (precision is -1 where a category has no ground truth in that area range).
    """
    coco_gt = getattr(coco_gt, "coco", coco_gt)
    img_ids, cat_ids, cells = _gather(coco_gt, results, iou_type)
    T, R = len(IOU_THRESHOLDS), len(RECALL_POINTS)
    precision = np.full((T, R, len(cat_ids), len(AREA_RANGES)), NO_VALUE)     # [T, R, K, 4]
    for a, area_range in enumerate(AREA_RANGES.values()):
        for k, c in enumerate(cat_ids):
            per_image = [(cells[i, c], _evaluate_cell(cells[i, c], area_range))
                         for i in img_ids if (i, c) in cells]
            num_gt = sum(n for _, (_, _, n) in per_image)
            if num_gt == 0:
                continue                                   # no AP for this category here
            scores = np.concatenate([cell["scores"] for cell, _ in per_image])            # [N]
            for t in range(T):
                is_tp = np.concatenate([r[0][t] for _, r in per_image])                   # [N]
                is_ignored = np.concatenate([r[1][t] for _, r in per_image])              # [N]
                precision[t, :, k, a] = interpolated_precision(scores, is_tp, is_ignored, num_gt)

    def mean(p):
        p = p[p > NO_VALUE]
        return float(p.mean()) if p.size else NO_VALUE

    t50, t75 = np.flatnonzero(IOU_THRESHOLDS == 0.5), np.flatnonzero(IOU_THRESHOLDS == 0.75)
    return {"AP": mean(precision[..., 0]), "AP50": mean(precision[t50, ..., 0]),
            "AP75": mean(precision[t75, ..., 0]), "APs": mean(precision[..., 1]),
            "APm": mean(precision[..., 2]), "APl": mean(precision[..., 3]),
            "precision": precision}
