"""The command line, driven as a user drives it: ``python -m mrcnn_np ...`` in a subprocess.

Every user mistake must end with ONE line on stderr, ``error: ...`` naming the file, a non-zero
exit status, no traceback, and no half-written output.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mrcnn_np.config import tiny
from mrcnn_np.data.shapes import make_shapes_dataset
from mrcnn_np.model import MaskRCNN

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64


def cli(*args, cwd=None):
    """Run ``python -m mrcnn_np *args``; returns (returncode, stdout, stderr)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path, NUMBA_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "mrcnn_np", *map(str, args)], capture_output=True,
                       text=True, cwd=cwd or ROOT, env=env, timeout=300)
    return p.returncode, p.stdout, p.stderr


def assert_one_line_error(rc, err, *needles):
    assert rc == 1, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], (n, err)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_shapes_dataset(root, num_train=3, num_val=2, image_size=(SIZE, SIZE), seed=1, max_objects=2)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Weights of a freshly initialised tiny model (no config.json beside them)."""
    path = tmp_path_factory.mktemp("w") / "tiny.npz"
    MaskRCNN(tiny()).save(path)
    return path


def copy_data(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------------
# The happy paths
# ------------------------------------------------------------------------------------------
def test_make_shapes(tmp_path):
    rc, out, err = cli("make-shapes", "--out", tmp_path / "d", "--num-train", 2, "--num-val", 1,
                       "--size", 48)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "d" / "train").iterdir()) == ["000001.png", "000002.png"]
    assert (tmp_path / "d" / "annotations" / "instances_val.json").is_file()


def test_train_then_resume_then_evaluate(shapes, tmp_path):
    run = tmp_path / "run"
    rc, out, err = cli("train", "--config", "tiny", "--data", shapes, "--out", run, "--iters", 2,
                       "--batch-size", 1, "--checkpoint-every", 1, "--eval-every", "-1",
                       "--ema-decay", 0.9, "--no-progress")
    assert rc == 0, err
    assert "weights:" in out
    assert json.loads((run / "config.json").read_text())["hparams"]["ema_decay"] == 0.9
    assert len((run / "log.jsonl").read_text().splitlines()) == 2
    # the same command again, without --resume: refused, nothing touched
    before = (run / "checkpoint.npz").read_bytes()
    rc, out, err = cli("train", "--data", shapes, "--out", run, "--iters", 3, "--no-progress")
    assert_one_line_error(rc, err, "--resume")
    assert (run / "checkpoint.npz").read_bytes() == before
    rc, out, err = cli("train", "--data", shapes, "--out", run, "--iters", 3, "--resume",
                       "--eval-every", "-1", "--no-progress")
    assert rc == 0, err
    assert [json.loads(x)["iter"] for x in (run / "log.jsonl").read_text().splitlines()] == [1, 2, 3]

    rc, out, err = cli("evaluate", "--weights", run / "weights.npz", "--data", shapes,
                       "--no-progress")
    assert rc == 0, err
    assert "bbox" in out and "segm" in out and "AP50" in out
    saved = json.loads((run / "eval_val.json").read_text())
    assert set(saved) >= {"bbox", "segm"} and saved["images"] == 2


def test_predict_writes_pictures_and_coco_results(shapes, tmp_path):
    """A run's weights: config.json beside them gives the config and the class names."""
    run = tmp_path / "run"
    rc, _, err = cli("train", "--data", shapes, "--out", run, "--iters", 1, "--batch-size", 1,
                     "--eval-every", "-1", "--no-progress")
    assert rc == 0, err
    out = tmp_path / "pred"
    rc, stdout, err = cli("predict", "--weights", run / "weights.npz", "--images", shapes / "val",
                          "--out", out, "--score-threshold", 0.0)
    assert rc == 0, err
    assert sorted(p.name for p in out.glob("*.png")) == ["000001_pred.png", "000002_pred.png"]
    with Image.open(out / "000001_pred.png") as im:
        assert im.size == (SIZE, SIZE) and im.mode == "RGB"
    results = json.loads((out / "predictions.json").read_text())
    assert isinstance(results, list)
    for r in results:
        assert {"image_id", "category_id", "score", "bbox", "segmentation"} <= set(r)
        assert r["image_id"] in (1, 2) and 1 <= r["category_id"] <= 3
        assert r["segmentation"]["size"] == [SIZE, SIZE]
    assert not list(out.glob(".tmp-*"))


