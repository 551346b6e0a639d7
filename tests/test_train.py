"""The training loop (mrcnn_np/train.py): files, exact resume, the NaN guard, over-fitting.

Every test trains the real tiny Mask R-CNN on a few small shapes images, so the numbers
checked (losses, AP) are the model's own; nothing here is faked.
"""
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mrcnn_np.checkpoint import load_npz
from mrcnn_np.config import tiny
from mrcnn_np.data.coco import DataError, flip_vertical_transpose
from mrcnn_np.data.shapes import make_shapes_dataset
from mrcnn_np.model import LOSS_NAMES, MaskRCNN
from mrcnn_np.nn.optim import warmup_multistep_lr
from mrcnn_np.train import (TrainingDiverged, _from_text_array, _text_array,
                            evaluate_model, extract_weights, load_split, read_checkpoint,
                            sample_batch, train)

LOSS_KEYS = ("loss",) + LOSS_NAMES  # what log.jsonl records: the total, then each term

SIZE = 64  # px: small images keep every test in seconds


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """6 train and 2 val shapes images of 64x64, deterministic."""
    root = tmp_path_factory.mktemp("shapes")
    make_shapes_dataset(root, num_train=6, num_val=2, image_size=(SIZE, SIZE), seed=3, max_objects=2)
    return root


def small_cfg(**kw):
    """The tiny preset at 64 px, thinner heads and fewer RoIs: the same code paths, less
    arithmetic (each test stays within seconds of CPU)."""
    small = dict(min_size=(SIZE,), max_size=SIZE, rpn_pre_nms_top_n_train=200,
                 rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=100,
                 rpn_post_nms_top_n_test=50, box_batch_size_per_image=32,
                 representation_size=128, mask_layers=(32,) * 4, mask_dim_reduced=32)
    return tiny(**dict(small, **kw))


def read_log(run):
    return [json.loads(line) for line in (Path(run) / "log.jsonl").read_text().splitlines()]


def no_temp_files(folder):
    return not list(Path(folder).rglob(".tmp-*"))


# ------------------------------------------------------------------------------------------
# Pieces
# ------------------------------------------------------------------------------------------
def test_text_array_round_trip_keeps_big_ints():
    # PCG64's state holds 128-bit integers: JSON keeps them exact, a float would not.
    state = np.random.default_rng(123).bit_generator.state
    a = _text_array(state)
    assert a.dtype == np.uint8 and a.ndim == 1
    assert _from_text_array(a) == state


def test_sample_batch_is_a_function_of_the_rng(shapes):
    ds = load_split(shapes, "train")
    idx = np.arange(len(ds))
    a = sample_batch(ds, idx, np.random.default_rng(5), 3)
    b = sample_batch(ds, idx, np.random.default_rng(5), 3)
    for x, y in zip(a[0], b[0]):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a[1], b[1]):
        np.testing.assert_array_equal(x["masks"], y["masks"])
    # more images than the data set has: drawn with replacement, no error
    imgs, tgts = sample_batch(ds, idx[:2], np.random.default_rng(0), 5)
    assert len(imgs) == len(tgts) == 5


def test_sample_batch_flip_matches_the_flipped_sample(shapes):
    ds = load_split(shapes, "train")
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    imgs, tgts = sample_batch(ds, np.arange(len(ds)), rng, 4)
    rng2 = np.random.default_rng(0)
    rng2.bit_generator.state = state
    picks = rng2.choice(len(ds), size=4, replace=False)
    flips = rng2.random(4) < 0.5
    for im, p, f in zip(imgs, picks, flips):
        ref = ds.get(int(p))["image"]  # [3, H, W]
        np.testing.assert_array_equal(im, ref[:, :, ::-1] if f else ref)


