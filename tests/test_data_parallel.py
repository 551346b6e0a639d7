"""parallel.DataParallel: worker processes, one share of the batch each, gradients summed.

The 20-iteration comparison with the reference trainer is in test_parallel_equivalence.py;
here: an uneven split (3 images on 2 workers, so the loss weights are not 1/2), the summed
gradient itself, and what the class refuses.
"""
import os
from pathlib import Path

import numpy as np
import pytest

from mrcnn_np import MaskRCNN
from mrcnn_np.config import tiny
from mrcnn_np.data.shapes import make_shapes_dataset
from mrcnn_np.parallel import DataParallel
from mrcnn_np.train import load_split, sample_batch


def _model(ds):
    cfg = tiny(num_classes=ds.num_classes, min_size=(64,), max_size=64)
    model = MaskRCNN(cfg, rng=np.random.default_rng(0))
    model.astype(np.float64)
    return model


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    data = tmp_path_factory.mktemp("dp") / "data"
    make_shapes_dataset(data, num_train=6, num_val=1, image_size=(64, 64), seed=5)
    return load_split(data, "train")


def test_three_images_on_two_workers_give_the_reference_gradient(ds):
    rng = np.random.default_rng(1)
    images, targets = sample_batch(ds, np.arange(len(ds)), rng, 3)
    images = [im.astype(np.float64) for im in images]
    ref = _model(ds)
    ref_losses = ref.forward_backward(images, targets, np.random.default_rng(2))
    ref_grads = {n: g.copy() for n, _, g in ref.named_parameters()}

    model = _model(ds)
    with DataParallel(model, workers=2) as dp:
        losses = dp.forward_backward(images, targets, np.random.default_rng(2))
        grads = {n: g.copy() for n, _, g in model.named_parameters()}
    assert set(losses) == set(ref_losses)
    for k in ref_losses:
        assert losses[k] == pytest.approx(ref_losses[k], rel=1e-12, abs=1e-15), k
    assert ref_losses["loss_mask"] > 0 and ref_losses["loss_classifier"] > 0
    for n, g in ref_grads.items():
        np.testing.assert_allclose(grads[n], g, rtol=1e-9, atol=1e-12, err_msg=n)
    assert sum(np.abs(g).sum() for g in ref_grads.values()) > 0


def test_parameters_are_shared_while_open_and_private_after_close(ds):
    model = _model(ds)
    dp = DataParallel(model, workers=2)
    name, p, _ = next(iter(model.named_parameters()))
    assert not p.flags.owndata  # a view into the shared block
    dp.close()
    _, p, g = next(iter(model.named_parameters()))
    assert p.flags.owndata and g.flags.owndata
    model.load_state_dict(model.state_dict())  # usable as before
    dp.close()  # twice is harmless


def test_refuses_batch_norm_and_one_worker(ds):
    model = MaskRCNN(tiny(num_classes=ds.num_classes, backbone_norm="batch"))
    with pytest.raises(ValueError, match="BatchNorm"):
        DataParallel(model, workers=2)
    with pytest.raises(ValueError, match="at least 2"):
        DataParallel(_model(ds), workers=1)


