"""Ship an ablation grid's results to chapter 14: ``python tools/ablation_assets.py runs/ablate``
(``--grid align-vs-pool --iters 1200 --out notebooks/assets/ablation_align_vs_pool.json`` for
the second grid).

Reads every finished run of the grid folder (a run is finished when its final evaluation,
``<variant>/seed<k>/eval_iter<N>.json``, is there), keeps the seeds that every variant has
finished (whole seeds only, so each variant is averaged over the same seeds), and writes
``notebooks/assets/ablation_table2.json`` in the format of the grid's own ``results.json``
(``mrcnn_np.ablate``), plus:

- ``command``, ``commit``: how and from which commit the grid was run (the commit of this
  checkout unless ``--commit`` says otherwise);
- ``seeds_done`` and ``seeds_planned``, ``complete``: whether every planned run is in;
- ``train_s``: the summed training-step times of the runs shipped (what the grid cost).

It can be run while the grid is still training: it reads only finished runs, and a later
call ships more seeds.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mrcnn_np.ablate import (DATA_SETTINGS, DEFAULT_ITERS, TRAIN_SETTINGS, baselines,  # noqa: E402
                             finished_record, grid_variants, summarize)

ASSET = ROOT / "notebooks" / "assets" / "ablation_table2.json"


def finished_runs(out_dir, variants, seeds, iters):
    """{(variant, seed): record} for the runs whose final evaluation is on disk."""
    runs = {}
    for name, _ in variants:
        for seed in range(seeds):
            run_dir = out_dir / name / f"seed{seed}"
            record = finished_record(run_dir, iters)
            if record is not None:
                runs[name, seed] = dict(variant=name, seed=seed, run_dir=str(run_dir),
                                        **dict(record, status="trained"))
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", help="the grid folder (python -m mrcnn_np ablate --out)")
    ap.add_argument("--grid", default="table2")
    ap.add_argument("--seeds", type=int, default=3, help="seeds the grid was started with")
    ap.add_argument("--iters", type=int, default=DEFAULT_ITERS)
    ap.add_argument("--command", default=None, help="the command that ran the grid")
    ap.add_argument("--commit", default=None, help="the commit it ran from")
    ap.add_argument("--workers", type=int, default=None,
                    help="the workers the grid ran with, when not the grid's default")
    ap.add_argument("--out", default=str(ASSET))
    a = ap.parse_args()
    out_dir = Path(a.out_dir)
    variants = grid_variants(a.grid)
    runs = finished_runs(out_dir, variants, a.seeds, a.iters)
    whole = [s for s in range(a.seeds) if all((n, s) in runs for n, _ in variants)]
    if not whole:
        sys.exit(f"error: {out_dir}: no seed has every variant of '{a.grid}' finished yet")
    shipped = [runs[n, s] for s in whole for n, _ in variants]
    commit = a.commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                        capture_output=True, text=True).stdout.strip()
    results = dict(
        grid=a.grid, seeds=len(whole), seeds_done=whole, seeds_planned=a.seeds,
        complete=len(runs) == len(variants) * a.seeds, iters=a.iters,
        command=a.command or f"python -m mrcnn_np ablate --grid {a.grid} --seeds {a.seeds} "
                             f"--iters {a.iters} --out {a.out_dir}",
        commit=commit, data=str(out_dir / "data"), data_settings=dict(DATA_SETTINGS),
        train_settings=dict(TRAIN_SETTINGS, **({} if a.workers is None else
                                               dict(workers=a.workers))), base_overrides={},
        variants=[dict(name=n, overrides=o) for n, o in variants],
        baselines=baselines(variants), rule="|mean_v - mean_b| > std_v + std_b (ddof = 1)",
        runs=shipped, summary=summarize(shipped, [n for n, _ in variants]),
        train_s=float(sum(r["train_s"] for r in shipped)), wall_s=None)
    Path(a.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {a.out}: {len(variants)} variants x seeds {whole} of {a.seeds} planned "
          f"({len(runs)} of {len(variants) * a.seeds} runs finished); training time "
          f"{results['train_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
