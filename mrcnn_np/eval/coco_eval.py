"""COCO evaluation with pycocotools: predictions -> COCO results -> AP table.

    results = predictions_to_coco_results(predictions, image_ids, ds.label_to_cat_id)
    stats = coco_evaluate(ds.coco, results)          # {"bbox": {"AP": ..}, "segm": {..}}
    print(format_table(stats))

Predictions are torchvision-style dicts, one per image, in ORIGINAL image pixels:
``boxes`` [D, 4] = (x1, y1, x2, y2), ``labels`` [D] (contiguous, 1..K-1), ``scores`` [D],
``masks`` [D, 1, H, W] soft, 0..1.  The AP numbers are pycocotools' own (COCOeval with its
default parameters: IoU .50:.05:.95, 101 recall points, areas small < 32^2 <= medium < 96^2
<= large, at most 100 detections per image).  A value of -1 means "no ground truth in that
setting" (e.g. APs when no object is small), as pycocotools reports it.
"""
import contextlib
import io
import json
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# Names of COCOeval.stats, in its order (pycocotools cocoeval.py, summarize()).
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def encode_mask(mask):
    """Binary mask [H, W] -> COCO compressed RLE dict with ``counts`` as a str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def predictions_to_coco_results(predictions, image_ids, label_to_cat_id, mask_threshold=0.5):
    """Turn per-image predictions into COCO result dicts.

    Inputs:
      predictions: list of dicts, one per image:
        boxes  [D, 4] = (x1, y1, x2, y2) in original image pixels
        labels [D] contiguous labels 1..K-1
        scores [D]
        masks  [D, 1, H, W] (or [D, H, W]) soft masks in 0..1; optional (then no segmentation)
      image_ids: the COCO image id of each prediction
      label_to_cat_id: {label: category id} (a dict, or a sequence indexed by label)
      mask_threshold: a pixel is in the mask when its value is > mask_threshold (as torchvision's
        reference evaluation does with 0.5)

    Returns a list of dicts {image_id, category_id, score, bbox = [x, y, w, h],
    segmentation = compressed RLE with str counts (only when masks are given)}.
    """
    if len(predictions) != len(image_ids):
        raise ValueError(f"{len(predictions)} predictions but {len(image_ids)} image ids")
    results = []
    for pred, image_id in zip(predictions, image_ids):
        boxes = np.asarray(pred["boxes"], np.float64).reshape(-1, 4)       # [D, 4]
        labels = np.asarray(pred["labels"]).reshape(-1)                    # [D]
        scores = np.asarray(pred["scores"], np.float64).reshape(-1)        # [D]
        masks = pred.get("masks")
        if masks is not None:
            masks = np.asarray(masks)
            masks = masks.reshape(masks.shape[0], *masks.shape[-2:]) > mask_threshold  # [D, H, W]
        for d in range(len(scores)):
            x1, y1, x2, y2 = boxes[d]
            r = {"image_id": int(image_id),
                 "category_id": int(label_to_cat_id[int(labels[d])]),
                 "score": float(scores[d]),
                 "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]}
            if masks is not None:
                r["segmentation"] = encode_mask(masks[d])
            results.append(r)
    return results


def _as_coco(coco_gt):
    """Accept a COCO object, something with a ``.coco`` (CocoDataset), or a JSON path."""
    if isinstance(coco_gt, COCO):
        return coco_gt
    if hasattr(coco_gt, "coco"):
        return coco_gt.coco
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(coco_gt))


def _results_for(coco_gt, results, iou_type):
    """A COCO object of detections for one IoU type (pycocotools' loadRes, made safe).

    Each type gets its own copies: for "segm" the bbox is left out, so loadRes takes the
    detection area from the mask (as torchvision's reference evaluation does); for "bbox" the
    segmentation is left out, so the area is w * h.  No results gives an empty object
    (loadRes itself fails on an empty list).
    """
    key = "segmentation" if iou_type == "segm" else "bbox"
    mine = []
    for r in results:
        if key not in r:
            raise ValueError(f"a result has no {key!r} for iou_type {iou_type!r}")
        mine.append({"image_id": r["image_id"], "category_id": r["category_id"],
                     "score": r["score"], key: r[key]})
    if mine:
        return coco_gt.loadRes(mine)
    dt = COCO()
    dt.dataset = {"images": list(coco_gt.dataset["images"]),
                  "categories": list(coco_gt.dataset["categories"]), "annotations": []}
    dt.createIndex()
    return dt


def coco_evaluate(coco_gt, results, iou_types=("bbox", "segm")):
    """COCO AP of ``results`` against ``coco_gt``, by pycocotools COCOeval, quietly.

    Inputs:
      coco_gt: pycocotools COCO (or a CocoDataset, or the path of an instances JSON)
      results: list of COCO result dicts (``predictions_to_coco_results``); may be empty
      iou_types: any of "bbox", "segm"

    Returns {iou_type: {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100",
    "ARs", "ARm", "ARl": float}}; no detections give 0 (and -1 where there is no ground truth).
    """
    coco_gt = _as_coco(coco_gt)
    stats = {}
    for iou_type in iou_types:
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = _results_for(coco_gt, results, iou_type)
            ev = COCOeval(coco_gt, coco_dt, iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats[iou_type] = {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}
    return stats


def format_table(stats, keys=("AP", "AP50", "AP75", "APs", "APm", "APl")):
    """A small aligned text table: one row per IoU type, one column per statistic."""
    head = f"{'':6s}" + "".join(f"{k:>8s}" for k in keys)
    rows = [head]
    for iou_type, s in stats.items():
        rows.append(f"{iou_type:6s}" + "".join(f"{s[k]:8.3f}" for k in keys))
    return "\n".join(rows)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, bytes):
        return x.decode("ascii")
    if isinstance(x, Path):
        return str(x)
    return x


def save_json(obj, path):
    """Write results or stats as JSON (NumPy values and bytes converted).  Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(obj), indent=1))
    return path