def test_train_with_two_workers(tmp_path):
    """train(workers=2) writes the same files, and its first iteration (same weights, same
    draws) has the reference's losses up to float32 rounding."""
    from mrcnn_np.train import train
    data = tmp_path / "data"
    make_shapes_dataset(data, num_train=4, num_val=1, image_size=(64, 64), seed=6)
    kw = dict(iters=3, checkpoint_every=2, eval_every=-1, progress=False, log=lambda m: None)
    cfg = tiny(min_size=(64,), max_size=64)
    one = train(cfg, data, tmp_path / "one", **kw)
    two = train(cfg, data, tmp_path / "two", workers=2, **kw)
    assert two["iterations"] == 3 and (tmp_path / "two" / "weights.npz").is_file()
    import json
    first = [json.loads((tmp_path / d / "log.jsonl").read_text().splitlines()[0]) for d in ("one", "two")]
    for k in ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"):
        assert first[1][k] == pytest.approx(first[0][k], rel=1e-5), k
    # the later iterations too: the workers' trainer draws each next batch during a step's
    # backward, and those draws must be the ones a step at a time makes (another batch or
    # another sample would change the losses by far more than rounding)
    logs = [[json.loads(l) for l in (tmp_path / d / "log.jsonl").read_text().splitlines()]
            for d in ("one", "two")]
    for a, b in zip(*logs):
        for k in ("loss_objectness", "loss_classifier", "loss_box_reg", "loss_mask"):
            assert b[k] == pytest.approx(a[k], rel=1e-4), (a["iter"], k)


def test_workers_resume_exactly_from_a_checkpoint_written_with_the_next_batch_drawn(tmp_path,
                                                                                 monkeypatch):
    """A checkpoint written while the next batch was drawn already (train_step's draw-ahead)
    saves the rng state from before that draw: interrupted after iteration 3 and resumed from
    the checkpoint of iteration 2, a two-worker run repeats the uninterrupted one exactly."""
    import json

    import mrcnn_np.parallel as parallel
    from mrcnn_np.train import read_checkpoint, train
    data = tmp_path / "data"
    make_shapes_dataset(data, num_train=4, num_val=1, image_size=(64, 64), seed=6)
    kw = dict(iters=5, checkpoint_every=2, eval_every=-1, progress=False, log=lambda m: None,
              workers=2, lr=0.01, seed=3)
    cfg = tiny(min_size=(64,), max_size=64)
    train(cfg, data, tmp_path / "whole", **kw)
    real, calls = parallel.DataParallel.forward_backward, {"n": 0}

    def interrupted(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(parallel.DataParallel, "forward_backward", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, tmp_path / "cut", **kw)
    assert read_checkpoint(tmp_path / "cut" / "checkpoint.npz")["iteration"] == 2
    monkeypatch.setattr(parallel.DataParallel, "forward_backward", real)
    train(cfg, data, tmp_path / "cut", resume=True, **kw)
    whole, cut = [[json.loads(l) for l in (tmp_path / d / "log.jsonl").read_text().splitlines()]
                  for d in ("whole", "cut")]
    assert [r["iter"] for r in cut] == [1, 2, 3, 4, 5]
    for a, b in zip(whole, cut):
        for k in ("loss", "loss_objectness", "loss_classifier", "loss_box_reg", "loss_mask"):
            assert a[k] == b[k], (a["iter"], k)  # exactly equal
    ca = read_checkpoint(tmp_path / "whole" / "checkpoint.npz")
    cb = read_checkpoint(tmp_path / "cut" / "checkpoint.npz")
    assert ca["rng"].bit_generator.state == cb["rng"].bit_generator.state


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc (Linux)")
def test_workers_start_with_one_blas_thread_and_the_malloc_settings(ds, monkeypatch):
    # what each worker process started with (/proc/PID/environ), and the master's own
    # environment untouched afterwards; a setting the user made is kept
    monkeypatch.setenv("MALLOC_TOP_PAD_", "12345")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with DataParallel(_model(ds), workers=2) as dp:
        for p in dp._procs:
            raw = Path(f"/proc/{p.pid}/environ").read_bytes().split(b"\0")
            env = dict(kv.decode().split("=", 1) for kv in raw if b"=" in kv)
            assert env["OPENBLAS_NUM_THREADS"] == "1"
            assert env["MALLOC_TRIM_THRESHOLD_"] == str(256 * 2**20)
            assert env["MALLOC_MMAP_THRESHOLD_"] == str(32 * 2**20)
            assert env["MALLOC_TOP_PAD_"] == "12345"
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ
    assert os.environ["MALLOC_TOP_PAD_"] == "12345"
