"""COCO evaluation with pycocotools: predictions -> COCO results -> AP table.

    results = predictions_to_coco_results(predictions, image_ids, ds.label_to_cat_id)
    stats = coco_evaluate(ds.coco, results)          # {"bbox": {"AP": ..}, "segm": {..}}
    print(format_table(stats))

Predictions are torchvision-style dicts, one per image, in ORIGINAL image pixels:
``boxes`` [D, 4] = (x1, y1, x2, y2), ``labels`` [D] (contiguous, 1..K-1), ``scores`` [D],
``masks`` [D, 1, H, W] soft, 0..1, and for a keypoint model ``keypoints`` [D, K, 3] =
(x, y, v) with ``keypoints_scores`` [D, K].  The AP numbers are pycocotools' own (COCOeval
with its default parameters: IoU .50:.05:.95, 101 recall points, areas small < 32^2 <=
medium < 96^2 <= large, at most 100 detections per image).  A value of -1 means "no ground
truth in that setting" (e.g. APs when no object is small), as pycocotools reports it.

Keypoint AP (``iou_types=("keypoints",)``) is COCOeval's ``iouType="keypoints"``: detections
match ground truth by OKS, the object keypoint similarity, instead of IoU,

    OKS = mean over the labelled (v > 0) keypoints i of exp(-d_i^2 / (2 s^2 k_i^2)),

d_i the distance from the predicted to the true keypoint, s^2 the ground truth's ``area``, and
k_i = 2 sigma_i a per-keypoint tolerance (``kpt_oks_sigmas``; pycocotools cocoeval.computeOks).
Its parameters differ from the box ones: at most 20 detections per image, and areas "all",
medium and large only (no "small"), so its table is KEYPOINT_STAT_NAMES.
"""
import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# Names of COCOeval.stats, in its order (pycocotools cocoeval.py, summarize()).
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# AP at each of COCOeval's ten IoU thresholds .50:.05:.95 (all areas, 100 detections), as
# summarize() computes AP50 and AP75: "AP@50", "AP@55", ..., "AP@95". Their mean is AP.
IOU_THRESHOLDS = tuple(round(float(t), 2) for t in np.linspace(0.5, 0.95, 10))
AP_AT_IOU_NAMES = tuple(f"AP@{round(100 * t)}" for t in IOU_THRESHOLDS)
# Names of COCOeval.stats for iouType "keypoints" (summarize()'s _summarizeKps; OKS thresholds
# play the IoU thresholds' part): AR is the recall at 20 detections.
KEYPOINT_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
# COCO's 17 person keypoints and their sigmas (pycocotools cocoeval Params.setKpParams).
COCO_PERSON_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear",
                         "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
                         "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                         "right_knee", "left_ankle", "right_ankle")
