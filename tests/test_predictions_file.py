"""The predictions file: what ``python -m mrcnn_np predict`` writes to ``predictions.json``.

A COCO results file is only useful when every record says what the model predicted: the box
as COCO's ``[x, y, w, h]``, the mask as an RLE that decodes to the thresholded pasted mask,
the score, and only the detections at or above ``--score-threshold``. Here the CLI runs in a
subprocess, as a user runs it, and each record is checked against ``MaskRCNN.predict`` on the
same image with the same weights (in this process), and against what must hold of any
detection whatever the model: the box lies in the image, the mask lies around its box.

The weights are a freshly initialised tiny model (4 classes, as the shapes data set): its
class scores sit near 1/4, above the 0.05 score threshold, so every image has detections
(up to ``box_detections_per_img``) with distinct scores to threshold on.
"""
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mrcnn_np.config import tiny
from mrcnn_np.data.coco import load_image
from mrcnn_np.data.shapes import make_shapes_dataset
from mrcnn_np.model import MaskRCNN
from test_cli import cli

SIZE = 64
MASK_THRESHOLD = 0.5  # a pixel is in the mask when its pasted probability is > 0.5


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pred")
    make_shapes_dataset(root / "data", num_train=1, num_val=3, image_size=(SIZE, SIZE), seed=3)
    images = sorted((root / "data" / "val").glob("*.png"))
    weights = root / "tiny.npz"
    model = MaskRCNN(tiny(num_classes=4), rng=np.random.default_rng(7))
    model.save(weights)
    ours = MaskRCNN(tiny(num_classes=4))                  # what predict will load, in process
    with np.load(weights, allow_pickle=False) as z:
        ours.load_state_dict({k: z[k] for k in z.files})
    preds = {str(p): ours.predict([load_image(p)])[0] for p in images}
    return root, weights, images, preds


def _predict(setup, threshold, name):
    root, weights, images, _ = setup
    out = root / name
    rc, _, err = cli("predict", "--weights", weights, "--images", *images, "--out", out,
                     "--score-threshold", threshold)
    assert rc == 0, err
    results = json.loads((out / "predictions.json").read_text())
    assert isinstance(results, list)
    return results


def _by_file(results):
    by = {}
    for r in results:
        by.setdefault(r["file_name"], []).append(r)
    return by


@pytest.fixture(scope="module")
def results_all(setup):
    return _predict(setup, 0.0, "t0")


def test_every_record_is_what_predict_returned(setup, results_all):
    _, _, images, preds = setup
    assert results_all, "predictions.json is empty: nothing was checked"
    by = _by_file(results_all)
    assert sorted(by) == sorted(str(p) for p in images)      # every image has detections
    ids = {f: {r["image_id"] for r in rs} for f, rs in by.items()}
    assert all(len(v) == 1 for v in ids.values()), ids       # one image id per image ...
    assert len({next(iter(v)) for v in ids.values()}) == len(images)  # ... a different one each
    for f, records in by.items():
        pred = preds[f]
        D = len(pred["scores"])
        assert len(records) == D > 0, (f, len(records), D)
        H, W = SIZE, SIZE
        masks = pred["masks"].reshape(D, H, W)               # [D, H, W] probabilities
        for d, r in enumerate(records):                      # written in predict's order
            assert r["score"] == pytest.approx(float(pred["scores"][d]), abs=1e-7)
            assert r["category_id"] == int(pred["labels"][d])   # no config.json: id = label
            # bbox is COCO's [x, y, w, h] of the predicted (x1, y1, x2, y2)
            x1, y1, x2, y2 = (float(v) for v in pred["boxes"][d])
            assert r["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=1e-5)
            x, y, w, h = r["bbox"]
            assert w >= 0 and h >= 0                         # a box, not a corner pair
            assert 0 <= x and x + w <= W + 1e-4 and 0 <= y and y + h <= H + 1e-4  # clipped
            # the RLE decodes to the pasted mask thresholded at 0.5, at the image's size
            seg = r["segmentation"]
            assert seg["size"] == [H, W] and isinstance(seg["counts"], str)
            dec = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode("ascii")})
            assert dec.shape == (H, W)
            np.testing.assert_array_equal(dec, (masks[d] > MASK_THRESHOLD).astype(np.uint8))
            # ... and lies around its box: the 28x28 mask is pasted into the box grown by
            # one mask cell on each side (torchvision's expand_boxes, (28 + 2) / 28), plus
            # the 1-px rounding of paste_mask_in_image.
            ys, xs = np.nonzero(dec)
            if len(xs):
                gx, gy = w / 28 + 1.5, h / 28 + 1.5
                assert x - gx <= xs.min() and xs.max() + 1 <= x + w + gx, (r["bbox"], xs.min(), xs.max())
                assert y - gy <= ys.min() and ys.max() + 1 <= y + h + gy, (r["bbox"], ys.min(), ys.max())


def test_score_threshold_keeps_exactly_the_detections_at_or_above_it(setup, results_all):
    scores = np.unique([r["score"] for r in results_all])    # sorted, distinct
    assert len(scores) >= 4, "need distinct scores to put a threshold between"
    t = float(scores[len(scores) // 2])                       # a score that occurs: kept (>=)
    kept = _predict(setup, t, "tmid")
    want = [r for r in results_all if r["score"] >= t]
    assert 0 < len(kept) == len(want) < len(results_all)
    assert all(r["score"] >= t for r in kept)
    key = lambda r: (r["file_name"], r["score"], tuple(r["bbox"]), r["segmentation"]["counts"])  # noqa: E731
    assert sorted(map(key, kept)) == sorted(map(key, want))
    # above every score: an empty but valid results file
    assert _predict(setup, float(scores[-1]) + 1e-3, "thigh") == []
