"""The ablation runner of chapter 14: the Mask R-CNN paper's Table 2, at small scale.

    python -m mrcnn_np ablate --grid table2 --seeds 3 --iters N --out runs/ablate [--data DIR]
    results = run_grid("toy", "runs/toy", seeds=1, iters=20)

A grid is a plain list of ``(variant name, Config overrides)`` (``GRIDS`` below). Every
variant is trained with every seed on the same data with the same schedule (``TRAIN_SETTINGS``,
one dict for the whole grid); seed k seeds the weights and the training RNG of every variant
alike. Each (variant, seed) is an ordinary ``train()`` run folder, so each can be inspected,
evaluated or continued like any other run. Files in ``OUT``::

    data/                  the shapes data set, written once (unless ``--data`` is given)
    <variant>/seed<k>/     one run: checkpoint.npz, log.jsonl, weights.npz, eval_iter<N>.json
    results.json           the settings, every COCO number of every run, mean and std per variant
    table.md               mean +- std over seeds of mask AP, AP50, AP75 and box AP per variant;
                           the differences from the baseline that count are in bold
    bars.png               those four numbers, bars with error bars
    ap_vs_iou.png          mask AP against the IoU threshold .50 .. .95, one curve per extractor

Resumable: a run whose final evaluation (``eval_iter<N>.json``) is on disk is skipped; a run
with a checkpoint continues from it (``resume=True``); the command can be run again after
Ctrl-C, a crash or a reboot and loses at most ``checkpoint_every`` iterations of one run.
A run's folder is trusted by its name: after changing a variant's overrides or
``TRAIN_SETTINGS``, use a new ``--out`` (a resumed run keeps its checkpoint's settings).

When does a difference count? Each variant is compared with its baseline: the grid's variant
with the same ``pool_level`` and no other override (``align-avg`` for the FPN rows,
``align-stride32`` for ``pool-stride32``). A difference of means counts when it is larger than
the two spreads together, ``|mean_v - mean_b| > std_v + std_b`` (sample standard deviations
over the seeds, ddof = 1): the two mean +- std intervals do not overlap. With one seed there is
no spread, and nothing counts.
"""
import json
import time
from pathlib import Path

import numpy as np

from .config import tiny

# The trainer's keyword arguments, the same for every run of every grid (train() may gain
# keywords such as ``optimizer=``: whatever this dict holds is passed through).
TRAIN_SETTINGS = dict(batch_size=2, optimizer="adamw", lr=0.001, clip_grad_norm=10.0,
                      checkpoint_every=100, workers=2)  # the demo's recipe (mrcnn_np/demo.py)

# The data written into OUT/data when no --data is given: the demo's shapes set.
DATA_SETTINGS = dict(num_train=200, num_val=50, image_size=128, seed=0)

# Iterations per run, chosen for the budget of 60-90 minutes for table2 x 3 seeds on
# the 2-core machine. Measured (2026-12-02, the demo's recipe on two workers): 3.3-3.5 min per
# run with its start-up and evaluation, 31 min per seed of the nine variants, so about 95
# minutes for three seeds. 600 iterations is a third of the demo's 1,800: each variant is
# compared early in training, all at the same point (too early for the stride-32 rows, which
# have hardly begun to learn by then: chapter 14).
DEFAULT_ITERS = 600

# name -> [(variant, Config overrides)]: the paper's Table 2b-e (2a compares backbones).
GRIDS = {
    "table2": [
        ("align-avg", {}),  # the baseline: RoIAlign (avg), FPN levels, sigmoid, class-specific, FCN
        ("align-max", dict(roi_align_reduction="max")),                      # Table 2c
        ("warp", dict(roi_extractor="warp")),                                # Table 2c
        ("pool", dict(roi_extractor="pool")),                                # Table 2c
        ("align-stride32", dict(pool_level="stride32")),                     # Table 2d
        ("pool-stride32", dict(roi_extractor="pool", pool_level="stride32")),  # Table 2d
        ("softmax", dict(mask_loss="softmax")),                              # Table 2b
        ("class-agnostic", dict(class_agnostic_masks=True)),                 # Table 2b's text
        ("mlp", dict(mask_head="mlp")),                                      # Table 2e
    ],
    # The extractor's two central rows again, trained twice as long (1,200 iterations) so that
    # they rise above the seed noise of the 600-iteration table2 grid, and at stride 16 instead
    # of 32: at our 192 px a shape spans as many stride-16 cells as a COCO object spans
    # stride-32 cells at 800 px (chapter 14, section 5).
    "align-vs-pool": [
        ("align-avg", {}),
        ("pool", dict(roi_extractor="pool")),
        ("align-stride16", dict(pool_level="stride16")),
        ("pool-stride16", dict(roi_extractor="pool", pool_level="stride16")),
    ],
    "toy": [  # two variants, for tests and the notebook's live run
        ("align-avg", {}),
        ("pool", dict(roi_extractor="pool")),
    ],
}

