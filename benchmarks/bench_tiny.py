"""The tiny preset against its torchvision twin: a training step and inference, stage by stage.

The twin (``tools/tv_agreement.build_torchvision_tiny``) is torchvision's own MaskRCNN with a
ResNet-FPN backbone built from torchvision's classes at our widths, every argument read from
``mrcnn_np.config.tiny()``; its 59 state_dict keys equal ours and it holds our weights. Both
sides get the same two images and targets of the shapes data set, the same thread count and
the same weights, each in its own subprocess (the thread count must be fixed before numpy
loads OpenBLAS), and the subprocesses are interleaved over ``--rounds`` so that a change of
machine load hits both sides.

    python benchmarks/bench_tiny.py                          # demo weights, 2 threads, 20 steps
    python benchmarks/bench_tiny.py --threads 1 --baseline /work/baseline
    python benchmarks/bench_tiny.py --random-init --threads 2
    python benchmarks/bench_tiny.py --quick                  # 3 steps, 1 round: a smoke run
    python benchmarks/bench_tiny.py --ours-blas-threads 1 --ours-workers 2   # make demo's way

``--baseline DIR`` also times OUR model from another checkout (DIR first on sys.path) with the
same preset values, weights and inputs (``--baseline-preset own`` gives it its own ``tiny()``);
``--baseline-as-ours`` also gives it the ``--ours-workers`` and ``--ours-set`` settings, so that
ours / baseline compares two versions of the code on the same work.

How the stages are measured (no timing code in the model; wrappers installed from here):
- ours: ``model.transform`` (a proxy timing ``__call__`` and ``postprocess``),
  ``model.backbone.forward/backward``, ``model.rpn.head.forward/backward``, the roi_heads
  sub-modules' ``backward`` and the functions that ``mrcnn_np.model`` calls by name
  (``generate_proposals``, ``build_rpn_targets``, ``rpn_loss_forward``, the loss backwards)
  are wrapped and their start/end times recorded. RPN = first RPN-head call to the end of
  ``generate_proposals`` (head, anchors, decoding, NMS) plus the RPN targets and loss; RoI
  heads forward = the rest of the forward (sampling, RoIAlign, heads, losses; at inference
  up to ``transform.postprocess``); backward of the heads = first backward call to the start
  of ``backbone.backward``; backward of the backbone = ``backbone.backward``.
- torchvision: forward pre/post hooks on ``model.transform``, ``model.backbone``,
  ``model.rpn`` (in train mode torchvision computes the RPN targets and loss inside it, as
  ours is counted) and ``model.roi_heads``, a wrapper on ``transform.postprocess``. Backward
  is split by tensor hooks on the five FPN outputs: the first to fire marks the end of the
  heads' backward (autograd runs the nodes created later, i.e. the heads, before the
  backbone's; the warm-up checks it with post-accumulate-grad hooks on the heads' parameters).
- "other" = total minus the rows above: summing the losses, python glue, and for ours the
  release of the forward cache when ``forward_backward`` returns (``BENCH_TINY_EVENTS=FILE``
  dumps one step's timeline of ours to see it).
Memory: by default our side keeps its freed memory as ``train()`` does in one process
(``parallel.keep_freed_memory``: glibc's mallopt, fewer page faults per step) and the twin runs
with glibc's defaults, what each library's user gets. torch gains from the same settings too:
``--malloc same`` hands them to the twin (``--malloc default``: to neither side).
Each row is a median over the steps on its own, so the rows need not add up to the total.

A benchmark, not a test: nothing is asserted about time. Once per run it checks that both
sides compute the same thing: the inference detections are matched (count, box and score
differences), and the training losses of both are printed side by side (they differ by
sampling randomness only).
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOSS_NAMES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask")
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

TRAIN_ROWS = [("zero_grad", "zero_grad"),
              ("transform", "transform (normalize, resize, batch)"),
              ("backbone", "backbone forward"),
              ("rpn", "RPN (head, anchors, proposals, targets, loss)"),
              ("roi_heads", "RoI heads forward (sampling, RoIAlign, heads, losses)"),
              ("bwd_heads", "backward: heads (losses, RoI heads, RPN head)"),
              ("bwd_backbone", "backward: backbone (FPN, ResNet)"),
              ("other", "other (freeing the step's caches, loss sum, glue)"),
              ("total", "**total training step**")]
INFER_ROWS = [("transform", "transform (normalize, resize, batch)"),
              ("backbone", "backbone forward"),
              ("rpn", "RPN (head, anchors, proposals)"),
              ("roi_heads", "RoI heads (RoIAlign, heads, detections, masks)"),
              ("postprocess", "postprocess (boxes to image, paste masks)"),
              ("other", "other (glue)"),
              ("total", "**total inference**")]


# =========================================================================================
# Children: one library, one checkout, one process
# =========================================================================================
class Timeline:
    """(name, start, end) of every wrapped call, in seconds of perf_counter."""

    def __init__(self):
        self.events = []

    def wrap(self, fn, name):
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.events.append((name, t0, time.perf_counter()))
        timed.__wrapped__ = fn
        return timed

    def take(self):
        ev, self.events = self.events, []
        return ev


def _sum(ev, *names):
    return sum(t1 - t0 for n, t0, t1 in ev if n in names)


def _first(ev, names, end=False):
    ts = [t1 if end else t0 for n, t0, t1 in ev if n in names]
    return min(ts) if ts else None


def _last_end(ev, names):
    ts = [t1 for n, t0, t1 in ev if n in names]
    return max(ts) if ts else None


def _load_inputs(path):
    import numpy as np
    with np.load(path, allow_pickle=False) as z:
        n = int(z["n"])
        images = [z[f"image{i}"] for i in range(n)]
        targets = [dict(boxes=z[f"boxes{i}"], labels=z[f"labels{i}"], masks=z[f"masks{i}"])
                   for i in range(n)]
    return images, targets


def _save_dets(path, dets):
    import numpy as np
    arrays = {f"{k}{i}": np.asarray(v) for i, d in enumerate(dets) for k, v in d.items()}
    np.savez(path, n=len(dets), **arrays)


def child_ours(a):
    """Our model from checkout ``a.root``: per-step stage times, losses, first detections."""
    sys.path.insert(0, a.root)
    import numpy as np

    import mrcnn_np
    import mrcnn_np.model as model_mod
    from mrcnn_np import MaskRCNN
    from mrcnn_np import config as config_mod
    cfg_dict = json.loads(Path(a.config).read_text()) if a.config else None
    dropped = []
    if cfg_dict is None:
        cfg = config_mod.tiny()
    else:
        fields = config_mod.Config.__dataclass_fields__
        dropped = sorted(k for k in cfg_dict if k not in fields)
        cfg = config_mod.config_from_dict(cfg_dict)
    model = MaskRCNN(cfg, rng=np.random.default_rng(0))
    model.load(a.weights)
    images, targets = _load_inputs(a.inputs)
    dp = None
    malloc = {}
    if a.workers > 1:  # DataParallel: the stages run in the workers, only the total is timed
        from mrcnn_np.parallel import DataParallel
        dp = DataParallel(model, a.workers)  # before the timing wrappers (they do not pickle)
    elif a.malloc != "default":  # what train(workers=1) does before its first step (a
        import mrcnn_np.parallel as parallel_mod  # checkout from before 2026-12-03 has none)
        keep = getattr(parallel_mod, "keep_freed_memory", None)
        malloc = keep() if keep is not None else {}

    tl = Timeline()
    wrapped = []

    def patch(obj, attr, name):
        fn = getattr(obj, attr, None)
        if fn is None:
            return
        object.__setattr__(obj, attr, tl.wrap(fn, name))
        wrapped.append(name)

    class TimedTransform:
        """``model.transform`` with its two entry points timed; anything else passes through."""

        def __init__(self, inner):
            object.__setattr__(self, "_inner", inner)

        def __call__(self, *args, **kw):
            return tl.wrap(self._inner, "transform")(*args, **kw)

        def postprocess(self, *args, **kw):
            return tl.wrap(self._inner.postprocess, "postprocess")(*args, **kw)

        def __getattr__(self, name):
            return getattr(self._inner, name)

    if hasattr(model, "transform"):
        object.__setattr__(model, "transform", TimedTransform(model.transform))
        wrapped += ["transform", "postprocess"]
    patch(model, "zero_grad", "zero_grad")
    patch(model.backbone, "forward", "backbone.forward")
    patch(model.backbone, "backward", "backbone.backward")
    patch(model.rpn.head, "forward", "rpn.head.forward")
    patch(model.rpn.head, "backward", "rpn.head.backward")
    head_bwd = ["rpn.head.backward"]
    for name in ("box_head", "box_predictor", "mask_head", "mask_predictor"):
        sub = getattr(model.roi_heads, name, None)
        if sub is not None:
            patch(sub, "backward", f"{name}.backward")
            head_bwd.append(f"{name}.backward")
    # functions that mrcnn_np.model calls by their module-level name (skipped if renamed)
    for fn_name in ("generate_proposals", "build_rpn_targets", "rpn_loss_forward",
                    "rpn_loss_backward", "fastrcnn_loss_backward", "maskrcnn_loss_backward",
                    "multi_scale_roi_align_backward"):
        patch(model_mod, fn_name, fn_name)
        if fn_name.endswith("_backward"):
            head_bwd.append(fn_name)

    def train_stages(ev, total):
        st = dict(total=total, zero_grad=_sum(ev, "zero_grad"), transform=_sum(ev, "transform"),
                  backbone=_sum(ev, "backbone.forward"), bwd_backbone=_sum(ev, "backbone.backward"))
        head_start = _first(ev, ["rpn.head.forward"])
        prop_end = _last_end(ev, ["generate_proposals"]) or _last_end(ev, ["rpn.head.forward"])
        rpn_extra = [(n, t0, t1) for n, t0, t1 in ev if n in ("build_rpn_targets", "rpn_loss_forward")]
        st["rpn"] = (prop_end - head_start) + sum(t1 - t0 for _, t0, t1 in rpn_extra)
        bwd_start = _first(ev, head_bwd)
        bb_start = _first(ev, ["backbone.backward"])
        st["bwd_heads"] = bb_start - bwd_start
        st["roi_heads"] = (bwd_start - prop_end) - sum(t1 - t0 for _, t0, t1 in rpn_extra
                                                       if t0 >= prop_end and t1 <= bwd_start)
        st["other"] = total - sum(st[k] for k, _ in TRAIN_ROWS if k not in ("total", "other"))
        return st

    def infer_stages(ev, total):
        st = dict(total=total, transform=_sum(ev, "transform"),
                  backbone=_sum(ev, "backbone.forward"), postprocess=_sum(ev, "postprocess"))
        head_start = _first(ev, ["rpn.head.forward"])
        prop_end = _last_end(ev, ["generate_proposals"]) or _last_end(ev, ["rpn.head.forward"])
        st["rpn"] = prop_end - head_start
        post_start = _first(ev, ["postprocess"])
        st["roi_heads"] = (post_start if post_start is not None else tl_end[0]) - prop_end
        st["other"] = total - sum(st[k] for k, _ in INFER_ROWS if k not in ("total", "other"))
        return st

    tl_end = [None]
    out = dict(lib="ours", root=a.root, module=mrcnn_np.__file__, dropped_config=dropped,
               train=[], infer=[], losses=[], wrapped=sorted(set(wrapped)), malloc=malloc)
    try:
        import kernels
        out["kernels"] = kernels.__file__
    except ImportError:
        pass
    fired = set()
    step = model.forward_backward if dp is None else dp.forward_backward
    if dp is not None:
        out["workers"] = a.workers
    for i in range(a.warmup + a.steps):
        tl.take()
        t0 = time.perf_counter()
        losses = step(images, targets, np.random.default_rng(1000 * a.round + i))
        dt = time.perf_counter() - t0
        ev = tl.take()
        fired |= {n for n, _, _ in ev}
        if i >= a.warmup and dp is not None:
            out["train"].append({k: (dt if k == "total" else float("nan")) for k, _ in TRAIN_ROWS})
            out["losses"].append({k: float(losses[k]) for k in LOSS_NAMES})
        elif i >= a.warmup:
            if os.environ.get("BENCH_TINY_EVENTS"):  # a debugging aid: one step's timeline
                Path(os.environ["BENCH_TINY_EVENTS"]).write_text(json.dumps(
                    [(n, (s0 - t0) * 1e3, (s1 - t0) * 1e3) for n, s0, s1 in ev] + [("step", 0, dt * 1e3)]))
            out["train"].append(train_stages(ev, dt))
            out["losses"].append({k: float(losses[k]) for k in LOSS_NAMES})
    if dp is not None:
        dp.close()
    for i in range(a.warmup + a.steps):
        tl.take()
        t0 = time.perf_counter()
        dets = model.predict(images)
        tl_end[0] = time.perf_counter()
        dt = tl_end[0] - t0
        ev = tl.take()
        fired |= {n for n, _, _ in ev}
        if i >= a.warmup:
            out["infer"].append(infer_stages(ev, dt))
        if i == 0 and a.dets:
            _save_dets(a.dets, [{k: d[k] for k in ("boxes", "labels", "scores", "masks")}
                                for d in dets])
    out["never_called"] = sorted(set(wrapped) - fired)
    print(json.dumps(out))


def child_torchvision(a):
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tools"))
    import numpy as np
    import torch
    torch.set_num_threads(a.threads)
    import tv_agreement

    from mrcnn_np.config import config_from_dict
    cfg = config_from_dict(json.loads(Path(a.config).read_text()))
    model = tv_agreement.build_torchvision_tiny(cfg, weights=a.weights)
    images, targets = _load_inputs(a.inputs)
    timgs = [torch.from_numpy(im) for im in images]
    ttgts = [dict(boxes=torch.from_numpy(t["boxes"]).float(), labels=torch.from_numpy(t["labels"]).long(),
                  masks=torch.from_numpy(t["masks"]).to(torch.uint8)) for t in targets]

    marks = {}  # name -> [start, end]; feature hooks -> list of times
    feat_grad_times, head_grad_times = [], []
    check_heads = [False]

    def pre(name):
        def hook(module, args):
            marks.setdefault(name, []).append([time.perf_counter(), None])
        return hook

    def post(name):
        def hook(module, args, output):
            marks[name][-1][1] = time.perf_counter()
            if name == "backbone" and torch.is_grad_enabled():
                for f in output.values():
                    if f.requires_grad:
                        f.register_hook(lambda g: feat_grad_times.append(time.perf_counter()))
        return hook

    for name in ("transform", "backbone", "rpn", "roi_heads"):
        mod = getattr(model, name)
        mod.register_forward_pre_hook(pre(name))
        mod.register_forward_hook(post(name))
    orig_post = model.transform.postprocess

    def timed_post(*args, **kw):
        t0 = time.perf_counter()
        r = orig_post(*args, **kw)
        marks.setdefault("postprocess", []).append([t0, time.perf_counter()])
        return r
    model.transform.postprocess = timed_post
    # the check that the heads' backward is over when the first FPN output gets its gradient
    def head_param_done(p):
        if check_heads[0]:
            head_grad_times.append(time.perf_counter())

    for p in list(model.rpn.parameters()) + list(model.roi_heads.parameters()):
        p.register_post_accumulate_grad_hook(head_param_done)

    def dur(name):
        return sum(t1 - t0 for t0, t1 in marks.get(name, []))

    out = dict(lib="torchvision", torch=torch.__version__, threads=torch.get_num_threads(),
               train=[], infer=[], losses=[], heads_done_before_backbone=[])
    model.train()
    for i in range(a.warmup + a.steps):
        torch.manual_seed(1000 * a.round + i)
        marks.clear()
        feat_grad_times.clear()
        head_grad_times.clear()
        check_heads[0] = i < a.warmup
        t0 = time.perf_counter()
        model.zero_grad()
        t_zero = time.perf_counter() - t0
        losses = model(timgs, ttgts)
        loss = sum(losses.values())
        t_bwd = time.perf_counter()
        loss.backward()
        t_end = time.perf_counter()
        if i < a.warmup:
            out["heads_done_before_backbone"].append(
                bool(head_grad_times) and max(head_grad_times) <= min(feat_grad_times))
            continue
        first_feat = min(feat_grad_times)
        st = dict(total=t_end - t0, zero_grad=t_zero, transform=dur("transform"),
                  backbone=dur("backbone"), rpn=dur("rpn"), roi_heads=dur("roi_heads"),
                  bwd_heads=first_feat - t_bwd,
                  bwd_backbone=t_end - first_feat)
        st["other"] = st["total"] - sum(st[k] for k, _ in TRAIN_ROWS if k not in ("total", "other"))
        out["train"].append(st)
        out["losses"].append({k: float(losses[k]) for k in LOSS_NAMES})
    model.eval()
    with torch.no_grad():
        for i in range(a.warmup + a.steps):
            marks.clear()
            t0 = time.perf_counter()
            dets = model(timgs)
            t_end = time.perf_counter()
            if i == 0 and a.dets:
                _save_dets(a.dets, [{k: d[k].numpy() for k in ("boxes", "labels", "scores", "masks")}
                                    for d in dets])
            if i < a.warmup:
                continue
            st = dict(total=t_end - t0, transform=dur("transform"), backbone=dur("backbone"),
                      rpn=dur("rpn"), roi_heads=dur("roi_heads"), postprocess=dur("postprocess"))
            st["other"] = st["total"] - sum(st[k] for k, _ in INFER_ROWS if k not in ("total", "other"))
            out["infer"].append(st)
    print(json.dumps(out))


# =========================================================================================
# Parent: inputs, weights, interleaved children, the table
# =========================================================================================
def prepare(work, args):
    """The two images and targets (shapes data set), the preset as JSON, the weights path."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from mrcnn_np.config import tiny
    from mrcnn_np.data.shapes import make_shapes_dataset
    from mrcnn_np.train import load_split
    data = work / "shapes"
    make_shapes_dataset(data, num_train=max(args.images, 2), num_val=1, seed=0)
    ds = load_split(data, "train")
    arrays = dict(n=args.images)
    for i in range(args.images):
        tgt = ds.get(i)
        arrays[f"image{i}"] = np.ascontiguousarray(tgt["image"], np.float32)
        for k in ("boxes", "labels", "masks"):
            arrays[f"{k}{i}"] = np.asarray(tgt[k])
    inputs = work / "inputs.npz"
    np.savez(inputs, **arrays)
    cfg = tiny(mask_paste="torchvision")  # the twin pastes torchvision's way: the same work
    # (``--ours-set mask_paste=subpixel`` times the tiny preset's own paste)
    config = work / "config.json"
    config.write_text(json.dumps(cfg.to_dict()))
    if args.random_init:
        from mrcnn_np import MaskRCNN
        weights = work / "random_init.npz"
        MaskRCNN(cfg, rng=np.random.default_rng(args.seed)).save(weights)
        wdesc = f"random init (MaskRCNN(tiny(), rng=default_rng({args.seed})), loaded into both)"
    else:
        weights = Path(args.weights).resolve()
        wdesc = f"{args.weights}"
    sizes = [arrays[f"image{i}"].shape for i in range(args.images)]
    nobj = [len(arrays[f"boxes{i}"]) for i in range(args.images)]
    return inputs, config, weights, wdesc, sizes, nobj