COCO_PERSON_SIGMAS = (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062,
                      0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089)


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
        keypoints [D, K, 3] = (x, y, v) in original image pixels; optional (then no keypoints)
        keypoints_scores [D, K]; optional, kept beside the keypoints (COCOeval ignores it)
      image_ids: the COCO image id of each prediction
      label_to_cat_id: {label: category id} (a dict, or a sequence indexed by label)
      mask_threshold: a pixel is in the mask when its value is > mask_threshold (as torchvision's
        reference evaluation does with 0.5)

    Returns a list of dicts {image_id, category_id, score, bbox = [x, y, w, h],
    segmentation = compressed RLE with str counts (only when masks are given),
    keypoints = flat [x1, y1, v1, ..., xK, yK, vK] (only when keypoints are given; the v that
    the model wrote, which COCOeval does not read: torchvision writes 1), keypoints_scores =
    [K] (only when given)}. A keypoint result's ``score`` is its detection's, as in
    torchvision's reference evaluation.
    """
    if len(predictions) != len(image_ids):
        raise ValueError(f"{len(predictions)} predictions but {len(image_ids)} image ids")
    results = []
    for pred, image_id in zip(predictions, image_ids):
        masks = pred.get("masks")
        if masks is not None:
            masks = np.asarray(masks)
            masks = masks.reshape(masks.shape[0], *masks.shape[-2:]) > mask_threshold  # [D, H, W]
        results += _results(pred, image_id, label_to_cat_id, masks)
    return results


def _results(pred, image_id, label_to_cat_id, binary_masks=None, start=0):
    """COCO result dicts of detections ``start ..`` of one image (all of them, or as many as
    ``binary_masks`` [c, H, W] holds)."""
    boxes = np.asarray(pred["boxes"], np.float64).reshape(-1, 4)           # [D, 4]
    labels = np.asarray(pred["labels"]).reshape(-1)                        # [D]
    scores = np.asarray(pred["scores"], np.float64).reshape(-1)            # [D]
    stop = len(scores) if binary_masks is None else start + len(binary_masks)
    kps = pred.get("keypoints")
    if kps is not None:
        kps = np.asarray(kps, np.float64)                                  # [D, K, 3]
        if kps.ndim != 3 or kps.shape[0] != len(scores) or kps.shape[2] != 3:
            raise ValueError(f"keypoints must be [D, K, 3] for D = {len(scores)} detections,"
                             f" not {list(kps.shape)}")
    kp_scores = pred.get("keypoints_scores")
    if kp_scores is not None:
        kp_scores = np.asarray(kp_scores, np.float64)                      # [D, K]
        if kp_scores.ndim != 2 or kp_scores.shape[0] != len(scores):
            raise ValueError(f"keypoints_scores must be [D, K] for D = {len(scores)} detections,"
                             f" not {list(kp_scores.shape)}")
    out = []
    for d in range(start, stop):
        x1, y1, x2, y2 = boxes[d]
        r = {"image_id": int(image_id),
             "category_id": int(label_to_cat_id[int(labels[d])]),
             "score": float(scores[d]),
             "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]}
        if binary_masks is not None:
            r["segmentation"] = encode_mask(binary_masks[d - start])
        if kps is not None:
            r["keypoints"] = [float(v) for v in kps[d].ravel()]          # [3K]
        if kp_scores is not None:
            r["keypoints_scores"] = [float(v) for v in kp_scores[d]]
        out.append(r)
    return out


def detection_to_coco_results(pred, image_id, image_size, label_to_cat_id, mask_threshold=0.5,
                              on_masks=None, max_pixels=None, paste="torchvision"):
    """One image's detections as COCO results, its masks pasted a chunk at a time.

    Inputs:
      pred: ``model.predict([image], paste_masks=False)[0]``: boxes [D, 4] in the image's
        pixels, labels [D], scores [D], masks [D, 1, M, M] not yet pasted (or no masks)
      image_id: its COCO id;  image_size: (H, W);  label_to_cat_id: as above
      on_masks: optional ``f(start, binary [c, H, W])``, called with each chunk of pasted,
        thresholded masks (``predict`` draws the picture with them)
      max_pixels: the most mask pixels pasted at once (default ``PASTE_CHUNK_PIXELS``)
      paste: the paste method, "torchvision" or "subpixel" (``model.transform.mask_paste``, as
        ``model.predict`` pastes; it is set from ``cfg.mask_paste``)

    Returns the list of result dicts, the same as ``predictions_to_coco_results`` on the
    pasted masks; memory holds one chunk of full-size masks at a time
    (``postprocess.paste_masks_in_chunks``), however large the image.
    """
    from mrcnn_np.postprocess import PASTE_CHUNK_PIXELS, paste_masks_in_chunks
    if pred.get("masks") is None:
        return _results(pred, image_id, label_to_cat_id)
    results = []
    boxes = np.asarray(pred["boxes"]).reshape(-1, 4)                       # [D, 4]
    for start, pasted in paste_masks_in_chunks(np.asarray(pred["masks"]), boxes, image_size,
                                               max_pixels or PASTE_CHUNK_PIXELS, paste):
        binary = pasted[:, 0] > mask_threshold                             # [c, H, W]
        del pasted
        if on_masks is not None:
            on_masks(start, binary)
        results += _results(pred, image_id, label_to_cat_id, binary, start)
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
    segmentation is left out, so the area is w * h; for "keypoints" both are left out, so
    loadRes takes the area and box from the keypoints' extent (as torchvision's reference
    evaluation, which writes keypoint results without a box).  No results gives an empty
    object (loadRes itself fails on an empty list).
    """
    key = {"segm": "segmentation", "keypoints": "keypoints"}.get(iou_type, "bbox")
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