# The four numbers of the table and the bar figure: (label, iou_type, COCO stat).
TABLE_METRICS = (("mask AP", "segm", "AP"), ("mask AP50", "segm", "AP50"),
                 ("mask AP75", "segm", "AP75"), ("box AP", "bbox", "AP"))
EXTRACTOR_KEYS = ("roi_extractor", "roi_align_reduction", "pool_level")


def grid_variants(name, only=None):
    """The ``[(variant, overrides)]`` of grid ``name`` (only those named in ``only``, in the
    grid's order, when given); ValueError naming the grids, or the grid's variants, otherwise."""
    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}; choose one of {', '.join(GRIDS)}")
    variants = GRIDS[name]
    if only is None:
        return variants
    unknown = [n for n in only if n not in {v for v, _ in variants}]
    if unknown:
        raise ValueError(f"grid {name!r} has no variant {', '.join(unknown)}; its variants: "
                         + ", ".join(n for n, _ in variants))
    return [(n, o) for n, o in variants if n in only]


def baselines(variants):
    """variant name -> the name of its baseline (see the module docstring): the variant with
    the same ``pool_level`` override and no other, or else the first variant with none."""
    plain = [n for n, o in variants if not o]
    out = {}
    for name, overrides in variants:
        level = {k: v for k, v in overrides.items() if k == "pool_level"}
        same = [n for n, o in variants if o == level]
        out[name] = same[0] if same else (plain[0] if plain else variants[0][0])
    return out


def difference_counts(mean_v, std_v, mean_b, std_b, n):
    """True when ``|mean_v - mean_b| > std_v + std_b`` with n >= 2 seeds (see the docstring)."""
    return n >= 2 and abs(mean_v - mean_b) > std_v + std_b


# ------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------
def prepare_data(out_dir, data_dir=None, data_settings=None, log=print):
    """The data every run trains on: ``data_dir`` when given, else the shapes set written once
    into ``out_dir/data`` (kept when both annotation files are there). Both splits must be
    there (DataError otherwise): every run is scored on "val".
    Returns (data folder, the settings it was written with, or None for ``data_dir``)."""
    from .data.shapes import make_shapes_dataset
    from .train import find_split
    settings = None
    if data_dir is None:
        data_dir = Path(out_dir) / "data"
        settings = dict(DATA_SETTINGS, **(data_settings or {}))
        anns = [data_dir / "annotations" / f"instances_{s}.json" for s in ("train", "val")]
        if not all(a.is_file() for a in anns):
            log(f"writing the shapes data set to {data_dir}")
            make_shapes_dataset(data_dir, num_train=settings["num_train"],
                                num_val=settings["num_val"],
                                image_size=(settings["image_size"],) * 2, seed=settings["seed"])
    for split in ("train", "val"):
        find_split(data_dir, split)
    return Path(data_dir), settings


def run_one(cfg, data_dir, run_dir, iters, seed, train_settings, progress=False, log=print):
    """Train (or continue, or skip) one (variant, seed) in ``run_dir``.

    Skipped when ``eval_iter<iters>.json`` is there; continued with ``resume=True`` when a
    checkpoint is; else started afresh. Returns the run's record: ``status`` ("skipped",
    "resumed", "trained"), ``iterations``, ``train_s`` (the summed step times in its log, over
    every session that trained it) and ``eval`` (the COCO stats: ``{"bbox": {..}, "segm": {..}}``).
    """
    from .train import train
    run_dir = Path(run_dir)
    record = finished_record(run_dir, iters)
    if record is not None:
        return record
    status = "resumed" if (run_dir / "checkpoint.npz").is_file() else "trained"
    settings = dict(dict(eval_every=0), **train_settings)
    train(cfg, data_dir, run_dir, iters=iters, seed=seed, resume=status == "resumed",
          progress=progress, log=log, **settings)
    return dict(finished_record(run_dir, iters), status=status)


def finished_record(run_dir, iters):
    """The record of a finished run (its final evaluation ``eval_iter<iters>.json`` is on
    disk; ``status`` "skipped"), or None. ``train_s`` sums the step times of its log."""
    run_dir = Path(run_dir)
    final = run_dir / f"eval_iter{iters}.json"
    if not final.is_file():
        return None
    stats = json.loads(final.read_text())
    log_path = run_dir / "log.jsonl"
    times = [json.loads(line)["time"] for line in log_path.read_text().splitlines()
             if line.strip()] if log_path.is_file() else []
    return dict(status="skipped", iterations=iters, train_s=float(sum(times)),
                eval={t: stats[t] for t in ("bbox", "segm")})


