"""Keypoint AP with pycocotools (iouType "keypoints"): results from predictions, our sigmas,
a perfect model scores 1, and one OKS worked by hand agrees with pycocotools' computeOks."""
import contextlib
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval, Params

from mrcnn_np.data import CocoDataset
from mrcnn_np.data import stickfigures as F
from mrcnn_np.eval.coco_eval import (AP_AT_IOU_NAMES, COCO_PERSON_KEYPOINTS, KEYPOINT_STAT_NAMES,
                                     check_results, coco_evaluate, format_table, oks_sigmas_for,
                                     predictions_to_coco_results)

K = len(F.KEYPOINT_NAMES)


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    root = tmp_path_factory.mktemp("figures")
    p = F.make_figures_dataset(root, num_train=0, num_val=10, image_size=96, seed=5)
    return CocoDataset(p["val_images"], p["val_annotations"])


def _ground_truth_as_predictions(ds):
    """Every image's ground truth as a model's output: boxes, labels, score 1, soft masks
    [D, 1, H, W], keypoints [D, K, 3] with v = 1 (as torchvision writes) and keypoint scores."""
    preds, ids = [], []
    for i in range(len(ds)):
        s = ds.get(i)
        kp = s["keypoints"].copy()                                   # [G, K, 3]
        kp[..., 2] = 1
        preds.append(dict(boxes=s["boxes"], labels=s["labels"], scores=np.ones(len(s["labels"])),
                          masks=s["masks"][:, None].astype(np.float32), keypoints=kp,
                          keypoints_scores=np.full(kp.shape[:2], 5.0)))
        ids.append(s["image_id"])
    return preds, ids


def test_perfect_predictions_give_keypoint_ap_one(figures):
    preds, ids = _ground_truth_as_predictions(figures)
    results = predictions_to_coco_results(preds, ids, figures.label_to_cat_id)
    assert len(results[0]["keypoints"]) == 3 * K and results[0]["keypoints_scores"] == [5.0] * K
    stats = coco_evaluate(figures, results, iou_types=("bbox", "segm", "keypoints"))
    kp = stats["keypoints"]
    assert set(kp) == set(KEYPOINT_STAT_NAMES) | set(AP_AT_IOU_NAMES)
    for name in ("AP", "AP50", "AP75", "AR") + AP_AT_IOU_NAMES:     # (a mean of 1.0s: 1 - 2e-16)
        assert kp[name] == pytest.approx(1.0, abs=1e-12), name
    assert stats["bbox"]["AP"] == pytest.approx(1.0) and stats["segm"]["AP"] == pytest.approx(1.0)
    # The table shows "-" where keypoints have no such statistic (no "small" area range).
    row = format_table(stats).splitlines()[3].split()
    assert row[0] == "keypoints" and row[1:4] == ["1.000"] * 3 and row[4] == "-"
    # Results without keypoints cannot be scored by OKS; no results score 0.
    with pytest.raises(ValueError, match="no 'keypoints'"):
        coco_evaluate(figures, [{k: v for k, v in r.items() if k != "keypoints"} for r in results],
                      iou_types=("keypoints",))
    assert coco_evaluate(figures, [], iou_types=("keypoints",))["keypoints"]["AP"] == 0.0


def test_moved_keypoints_lower_the_ap(figures):
    # Every predicted keypoint 3 px to the right: small figures lose their matches first.
    preds, ids = _ground_truth_as_predictions(figures)
    for p in preds:
        p["keypoints"][..., 0] += 3
    kp = coco_evaluate(figures, predictions_to_coco_results(preds, ids, figures.label_to_cat_id),
                       iou_types=("keypoints",))["keypoints"]
    assert 0 < kp["AP"] < kp["AP50"] <= 1.0
    assert [kp[n] for n in AP_AT_IOU_NAMES] == sorted((kp[n] for n in AP_AT_IOU_NAMES), reverse=True)