def coco_evaluate(coco_gt, results, iou_types=("bbox", "segm"), kpt_oks_sigmas=None):
    """COCO AP of ``results`` against ``coco_gt``, by pycocotools COCOeval, quietly.

    Inputs:
      coco_gt: pycocotools COCO (or a CocoDataset, or the path of an instances JSON)
      results: list of COCO result dicts (``predictions_to_coco_results``); may be empty
      iou_types: any of "bbox", "segm", "keypoints"
      kpt_oks_sigmas: [K] per-keypoint sigmas for "keypoints" (default: ``oks_sigmas_for``
        the ground truth's keypoint names: the stick figures' or COCO's person sigmas)

    Returns {iou_type: {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100",
    "ARs", "ARm", "ARl", "AP@50", "AP@55", ..., "AP@95": float}} (the last ten: AP at each
    IoU threshold, see ``ap_at_iou``); for "keypoints" the names are KEYPOINT_STAT_NAMES and
    "AP@50" ... "AP@95" (at each OKS threshold). No detections give 0 (and -1 where there is
    no ground truth). "keypoints" evaluates only the categories that list keypoints.
    """
    coco_gt = _as_coco(coco_gt)
    stats = {}
    for iou_type in iou_types:
        if iou_type not in ("bbox", "segm", "keypoints"):
            raise ValueError(f"unknown iou_type {iou_type!r}: use 'bbox', 'segm' or 'keypoints'")
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = _results_for(coco_gt, results, iou_type)
            ev = COCOeval(coco_gt, coco_dt, iou_type)
            names = STAT_NAMES
            if iou_type == "keypoints":
                _keypoint_params(ev.params, coco_gt, kpt_oks_sigmas)
                names = KEYPOINT_STAT_NAMES
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats[iou_type] = {name: float(v) for name, v in zip(names, ev.stats)}
        stats[iou_type].update(zip(AP_AT_IOU_NAMES, ap_at_iou(ev)))
    return stats


def oks_sigmas_for(keypoint_names):
    """The OKS sigmas [K] of a known set of keypoint names: the stick figures'
    (``stickfigures.OKS_SIGMAS``, chosen there from COCO's nearest body parts) or COCO's 17
    person keypoints' (pycocotools' defaults). Raises ValueError for any other set: choose
    its sigmas and pass them as ``kpt_oks_sigmas``."""
    from mrcnn_np.data.stickfigures import KEYPOINT_NAMES, OKS_SIGMAS
    names = tuple(str(n) for n in keypoint_names)
    known = {KEYPOINT_NAMES: OKS_SIGMAS, COCO_PERSON_KEYPOINTS: COCO_PERSON_SIGMAS}
    if names not in known:
        raise ValueError(f"no OKS sigmas known for the keypoints {list(names)[:4]}...; pass"
                         f" kpt_oks_sigmas (one per keypoint)")
    return np.array(known[names], np.float64)


def _keypoint_params(params, coco_gt, kpt_oks_sigmas):
    """Point COCOeval's keypoint parameters at our keypoints: the categories that list
    keypoints, and one sigma per keypoint."""
    cats = [c for c in coco_gt.dataset["categories"] if c.get("keypoints")]
    if not cats:
        raise ValueError("keypoint AP needs ground truth with keypoints (no category lists any)")
    names = cats[0]["keypoints"]
    sigmas = (oks_sigmas_for(names) if kpt_oks_sigmas is None
              else np.asarray(kpt_oks_sigmas, np.float64).reshape(-1))
    if len(sigmas) != len(names) or not (np.isfinite(sigmas).all() and (sigmas > 0).all()):
        raise ValueError(f"kpt_oks_sigmas must be {len(names)} positive numbers (one per"
                         f" keypoint), not {sigmas.tolist()}")
    params.catIds = sorted(c["id"] for c in cats)
    params.kpt_oks_sigmas = sigmas


def ap_at_iou(ev):
    """AP at each IoU threshold of an accumulated COCOeval: [T] floats, T = 10 for .50:.05:.95.

    ``ev.eval["precision"]`` is [T, R, K, A, M] (thresholds, 101 recall points, categories,
    area ranges, max-detection settings), -1 where a category has no ground truth. As
    ``summarize()`` does for AP50 and AP75: area "all", the largest max-detections, the mean
    over the entries that are not -1 (-1 when there are none)."""
    p = ev.eval["precision"][:, :, :, ev.params.areaRngLbl.index("all"), -1]  # [T, R, K]
    return [float(np.mean(pt[pt > -1])) if np.any(pt > -1) else -1.0 for pt in p]


