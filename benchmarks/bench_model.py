"""Whole-model benchmark: mrcnn-np vs torchvision's Mask R-CNN R50-FPN, same machine, same run.

Cases (each run in its own subprocess, so that peak memory is that case's alone):
- inference at 800x1088 (torchvision_r50_fpn preset; torchvision's own defaults),
- one training step (forward + backward) at 800x1088 and at 256x256,
with a per-stage breakdown (backbone, RPN, heads, postprocess) for both libraries, so the
next optimisation has a clear target. Our stages are timed here, by wrapping the model's stage
functions (``time_stages``); the model itself keeps no clock. Also the end-to-end agreement figures at full size.

torchvision is built as it is when fine-tuned from ImageNet weights (FrozenBatchNorm2d,
trainable layers 3), with random weights (no download); ours gets the same weights.

    python benchmarks/bench_model.py [--repeats 3] [--quick]

Prints medians over the repeats (first call excluded as warm-up) and ratios ours/torchvision.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.random((3, h // 16 + 1, w // 16 + 1)).astype(np.float32)
    return np.ascontiguousarray(np.kron(small, np.ones((1, 16, 16), np.float32))[:, :h, :w])


def _target(h, w, seed=0):
    rng = np.random.default_rng(seed)
    boxes, masks = [], []
    for _ in range(4):
        x1, y1 = rng.uniform(0, w * 0.6), rng.uniform(0, h * 0.6)
        bw, bh = rng.uniform(0.1, 0.35) * w, rng.uniform(0.1, 0.35) * h
        boxes.append([x1, y1, x1 + bw, y1 + bh])
        m = np.zeros((h, w), np.uint8)
        m[int(y1):int(y1 + bh), int(x1):int(x1 + bw)] = 1
        masks.append(m)
    return dict(boxes=np.array(boxes, np.float32), labels=rng.integers(1, 91, 4).astype(np.int64),
                masks=np.stack(masks))


def _tv_model(min_size, max_size):
    import torch
    import torchvision
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops import FrozenBatchNorm2d
    torch.manual_seed(0)
    body = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(body, 3)
    return torchvision.models.detection.MaskRCNN(backbone, num_classes=91, min_size=min_size,
                                                 max_size=max_size)


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_stages(model):
    """Wrap the model's stage functions so that each call adds its wall time to a named
    stage (the model keeps no clock of its own). Returns the dict the times go into."""
    clock = {}

    def wrap(obj, attr, stage):
        fn = getattr(obj, attr)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                clock[stage] = clock.get(stage, 0.0) + time.perf_counter() - t0
        object.__setattr__(obj, attr, timed)  # an instance attribute shadows the method

    wrap(model.backbone, "forward", "backbone")
    wrap(model.rpn.head, "forward", "rpn")
    wrap(model, "propose", "rpn")
    wrap(model, "sample_targets", "heads")  # training: sampling and the five losses
    wrap(model, "loss_forward", "heads")
    wrap(model, "detect", "heads")  # inference: box head, NMS, mask head
    wrap(model.transform, "postprocess", "postprocess")
    wrap(model.backbone, "backward", "backward_backbone")
    wrap(model, "backward_train", "backward")
    return clock


def run_case(lib, case, h, w, repeats):
    """Runs in a subprocess; prints one JSON line."""
    import torch
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count())))
    min_size, max_size = (800, 1333) if h >= 800 else (h, max(h, w))
    img, tgt = _image(h, w), _target(h, w)
    tv = _tv_model(min_size, max_size)
    if lib == "ours":
        import tv_agreement
        model = tv_agreement.ours_from_torchvision(tv.eval(), min_size=(min_size,), max_size=max_size)
        del tv
    base = _peak_rss_mb()
    times, stages = [], []
    clock = time_stages(model) if lib == "ours" else None
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        if lib == "ours":
            clock.clear()
            if case == "infer":
                model.predict([img])
            else:
                model.forward_backward([img], [tgt], np.random.default_rng(i))
            st = dict(clock)
            if "backward" in st:  # backward_train's own part: everything but the backbone's
                st["backward_heads"] = st.pop("backward") - st.get("backward_backbone", 0.0)
        else:
            st = _tv_step(tv, case, img, tgt)
        dt = time.perf_counter() - t0
        if i:  # the first call is a warm-up (numba compiles, caches fill)
            times.append(dt)
            stages.append(st)
    med = {k: statistics.median(s.get(k, 0.0) for s in stages) for k in stages[0]}
    print(json.dumps(dict(lib=lib, case=case, size=[h, w], median_s=statistics.median(times),
                          stages=med, peak_rss_mb=_peak_rss_mb(), rss_over_model_mb=_peak_rss_mb() - base)))


def _tv_step(tv, case, img, tgt):
    """One torchvision step with the same stage split as ours."""
    import torch
    st = {}
    ti = [torch.from_numpy(img)]
    if case == "infer":
        tv.eval()
        with torch.no_grad():
            t0 = time.perf_counter()
            il, _ = tv.transform(ti)
            feats = tv.backbone(il.tensors)
            t1 = time.perf_counter()
            props, _ = tv.rpn(il, feats)
            t2 = time.perf_counter()
            dets, _ = tv.roi_heads(feats, props, il.image_sizes)
            t3 = time.perf_counter()
            tv.transform.postprocess(dets, il.image_sizes, [img.shape[-2:]])
            t4 = time.perf_counter()
        st.update(backbone=t1 - t0, rpn=t2 - t1, heads=t3 - t2, postprocess=t4 - t3)
    else:
        tv.train()
        tt = [{k: torch.from_numpy(v) for k, v in tgt.items()}]
        t0 = time.perf_counter()
        il, tt = tv.transform(ti, tt)
        feats = tv.backbone(il.tensors)
        t1 = time.perf_counter()
        props, rpn_losses = tv.rpn(il, feats, tt)
        t2 = time.perf_counter()
        _, head_losses = tv.roi_heads(feats, props, il.image_sizes, tt)
        t3 = time.perf_counter()
        loss = sum(rpn_losses.values()) + sum(head_losses.values())
        tv.zero_grad()
        loss.backward()
        t4 = time.perf_counter()
        st.update(backbone=t1 - t0, rpn=t2 - t1, heads=t3 - t2, backward=t4 - t3)
    return st


def _sub(lib, case, h, w, repeats):
    cmd = [sys.executable, __file__, "--child", lib, case, str(h), str(w), str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="only the 256x256 training step")
    ap.add_argument("--child", nargs=5)
    args = ap.parse_args()
    if args.child:
        lib, case, h, w, r = args.child
        return run_case(lib, case, int(h), int(w), int(r))

    import torch
    print(f"mrcnn-np vs torchvision {__import__('torchvision').__version__} (torch {torch.__version__}), "
          f"{os.cpu_count()} CPU cores, medians of {args.repeats} runs after one warm-up")
    cases = [("train", 256, 256)] if args.quick else [("infer", 800, 1088), ("train", 800, 1088),
                                                      ("train", 256, 256)]
    rows = []
    for case, h, w in cases:
        r = {lib: _sub(lib, case, h, w, args.repeats) for lib in ("torchvision", "ours")}
        rows.append((case, h, w, r))
    print()
    print(f"{'case':22s} {'torchvision s':>13s} {'ours s':>9s} {'ratio':>6s} "
          f"{'tv peak MB':>10s} {'ours peak MB':>12s} {'mem ratio':>9s}")
    for case, h, w, r in rows:
        t, o = r["torchvision"], r["ours"]
        print(f"{case + f' {h}x{w}':22s} {t['median_s']:13.2f} {o['median_s']:9.2f} "
              f"{o['median_s'] / t['median_s']:6.2f} {t['peak_rss_mb']:10.0f} "
              f"{o['peak_rss_mb']:12.0f} {o['peak_rss_mb'] / t['peak_rss_mb']:9.2f}")
    print("\nper-stage medians (s): torchvision | ours")
    for case, h, w, r in rows:
        t, o = r["torchvision"]["stages"], r["ours"]["stages"]
        keys = sorted(set(t) | set(o))
        print(f"  {case} {h}x{w}: " + ", ".join(f"{k} {t.get(k, 0):.2f} | {o.get(k, 0):.2f}" for k in keys))

    if not args.quick:
        import tv_agreement
        tv = tv_agreement.build_torchvision_maskrcnn(num_classes=5, seed=0)
        ours = tv_agreement.ours_from_torchvision(tv)
        res = tv_agreement.stagewise(ours, tv, [_image(800, 1088), _image(640, 480, 1)])
        print("\nend-to-end agreement at full size (800 px):")
        for k, v in res.items():
            print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
