"""The ablation runner (chapter 14): the toy grid end to end on a tiny data set (4 + 2 images
of 64 px, 12 iterations per run), an interrupted grid that resumes, the report's rule, and
the command line's one-line error for a bad grid name."""
import json

import numpy as np
import pytest
from test_cli import assert_one_line_error, cli

import mrcnn_np.train
from mrcnn_np import ablate
from mrcnn_np.data.shapes import make_shapes_dataset
from mrcnn_np.eval.coco_eval import AP_AT_IOU_NAMES
from mrcnn_np.train import read_checkpoint

ITERS = 12
SMALL = dict(min_size=(64,), max_size=64)  # every variant on 64-px images: a fast test
TRAIN = dict(checkpoint_every=5, workers=1)  # one process: tiny runs, no worker start-up


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate_data")
    make_shapes_dataset(root, num_train=4, num_val=2, image_size=(64, 64), seed=3, max_objects=2)
    return root


def test_toy_grid_resumes_and_skips_finished_runs(data, tmp_path, monkeypatch):
    out = tmp_path / "grid"
    logs = []
    real_step = mrcnn_np.train.train_step

    def crash_in_pool(run, i, **kw):  # Ctrl-C at iteration 8 of the second variant
        if run.out_dir.parent.name == "pool" and i == 7:
            raise KeyboardInterrupt
        return real_step(run, i, **kw)

    monkeypatch.setattr(mrcnn_np.train, "train_step", crash_in_pool)
    with pytest.raises(KeyboardInterrupt):
        ablate.run_grid("toy", out, seeds=1, iters=ITERS, data_dir=data, base_overrides=SMALL,
                        train_settings=TRAIN, log=logs.append)
    done = out / "align-avg" / "seed0" / f"eval_iter{ITERS}.json"
    assert done.is_file() and not (out / "results.json").exists()
    assert read_checkpoint(out / "pool" / "seed0" / "checkpoint.npz")["iteration"] == 5
    stamp = done.stat().st_mtime_ns

    monkeypatch.setattr(mrcnn_np.train, "train_step", real_step)
    logs.clear()
    results = ablate.run_grid("toy", out, seeds=1, iters=ITERS, data_dir=data,
                              base_overrides=SMALL, train_settings=TRAIN, log=logs.append)
    assert [(r["variant"], r["seed"], r["status"]) for r in results["runs"]] == \
        [("align-avg", 0, "skipped"), ("pool", 0, "resumed")]
    assert done.stat().st_mtime_ns == stamp  # the finished run was not touched
    assert any("resuming from" in m and "pool" in m for m in logs)
    log_lines = (out / "pool" / "seed0" / "log.jsonl").read_text().splitlines()
    iters = [json.loads(x)["iter"] for x in log_lines]
    assert iters == list(range(1, ITERS + 1))  # 1..5 kept, 6..12 trained after the resume

    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["train_settings"] == dict(ablate.TRAIN_SETTINGS, **TRAIN)
    assert {r["variant"] for r in saved["runs"]} == {n for n, _ in ablate.GRIDS["toy"]}
    for r in saved["runs"]:
        for t in ("bbox", "segm"):
            assert all(0 <= r["eval"][t][k] <= 1 for k in ("AP", "AP50", "AP75", "AR100"))
        assert len([k for k in r["eval"]["segm"] if k in AP_AT_IOU_NAMES]) == 10
        assert r["train_s"] > 0 and r["iterations"] == ITERS
    assert saved["summary"]["pool"]["segm"]["AP"]["n"] == 1
    table = (out / "table.md").read_text()
    assert "| align-avg |" in table and "| pool | roi_extractor=pool | align-avg |" in table
    for png in ("bars.png", "ap_vs_iou.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a third time, from the command line: nothing left to train
    rc, stdout, err = cli("ablate", "--grid", "toy", "--seeds", "1", "--iters", ITERS,
                          "--out", out, "--data", data, "--no-progress")
    assert rc == 0, err
    assert err.count(": skipped;") == 2 and "| pool |" in stdout


def test_bad_grid_name_is_one_line(tmp_path):
    rc, _, err = cli("ablate", "--grid", "table3", "--out", tmp_path / "g")
    assert_one_line_error(rc, err, "unknown grid 'table3'", "table2", "toy")
    assert not (tmp_path / "g").exists()
    with pytest.raises(ValueError, match="unknown grid"):
        ablate.run_grid("table3", tmp_path / "g")


def test_two_processes_split_a_grid_with_only(data, tmp_path):
    out = tmp_path / "grid"
    part = ablate.run_grid("toy", out, seeds=1, iters=4, data_dir=data, base_overrides=SMALL,
                           train_settings=TRAIN, only=["pool"], log=lambda m: None)
    assert [(r["variant"], r["status"]) for r in part["runs"]] == [("pool", "trained")]
    assert not (out / "align-avg").exists()
    whole = ablate.run_grid("toy", out, seeds=1, iters=4, data_dir=data, base_overrides=SMALL,
                            train_settings=TRAIN, log=lambda m: None)
    assert [(r["variant"], r["status"]) for r in whole["runs"]] == \
        [("align-avg", "trained"), ("pool", "skipped")]
    assert whole["baselines"] == {"align-avg": "align-avg", "pool": "align-avg"}
    with pytest.raises(ValueError, match="no variant warp"):
        ablate.run_grid("toy", out, only=["warp"])
    rc, _, err = cli("ablate", "--grid", "toy", "--only", "align-avg,warp", "--out", out)
    assert_one_line_error(rc, err, "no variant warp", "align-avg, pool")
    rc, _, err = cli("ablate", "--grid", "toy", "--workers", "0", "--out", out)
    assert_one_line_error(rc, err, "--workers must be positive")


def test_baselines_and_the_rule():
    avp = ablate.baselines(ablate.GRIDS["align-vs-pool"])
    assert avp["pool-stride16"] == "align-stride16" and avp["pool"] == "align-avg"
    base = ablate.baselines(ablate.GRIDS["table2"])
    assert base["pool-stride32"] == "align-stride32" and base["align-stride32"] == "align-stride32"
    assert {base[n] for n in ("pool", "warp", "align-max", "softmax", "class-agnostic", "mlp")} \
        == {"align-avg"}
    # intervals 0.50 +- 0.01 and 0.47 +- 0.01 do not overlap: counts; +- 0.02 each: does not
    assert ablate.difference_counts(0.47, 0.01, 0.50, 0.01, 3)
    assert not ablate.difference_counts(0.47, 0.02, 0.50, 0.02, 3)
    assert not ablate.difference_counts(0.10, 0.0, 0.50, 0.0, 1)  # one seed: nothing counts


def test_table_marks_the_differences_that_count():
    """A hand-made summary: pool's mask AP is 0.10 below with spreads of 0.01 (counts, bold);
    its box AP 0.01 below with the same spreads (does not count)."""
    def stats(ap, box):
        return {"segm": {k: dict(mean=ap, std=0.01, n=3) for k in ("AP", "AP50", "AP75")},
                "bbox": {"AP": dict(mean=box, std=0.01, n=3)}}

    variants = ablate.GRIDS["toy"]
    results = dict(grid="toy", seeds=3, iters=100, data="d", wall_s=60.0,
                   train_settings=dict(batch_size=2),
                   variants=[dict(name=n, overrides=o) for n, o in variants],
                   baselines=ablate.baselines(variants),
                   summary={"align-avg": stats(0.5, 0.6), "pool": stats(0.4, 0.59)})
    lines = ablate.format_table(results).splitlines()
    row = next(line for line in lines if line.startswith("| pool"))
    assert row.count("(**-0.100**)") == 3 and "0.590 ± 0.010 (-0.010)" in row
    assert np.isclose(results["summary"]["pool"]["bbox"]["AP"]["mean"], 0.59)