# ------------------------------------------------------------------------------------------
# One OKS by hand
# ------------------------------------------------------------------------------------------
def _one_person(keypoints, area):
    """A COCO ground truth of one stick figure in a 100 x 100 image."""
    gt = COCO()
    gt.dataset = {"images": [{"id": 1, "file_name": "a.png", "height": 100, "width": 100}],
                  "categories": [F.CATEGORY],
                  "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                                   "area": area, "bbox": [20, 10, 40, 80],
                                   "segmentation": [[20, 10, 60, 10, 60, 90, 20, 90]],
                                   "keypoints": keypoints,
                                   "num_keypoints": sum(v > 0 for v in keypoints[2::3])}]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def test_oks_by_hand_agrees_with_pycocotools():
    # The ground truth: 9 keypoints, the right foot unlabelled (v = 0), area s^2 = 400.
    true = np.array([[40.5, 15.5, 2], [40.5, 30.5, 2], [55.5, 30.5, 2], [25.5, 30.5, 1],
                     [40.5, 50.5, 2], [45.5, 65.5, 2], [35.5, 65.5, 2], [50.5, 80.5, 2],
                     [0, 0, 0]])
    # The detection: the head 0.5 px off (0.3, 0.4), the left hand 2 px (0, 2), the left foot
    # 5 px (3, 4); everything else exact; the right foot's guess is far off but not scored.
    pred = true.copy()
    pred[:, 2] = 1
    pred[F.HEAD, :2] += (0.3, 0.4)
    pred[F.LEFT_HAND, :2] += (0.0, 2.0)
    pred[F.LEFT_FOOT, :2] += (3.0, 4.0)
    pred[F.RIGHT_FOOT, :2] = (90.0, 5.0)
    # OKS = mean over the 8 labelled keypoints of exp(-d^2 / (2 s^2 k^2)), k = 2 sigma:
    #   head:      sigma 0.026, k^2 = 0.052^2 = 0.002704, 2 s^2 k^2 = 800 * 0.002704 = 2.1632,
    #              d^2 = 0.25, exp(-0.25 / 2.1632) = exp(-0.115570) = 0.890859
    #   left hand: sigma 0.062, k^2 = 0.015376, 2 s^2 k^2 = 12.3008,
    #              d^2 = 4,    exp(-4 / 12.3008) = exp(-0.325182) = 0.722396
    #   left foot: sigma 0.089, k^2 = 0.031684, 2 s^2 k^2 = 25.3472,
    #              d^2 = 25,   exp(-25 / 25.3472) = exp(-0.986302) = 0.372953
    #   five exact keypoints: exp(0) = 1 each
    #   OKS = (0.890859 + 0.722396 + 0.372953 + 5) / 8 = 6.986208 / 8 = 0.873276
    by_hand = (math.exp(-0.25 / 2.1632) + math.exp(-4 / 12.3008) + math.exp(-25 / 25.3472) + 5) / 8
    assert by_hand == pytest.approx(0.873276, abs=1e-6)

    gt = _one_person([float(v) for v in true.ravel()], 400.0)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes([{"image_id": 1, "category_id": 1, "score": 0.9,
                          "keypoints": [float(v) for v in pred.ravel()]}])
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.array(F.OKS_SIGMAS)
        ev.evaluate()
    assert ev.ious[(1, 1)].shape == (1, 1)
    assert ev.ious[(1, 1)][0, 0] == pytest.approx(by_hand, abs=1e-12)   # pycocotools' computeOks

    # Through coco_evaluate: one detection at OKS 0.873 matches at the thresholds .50 ... .85
    # (8 of 10) and at none above, so its AP is 1 at those and 0 at .90, .95: AP = 0.8.
    stats = coco_evaluate(gt, [{"image_id": 1, "category_id": 1, "score": 0.9,
                                "keypoints": [float(v) for v in pred.ravel()]}],
                          iou_types=("keypoints",))["keypoints"]
    np.testing.assert_allclose([stats[n] for n in AP_AT_IOU_NAMES], [1.0] * 8 + [0.0] * 2,
                               atol=1e-12)
    assert stats["AP"] == pytest.approx(0.8)
    assert stats["AP50"] == pytest.approx(1.0) and stats["AP75"] == pytest.approx(1.0)