def run_grid(grid, out_dir, seeds=3, iters=DEFAULT_ITERS, data_dir=None, data_settings=None,
             base_overrides=None, train_settings=None, only=None, progress=False, log=print):
    """Train every variant of ``grid`` with seeds 0 .. seeds-1 and write the report.

    Inputs:
      grid: a name in ``GRIDS``; out_dir: the grid's folder (see the module docstring)
      seeds, iters: seeds per variant and iterations per run
      data_dir: a COCO data folder to use instead of writing the shapes set
      data_settings: overrides of ``DATA_SETTINGS`` (the written data set)
      base_overrides: Config overrides applied to every variant (a test's small images)
      train_settings: overrides of ``TRAIN_SETTINGS``
      only: names of some of the grid's variants: train (and report) just those. Two
        processes with disjoint ``only`` lists can share one grid folder (write the data
        first); a last call without ``only`` then finds every run finished and reports all.
        On 2 cores run each with ``workers=1`` and one thread (OPENBLAS_NUM_THREADS=1
        NUMBA_NUM_THREADS=1): two processes of two threads each fight for the cores (we
        measured 1.7 s per step instead of 0.3).
    Returns the results dict written to ``results.json``. Raises ValueError for an unknown
    grid, and whatever ``train()`` raises (DataError, TrainingDiverged) for a bad run.
    """
    variants = grid_variants(grid, only)
    if seeds < 1 or iters < 1:
        raise ValueError(f"--seeds and --iters must be positive (got {seeds}, {iters})")
    out_dir = Path(out_dir)
    data_dir, data_settings = prepare_data(out_dir, data_dir, data_settings, log)
    settings = dict(TRAIN_SETTINGS, **(train_settings or {}))
    base = dict(base_overrides or {})
    t0 = time.perf_counter()
    runs, total = [], len(variants) * seeds
    # seed by seed: an interrupted grid has whole seeds of every variant to look at first
    for seed in range(seeds):
        for v, (name, overrides) in enumerate(variants):
            cfg = tiny(**dict(base, **overrides))
            k = seed * len(variants) + v + 1
            run_dir = out_dir / name / f"seed{seed}"
            log(f"[{k}/{total}] {name}, seed {seed}: {run_dir}")
            record = run_one(cfg, data_dir, run_dir, iters, seed, settings, progress, log)
            log(f"[{k}/{total}] {name}, seed {seed}: {record['status']}; mask AP "
                f"{record['eval']['segm']['AP']:.3f}, box AP {record['eval']['bbox']['AP']:.3f}")
            runs.append(dict(variant=name, seed=seed, run_dir=str(run_dir), **record))
    results = dict(
        grid=grid, seeds=seeds, iters=iters, data=str(data_dir), data_settings=data_settings,
        train_settings=settings, base_overrides=base,
        variants=[dict(name=n, overrides=o) for n, o in variants],
        baselines=baselines(variants), rule="|mean_v - mean_b| > std_v + std_b (ddof = 1)",
        runs=runs, summary=summarize(runs, [n for n, _ in variants]),
        wall_s=time.perf_counter() - t0)
    write_report(results, out_dir)
    return results


# ------------------------------------------------------------------------------------------
# The report
# ------------------------------------------------------------------------------------------
def summarize(runs, names):
    """variant -> iou_type -> stat -> {"mean", "std", "n"} over the variant's seeds (std: the
    sample standard deviation, ddof = 1; 0.0 for one seed)."""
    out = {}
    for name in names:
        mine = [r["eval"] for r in runs if r["variant"] == name]
        out[name] = {}
        for iou_type in ("bbox", "segm"):
            out[name][iou_type] = {}
            for stat in mine[0][iou_type]:
                x = np.array([e[iou_type][stat] for e in mine], np.float64)  # [seeds]
                out[name][iou_type][stat] = dict(
                    mean=float(x.mean()), std=float(x.std(ddof=1)) if len(x) > 1 else 0.0,
                    n=len(x))
    return out


