"""A user's own data through ``python -m mrcnn_np`` (issue 10, "Failures to fix", items 1-7).

Each test drives the command line in a subprocess, as a user would, on a tiny data set, and
checks the outcome a user needs: a training run that is not lost to a data problem, results
that an outside tool (pycocotools itself) scores correctly, and ONE ``error:`` line naming the
file and the problem for a damaged file, never a traceback.
"""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mrcnn_np.config import tiny
from mrcnn_np.data.shapes import make_shapes_dataset
from mrcnn_np.model import MaskRCNN
from test_cli import assert_one_line_error, cli, copy_data
from test_cli import shapes, weights  # noqa: F401  (the same fixtures: 64-px shapes, tiny weights)

ROOT = Path(__file__).resolve().parents[1]
DEMO_WEIGHTS = ROOT / "notebooks" / "assets" / "tiny_shapes.npz"  # the demo's trained weights
SIZE = 64  # the shapes fixture's image side
TRAIN_FAST = ("--iters", 1, "--batch-size", 1, "--no-progress")


def edit_json(path, fn):
    data = json.loads(Path(path).read_text())
    fn(data)
    Path(path).write_text(json.dumps(data))


def warnings_in(err):
    return [line for line in err.splitlines() if line.startswith("warning:")]


# ------------------------------------------------------------------------------------------
# 1. annotations without area / iscrowd
# ------------------------------------------------------------------------------------------
def test_annotations_without_area_and_iscrowd_train_and_evaluate(shapes, tmp_path):
    data = copy_data(shapes, tmp_path / "d")

    def strip(coco):
        for a in coco["annotations"]:
            del a["area"], a["iscrowd"]

    for split in ("train", "val"):
        edit_json(data / "annotations" / f"instances_{split}.json", strip)
    run = tmp_path / "run"
    rc, out, err = cli("train", "--data", data, "--out", run, *TRAIN_FAST)
    assert rc == 0, err
    assert "Traceback" not in err
    assert (run / "weights.npz").is_file() and "segm" in out
    warn = warnings_in(err)
    assert len(warn) == 2, err  # one per split, counted
    assert all("no 'area'" in w and "no 'iscrowd'" in w and "filled" in w for w in warn), warn
    # a plain --resume of the finished run evaluates again, and works too
    rc, out, err = cli("train", "--data", data, "--out", run, "--iters", 1, "--resume",
                       "--no-progress")
    assert rc == 0, err
    assert "segm" in out