def test_convert_a_torch_state_dict(tmp_path):
    from conftest import oracle
    torch, _ = oracle()
    sd = {"backbone.body.conv1.weight": torch.arange(6, dtype=torch.float32).reshape(1, 1, 2, 3),
          "backbone.body.bn1.num_batches_tracked": torch.tensor(3)}
    torch.save(sd, tmp_path / "m.pth")
    rc, out, err = cli("convert", tmp_path / "m.pth", tmp_path / "m.npz", "--no-check")
    assert rc == 0, err
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert z.files == ["backbone.body.conv1.weight"]  # the BN step counter is dropped
        np.testing.assert_array_equal(z["backbone.body.conv1.weight"],
                                      np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3))


# ------------------------------------------------------------------------------------------
# Bad input: one line, non-zero, no traceback
# ------------------------------------------------------------------------------------------
def test_missing_data_folder(tmp_path):
    rc, _, err = cli("train", "--data", tmp_path / "nope", "--out", tmp_path / "run")
    assert_one_line_error(rc, err, "nope", "not found")
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_empty_data_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    rc, _, err = cli("train", "--data", tmp_path / "empty", "--out", tmp_path / "run")
    assert_one_line_error(rc, err, "empty")


@pytest.mark.parametrize("content, needle", [
    ("this is not json", "not a JSON file"),
    ('[{"id": 1}]', "not a COCO file"),
    ('{"images": [], "annotations": []}', "not a COCO file"),
])
def test_json_that_is_not_coco(shapes, tmp_path, content, needle):
    data = copy_data(shapes, tmp_path / "d")
    (data / "annotations" / "instances_train.json").write_text(content)
    rc, _, err = cli("train", "--data", data, "--out", tmp_path / "run")
    assert_one_line_error(rc, err, "instances_train.json", needle)


def test_corrupt_image_in_the_data_set(shapes, tmp_path):
    data = copy_data(shapes, tmp_path / "d")
    (data / "train" / "000002.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    rc, _, err = cli("train", "--data", data, "--out", tmp_path / "run", "--iters", 3,
                     "--batch-size", 3, "--eval-every", "-1", "--no-progress")
    assert_one_line_error(rc, err, "000002.png", "corrupt")


def test_corrupt_image_to_predict(weights, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image at all")
    rc, _, err = cli("predict", "--weights", weights, "--images", tmp_path / "bad.jpg",
                     "--out", tmp_path / "p")
    assert_one_line_error(rc, err, "bad.jpg")
    assert not (tmp_path / "p").exists()  # nothing written


def test_missing_image_and_missing_weights(weights, tmp_path):
    rc, _, err = cli("predict", "--weights", weights, "--images", tmp_path / "x.png", "--out",
                     tmp_path / "p")
    assert_one_line_error(rc, err, "x.png", "not found")
    rc, _, err = cli("predict", "--weights", tmp_path / "w.npz", "--images", tmp_path, "--out",
                     tmp_path / "p")
    assert_one_line_error(rc, err, "w.npz", "not found")
    (tmp_path / "w.npz").write_text("garbage")
    rc, _, err = cli("evaluate", "--weights", tmp_path / "w.npz", "--data", tmp_path)
    assert_one_line_error(rc, err)


def test_bad_annotations_are_skipped_with_a_counted_warning(shapes, tmp_path):
    data = copy_data(shapes, tmp_path / "d")
    ann_file = data / "annotations" / "instances_train.json"
    coco = json.loads(ann_file.read_text())
    good = next(a for a in coco["annotations"])
    n = max(a["id"] for a in coco["annotations"])
    coco["annotations"] += [
        dict(good, id=n + 1, bbox=[5, 5, 0, 0], area=0),                      # zero area
        dict(good, id=n + 2, segmentation=[[200, 200, 260, 200, 230, 250]],  # outside the image
             bbox=[200, 200, 60, 50]),
        dict(good, id=n + 3, category_id=99),                                 # unknown category
    ]
    ann_file.write_text(json.dumps(coco))
    rc, out, err = cli("train", "--data", data, "--out", tmp_path / "run", "--iters", 1,
                       "--batch-size", 1, "--eval-every", "-1", "--no-progress")
    assert rc == 0, err
    warn = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warn) == 1 and "skipped 3 bad annotations" in warn[0], err
    assert "Traceback" not in err