def format_table(results):
    """``table.md``: one row per variant, mean +- std of each of ``TABLE_METRICS``; beside each
    non-baseline number its difference from the baseline, in bold when it counts."""
    s, base = results["summary"], results["baselines"]
    n_seeds = results["seeds"]
    lines = [f"# Ablation grid `{results['grid']}`: {len(s)} variants x {n_seeds} seeds, "
             f"{results['iters']} iterations each", "",
             "| variant | overrides | baseline | " + " | ".join(m[0] for m in TABLE_METRICS) + " |",
             "| --- | --- | --- |" + " --- |" * len(TABLE_METRICS)]
    for v in results["variants"]:
        name, b = v["name"], base[v["name"]]
        cells = []
        for _, iou_type, stat in TABLE_METRICS:
            m, mb = s[name][iou_type][stat], s[b][iou_type][stat]
            cell = f"{m['mean']:.3f} ± {m['std']:.3f}" if m["n"] > 1 else f"{m['mean']:.3f}"
            if name != b:
                d = f"{round(m['mean'] - mb['mean'], 3) + 0.0:+.3f}"  # + 0.0: no "-0.000"
                counts = difference_counts(m["mean"], m["std"], mb["mean"], mb["std"], m["n"])
                cell += f" (**{d}**)" if counts else f" ({d})"
            cells.append(cell)
        over = ", ".join(f"{k}={val}" for k, val in v["overrides"].items()) or "(defaults)"
        shown_base = "—" if name == b else b
        lines.append(f"| {name} | {over} | {shown_base} | " + " | ".join(cells) + " |")
    lines += ["", f"Mean ± sample standard deviation (ddof = 1) over {n_seeds} seed(s); in "
              "brackets the difference from the variant's baseline (same `pool_level`, no other "
              "override). **Bold**: the difference counts, |mean − mean_baseline| > std + "
              "std_baseline (the two mean ± std intervals do not overlap)."
              + (" One seed: no spread, so no difference counts." if n_seeds < 2 else ""),
              "", f"Training: {results['iters']} iterations, "
              + ", ".join(f"{k}={val}" for k, val in results["train_settings"].items())
              + f"; data: {results['data']}."
              + (f" Wall time of this invocation: {results['wall_s'] / 60:.1f} min (runs "
                 "skipped as finished cost none)." if results.get("wall_s") is not None else "")]
    return "\n".join(lines) + "\n"


def bar_figure(results):
    """Mask AP, AP50, AP75 and box AP per variant: bars of the mean, error bars of the std."""
    from matplotlib.figure import Figure
    names = [v["name"] for v in results["variants"]]
    s = results["summary"]
    fig = Figure(figsize=(max(8.0, 1.2 * len(names)), 4.5))
    ax = fig.subplots()
    width = 0.8 / len(TABLE_METRICS)
    x = np.arange(len(names))  # [V]
    for j, (label, iou_type, stat) in enumerate(TABLE_METRICS):
        mean = [s[n][iou_type][stat]["mean"] for n in names]  # [V]
        std = [s[n][iou_type][stat]["std"] for n in names]  # [V]
        ax.bar(x + (j - (len(TABLE_METRICS) - 1) / 2) * width, mean, width, yerr=std,
               capsize=3, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel("COCO AP (validation)")
    ax.set_title(f"grid '{results['grid']}': mean ± std over {results['seeds']} seed(s), "
                 f"{results['iters']} iterations")
    ax.legend(fontsize=8, ncol=4)
    ax.grid(axis="y", alpha=0.3)
    return fig


def ap_vs_iou_figure(results):
    """Mask AP at each IoU threshold .50 .. .95, one curve (mean over seeds, band: +- std)
    per variant that changes only the extractor, its reduction or the pooling level; dashed:
    stride 32. The paper's claim: RoIAlign's gain grows with the threshold."""
    from matplotlib.figure import Figure

    from .eval.coco_eval import AP_AT_IOU_NAMES, IOU_THRESHOLDS
    s = results["summary"]
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for v in results["variants"]:
        if not set(v["overrides"]) <= set(EXTRACTOR_KEYS):
            continue
        mean = np.array([s[v["name"]]["segm"][k]["mean"] for k in AP_AT_IOU_NAMES])  # [10]
        std = np.array([s[v["name"]]["segm"][k]["std"] for k in AP_AT_IOU_NAMES])  # [10]
        dashed = v["overrides"].get("pool_level", "fpn") != "fpn"
        line, = ax.plot(IOU_THRESHOLDS, mean, "o-" if not dashed else "s--", label=v["name"])
        ax.fill_between(IOU_THRESHOLDS, mean - std, mean + std, alpha=0.15,
                        color=line.get_color())
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("mask AP at that threshold")
    ax.set_title("mask AP against the IoU threshold (band: ± std over seeds)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def write_report(results, out_dir):
    """``results.json``, ``table.md``, ``bars.png`` and ``ap_vs_iou.png`` in ``out_dir``
    (each written atomically). Returns their paths."""
    from .checkpoint import atomic_save_png, atomic_write_bytes, atomic_write_json
    out_dir = Path(out_dir)
    paths = dict(results=out_dir / "results.json", table=out_dir / "table.md",
                 bars=out_dir / "bars.png", ap_vs_iou=out_dir / "ap_vs_iou.png")
    atomic_write_json(paths["results"], results)
    atomic_write_bytes(paths["table"], format_table(results).encode())
    atomic_save_png(paths["bars"], bar_figure(results))
    atomic_save_png(paths["ap_vs_iou"], ap_vs_iou_figure(results))
    return paths


def load_results(out_dir):
    """The ``results.json`` of a grid folder (what the notebook of chapter 14 reads)."""
    return json.loads((Path(out_dir) / "results.json").read_text())