def run_child(kind, args, work, inputs, config, weights, rnd, steps, root=None, dets=None,
              own_preset=False):
    env = dict(os.environ)
    for v in THREAD_VARS:
        env[v] = str(args.threads)
    if kind != "torchvision" and args.ours_blas_threads is not None:
        # numba kernels on every core, BLAS on one
        env["OPENBLAS_NUM_THREADS"] = str(args.ours_blas_threads)
    env.pop("PYTHONPATH", None)
    if kind == "torchvision" and args.malloc == "same":  # glibc reads them at start-up
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from mrcnn_np.parallel import WORKER_MALLOC
        env.update({k: os.environ.get(k, v) for k, v in WORKER_MALLOC.items()})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind,
           "--inputs", str(inputs), "--weights", str(weights), "--threads", str(args.threads),
           "--steps", str(steps), "--warmup", str(args.warmup), "--round", str(rnd),
           "--malloc", args.malloc]
    if not own_preset:
        if kind == "ours" and _like_ours(args, root) and args.ours_set:  # e.g. the demo's
            cfg = dict(json.loads(Path(config).read_text()), **_overrides(args.ours_set))
            config = work / "config_ours.json"
            config.write_text(json.dumps(cfg))
        cmd += ["--config", str(config)]
    if root:
        cmd += ["--root", str(root)]
    if dets:
        cmd += ["--dets", str(dets)]
    if kind == "ours" and _like_ours(args, root) and args.ours_workers > 1:
        cmd += ["--workers", str(args.ours_workers)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(root or ROOT))
    if p.returncode:
        raise RuntimeError(f"{kind} child ({root or ROOT}) failed:\n{p.stderr[-4000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _like_ours(args, root):
    """Does this child of our model get the ``--ours-workers`` and ``--ours-set`` settings?
    Ours always; the baseline with ``--baseline-as-ours`` (two versions of the code, the same
    work). ``--ours-blas-threads`` applies to both of our sides in any case."""
    return root == ROOT or args.baseline_as_ours


def _overrides(pairs):
    """``["mask_rois_per_image=8", ...]`` -> {field: value} (values read as JSON)."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        out[key] = json.loads(value)
    return out


def _median(runs, case, key):
    vals = [s[key] for r in runs for s in r[case]]
    return statistics.median(vals) * 1e3 if vals else float("nan")


def _fmt(x):
    return "n/a" if x != x else f"{x:.1f}"


def table(case, rows, sides):
    """sides: list of (label, runs); the first is torchvision, the second ours, then baseline."""
    labels = [s[0] for s in sides]
    med = {lab: {k: _median(runs, case, k) for k, _ in rows} for lab, runs in sides}
    head = ["stage", "torchvision ms", "ours ms", "ours / torchvision"]
    if len(sides) > 2:
        head += ["baseline ms", "ours / baseline", "baseline / torchvision"]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] + ["---:"] * (len(head) - 1)) + " |"]
    for k, name in rows:
        tv, ours = med[labels[0]][k], med[labels[1]][k]
        cells = [name, _fmt(tv), _fmt(ours), _ratio(ours, tv)]
        if len(sides) > 2:
            b = med[labels[2]][k]
            cells += [_fmt(b), _ratio(ours, b), _ratio(b, tv)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), med


def _ratio(a, b):
    if a != a or b != b or b <= 0 or a < 0 or min(a, b) < 0.05:
        return "n/a" if (a != a or b != b) else "-"
    return f"{a / b:.2f}"


def _load_dets(path):
    import numpy as np
    with np.load(path, allow_pickle=False) as z:
        n = int(z["n"])
        return [{k: z[f"{k}{i}"] for k in ("boxes", "labels", "scores", "masks")} for i in range(n)]


def agreement(work, dets_ours, dets_tv, label):
    sys.path.insert(0, str(ROOT / "tools"))
    import tv_agreement
    ours, tv = _load_dets(dets_ours), _load_dets(dets_tv)
    lines = []
    for i, (o, t) in enumerate(zip(ours, tv)):
        m = tv_agreement.match_detections(o, t)
        lines.append(f"  image {i}: {label} {m['n_ours']} detections, torchvision {m['n_theirs']}, "
                     f"matched {m['matched']} ({m['matched_fraction']:.0%}, same label, IoU >= 0.9); "
                     f"max box diff {m['max_box_diff']:.2e} px, max score diff "
                     f"{m['max_score_diff']:.2e}, mean mask diff {m['mean_mask_diff']:.2e}"
                     + (f", max mask diff {m['max_mask_diff']:.2e}" if "max_mask_diff" in m else ""))
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="BLAS/Numba/torch threads, both sides")
    ap.add_argument("--repeat", type=int, default=20, help="timed steps per side (median)")
    ap.add_argument("--rounds", type=int, default=4,
                    help="subprocess rounds per side, interleaved (the steps are split over them)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per subprocess")
    ap.add_argument("--quick", action="store_true", help="3 steps, 1 round, 1 warm-up: a smoke run")
    ap.add_argument("--ours-blas-threads", type=int, default=None,
                    help="BLAS threads of our side only (default: --threads); numba keeps "
                         "--threads")
    ap.add_argument("--ours-workers", type=int, default=1,
                    help="train ours with parallel.DataParallel on this many workers (make demo: "
                         "2); only the step's total is timed then")
    ap.add_argument("--ours-set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a Config field for OUR side only (repeatable), e.g. the demo's "
                         "mask_rois_per_image=8; the twin and the baseline keep the preset's")
    ap.add_argument("--malloc", choices=("trainer", "same", "default"), default="trainer",
                    help="trainer: ours keeps its freed memory as train() does "
                         "(parallel.keep_freed_memory), torchvision runs with glibc's defaults; "
                         "same: torchvision gets those settings too (MALLOC_* variables); "
                         "default: neither")
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--weights", default="notebooks/assets/tiny_shapes.npz",
                    help="our .npz weights, loaded into both (default: the demo's trained model)")
    ap.add_argument("--random-init", action="store_true", help="random weights instead (seed --seed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", type=int, default=2, help="images per batch (shapes train 0..n-1)")
    ap.add_argument("--baseline", help="another checkout of mrcnn-np: time its model too")
    ap.add_argument("--baseline-preset", choices=("current", "own"), default="current",
                    help="current: the baseline runs this checkout's tiny() values (same work); "
                         "own: its own tiny()")
    ap.add_argument("--baseline-as-ours", action="store_true",
                    help="the baseline also gets --ours-workers and --ours-set, so that ours / "
                         "baseline compares two versions of the code on the same work (by "
                         "default they are ours only; --ours-blas-threads is both's)")
    # child mode (internal)
    ap.add_argument("--child", choices=("ours", "torchvision"), help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--dets", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "ours":
        return child_ours(args)
    if args.child == "torchvision":
        return child_torchvision(args)

    if args.quick:
        args.repeat, args.rounds, args.warmup = 3, 1, 1
    if not args.random_init and not Path(args.weights).is_absolute():
        args.weights = str(ROOT / args.weights)
    load_start = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    work = Path(tempfile.mkdtemp(prefix="bench_tiny_"))
    inputs, config, weights, wdesc, sizes, nobj = prepare(work, args)
    rounds = max(1, min(args.rounds, args.repeat))
    per_round = [args.repeat // rounds + (r < args.repeat % rounds) for r in range(rounds)]

    kinds = [("torchvision", None), ("ours", ROOT)]
    if args.baseline:
        kinds.append(("baseline", Path(args.baseline).resolve()))
    runs = {k: [] for k, _ in kinds}
    dets = {k: work / f"dets_{k}.npz" for k, _ in kinds}
    t_start = time.time()
    for r in range(rounds):
        order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]  # rotate who goes first
        for kind, root in order:
            print(f"round {r + 1}/{rounds}: {kind} ({per_round[r]} steps) ...", file=sys.stderr, flush=True)
            res = run_child("torchvision" if kind == "torchvision" else "ours", args, work, inputs,
                            config, weights, r, per_round[r], root=root,
                            dets=dets[kind] if r == 0 else None,
                            own_preset=(kind == "baseline" and args.baseline_preset == "own"))
            runs[kind].append(res)
    load_end = os.getloadavg()

    import numpy as np
    import torch
    import torchvision
    cfg = json.loads(config.read_text())
    print(f"# bench_tiny: the tiny preset vs its torchvision twin ({started:%Y-%m-%d %H:%M} UTC)\n")
    print(f"- command: python {' '.join(sys.argv)}")
    both = bool(args.baseline and args.baseline_as_ours)  # the --ours-* settings on both sides
    print(f"- threads: {args.threads} each side (torch.set_num_threads; "
          f"{'/'.join(THREAD_VARS)}={args.threads} for both"
          + (f"; ours{' and the baseline' if args.baseline else ''} with "
             f"OPENBLAS_NUM_THREADS={args.ours_blas_threads}"
             if args.ours_blas_threads is not None else "")
          + (f"; {'ours and the baseline train' if both else 'ours trains'} on "
             f"{args.ours_workers} DataParallel workers (1 BLAS and 1 numba thread each; "
             f"inference in one process)" if args.ours_workers > 1 else "")
          + f"); {os.cpu_count()} CPU cores")
    m_ours = runs["ours"][0].get("malloc") or {}
    print("- malloc: " + {"trainer": "ours as train() sets it", "same": "both sides with",
                          "default": "glibc's defaults on both sides"}[args.malloc]
          + (f" ({', '.join(f'{k}={v}' for k, v in m_ours.items())})" if m_ours else "")
          + ("; torchvision with glibc's defaults" if args.malloc == "trainer" else ""))
    if args.ours_set:
        others = "the twin" if both or not args.baseline else "the twin and the baseline"
        print(f"- ours{' and the baseline' if both else ' only'}: {', '.join(args.ours_set)} "
              f"({others}: the preset's values)")
    print(f"- weights: {wdesc}")
    print(f"- inputs: {args.images} shapes train images {[tuple(s) for s in sizes]} with "
          f"{nobj} objects, resized by both to the preset's min_size {cfg['min_size']}, max_size "
          f"{cfg['max_size']}; median of {args.repeat} steps per side after {args.warmup} warm-up "
          f"step(s) per subprocess, {rounds} interleaved round(s) {per_round}")
    print(f"- torch {torch.__version__}, torchvision {torchvision.__version__}, numpy {np.__version__}; "
          f"ours from {runs['ours'][0]['module']}")
    if args.baseline:
        b = runs["baseline"][0]
        print(f"- baseline: {b['module']} (kernels {b.get('kernels')}), preset: "
              f"{args.baseline_preset}" + (f"; fields it does not know, dropped: {b['dropped_config']}"
                                           if b["dropped_config"] else ""))
    print(f"- load average (1, 5, 15 min): start {', '.join(f'{x:.2f}' for x in load_start)}; "
          f"end {', '.join(f'{x:.2f}' for x in load_end)}; wall {time.time() - t_start:.0f} s")

    sides = [("torchvision", runs["torchvision"]), ("ours", runs["ours"])]
    if args.baseline:
        sides.append(("baseline", runs["baseline"]))
    for case, rows, title in (("train", TRAIN_ROWS, "Training step (forward + backward), batch of "
                                                     f"{args.images}"),
                              ("infer", INFER_ROWS, f"Inference, batch of {args.images}")):
        print(f"\n## {title}\n")
        text, med = table(case, rows, sides)
        print(text)
        if args.baseline:
            print(f"\nspeed-up vs baseline ({case}): {med['baseline']['total'] / med['ours']['total']:.2f}x "
                  f"(ours-now / ours-baseline = {med['ours']['total'] / med['baseline']['total']:.2f})")
        totals = {lab: [s["total"] * 1e3 for r in rs for s in r[case]] for lab, rs in sides}
        print("\nspread of the totals (min / median / max ms): " + "; ".join(
            f"{lab} {min(v):.1f} / {statistics.median(v):.1f} / {max(v):.1f}" for lab, v in totals.items()))

    print("\n## Same work on both sides\n")
    print("Inference detections, first call (`tools/tv_agreement.match_detections`):")
    for line in agreement(work, dets["ours"], dets["torchvision"], "ours"):
        print(line)
    if args.baseline:
        for line in agreement(work, dets["baseline"], dets["torchvision"], "baseline"):
            print(line)
    print("\nTraining losses, median over the timed steps (sampling differs, the scale must not):\n")
    hdr = "| loss | torchvision | ours |" + (" baseline |" if args.baseline else "")
    print(hdr + "\n|" + " --- |" * (hdr.count("|") - 1))
    for k in LOSS_NAMES + ("total",):
        vals = []
        for lab, rs in sides:
            ls = [sum(d.values()) if k == "total" else d[k] for r in rs for d in r["losses"]]
            vals.append(f"{statistics.median(ls):.4f}")
        print(f"| {k} | " + " | ".join(vals) + " |")
    hb = [x for r in runs["torchvision"] for x in r["heads_done_before_backbone"]]
    print(f"\nBackward split check (torchvision, warm-up steps): every RoI-head/RPN parameter got its "
          f"gradient before the first FPN output did: {hb}")
    missing = sorted({"generate_proposals", "build_rpn_targets", "rpn_loss_forward", "transform",
                      "postprocess"} - set(runs["ours"][0]["wrapped"]))
    if missing:
        print(f"Not wrappable in ours (their time falls into the neighbouring row): {missing}")
    print(f"Wrapped in ours: {', '.join(runs['ours'][0]['wrapped'])}")
    for lab, rs in sides[1:]:
        if rs[0]["never_called"]:
            print(f"Wrapped but never called in {lab} (the model no longer goes through them; "
                  f"their rows fall back to total minus the rest): {rs[0]['never_called']}")


if __name__ == "__main__":
    main()