def test_grayscale_rgba_and_16_bit_images_are_converted(weights, tmp_path):
    rng = np.random.default_rng(0)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(rng.integers(0, 256, (40, 50), dtype=np.uint8), mode="L").save(imgs / "gray.png")
    Image.fromarray(rng.integers(0, 256, (40, 50, 4), dtype=np.uint8), mode="RGBA").save(imgs / "rgba.png")
    Image.fromarray(rng.integers(0, 65536, (40, 50), dtype=np.uint16)).save(imgs / "deep16.png")
    with Image.open(imgs / "deep16.png") as im:
        assert im.mode.startswith("I")  # really 16-bit on disk
    out = tmp_path / "p"
    rc, stdout, err = cli("predict", "--weights", weights, "--images", imgs, "--out", out)
    assert rc == 0, err
    for name in ("gray", "rgba", "deep16"):
        with Image.open(out / f"{name}_pred.png") as im:
            assert im.size == (50, 40) and im.mode == "RGB"
    assert isinstance(json.loads((out / "predictions.json").read_text()), list)


def test_weights_of_another_architecture_name_the_tensors(tmp_path, shapes):
    other = tmp_path / "other.npz"
    MaskRCNN(tiny(mask_layers=(64, 64))).save(other)  # a mask FCN of 2 convs, not 4
    rc, _, err = cli("predict", "--weights", other, "--images", shapes / "val", "--out",
                     tmp_path / "p")
    assert_one_line_error(rc, err, "other.npz", "roi_heads.mask_head")
    assert not (tmp_path / "p").exists()
    rc, _, err = cli("evaluate", "--weights", other, "--data", shapes)
    assert_one_line_error(rc, err, "other.npz", "roi_heads.mask_head")


def test_tiny_weights_into_the_torchvision_model_name_the_tensors(weights, shapes, tmp_path):
    rc, _, err = cli("predict", "--weights", weights, "--config", "torchvision_r50_fpn",
                     "--images", shapes / "val", "--out", tmp_path / "p")
    assert_one_line_error(rc, err, "torchvision_r50_fpn", "backbone.body")


def test_a_wrong_command_line_is_a_usage_error(tmp_path):
    rc, _, err = cli("train", "--data", tmp_path)  # --out missing
    assert rc == 2 and "usage:" in err and "Traceback" not in err
    rc, _, err = cli("train", "--config", "nope", "--data", tmp_path, "--out", tmp_path / "r")
    assert rc == 2 and "invalid choice" in err


def test_an_ema_decay_outside_0_1_is_one_error_line(shapes, tmp_path):
    rc, _, err = cli("train", "--data", shapes, "--out", tmp_path / "r", "--iters", 1,
                     "--ema-decay", 1.5, "--no-progress")
    assert_one_line_error(rc, err, "--ema-decay", "1.5")
    assert not (tmp_path / "r").exists()