def object_recall(coco_gt, results, iou_threshold=0.5, score_threshold=0.5):
    """How many ground-truth objects a reader of the predictions would get right.

    For each (non-crowd) ground-truth object, its **best detection** is the highest-scoring
    detection of any class whose box overlaps it by IoU >= ``iou_threshold``. The object counts
    as found when that detection has the object's class and a score >= ``score_threshold``.
    Unlike AP, which scores each class on its own, this counts a wrong-class duplicate that
    outscores the right one as a miss.

    Returns {"objects": G, "found": n, "recall": n / G, "wrong_class": objects whose best
    detection scored high enough but named another class, "missed": objects with no
    detection scoring >= score_threshold over them, "confusion": {"true -> predicted": count},
    "duplicates": detections scoring >= score_threshold that overlap an object but are no
    object's best detection, "on_nothing": {predicted class: count} of detections scoring >=
    score_threshold that overlap no object (images without objects included)}.
    """
    coco_gt = _as_coco(coco_gt)
    names = {c["id"]: c["name"] for c in coco_gt.dataset["categories"]}
    by_image = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    found = wrong = missed = total = duplicates = 0
    confusion, on_nothing = {}, {}
    for img_id in coco_gt.getImgIds():
        gts = [a for a in coco_gt.imgToAnns.get(img_id, []) if not a.get("iscrowd", 0)]
        dts = by_image.get(img_id, [])
        g = np.array([a["bbox"] for a in gts], np.float64).reshape(-1, 4)  # [G, 4] xywh
        d = np.array([r["bbox"] for r in dts], np.float64).reshape(-1, 4)  # [D, 4] xywh
        iou = np.asarray(mask_utils.iou(d.tolist(), g.tolist(), [0] * len(gts)), np.float64
                         ).reshape(len(dts), len(gts)) if len(dts) and len(gts) else \
            np.zeros((len(dts), len(gts)))  # [D, G]
        high = np.array([r["score"] >= score_threshold for r in dts], bool)  # [D]
        on_object = (iou >= iou_threshold).any(1)  # [D] (all False without objects)
        for i in np.flatnonzero(high & ~on_object):
            name = names[dts[i]["category_id"]]
            on_nothing[name] = on_nothing.get(name, 0) + 1
        bests = set()
        for j, a in enumerate(gts):
            total += 1
            over = np.flatnonzero(iou[:, j] >= iou_threshold)
            best = max(over, key=lambda i: dts[i]["score"]) if len(over) else None
            if best is not None:
                bests.add(int(best))
            if best is None or dts[best]["score"] < score_threshold:
                missed += 1
                key = f"{names[a['category_id']]} -> (none)"
            elif dts[best]["category_id"] == a["category_id"]:
                found += 1
                key = f"{names[a['category_id']]} -> {names[a['category_id']]}"
            else:
                wrong += 1
                key = f"{names[a['category_id']]} -> {names[dts[best]['category_id']]}"
            confusion[key] = confusion.get(key, 0) + 1
        duplicates += len(set(np.flatnonzero(high & on_object).tolist()) - bests)
    return dict(objects=total, found=found, recall=found / total if total else float("nan"),
                wrong_class=wrong, missed=missed, confusion=dict(sorted(confusion.items())),
                duplicates=duplicates, on_nothing=dict(sorted(on_nothing.items())))