def test_sigmas():
    np.testing.assert_array_equal(oks_sigmas_for(F.KEYPOINT_NAMES), F.OKS_SIGMAS)
    assert len(F.OKS_SIGMAS) == K
    # COCO's names get pycocotools' own default sigmas.
    np.testing.assert_allclose(oks_sigmas_for(COCO_PERSON_KEYPOINTS),
                               Params(iouType="keypoints").kpt_oks_sigmas, rtol=1e-12)
    # Ours reuse COCO's value of the nearest body part.
    coco = dict(zip(COCO_PERSON_KEYPOINTS, Params(iouType="keypoints").kpt_oks_sigmas))
    nearest = {"head": "nose", "neck": "left_shoulder", "left_hand": "left_wrist",
               "right_hand": "right_wrist", "pelvis": "left_hip", "left_knee": "left_knee",
               "right_knee": "right_knee", "left_foot": "left_ankle", "right_foot": "right_ankle"}
    for name, sigma in zip(F.KEYPOINT_NAMES, F.OKS_SIGMAS):
        assert sigma == pytest.approx(coco[nearest[name]], abs=1e-12)
    # Symmetric: a flip does not change a keypoint's sigma.
    assert [F.OKS_SIGMAS[i] for i in F.FLIP_INDICES] == list(F.OKS_SIGMAS)
    with pytest.raises(ValueError, match="kpt_oks_sigmas"):
        oks_sigmas_for(["a", "b"])


def test_given_sigmas_are_used_and_checked():
    true = [40.5, 15.5, 2] * K
    pred = [41.5, 15.5, 1] * K                                     # every keypoint 1 px off
    gt = _one_person(true, 100.0)
    res = [{"image_id": 1, "category_id": 1, "score": 1.0, "keypoints": pred}]
    # sigma 0.05 for all: OKS = exp(-1 / (2 * 100 * 0.1^2)) = exp(-0.5) = 0.607 -> thresholds
    # .50, .55, .60 match: AP = 0.3.  sigma 0.5: exp(-1 / 200) = 0.995 -> AP = 1.
    assert coco_evaluate(gt, res, ("keypoints",), kpt_oks_sigmas=[0.05] * K)["keypoints"]["AP"] \
        == pytest.approx(0.3)
    assert coco_evaluate(gt, res, ("keypoints",), kpt_oks_sigmas=[0.5] * K)["keypoints"]["AP"] \
        == pytest.approx(1.0)
    for bad in ([0.05] * (K - 1), [0.0] * K, [float("nan")] * K):
        with pytest.raises(ValueError, match="kpt_oks_sigmas"):
            coco_evaluate(gt, res, ("keypoints",), kpt_oks_sigmas=bad)
    with pytest.raises(ValueError, match="unknown iou_type"):
        coco_evaluate(gt, res, ("oks",))


def test_keypoint_results_checked():
    gt = _one_person([40.5, 15.5, 2] * K, 100.0)
    good = {"image_id": 1, "category_id": 1, "score": 0.5, "keypoints": [1.0, 2.0, 1] * K}
    assert check_results([good], gt) == [good]
    for kps, why in (([1.0, 2.0, 1] * (K - 1), "has 9 keypoints"), ([1.0, 2.0, 1.0, 4.0], "3 K finite"),
                     ([float("nan"), 2.0, 1] * K, "3 K finite"), ("x", "3 K finite")):
        with pytest.raises(ValueError, match=why):
            check_results([dict(good, keypoints=kps)], gt)
    with pytest.raises(ValueError, match=r"\[D, K, 3\]"):
        predictions_to_coco_results([dict(boxes=np.zeros((2, 4)), labels=[1, 1], scores=[1, 1],
                                          keypoints=np.zeros((1, K, 3)))], [1], {1: 1})


def test_gt_without_keypoints_is_refused(tmp_path):
    from mrcnn_np.data.shapes import make_shapes_dataset
    p = make_shapes_dataset(tmp_path, num_train=1, num_val=0, image_size=40, seed=0)
    with pytest.raises(ValueError, match="no category lists any"):
        coco_evaluate(str(p["train_annotations"]), [], iou_types=("keypoints",))
