"""``python -m mrcnn_np demo``, run as a user runs it, with a handful of iterations on a small
data set: every file the README and the demo's closing listing promise is there and readable,
``demo_summary.json`` says what was run and agrees with the other files, and a second run
continues from the checkpoint, as the README says.

What is NOT checked here is how good the model gets: tests/test_heldout.py does that.
"""
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mrcnn_np.config import tiny
from mrcnn_np.demo import DEMO
from mrcnn_np.eval.coco_eval import STAT_NAMES, format_table
from mrcnn_np.model import MaskRCNN
from test_cli import cli

ITERS, NUM_TRAIN, NUM_VAL = 2, 4, 2
# README, "What `make demo` does": the files the demo writes to its --out folder
PROMISED = ("gallery.png", "loss_curve.png", "coco_table.txt", "coco_eval.json",
            "roipool_vs_roialign.png", "log.jsonl", "weights.npz", "checkpoint.npz",
            "demo_summary.json", "data")
LOSSES = ("loss", "loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg",
          "loss_mask")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    rc, stdout, err = cli("demo", "--out", out, "--iters", ITERS, "--num-train", NUM_TRAIN,
                          "--num-val", NUM_VAL, "--no-progress")
    assert rc == 0, err
    return out, stdout


def _read_json(path):
    return json.loads(path.read_text())


def test_every_promised_file_is_there(demo):
    out, stdout = demo
    for name in PROMISED:
        assert (out / name).exists(), name
    # ... and every file the demo's own closing listing names ("  <out>/<name>  -- <what>")
    listed = [Path(p) for p in re.findall(r"^\s+(\S+)\s+--\s", stdout, flags=re.M)]
    assert {p.name for p in listed} >= set(PROMISED), stdout   # the listing names them all
    for path in listed:
        assert path.exists(), path
    assert not list(out.glob(".tmp-*")) and not list(out.glob("*.tmp")), "temporary files left"


def test_data_set_is_the_requested_one(demo):
    out, _ = demo
    for split, n in (("train", NUM_TRAIN), ("val", NUM_VAL)):
        coco = _read_json(out / "data" / "annotations" / f"instances_{split}.json")
        assert len(coco["images"]) == n
        assert len(list((out / "data" / split).glob("*.png"))) == n
        for im in coco["images"]:
            with Image.open(out / "data" / split / im["file_name"]) as f:
                assert f.size == (im["width"], im["height"]) == (DEMO["image_size"],) * 2


def test_pictures_are_images(demo):
    out, _ = demo
    for name in ("gallery.png", "loss_curve.png", "roipool_vs_roialign.png"):
        with Image.open(out / name) as im:
            im.verify()                                      # a whole PNG, not a truncated one
        with Image.open(out / name) as im:
            assert im.format == "PNG" and min(im.size) >= 100, (name, im.size)


def test_log_weights_and_checkpoint(demo):
    out, _ = demo
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records] == list(range(1, ITERS + 1))
    for r in records:
        assert all(math.isfinite(r[k]) for k in LOSSES), r
    expected = MaskRCNN(tiny(num_classes=4)).state_dict()   # 3 shape classes + background
    with np.load(out / "weights.npz", allow_pickle=False) as z:
        weights = {k: z[k] for k in z.files}
    assert {k: v.shape for k, v in weights.items()} == {k: v.shape for k, v in expected.items()}
    assert all(np.isfinite(v).all() for v in weights.values())
    with np.load(out / "checkpoint.npz", allow_pickle=False) as z:
        assert int(z["iteration"]) == ITERS
        for k, v in weights.items():                         # the weights are the checkpoint's
            np.testing.assert_array_equal(z[f"model.{k}"], v)


def test_summary_says_what_was_run(demo):
    out, _ = demo
    s = _read_json(out / "demo_summary.json")
    assert s["iterations"] == ITERS
    assert s["settings"] == dict(DEMO, iters=ITERS, num_train=NUM_TRAIN, num_val=NUM_VAL)
    assert 0 < s["train_and_eval_s"] <= s["wall_s"]
    first, final = s["first_losses"], s["final_losses"]
    first_logged = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    for k in LOSSES:
        assert math.isfinite(first[k]) and math.isfinite(final[k]) and final[k] >= 0, k
        assert first[k] == pytest.approx(first_logged[k], rel=1e-12), k
    # the COCO numbers: the same in the summary, coco_eval.json and coco_table.txt
    stats = _read_json(out / "coco_eval.json")
    assert s["eval"] == stats
    for t in ("bbox", "segm"):
        assert set(stats[t]) >= set(STAT_NAMES), stats[t].keys()
        assert all(v == -1 or 0 <= v <= 1 for v in (stats[t][k] for k in STAT_NAMES)), stats[t]
    assert (out / "coco_table.txt").read_text().strip() == format_table(stats).strip()


def test_second_run_continues_from_the_checkpoint(demo, tmp_path):
    import shutil
    out, _ = demo
    again = tmp_path / "again"
    shutil.copytree(out, again)
    rc, stdout, err = cli("demo", "--out", again, "--iters", ITERS + 1, "--no-progress")
    assert rc == 0, err
    assert "already in" in stdout and "continuing from the checkpoint" in stdout, stdout
    records = [json.loads(line) for line in (again / "log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records] == list(range(1, ITERS + 2))
    assert records[:ITERS] == [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert _read_json(again / "demo_summary.json")["iterations"] == ITERS + 1


def test_the_keypoint_demo_trains_evaluates_and_draws_skeletons(tmp_path):
    """``demo --keypoints``: stick figures, the tiny_keypoints preset, keypoint AP (OKS) in the
    COCO table next to bbox and segm, and a gallery; every file its listing names exists."""
    out = tmp_path / "kp"
    rc, stdout, err = cli("demo", "--keypoints", "--out", out, "--iters", ITERS, "--num-train",
                          NUM_TRAIN, "--num-val", NUM_VAL, "--no-progress")
    assert rc == 0, err
    summary = _read_json(out / "demo_summary.json")
    assert set(summary["eval"]) == {"bbox", "segm", "keypoints"}
    assert "loss_keypoint" in summary["first_losses"]
    assert all(math.isfinite(v) for v in summary["first_losses"].values())
    assert summary["iterations"] == ITERS
    coco = _read_json(out / "data" / "annotations" / "instances_val.json")
    assert coco["categories"][0]["keypoints"]  # the stick figures, not the shapes
    config = _read_json(out / "config.json")
    assert config["config"]["keypoints"] == len(config["keypoint_names"])
    assert "keypoints" in format_table(summary["eval"])
    listed = [Path(p) for p in re.findall(r"^\s+(\S+)\s+--\s", stdout, flags=re.M)]
    assert {p.name for p in listed} >= set(PROMISED) - {"roipool_vs_roialign.png"}
    assert all(p.exists() for p in listed)
    with Image.open(out / "gallery.png") as im:
        assert min(im.size) >= 256