def check_results(results, coco_gt, source="results"):
    """Check a COCO results list (as ``loadRes`` reads it) against the ground truth, and
    return it ready for ``coco_evaluate``: each entry a dict with a known ``image_id``, a known
    ``category_id``, a finite number ``score``, and a ``bbox`` [x, y, w, h] of 4 finite numbers
    and/or a ``segmentation`` (RLE, or polygons, which are turned into RLE here) and/or
    ``keypoints`` (3 K finite numbers, K its category's keypoints).

    Raises ValueError, one line naming ``source`` and the first bad entry by its index, for
    anything else (unknown ids, a missing score, a string bbox, ...)."""
    coco_gt = _as_coco(coco_gt)
    if not isinstance(results, list):
        raise ValueError(f"{source}: not a COCO results file (a list of detections), but a "
                         f"{type(results).__name__}")
    unknown_images, unknown_cats = set(), set()
    out = []
    for n, r in enumerate(results):
        where = f"{source}: result {n}"
        if not isinstance(r, dict):
            raise ValueError(f"{where} is not a result (an object with image_id, category_id, "
                             f"score, bbox or segmentation): {str(r)[:60]}")
        for key in ("image_id", "category_id", "score"):
            if key not in r:
                raise ValueError(f"{where} has no {key!r}")
        for key in ("image_id", "category_id"):
            if not (isinstance(r[key], int) and not isinstance(r[key], bool)):
                raise ValueError(f"{where}: {key!r} is not an integer: {str(r[key])[:40]}")
        if not _is_number(r["score"]):
            raise ValueError(f"{where}: 'score' is not a finite number: {str(r['score'])[:40]}")
        if "bbox" not in r and "segmentation" not in r and "keypoints" not in r:
            raise ValueError(f"{where} has no 'bbox', 'segmentation' or 'keypoints'")
        if "keypoints" in r and not (isinstance(r["keypoints"], (list, tuple))
                                     and len(r["keypoints"]) % 3 == 0 and r["keypoints"]
                                     and all(_is_number(v) for v in r["keypoints"])):
            raise ValueError(f"{where}: 'keypoints' is not 3 K finite numbers [x1, y1, v1, ...]:"
                             f" {str(r['keypoints'])[:60]}")
        if "bbox" in r and not (isinstance(r["bbox"], (list, tuple)) and len(r["bbox"]) == 4
                                and all(_is_number(v) for v in r["bbox"])):
            raise ValueError(f"{where}: 'bbox' is not 4 finite numbers [x, y, w, h]: "
                             f"{str(r['bbox'])[:60]}")
        if r["image_id"] not in coco_gt.imgs:
            unknown_images.add(r["image_id"])
            continue
        if r["category_id"] not in coco_gt.cats:
            unknown_cats.add(r["category_id"])
            continue
        n_kp = len(coco_gt.cats[r["category_id"]].get("keypoints") or [])
        if "keypoints" in r and len(r["keypoints"]) != 3 * n_kp:
            raise ValueError(f"{where}: {len(r['keypoints'])} keypoint numbers, but its category"
                             f" has {n_kp} keypoints ({3 * n_kp} numbers)")
        r = dict(r)
        if "segmentation" in r:
            r["segmentation"] = _as_rle(r["segmentation"], coco_gt.imgs[r["image_id"]], where)
        out.append(r)
    for what, bad in (("image id", unknown_images), ("category id", unknown_cats)):
        if bad:
            shown = ", ".join(str(v) for v in sorted(bad, key=str)[:5])
            raise ValueError(f"{source}: {len(bad)} unknown {what}{'s' * (len(bad) != 1)} "
                             f"{shown}{' ...' if len(bad) > 5 else ''} (not in the annotations)")
    return out


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _as_rle(seg, img, where):
    """A result's segmentation as compressed RLE with str counts (polygons rasterised)."""
    h, w = int(img["height"]), int(img["width"])
    try:
        if isinstance(seg, list):                                    # polygons
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
        elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(seg, h, w)
        elif isinstance(seg, dict) and isinstance(seg.get("counts"), str):
            rle = dict(seg)
        else:
            raise TypeError("not an RLE or polygons")
        if list(rle["size"]) != [h, w]:
            raise ValueError(f"size {list(rle['size'])} is not the image's [{h}, {w}]")
        if isinstance(rle["counts"], bytes):
            rle["counts"] = rle["counts"].decode("ascii")
        mask_utils.area(rle)                                         # decodes: fails if garbled
    except (TypeError, ValueError, KeyError, IndexError) as e:
        raise ValueError(f"{where}: unusable 'segmentation' ({' '.join(str(e).split())[:80]})") from None
    return rle


def format_table(stats, keys=("AP", "AP50", "AP75", "APs", "APm", "APl")):
    """A small aligned text table: one row per IoU type, one column per statistic ("-" where
    a type has no such statistic, e.g. APs for keypoints)."""
    width = max([6] + [len(t) for t in stats])
    head = " " * width + "".join(f"{k:>8s}" for k in keys)
    rows = [head]
    for iou_type, s in stats.items():
        rows.append(f"{iou_type:{width}s}" + "".join(f"{s[k]:8.3f}" if k in s else f"{'-':>8s}"
                                                     for k in keys))
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
