"""COCO evaluation: pycocotools wrapper, results round trip, and the from-scratch AP."""
import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn_np.data import CocoDataset, make_shapes_dataset
from mrcnn_np.eval import (coco_average_precision, coco_evaluate, format_table,
                           predictions_to_coco_results, save_json)
from mrcnn_np.eval import ap as A
from mrcnn_np.eval.coco_eval import AP_AT_IOU_NAMES

SIX = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _coco(data):
    c = COCO()
    c.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        c.createIndex()
    return c


def _cocoeval(coco_gt, results, iou_type):
    """pycocotools' own numbers: (stats [12], precision [T, R, K, A] at maxDets=100)."""
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco_gt, coco_gt.loadRes(results), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats, ev.eval["precision"][..., -1]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    p = make_shapes_dataset(tmp_path_factory.mktemp("shp"), num_train=24, num_val=1,
                            image_size=(96, 96), seed=5)
    return CocoDataset(p["train_images"], p["train_annotations"])


def _noisy_predictions(ds, seed):
    """Predictions made from the ground truth: jittered, some dropped, some relabelled,
    extra false positives (also on the empty images), random scores with ties."""
    rng = np.random.default_rng(seed)
    preds, ids = [], []
    for i in range(len(ds)):
        s = ds.get(i)
        H, W = s["orig_size"]
        boxes, labels, scores, masks = [], [], [], []
        for box, lab, m in zip(s["boxes"], s["labels"], s["masks"]):
            if rng.random() < 0.15:
                continue                                            # missed
            dy, dx = rng.integers(-3, 4, size=2)
            boxes.append(box + rng.normal(0, 2.0, 4))
            labels.append(lab if rng.random() > 0.1 else rng.integers(1, ds.num_classes))
            scores.append(np.round(rng.random(), 1))                # ties on purpose
            masks.append(np.roll(m, (dy, dx), axis=(0, 1)) * rng.uniform(0.6, 1.0))
        for _ in range(int(rng.integers(0, 3))):                     # false positives
            x, y = rng.uniform(0, W - 20), rng.uniform(0, H - 20)
            w, h = rng.uniform(4, 40, 2)
            m = np.zeros((H, W))
            m[int(y):int(y + h), int(x):int(x + w)] = 0.9
            boxes.append(np.array([x, y, x + w, y + h]))
            labels.append(rng.integers(1, ds.num_classes))
            scores.append(np.round(rng.random(), 1))
            masks.append(m)
        n = len(boxes)
        preds.append(dict(boxes=np.array(boxes).reshape(n, 4), labels=np.array(labels, int),
                          scores=np.array(scores), masks=np.array(masks).reshape(n, 1, H, W)))
        ids.append(s["image_id"])
    return preds, ids


# ------------------------------------------------------------------------------------------
# From scratch vs pycocotools
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_from_scratch_ap_matches_cocoeval_on_shapes(shapes, seed, iou_type):
    preds, ids = _noisy_predictions(shapes, seed)
    results = predictions_to_coco_results(preds, ids, shapes.label_to_cat_id)
    key = "segmentation" if iou_type == "segm" else "bbox"
    results = [{k: r[k] for k in ("image_id", "category_id", "score", key)} for r in results]
    stats, precision = _cocoeval(shapes.coco, results, iou_type)
    mine = coco_average_precision(shapes.coco, results, iou_type)
    for n, name in enumerate(SIX):  # the same numbers, not close ones (0.0 difference measured)
        assert abs(mine[name] - stats[n]) <= 1e-9, (name, mine[name], stats[n])
    np.testing.assert_allclose(mine["precision"], precision, rtol=0, atol=1e-9)
    assert 0.1 < mine["AP"] < 0.9                                # a non-trivial case
    # And the wrapper reports the same pycocotools numbers.
    wrapped = coco_evaluate(shapes.coco, predictions_to_coco_results(preds, ids, shapes.label_to_cat_id),
                            iou_types=(iou_type,))[iou_type]
    for n, name in enumerate(SIX):
        assert wrapped[name] == pytest.approx(stats[n], abs=1e-12)