def test_missing_and_empty_data_folder(tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        train(small_cfg(), tmp_path / "nope", tmp_path / "run", iters=1, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="data folder is empty"):
        train(small_cfg(), tmp_path / "empty", tmp_path / "run", iters=1, progress=False)


def test_resume_without_checkpoint_and_rerun_without_resume(shapes, tmp_path):
    with pytest.raises(DataError, match="no checkpoint to resume from"):
        train(small_cfg(), shapes, tmp_path / "run", iters=1, resume=True, progress=False)
    (tmp_path / "run2").mkdir()
    (tmp_path / "run2" / "log.jsonl").write_text("")
    with pytest.raises(DataError, match="use --resume"):
        train(small_cfg(), shapes, tmp_path / "run2", iters=1, progress=False)


# ------------------------------------------------------------------------------------------
# A short run: the files it writes
# ------------------------------------------------------------------------------------------
def test_short_run_writes_every_file(shapes, tmp_path):
    run = tmp_path / "run"
    s = train(small_cfg(), shapes, run, iters=4, batch_size=2, lr=0.01, warmup_iters=2,
              milestones=[3], eval_every=2, checkpoint_every=2, progress=False, log=lambda m: None)
    log = read_log(run)
    assert [r["iter"] for r in log] == [1, 2, 3, 4]
    for r in log:
        assert set(LOSS_KEYS) <= set(r) and all(math.isfinite(r[k]) for k in LOSS_KEYS)
        assert r["loss"] == pytest.approx(sum(r[k] for k in LOSS_KEYS if k != "loss"), rel=1e-6)
        # the lr used at iteration i (0-based) is the warm-up/step schedule's
        assert r["lr"] == warmup_multistep_lr(r["iter"] - 1, 0.01, 2, 1e-3, [3], 0.1)
    for name in ("checkpoint.npz", "weights.npz", "config.json", "loss_curve.png",
                 "eval_iter2.json", "eval_iter4.json"):
        assert (run / name).is_file(), name
    assert (run / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ev = json.loads((run / "eval_iter4.json").read_text())
    assert ev["iteration"] == 4 and set(ev) >= {"bbox", "segm"}
    assert s["eval"]["segm"].keys() >= {"AP", "AP50", "AP75"}
    ck = read_checkpoint(run / "checkpoint.npz")
    assert ck["iteration"] == 4 and ck["config"].num_classes == 4
    assert ck["class_names"] == ["background", "circle", "square", "triangle"]
    assert ck["hparams"]["milestones"] == [3]
    # weights.npz is the model's state_dict and loads into a model built from config.json
    meta = json.loads((run / "config.json").read_text())
    model = MaskRCNN(replace(small_cfg(), num_classes=len(meta["class_names"])))
    model.load(run / "weights.npz")
    w = load_npz(run / "weights.npz")
    for k, v in ck["model_state"].items():
        np.testing.assert_array_equal(w[k], v)
    assert no_temp_files(run)


# ------------------------------------------------------------------------------------------
# Resume: the same losses, bit for bit
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ema_decay", [None, 0.9], ids=["no-average", "weight-average"])
def test_resume_after_interruption_reproduces_the_uninterrupted_run(shapes, tmp_path, monkeypatch,
                                                                    ema_decay):
    kw = dict(iters=5, batch_size=2, lr=0.01, warmup_iters=2, eval_every=-1, checkpoint_every=2,
              progress=False, log=lambda m: None, seed=7, ema_decay=ema_decay)
    train(small_cfg(), shapes, tmp_path / "whole", **kw)

    # The same run, interrupted (Ctrl-C) during iteration 4: the checkpoint holds iteration 2,
    # the log holds iterations 1..3.
    calls = {"n": 0}
    real = MaskRCNN.forward_backward

    def interrupted(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(MaskRCNN, "forward_backward", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(small_cfg(), shapes, tmp_path / "cut", **kw)
    assert len(read_log(tmp_path / "cut")) == 3
    assert read_checkpoint(tmp_path / "cut" / "checkpoint.npz")["iteration"] == 2
    monkeypatch.setattr(MaskRCNN, "forward_backward", real)

    train(small_cfg(), shapes, tmp_path / "cut", resume=True, **kw)
    whole, cut = read_log(tmp_path / "whole"), read_log(tmp_path / "cut")
    assert [r["iter"] for r in cut] == [1, 2, 3, 4, 5]
    for a, b in zip(whole, cut):
        for k in LOSS_KEYS + ("lr",):
            assert a[k] == b[k], (a["iter"], k, a[k], b[k])  # exactly equal, not approx
    wa, wb = load_npz(tmp_path / "whole" / "weights.npz"), load_npz(tmp_path / "cut" / "weights.npz")
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    ca = read_checkpoint(tmp_path / "whole" / "checkpoint.npz")
    cb = read_checkpoint(tmp_path / "cut" / "checkpoint.npz")
    assert ca["rng"].bit_generator.state == cb["rng"].bit_generator.state
    for k in ca["optim_state"]:
        np.testing.assert_array_equal(ca["optim_state"][k], cb["optim_state"][k], err_msg=k)
    assert ca["ema_state"].keys() == cb["ema_state"].keys()
    for k in ca["ema_state"]:
        np.testing.assert_array_equal(ca["ema_state"][k], cb["ema_state"][k], err_msg=k)
    if ema_decay is None:
        assert ca["ema_state"] == {}
    else:  # weights.npz holds the average (5 updates), the checkpoint the training weights
        assert int(ca["ema_state"]["updates"]) == 5
        params = [k for k in ca["ema_state"] if k != "updates"]
        assert params and all(not np.array_equal(wa[k], ca["model_state"][k]) for k in params)
        for k in params:
            np.testing.assert_array_equal(wa[k], ca["ema_state"][k], err_msg=k)
        # `evaluate --weights checkpoint.npz` reads the average too: the weights the run saves
        from_ckpt = extract_weights(load_npz(tmp_path / "whole" / "checkpoint.npz"))
        assert from_ckpt.keys() == wa.keys()
        for k in wa:
            np.testing.assert_array_equal(from_ckpt[k], wa[k], err_msg=k)


# ------------------------------------------------------------------------------------------
# The NaN guard
# ------------------------------------------------------------------------------------------
def test_nan_loss_stops_before_the_step_and_keeps_the_last_good_checkpoint(shapes, tmp_path,
                                                                            monkeypatch):
    real = MaskRCNN.forward_backward
    calls = {"n": 0}

    def poisoned(self, *a, **k):
        losses = real(self, *a, **k)
        calls["n"] += 1
        if calls["n"] == 3:  # iteration 3 computes a NaN mask loss
            losses["loss_mask"] = float("nan")
            losses["loss"] = float("nan")
        return losses

    monkeypatch.setattr(MaskRCNN, "forward_backward", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as e:
        train(small_cfg(), shapes, run, iters=4, lr=0.01, eval_every=-1, checkpoint_every=2,
              progress=False, log=lambda m: None)
    msg = str(e.value)
    assert "\n" not in msg
    assert "iteration 3" in msg and "loss_mask = nan" in msg and "iteration 2" in msg
    ck = read_checkpoint(run / "checkpoint.npz")
    assert ck["iteration"] == 2
    assert all(np.isfinite(v).all() for v in ck["model_state"].values() if v.dtype.kind == "f")
    assert [r["iter"] for r in read_log(run)] == [1, 2]  # the bad iteration is not logged
    assert not (run / "weights.npz").exists()
    assert no_temp_files(run)


def test_nan_weight_is_caught_by_the_guard(shapes, tmp_path, monkeypatch):
    """A poisoned weight makes the losses (or gradients) non-finite: the guard fires at once."""
    real_init = MaskRCNN.__init__

    def init_then_poison(self, *a, **k):
        real_init(self, *a, **k)
        self.roi_heads.box_predictor.cls_score.params["weight"][0, 0] = np.nan

    monkeypatch.setattr(MaskRCNN, "__init__", init_then_poison)
    with pytest.raises(TrainingDiverged, match="iteration 1: .*(nan|not finite)"):
        train(small_cfg(), shapes, tmp_path / "run", iters=2, eval_every=-1, progress=False,
              log=lambda m: None)


# ------------------------------------------------------------------------------------------
# Over-fitting one image (the check that the model can learn)
# ------------------------------------------------------------------------------------------
def test_overfit_one_image(tmp_path):
    """Over-fit ONE image (two objects, a square and a circle; no flips): the total loss must
    fall at least 10x and the mask AP50 on that image must reach 0.9.

    Settings: 110 iterations of batch 1, lr 0.01 (x0.1 after 88), warm-up 10, gradient norm
    clipped at 10, 64 RoIs sampled per step (fewer RoIs make the box losses too noisy to
    fall 10x this quickly). About 40-60 s of CPU."""
    data = tmp_path / "one"
    make_shapes_dataset(data, num_train=1, num_val=1, image_size=(SIZE, SIZE), seed=17,
                        max_objects=3)
    ds = load_split(data, "train")
    assert ds.get(0)["labels"].tolist() == [2, 1]  # the image we mean to over-fit
    run = tmp_path / "run"
    iters = 110
    # One image: its batch statistics are the population's, so batch norm has none of the
    # train/eval mismatch that made the tiny preset drop it, and it fits one image fastest.
    s = train(small_cfg(box_batch_size_per_image=64, backbone_norm="batch"), data, run,
              iters=iters, batch_size=1,
              lr=0.01, warmup_iters=10, milestones=[88], clip_grad_norm=10.0, flip=False,
              eval_every=-1, checkpoint_every=iters, progress=False, log=lambda m: None)
    log = read_log(run)
    first = np.mean([r["loss"] for r in log[:3]])
    last = np.mean([r["loss"] for r in log[-5:]])
    assert last <= first / 10, f"loss fell only from {first:.4f} to {last:.4f}"
    ck = read_checkpoint(run / "checkpoint.npz")
    model = MaskRCNN(ck["config"])
    model.load_state_dict(ck["model_state"])
    stats, _ = evaluate_model(model, ds)
    assert stats["segm"]["AP50"] >= 0.9, stats
    assert s["iterations"] == iters


def test_clip_grad_norm_bounds_the_first_step(shapes, tmp_path):
    """With weight decay 0, SGD's first step is -lr * g (the momentum buffer starts at g), so a
    gradient clipped to norm c moves the parameters by exactly lr * c in global norm."""
    lr, clip = 0.5, 1e-3
    run = tmp_path / "run"
    train(small_cfg(), shapes, run, iters=1, batch_size=1, lr=lr, weight_decay=0.0,
          warmup_iters=0, milestones=[], clip_grad_norm=clip, eval_every=-1, progress=False,
          seed=4, log=lambda m: None)
    assert read_log(run)[0]["grad_norm"] > clip  # (the raw norm is logged, before clipping)
    init_seq, _ = np.random.SeedSequence(4).spawn(2)  # how train() seeds the weights
    before = MaskRCNN(small_cfg(), rng=np.random.default_rng(init_seq))
    after = load_npz(run / "weights.npz")
    step = [after[name].astype(np.float64) - p for name, p, _ in before.named_parameters()]
    moved = math.sqrt(sum(float(np.sum(d * d)) for d in step))
    assert moved == pytest.approx(lr * clip, rel=1e-3)


def test_a_failing_final_evaluation_never_costs_the_weights(shapes, tmp_path, monkeypatch):
    """weights.npz and the last checkpoint are written BEFORE the final evaluation."""
    import mrcnn_np.train as train_module

    def broken(*a, **k):
        raise RuntimeError("the evaluation broke")

    monkeypatch.setattr(train_module, "evaluate_model", broken)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="evaluation broke"):
        train(small_cfg(), shapes, run, iters=2, batch_size=1, eval_every=0, checkpoint_every=50,
              progress=False, log=lambda m: None)
    assert read_checkpoint(run / "checkpoint.npz")["iteration"] == 2
    assert load_npz(run / "weights.npz").keys() == read_checkpoint(run / "checkpoint.npz")["model_state"].keys()


def test_overfit_one_stick_figure_image(tmp_path):
    """The keypoint branch can learn: over-fit ONE stick-figure image (two figures, some
    keypoints covered, two outside the image; no flips) with the tiny_keypoints preset at
    64 px, and its keypoint AP (OKS, pycocotools) on that image must reach 0.9.

    Settings: 150 iterations of batch 1, AdamW lr 0.003, warm-up 10, lr steps at 75% / 90%,
    gradient norm clipped at 10; measured keypoint AP 0.95 (AP50 1.0), about 60 s of CPU."""
    from mrcnn_np.config import tiny_keypoints
    from mrcnn_np.data.stickfigures import make_figures_dataset
    data = tmp_path / "one"
    make_figures_dataset(data, num_train=1, num_val=1, image_size=(SIZE, SIZE), seed=17,
                         max_figures=2)
    ds = load_split(data, "train")
    kp = ds.get(0)["keypoints"]  # [2, 9, 3]: the image we mean to over-fit
    assert kp.shape == (2, 9, 3) and (kp[..., 2] == 1).sum() == 3 and (kp[..., 2] == 0).sum() == 2
    small = dict(min_size=(SIZE,), max_size=SIZE, rpn_pre_nms_top_n_train=200,
                 rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=100,
                 rpn_post_nms_top_n_test=50, box_batch_size_per_image=32,
                 representation_size=128, mask_layers=(32,) * 4, mask_dim_reduced=32,
                 keypoint_layers=(32,) * 4)
    run = tmp_path / "run"
    train(tiny_keypoints(**small), data, run, iters=150, batch_size=1, optimizer="adamw",
          lr=0.003, warmup_iters=10, clip_grad_norm=10.0, flip=False, eval_every=-1,
          checkpoint_every=150, progress=False, log=lambda m: None)
    log = read_log(run)
    assert np.mean([r["loss_keypoint"] for r in log[-5:]]) < np.mean(
        [r["loss_keypoint"] for r in log[:3]]) / 2
    ck = read_checkpoint(run / "checkpoint.npz")
    model = MaskRCNN(ck["config"])
    model.load_state_dict(ck["model_state"])
    stats, _ = evaluate_model(model, ds)
    assert stats["keypoints"]["AP"] >= 0.9, stats["keypoints"]


def test_init_weights_starts_the_backbone_and_rpn_from_another_run(shapes, tmp_path):
    """``train(init_weights=...)``: checkpoint 0 of the new run holds the other run's backbone
    and RPN tensors, and its own fresh heads; the log says how many were copied."""
    first = tmp_path / "first"
    train(small_cfg(), shapes, first, iters=1, eval_every=-1, progress=False, log=lambda m: None)
    source = load_npz(first / "weights.npz")
    messages = []
    second = tmp_path / "second"
    train(small_cfg(), shapes, second, iters=0, eval_every=-1, progress=False,
          log=messages.append, seed=5, init_weights=first / "weights.npz")
    start = read_checkpoint(second / "checkpoint.npz")["model_state"]
    copied = [k for k in start if k.startswith(("backbone.", "rpn."))]
    assert copied and all(np.array_equal(start[k], source[k]) for k in copied)
    heads = [k for k in start if k.startswith("roi_heads.") and k.endswith("weight")]
    assert heads and not any(np.array_equal(start[k], source[k]) for k in heads)
    assert any(f"started {len(copied)} backbone and RPN tensors" in m for m in messages)
    with pytest.raises(DataError, match="cannot read"):
        train(small_cfg(), shapes, tmp_path / "third", iters=0, eval_every=-1, progress=False,
              log=lambda m: None, init_weights=tmp_path / "missing.npz")


def test_flip_vertical_transpose_by_hand():
    # one 2x3 image, one object covering pixel (row 0, column 2): box (2, 0, 3, 1)
    image = np.arange(18, dtype=np.float32).reshape(3, 2, 3)  # [3, H=2, W=3]
    masks = np.zeros((1, 2, 3), np.uint8)
    masks[0, 0, 2] = 1
    s = dict(image=image, masks=masks, boxes=np.array([[2, 0, 3, 1]], np.float32),
             labels=np.array([1]), orig_size=(2, 3))
    v = flip_vertical_transpose(s, True, False)  # row 0 -> row 1
    assert v["masks"][0, 1, 2] == 1 and v["masks"].sum() == 1
    np.testing.assert_array_equal(v["boxes"], [[2, 1, 3, 2]])
    np.testing.assert_array_equal(v["image"][0], [[3, 4, 5], [0, 1, 2]])
    t = flip_vertical_transpose(s, False, True)  # (row 0, column 2) -> (row 2, column 0)
    assert t["image"].shape == (3, 3, 2) and t["orig_size"] == (3, 2)
    assert t["masks"][0, 2, 0] == 1 and t["masks"].sum() == 1
    np.testing.assert_array_equal(t["boxes"], [[0, 2, 1, 3]])
    np.testing.assert_array_equal(t["image"][0], [[0, 3], [1, 4], [2, 5]])
    with pytest.raises(ValueError, match="keypoints"):
        flip_vertical_transpose(dict(s, keypoints=np.zeros((1, 2, 3))), True, False)


def test_sample_batch_dihedral_is_the_drawn_symmetry_and_keeps_boxes_on_masks(shapes):
    ds = load_split(shapes, "train")
    rng = np.random.default_rng(3)
    state = rng.bit_generator.state
    imgs, tgts = sample_batch(ds, np.arange(len(ds)), rng, 4, flip="dihedral")
    rng2 = np.random.default_rng(3)
    rng2.bit_generator.state = state
    picks = rng2.choice(len(ds), size=4, replace=False)
    flips = rng2.random(4) < 0.5
    turns = rng2.random((4, 2)) < 0.5
    for im, t, p, f, (v, tr) in zip(imgs, tgts, picks, flips, turns):
        ref = ds.get(int(p))["image"]  # [3, H, W]: apply the draws in their order by hand
        ref = ref[:, :, ::-1] if f else ref
        ref = ref[:, ::-1, :] if v else ref
        ref = ref.transpose(0, 2, 1) if tr else ref
        np.testing.assert_array_equal(im, ref)
        for m, b in zip(t["masks"], t["boxes"]):  # each box still encloses its mask
            ys, xs = np.nonzero(m)
            assert b[0] <= xs.min() and b[1] <= ys.min()
            assert xs.max() + 1 <= b[2] + 1e-4 and ys.max() + 1 <= b[3] + 1e-4


def test_dihedral_flips_on_keypoint_data_are_refused_before_training(tmp_path):
    from mrcnn_np.data.stickfigures import make_figures_dataset
    data = tmp_path / "figs"
    make_figures_dataset(data, num_train=2, num_val=1, image_size=(SIZE, SIZE), seed=1)
    run = tmp_path / "run"
    with pytest.raises(DataError, match="people have an up"):
        train(small_cfg(), data, run, iters=1, flip="dihedral", progress=False,
              log=lambda m: None)
    assert not (run / "log.jsonl").exists()  # no iteration ran