def test_nan_during_training_exits_3_with_one_line(shapes, tmp_path, monkeypatch, capsys):
    """The CLI in-process (the NaN is injected with monkeypatch, which a subprocess can't see)."""
    from mrcnn_np import cli as cli_module
    real = MaskRCNN.forward_backward

    def poisoned(self, *a, **k):
        losses = real(self, *a, **k)
        losses["loss_objectness"] = float("inf")
        return losses

    monkeypatch.setattr(MaskRCNN, "forward_backward", poisoned)
    rc = cli_module.main(["train", "--data", str(shapes), "--out", str(tmp_path / "run"),
                          "--iters", "2", "--batch-size", "1", "--eval-every", "-1",
                          "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 3
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: iteration 1: loss_objectness = inf")
    assert "checkpoint.npz (iteration 0)" in lines[0]


def test_weights_converted_from_torchvision_load_with_its_config(tmp_path):
    """``convert`` a real torchvision maskrcnn_resnet50_fpn state_dict (random weights, no
    download), then load it, and the .pth itself, for ``predict --config torchvision_r50_fpn``.
    (The forward pass at 800 px is chapter 13's end-to-end test; here: names and shapes.)"""
    from conftest import oracle
    from mrcnn_np.cli import load_model
    torch, torchvision = oracle()
    tv = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    rc, out, err = cli("convert", tmp_path / "tv.pth", tmp_path / "tv.npz")
    assert rc == 0, err
    for path in (tmp_path / "tv.npz", tmp_path / "tv.pth"):
        model, names, cat_ids = load_model(path, "torchvision_r50_fpn")
        assert model.cfg.num_classes == 91 and len(names) == 91
        ours = model.state_dict()
        w = tv.state_dict()
        for k in ("backbone.body.conv1.weight", "roi_heads.mask_predictor.mask_fcn_logits.weight"):
            np.testing.assert_array_equal(ours[k], w[k].numpy())


def test_keypoint_model_train_predict_evaluate(tmp_path):
    """issue 14's command line: make-figures, train --config tiny_keypoints, predict draws the
    skeletons (and writes keypoint results), evaluate reports keypoint AP (OKS); the keypoint
    preset on data without keypoints is one error line before anything trains."""
    data, run = tmp_path / "figures", tmp_path / "run"
    rc, _, err = cli("make-figures", "--out", data, "--train", 2, "--val", 2, "--size", SIZE)
    assert rc == 0, err
    rc, _, err = cli("train", "--config", "tiny_keypoints", "--data", data, "--out", run,
                     "--iters", 1, "--batch-size", 1, "--eval-every", "-1", "--no-progress")
    assert rc == 0, err
    meta = json.loads((run / "config.json").read_text())
    assert meta["config"]["keypoints"] == len(meta["keypoint_names"]) == 9
    assert "loss_keypoint" in json.loads((run / "log.jsonl").read_text().splitlines()[0])
    out = tmp_path / "pred"
    rc, _, err = cli("predict", "--weights", run / "weights.npz", "--images", data / "val",
                     "--out", out, "--score-threshold", 0.0)
    assert rc == 0, err
    results = json.loads((out / "predictions.json").read_text())
    assert results and all(len(r["keypoints"]) == 3 * 9 for r in results)
    with Image.open(out / "000001_pred.png") as im:
        assert im.size == (SIZE, SIZE)
    rc, stdout, err = cli("evaluate", "--weights", run / "weights.npz", "--data", data,
                          "--no-progress")
    assert rc == 0, err
    assert "keypoints" in stdout and "segm" in stdout
    saved = json.loads((run / "eval_val.json").read_text())
    assert 0.0 <= saved["keypoints"]["AP"] <= 1.0 or saved["keypoints"]["AP"] == -1.0
    rc, stdout, err = cli("evaluate", "--predictions", out / "predictions.json", "--data", data)
    assert rc == 0, err
    assert "keypoints" in stdout

    shapes = tmp_path / "shapes"
    make_shapes_dataset(shapes, num_train=2, num_val=1, image_size=(SIZE, SIZE), seed=0)
    rc, _, err = cli("train", "--config", "tiny_keypoints", "--data", shapes, "--out",
                     tmp_path / "bad", "--iters", 1, "--no-progress")
    assert_one_line_error(rc, err, "keypoints")
    assert not (tmp_path / "bad" / "checkpoint.npz").exists()