def _crowd_case():
    """Two images (one with no objects), two categories, a crowd region, all area ranges."""
    def rle(m):
        r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        r["counts"] = r["counts"].decode("ascii")
        return r
    H, W = 120, 160
    g = np.zeros((4, H, W), np.uint8)
    g[0, 10:20, 10:30] = 1          # small (200)
    g[1, 30:80, 40:100] = 1         # medium (3000)
    g[2, 0:110, 60:160] = 1         # large (11000), overlaps the medium one
    g[3, 85:120, 0:40] = 1          # crowd region
    anns = []
    for k, (cat, crowd) in enumerate([(1, 0), (1, 0), (2, 0), (1, 1)]):
        ys, xs = np.nonzero(g[k])
        anns.append({"id": k + 1, "image_id": 1, "category_id": cat, "iscrowd": crowd,
                     "area": float(g[k].sum()), "segmentation": rle(g[k]),
                     "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)]})
    data = {"images": [{"id": 1, "file_name": "a", "height": H, "width": W},
                       {"id": 2, "file_name": "b", "height": H, "width": W}],
            "categories": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}], "annotations": anns}
    gt = _coco(data)
    rng = np.random.default_rng(0)
    results = []
    for k in range(4):                                # shifted copies of every GT (crowd too)
        for shift in (0, 2, 7):
            m = np.roll(g[k], (shift, shift), axis=(0, 1))
            ys, xs = np.nonzero(m)
            results.append({"image_id": 1, "category_id": anns[k]["category_id"],
                            "score": float(rng.random()), "segmentation": rle(m),
                            "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)]})
    for img in (1, 2):                                # detections inside the crowd / on nothing
        m = np.zeros((H, W), np.uint8)
        m[90:100, 5:15] = 1
        results.append({"image_id": img, "category_id": 1, "score": 0.5, "segmentation": rle(m),
                        "bbox": [5.0, 90.0, 10.0, 10.0]})
    return gt, results


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_from_scratch_ap_matches_cocoeval_with_crowd_and_empty_image(iou_type):
    gt, results = _crowd_case()
    key = "segmentation" if iou_type == "segm" else "bbox"
    results = [{k: r[k] for k in ("image_id", "category_id", "score", key)} for r in results]
    stats, precision = _cocoeval(gt, results, iou_type)
    mine = coco_average_precision(gt, results, iou_type)
    for n, name in enumerate(SIX):  # the same numbers, not close ones (0.0 difference measured)
        assert abs(mine[name] - stats[n]) <= 1e-9, (name, mine[name], stats[n])
    np.testing.assert_allclose(mine["precision"], precision, rtol=0, atol=1e-9)
    assert min(stats[3:6]) > -1                            # small, medium and large all present


def test_ap_by_hand():
    # One image, one category, GTs A = (0, 0, 10, 10) and B = (20, 20, 10, 10) (x, y, w, h).
    # Detections by score: d1 = A (0.9), d2 = nothing (0.8), d3 = B (0.7); IoUs are 1 or 0,
    # so every threshold gives the same:
    #   d1 TP  recall 1/2  precision 1/1
    #   d2 FP  recall 1/2  precision 1/2
    #   d3 TP  recall 2/2  precision 2/3
    # Envelope from the right: 1, 2/3, 2/3.  Recall points 0, .01, .., .50 (51 points) read
    # precision 1 (first recall >= r is d1); .51 .. 1.00 (50 points) read 2/3 (d3).
    # AP = (51 * 1 + 50 * 2/3) / 101 = 84.333.. / 101 = 0.834983..
    data = {"images": [{"id": 1, "file_name": "x", "height": 50, "width": 50}],
            "categories": [{"id": 4, "name": "thing"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 4, "iscrowd": 0, "area": 100.0,
                 "bbox": [0.0, 0.0, 10.0, 10.0]},
                {"id": 2, "image_id": 1, "category_id": 4, "iscrowd": 0, "area": 100.0,
                 "bbox": [20.0, 20.0, 10.0, 10.0]}]}
    gt = _coco(data)
    results = [{"image_id": 1, "category_id": 4, "score": 0.9, "bbox": [0.0, 0.0, 10.0, 10.0]},
               {"image_id": 1, "category_id": 4, "score": 0.8, "bbox": [40.0, 40.0, 5.0, 5.0]},
               {"image_id": 1, "category_id": 4, "score": 0.7, "bbox": [20.0, 20.0, 10.0, 10.0]}]
    by_hand = (51 * 1 + 50 * 2 / 3) / 101
    mine = coco_average_precision(gt, results, "bbox")
    assert mine["AP"] == pytest.approx(by_hand, abs=1e-9)
    assert mine["AP50"] == pytest.approx(by_hand, abs=1e-9)
    assert mine["AP75"] == pytest.approx(by_hand, abs=1e-9)
    assert mine["APs"] == pytest.approx(by_hand, abs=1e-9)    # area 100 < 32^2: small
    assert mine["APm"] == mine["APl"] == -1.0                  # no medium or large GT
    assert coco_evaluate(gt, results, ("bbox",))["bbox"]["AP"] == pytest.approx(by_hand, abs=1e-9)


def test_interpolated_precision_and_matching_units():
    # TP, FP, TP over 2 GTs: as in test_ap_by_hand.
    p = A.interpolated_precision([0.9, 0.8, 0.7], np.array([1, 0, 1], bool), np.zeros(3, bool), 2)
    assert p[:51] == pytest.approx(1.0) and p[51:] == pytest.approx(2 / 3)
    # Recall never reaches 1: the points beyond read 0.
    p = A.interpolated_precision([0.9], np.array([True]), np.array([False]), 4)  # recall .25
    assert p[:26] == pytest.approx(1.0) and (p[26:] == 0).all()
    # No detections at all: 0 everywhere.
    assert (A.interpolated_precision([], np.zeros(0, bool), np.zeros(0, bool), 3) == 0).all()
    # Matching.  GT columns: 0 real, 1 crowd (ignored), 2 ignored (e.g. outside the area
    # range).  d0 takes GT 0; d1 finds GT 0 taken and nothing else >= .5; the crowd GT takes
    # d2 and d3 (never used up); d4 goes to the ignored GT 2, its best IoU, since no real GT
    # is free.
    ious = np.array([[0.9, 0.0, 0.0],
                     [0.8, 0.0, 0.0],
                     [0.0, 0.6, 0.0],
                     [0.0, 0.6, 0.0],
                     [0.0, 0.6, 0.95]])
    m = A.match_detections(ious, gt_ignore=np.array([0, 1, 1], bool),
                           gt_crowd=np.array([0, 1, 0], bool), iou_threshold=0.5)
    assert m.tolist() == [0, -1, 1, 1, 2]
    # A free real GT is preferred to an ignored one, even one with a higher IoU.
    m = A.match_detections(np.array([[0.6, 0.9]]), gt_ignore=np.array([0, 1], bool),
                           gt_crowd=np.array([0, 0], bool), iou_threshold=0.5)
    assert m.tolist() == [0]
    # IoU equal to the threshold matches (>=); just below does not.
    assert A.match_detections(np.array([[0.5]]), np.zeros(1, bool), np.zeros(1, bool), 0.5).tolist() == [0]
    assert A.match_detections(np.array([[0.4999]]), np.zeros(1, bool), np.zeros(1, bool), 0.5).tolist() == [-1]
    # Box IoU (x, y, w, h): 5x5 overlap of two 10x10 boxes = 25 / (100 + 100 - 25); crowd:
    # 25 / detection area 100.
    iou = A.box_iou_xywh([[0, 0, 10, 10]], [[5, 5, 10, 10], [5, 5, 10, 10]], [False, True])
    np.testing.assert_allclose(iou, [[25 / 175, 25 / 100]])
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2] = True
    masks[1, 1:3] = True                                     # overlap 4 px, union 12
    np.testing.assert_allclose(A.mask_iou(masks[:1], masks[1:], [False]), [[4 / 12]])
    assert A.mask_iou(np.zeros((0, 4, 4)), masks, [False, False]).shape == (0, 2)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_ap_at_each_iou_threshold(shapes, iou_type):
    """AP@50 .. AP@95: AP at each of the ten thresholds (the AP-vs-IoU curve of chapter 14).
    AP@50 and AP@75 are COCOeval's AP50 and AP75, their mean is AP, and each is the
    from-scratch precision's mean at that threshold."""
    preds, ids = _noisy_predictions(shapes, 0)
    results = predictions_to_coco_results(preds, ids, shapes.label_to_cat_id)
    stats = coco_evaluate(shapes.coco, results, iou_types=(iou_type,))[iou_type]
    curve = [stats[name] for name in AP_AT_IOU_NAMES]
    assert AP_AT_IOU_NAMES[0] == "AP@50" and AP_AT_IOU_NAMES[-1] == "AP@95" and len(curve) == 10
    assert stats["AP@50"] == stats["AP50"] and stats["AP@75"] == stats["AP75"]
    assert np.mean(curve) == pytest.approx(stats["AP"], abs=1e-12)
    assert curve == sorted(curve, reverse=True)             # a stricter IoU never raises AP
    precision = coco_average_precision(shapes.coco, results, iou_type)["precision"][..., 0]
    for t, ap in enumerate(curve):                          # [T, 101, K] -> mean of valid
        p = precision[t]
        assert ap == pytest.approx(p[p > -1].mean(), abs=1e-9)
    empty = coco_evaluate(shapes.coco, [], iou_types=(iou_type,))[iou_type]
    assert [empty[name] for name in AP_AT_IOU_NAMES] == [0.0] * 10


def test_empty_results_and_no_ground_truth(shapes):
    stats = coco_evaluate(shapes.coco, [])
    for t in ("bbox", "segm"):
        assert stats[t]["AP"] == 0.0 and stats[t]["AP50"] == 0.0
        assert coco_average_precision(shapes.coco, [], t)["AP"] == 0.0
    # Only images without objects: no AP anywhere (-1), with or without detections.
    data = {"images": [{"id": 1, "file_name": "x", "height": 20, "width": 20}],
            "categories": [{"id": 1, "name": "a"}], "annotations": []}
    gt = _coco(data)
    res = [{"image_id": 1, "category_id": 1, "score": 0.3, "bbox": [1.0, 1.0, 5.0, 5.0]}]
    assert coco_evaluate(gt, res, ("bbox",))["bbox"]["AP"] == -1.0
    assert coco_average_precision(gt, res, "bbox")["AP"] == -1.0
    assert coco_evaluate(gt, [], ("bbox",))["bbox"]["AP"] == -1.0


def test_perfect_predictions_give_ap_one(shapes):
    preds, ids = [], []
    for i in range(len(shapes)):
        s = shapes.get(i)
        n = len(s["labels"])
        preds.append(dict(boxes=s["boxes"], labels=s["labels"], scores=np.ones(n),
                          masks=s["masks"][:, None].astype(np.float32)))
        ids.append(s["image_id"])
    stats = coco_evaluate(shapes, predictions_to_coco_results(preds, ids, shapes.label_to_cat_id))
    for t in ("bbox", "segm"):
        assert stats[t]["AP"] == pytest.approx(1.0) and stats[t]["AR100"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------
# Results and helpers
# ------------------------------------------------------------------------------------------
def test_predictions_to_coco_results_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    soft = rng.random((3, 1, 9, 11))                             # [D, 1, H, W]
    soft[1, 0, 0, 0] = 0.5                                       # exactly the threshold: out
    pred = dict(boxes=np.array([[1, 2, 5, 7], [0, 0, 11, 9], [3.5, 1.25, 4, 2]], np.float32),
                labels=np.array([1, 2, 1]), scores=np.array([0.9, 0.2, 0.5], np.float32), masks=soft)
    empty = dict(boxes=np.zeros((0, 4)), labels=np.zeros(0, int), scores=np.zeros(0),
                 masks=np.zeros((0, 1, 9, 11)))
    res = predictions_to_coco_results([pred, empty], [42, 43], {1: 7, 2: 30})
    assert len(res) == 3
    for d, r in enumerate(res):
        assert r["image_id"] == 42 and r["category_id"] == [7, 30, 7][d]
        assert r["score"] == pytest.approx(float(pred["scores"][d]))
        x1, y1, x2, y2 = pred["boxes"][d].astype(float)
        assert r["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])
        assert isinstance(r["segmentation"]["counts"], str)
        dec = mask_utils.decode({"size": r["segmentation"]["size"],
                                 "counts": r["segmentation"]["counts"].encode("ascii")})
        assert np.array_equal(dec, (soft[d, 0] > 0.5).astype(np.uint8))
    assert json.loads(json.dumps(res)) == res                     # JSON-ready
    # [D, H, W] masks, a list label map, a custom threshold, and no masks at all.
    res2 = predictions_to_coco_results([dict(pred, masks=soft[:, 0])], [1], [0, 7, 30], 0.9)
    assert np.array_equal(mask_utils.decode(res2[0]["segmentation"] | {"counts": res2[0]["segmentation"]["counts"].encode()}),
                          (soft[0, 0] > 0.9).astype(np.uint8))
    res3 = predictions_to_coco_results([{k: v for k, v in pred.items() if k != "masks"}], [1], [0, 7, 30])
    assert "segmentation" not in res3[0]
    with pytest.raises(ValueError):
        predictions_to_coco_results([pred], [1, 2], {1: 7, 2: 30})


def test_format_table_and_save_json(tmp_path):
    stats = {"bbox": {k: 0.5 for k in SIX}, "segm": {k: -1.0 for k in SIX}}
    table = format_table(stats)
    lines = table.splitlines()
    assert len(lines) == 3 and len({len(l) for l in lines}) == 1   # aligned
    assert lines[0].split() == list(SIX)
    assert lines[1].split() == ["bbox"] + ["0.500"] * 6
    p = save_json({"stats": stats, "arr": np.arange(3), "x": np.float32(1.5)}, tmp_path / "o" / "s.json")
    assert json.loads(p.read_text()) == {"stats": stats, "arr": [0, 1, 2], "x": 1.5}


def test_object_recall_hand_worked():
    """Three objects in one image, worked by hand: a circle found (its best detection is a
    circle at 0.9), a square whose best detection is a circle (0.8 beats the square's 0.6: a
    wrong-class duplicate), and a triangle whose only detection scores 0.3 (missed); a fourth
    detection overlaps nothing."""
    from mrcnn_np.eval.coco_eval import object_recall
    from pycocotools.coco import COCO
    gt = COCO()
    gt.dataset = {
        "images": [{"id": 7, "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "circle"}, {"id": 2, "name": "square"},
                       {"id": 3, "name": "triangle"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 2, "bbox": [50, 50, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 3, "image_id": 7, "category_id": 3, "bbox": [20, 70, 10, 10], "area": 100, "iscrowd": 0}]}
    gt.createIndex()
    results = [
        {"image_id": 7, "category_id": 1, "bbox": [0, 0, 10, 11], "score": 0.9},    # IoU 10/11
        {"image_id": 7, "category_id": 2, "bbox": [50, 50, 20, 20], "score": 0.6},  # IoU 1
        {"image_id": 7, "category_id": 1, "bbox": [51, 50, 20, 20], "score": 0.8},  # IoU 0.90
        {"image_id": 7, "category_id": 3, "bbox": [20, 70, 10, 10], "score": 0.3},  # too low
        {"image_id": 7, "category_id": 2, "bbox": [80, 0, 10, 10], "score": 0.99}]  # on nothing
    r = object_recall(gt, results)
    assert (r["objects"], r["found"], r["wrong_class"], r["missed"]) == (3, 1, 1, 1)
    assert r["recall"] == 1 / 3
    assert r["confusion"] == {"circle -> circle": 1, "square -> circle": 1,
                              "triangle -> (none)": 1}
    # the square 0.6 lies on the square but is not its best detection (the circle 0.8 is): a
    # duplicate; the square 0.99 at (80, 0) overlaps no object
    assert r["duplicates"] == 1 and r["on_nothing"] == {"square": 1}
    # an image without objects: its confident detections are on nothing too
    gt.dataset["images"].append({"id": 8, "width": 100, "height": 100})
    gt.createIndex()
    more = results + [{"image_id": 8, "category_id": 3, "bbox": [5, 5, 9, 9], "score": 0.7},
                      {"image_id": 8, "category_id": 3, "bbox": [5, 5, 9, 9], "score": 0.2}]
    r = object_recall(gt, more)
    assert r["on_nothing"] == {"square": 1, "triangle": 1} and r["objects"] == 3
    # a lower score bar finds the triangle; a stricter IoU loses the circle (10/11 < 0.95)
    assert object_recall(gt, results, score_threshold=0.25)["found"] == 2
    assert object_recall(gt, results, iou_threshold=0.95)["confusion"]["circle -> (none)"] == 1
