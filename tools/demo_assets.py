"""Ship a finished ``make demo`` run to the chapters: ``python tools/demo_assets.py runs/demo``.

Writes, under ``notebooks/assets/``:

- ``tiny_shapes.npz``: the demo's weights (chapters 10 and 11 load them);
- ``demo_run.json``: the demo's settings, wall time, COCO numbers, and its loss log
  downsampled to one point per ``STEP`` iterations (the mean of those iterations), so that
  chapter 10 can draw the real run's curves without a 1 MB log in the repository.

``python tools/demo_assets.py --keypoints runs/kpdemo`` ships a ``demo --keypoints`` run the
same way, as ``tiny_figures.npz`` and ``keypoint_demo_run.json`` (chapter 15).
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "notebooks" / "assets"
STEP = 20  # iterations per point of the shipped curve


def downsample(records, step=STEP):
    keys = [k for k in records[0] if k.startswith("loss") or k in ("lr", "grad_norm", "time")]
    out = {"iter": []}
    out.update({k: [] for k in keys})
    for a in range(0, len(records), step):
        chunk = records[a:a + step]
        out["iter"].append(chunk[-1]["iter"])
        for k in keys:
            out[k].append(float(np.mean([r[k] for r in chunk])))
    return out


def main(run_dir, keypoints=False):
    run = Path(run_dir)
    weights, run_json, command = (("tiny_figures.npz", "keypoint_demo_run.json",
                                   "python -m mrcnn_np demo --keypoints") if keypoints else
                                  ("tiny_shapes.npz", "demo_run.json", "make demo"))
    summary = json.loads((run / "demo_summary.json").read_text())
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    shipped = dict(command=command, commit=commit, settings=summary["settings"],
                   wall_s=summary["wall_s"], iterations=summary["iterations"],
                   eval=summary["eval"], object_recall=summary["object_recall"],
                   log_step=STEP, log=downsample(records))
    ASSETS.mkdir(parents=True, exist_ok=True)
    (ASSETS / run_json).write_text(json.dumps(shipped, indent=1) + "\n")
    shutil.copyfile(run / "weights.npz", ASSETS / weights)
    print(f"wrote {ASSETS / run_json} ({len(records)} iterations -> "
          f"{len(shipped['log']['iter'])} points) and {ASSETS / weights}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--keypoints"]
    main(args[0] if args else "runs/demo", keypoints="--keypoints" in sys.argv[1:])