# ------------------------------------------------------------------------------------------
# 2. every image checked before the first iteration
# ------------------------------------------------------------------------------------------
def test_bad_images_of_both_splits_are_found_before_training_in_one_message(shapes, tmp_path):
    data = copy_data(shapes, tmp_path / "d")
    good = {p: p.read_bytes() for p in (data / "train").iterdir()}
    good.update({p: p.read_bytes() for p in (data / "val").iterdir()})
    png = (data / "train" / "000002.png").read_bytes()
    (data / "train" / "000002.png").write_bytes(png[:len(png) // 2])  # header fine, data cut
    Image.new("RGB", (32, 32)).save(data / "val" / "000001.png")    # size differs from the JSON
    (data / "val" / "000002.png").write_bytes(b"not an image")
    run = tmp_path / "run"
    args = ("train", "--data", data, "--out", run, "--iters", 3, "--batch-size", 3,
            "--no-progress")  # (evaluation at the end: the val split is checked too)
    rc, _, err = cli(*args)
    assert_one_line_error(rc, err, "3 bad images", "train/000002.png", "val/000001.png",
                          "32x32", "val/000002.png")
    assert not (run / "log.jsonl").exists() or not (run / "log.jsonl").read_text()
    # the images mended, the SAME command runs: a failed start blocks nothing
    for p, b in good.items():
        p.write_bytes(b)
    rc, _, err = cli(*args)
    assert rc == 0, err


# ------------------------------------------------------------------------------------------
# 3. predict writes the COCO image ids
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shuffled_ids(tmp_path_factory):
    """Six 128-px shapes images whose COCO ids are 1001, 5001, ... and do not follow the file
    order; the ``images`` list itself is shuffled too."""
    root = tmp_path_factory.mktemp("ids")
    make_shapes_dataset(root, num_train=0, num_val=6, image_size=(128, 128), seed=0)
    ann = root / "annotations" / "instances_val.json"
    rng = np.random.default_rng(0)

    def renumber(coco):
        new = {img["id"]: int(i) for img, i in zip(coco["images"],
                                                    rng.permutation([1001, 5001, 2001, 9001, 3001, 7001]))}
        for img in coco["images"]:
            img["id"] = new[img["id"]]
        for a in coco["annotations"]:
            a["image_id"] = new[a["image_id"]]
        coco["images"] = [coco["images"][i] for i in rng.permutation(len(coco["images"]))]

    edit_json(ann, renumber)
    return root, ann


def pycocotools_ap(ann_file, results_file, iou_type):
    """Score a results file with pycocotools alone: COCO, loadRes, COCOeval."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        dt = gt.loadRes(str(results_file))
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[1]  # AP50


def test_predict_writes_the_coco_image_ids_that_pycocotools_scores(shuffled_ids, tmp_path):
    root, ann = shuffled_ids
    out = tmp_path / "p"
    rc, _, err = cli("predict", "--weights", DEMO_WEIGHTS, "--images", root / "val", "--out", out,
                     "--annotations", ann, "--score-threshold", 0.05)
    assert rc == 0, err
    results = json.loads((out / "predictions.json").read_text())
    by_name = {img["file_name"]: img["id"] for img in json.loads(ann.read_text())["images"]}
    assert results and all(r["image_id"] == by_name[Path(r["file_name"]).name] for r in results)
    assert pycocotools_ap(ann, out / "predictions.json", "bbox") > 0.5
    assert pycocotools_ap(ann, out / "predictions.json", "segm") > 0.5
    # --data finds the same annotation file
    rc, _, err = cli("predict", "--weights", DEMO_WEIGHTS, "--images", root / "val", "--out",
                     tmp_path / "q", "--data", root, "--split", "val", "--score-threshold", 0.05)
    assert rc == 0, err
    assert json.loads((tmp_path / "q" / "predictions.json").read_text()) == results
    # without annotations the ids are positional, and the file says so
    rc, _, err = cli("predict", "--weights", DEMO_WEIGHTS, "--images", root / "val", "--out",
                     tmp_path / "r")
    assert rc == 0, err
    plain = json.loads((tmp_path / "r" / "predictions.json").read_text())
    assert plain and all(r["image_id_source"] == "position" for r in plain)
    # an image that the annotation file does not list
    Image.new("RGB", (20, 20)).save(tmp_path / "stray.png")
    rc, _, err = cli("predict", "--weights", DEMO_WEIGHTS, "--images", tmp_path / "stray.png",
                     "--out", tmp_path / "s", "--annotations", ann)
    assert_one_line_error(rc, err, "stray.png", "instances_val.json")


# ------------------------------------------------------------------------------------------
# 4. evaluate --predictions
# ------------------------------------------------------------------------------------------
def gt_as_results(ann_file):
    """The ground truth as detections with score 1 (as detectron2 writes them): AP is 1."""
    coco = json.loads(Path(ann_file).read_text())
    return [dict(image_id=a["image_id"], category_id=a["category_id"], score=1.0, bbox=a["bbox"],
                 segmentation=a["segmentation"]) for a in coco["annotations"]]


def test_evaluate_scores_a_results_file(shapes, tmp_path):
    ann = shapes / "annotations" / "instances_val.json"
    res = tmp_path / "results.json"
    res.write_text(json.dumps(gt_as_results(ann)))
    rc, out, err = cli("evaluate", "--predictions", res, "--annotations", ann)
    assert rc == 0, err
    saved = json.loads((tmp_path / "results_eval.json").read_text())
    assert saved["bbox"]["AP"] == pytest.approx(1.0) and saved["segm"]["AP"] == pytest.approx(1.0)
    assert "segm" in out


@pytest.mark.parametrize("edit, needle", [
    (lambda r: r[0].update(image_id=424242), "unknown image id 424242"),
    (lambda r: r[0].pop("score"), "no 'score'"),
    (lambda r: r[0].update(bbox="1 2 3 4"), "'bbox'"),
    (lambda r: r[0].update(category_id=77), "unknown category id 77"),
    (lambda r: r.clear() or r.append("x"), "not a result"),
])
def test_evaluate_refuses_malformed_results(shapes, tmp_path, edit, needle):
    ann = shapes / "annotations" / "instances_val.json"
    results = gt_as_results(ann)
    edit(results)
    (tmp_path / "bad.json").write_text(json.dumps(results))
    rc, _, err = cli("evaluate", "--predictions", tmp_path / "bad.json", "--annotations", ann)
    assert_one_line_error(rc, err, "bad.json", needle)


def test_evaluate_weights_saves_the_results_it_scored(shapes, weights, tmp_path):
    out = tmp_path / "ev.json"
    rc, _, err = cli("evaluate", "--weights", weights, "--data", shapes, "--out", out,
                     "--no-progress")
    assert rc == 0, err
    results = tmp_path / "ev_predictions.json"
    assert isinstance(json.loads(results.read_text()), list)
    # ... and evaluate --predictions scores that file to the same numbers
    rc, _, err = cli("evaluate", "--predictions", results, "--data", shapes, "--out",
                     tmp_path / "again.json")
    assert rc == 0, err
    a, b = json.loads(out.read_text()), json.loads((tmp_path / "again.json").read_text())
    assert a["bbox"] == b["bbox"] and a["segm"] == b["segm"]


# ------------------------------------------------------------------------------------------
# 5. a NaN in an annotation is a data error
# ------------------------------------------------------------------------------------------
def test_nan_bbox_is_skipped_with_a_warning_naming_it(shapes, tmp_path):
    data = copy_data(shapes, tmp_path / "d")
    ann = data / "annotations" / "instances_train.json"
    coco = json.loads(ann.read_text())
    bad = coco["annotations"][0]
    bad["bbox"] = [float("nan"), 3.0, 10.0, 10.0]
    ann.write_text(json.dumps(coco))  # (json writes NaN, as many exporters do)
    rc, _, err = cli("train", "--data", data, "--out", tmp_path / "run", "--iters", 1,
                     "--batch-size", 3, "--eval-every", "-1", "--no-progress")
    assert rc == 0, err
    warn = warnings_in(err)
    assert len(warn) == 1 and "skipped 1 bad annotation" in warn[0], err
    assert "not finite" in warn[0] and f"annotation {bad['id']}" in warn[0], warn


# ------------------------------------------------------------------------------------------
# 6. damaged files: one line each
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(shapes, tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "r"
    rc, _, err = cli("train", "--data", shapes, "--out", run, "--eval-every", "-1", *TRAIN_FAST)
    assert rc == 0, err
    return run


@pytest.mark.parametrize("damage, needle", [
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated"),
    (lambda p: p.write_text("not a zip file"), "not an .npz"),
    (lambda p: np.savez(p, iteration=np.array(1), rng_state=np.array([{"a": 1}], dtype=object)),
     "object array"),
])
def test_resume_from_a_damaged_checkpoint(run_dir, shapes, tmp_path, damage, needle):
    run = copy_data(run_dir, tmp_path / "r")
    with open(run / "checkpoint.npz", "r+b"):
        pass
    damage(run / "checkpoint.npz")
    rc, _, err = cli("train", "--data", shapes, "--out", run, "--iters", 2, "--resume",
                     "--no-progress")
    assert_one_line_error(rc, err, "checkpoint.npz", needle)


def test_pth_that_holds_a_list(tmp_path, shapes):
    from conftest import oracle
    torch, _ = oracle()
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    rc, _, err = cli("predict", "--weights", tmp_path / "list.pth", "--images", shapes / "val",
                     "--out", tmp_path / "p")
    assert_one_line_error(rc, err, "list.pth", "a list, not a state_dict")
    rc, _, err = cli("convert", tmp_path / "list.pth", tmp_path / "x.npz")
    assert_one_line_error(rc, err, "list.pth", "a list, not a state_dict")
    assert not (tmp_path / "x.npz").exists()


# ------------------------------------------------------------------------------------------
# 7. smaller problems
# ------------------------------------------------------------------------------------------
def test_convert_names_the_mismatch_of_another_architecture(tmp_path):
    """(Checked against the tiny preset: building the default torchvision_r50_fpn model to
    compare with costs seconds; the check is the same.)"""
    from conftest import oracle
    torch, _ = oracle()
    other = MaskRCNN(tiny(mask_layers=(64, 64))).state_dict()  # a mask FCN of 2 convs, not 4
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in other.items()},
               tmp_path / "other.pth")
    rc, _, err = cli("convert", tmp_path / "other.pth", tmp_path / "t.npz", "--config", "tiny")
    assert_one_line_error(rc, err, "other.pth", "'tiny' model", "roi_heads.mask_head")
    assert not (tmp_path / "t.npz").exists()


def test_a_pickled_pth_is_refused_plainly(tmp_path):
    from conftest import oracle
    torch, _ = oracle()
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pth")  # a whole module: needs pickle
    rc, _, err = cli("convert", tmp_path / "module.pth", tmp_path / "m.npz")
    assert_one_line_error(rc, err, "module.pth", "needs pickle", "refused", "state_dict()")
    assert "..." not in err


def test_predict_same_file_name_in_two_folders_keeps_both_pictures(weights, tmp_path):
    for folder, colour in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (40, 30), colour).save(tmp_path / folder / "img.png")
    out = tmp_path / "p"
    rc, stdout, err = cli("predict", "--weights", weights, "--images", tmp_path / "a",
                          tmp_path / "b", "--out", out)
    assert rc == 0, err
    pictures = sorted(p.name for p in out.glob("*.png"))
    assert len(pictures) == 2, pictures
    assert pictures == ["a_img_pred.png", "b_img_pred.png"]


@pytest.mark.parametrize("n", [0, -1])
def test_evaluate_max_images_must_be_positive(shapes, weights, n):
    rc, _, err = cli("evaluate", "--weights", weights, "--data", shapes, "--max-images", n)
    assert_one_line_error(rc, err, "--max-images")


def test_out_that_cannot_be_written_names_the_path(shapes, weights, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    rc, _, err = cli("predict", "--weights", weights, "--images", shapes / "val", "--out",
                     blocker / "p")
    assert_one_line_error(rc, err, str(blocker / "p"), "cannot write")
    assert "Errno" not in err
    rc, _, err = cli("evaluate", "--weights", weights, "--data", shapes, "--out", blocker / "e.json",
                     "--no-progress")
    assert_one_line_error(rc, err, str(blocker / "e.json"), "cannot write")
    rc, _, err = cli("train", "--data", shapes, "--out", blocker, *TRAIN_FAST)
    assert_one_line_error(rc, err, str(blocker), "cannot write")
    assert "Errno" not in err


def test_predict_on_a_large_image_bounds_the_pasted_masks(weights, tmp_path):
    """1600x1200 with threshold 0 (50 detections): pasting every soft mask at once peaked at
    985 MB over the imports (measured before the fix); pasted in chunks, 474 MB."""
    import os
    import subprocess
    import sys
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    # the growth of the peak resident set over what the imports take (that part varies with
    # the environment: the CUDA simulator, BLAS), in kB
    measure = ("import resource, sys; import mrcnn_np.cli, mrcnn_np.model, mrcnn_np.train, "
               "mrcnn_np.viz, mrcnn_np.eval.coco_eval; from mrcnn_np.cli import main; "
               "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; rc = main(sys.argv[1:]); "
               "print('peak_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base, "
               "file=sys.stderr); sys.exit(rc)")
    env = dict(os.environ, PYTHONPATH=str(ROOT), NUMBA_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-c", measure, "predict", "--weights", str(weights),
                        "--images", str(tmp_path / "big.png"), "--out", str(tmp_path / "p"),
                        "--score-threshold", "0"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    peak_mb = int(p.stderr.split("peak_kb")[-1].split()[0]) / 1024
    results = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert len(results) >= 50  # an untrained model at threshold 0: many detections
    assert peak_mb < 700, f"the peak RSS grew by {peak_mb:.0f} MB (before the fix: 985 MB)"


def test_masks_pasted_in_chunks_give_the_same_results(shapes):
    """The chunked path (3 masks at a time here) equals pasting every mask at once."""
    from mrcnn_np.data.coco import load_image
    from mrcnn_np.eval.coco_eval import detection_to_coco_results, predictions_to_coco_results
    model = MaskRCNN(tiny(num_classes=4), rng=np.random.default_rng(0))
    image = load_image(shapes / "val" / "000001.png")  # [3, 64, 64]
    whole = model.predict([image])[0]
    pred = model.predict([image], paste_masks=False)[0]
    assert pred["masks"].shape[-2:] == (28, 28) and len(pred["scores"]) > 6
    seen = []
    chunked = detection_to_coco_results(pred, 7, (SIZE, SIZE), {1: 1, 2: 2, 3: 3},
                                        on_masks=lambda start, m: seen.append((start, len(m))),
                                        max_pixels=3 * SIZE * SIZE, paste=model.cfg.mask_paste)
    assert chunked == predictions_to_coco_results([whole], [7], {1: 1, 2: 2, 3: 3})
    assert seen[:2] == [(0, 3), (3, 3)]
