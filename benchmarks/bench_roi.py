"""RoI feature extractors: ours against torchvision, medians and ratios, in one run.

CPU (default): the input is P2 of an 800 x 1088 image, [1, 256, 200, 272] NCHW float32, and
RoIs are proposal-like boxes (log-uniform sides of 16..512 image pixels, centres anywhere in
the image). Every timing of ours counts everything the call does, layout conversions included;
torchvision's CPU RoI ops are single-threaded, ours use ``--threads`` numba threads.

| case                                                      | target (ours faster by) |
| roi_align forward, 7x7, 512 RoIs, scale 1/4, sampling 2   | >= 5x                   |
| roi_align backward, same case                             | >= 5x                   |
| roi_pool forward and backward, 7x7, 512 RoIs, scale 1/4   | >= 3x                   |
| multi_scale_roi_align fwd + bwd, 1000 RoIs over P2..P5    | >= 4x                   |

GPU (``--gpu``): our numba.cuda RoIAlign forward/backward and NMS against torchvision's CUDA
ops (targets: within 1.5x for RoIAlign, within 2x for NMS). Arrays stay on the device for
RoIAlign; ``nms_cuda`` is host in / host out (its sort and keep pass run on the host), which
is counted. Without a GPU the script says so and stops.

    python benchmarks/bench_roi.py                  # CPU table
    python benchmarks/bench_roi.py --quick          # small RoI counts, 1 repeat: a smoke test
    python benchmarks/bench_roi.py --gpu            # GPU table (needs an NVIDIA GPU)
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per case (median)")
    ap.add_argument("--quick", action="store_true", help="fewer RoIs, 1 repeat")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="numba threads (ours)")
    ap.add_argument("--gpu", action="store_true", help="compare the numba.cuda kernels instead")
    return ap.parse_args()


def paired(fn_a, fn_b, repeats, sync=None):
    """Median wall times of ``fn_a()`` and ``fn_b()``, timed alternately (a, b, a, b, ...)
    after one warm-up each, so that a change in machine load hits both alike."""
    fns = (fn_a, fn_b)
    times = ([], [])
    for rep in range(repeats + 1):
        for f, ts in zip(fns, times):
            t0 = time.perf_counter()
            f()
            if sync:
                sync()
            if rep:                                       # rep 0 is the warm-up
                ts.append(time.perf_counter() - t0)
    return float(np.median(times[0])), float(np.median(times[1]))


def proposals(rng, R, img_h=800, img_w=1088, smin=16, smax=512, n_images=1):
    """[R, 5] = (batch_index, x1, y1, x2, y2): log-uniform sides, centres in the image."""
    side = np.exp(rng.uniform(np.log(smin), np.log(smax), (R, 2)))             # [R, 2] (w, h)
    centre = rng.uniform(0, 1, (R, 2)) * [img_w, img_h]                        # [R, 2]
    boxes = np.concatenate([centre - side / 2, centre + side / 2], 1)          # [R, 4]
    boxes = np.clip(boxes, 0, [img_w, img_h, img_w, img_h])
    return np.concatenate([rng.integers(0, n_images, (R, 1)), boxes], 1).astype(np.float32)


def row(name, ours, theirs, target):
    ratio = theirs / ours
    ok = "yes" if ratio >= target else "NO"
    print(f"| {name:<50} | {ours * 1e3:9.2f} | {theirs * 1e3:9.2f} | {ratio:6.2f}x | "
          f"{'>= %gx' % target:>7} {ok:>3} |")


def header(cols=("ours ms", "tv ms")):
    print(f"| {'case':<50} | {cols[0]:>9} | {cols[1]:>9} | {'speed-up':>7} | {'target':>11} |")
    print(f"|{'-' * 52}|{'-' * 11}|{'-' * 11}|{'-' * 9}|{'-' * 13}|")


def bench_cpu(args):
    import numba
    import torch
    import torchvision
    from collections import OrderedDict

    from mrcnn_np.ops import (multi_scale_roi_align_backward, multi_scale_roi_align_forward,
                              roi_align_backward, roi_align_forward, roi_pool_backward,
                              roi_pool_forward)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(1)            # torchvision's CPU RoI kernels are single-threaded anyway
    rng = np.random.default_rng(0)
    reps = 1 if args.quick else args.repeats
    R = 64 if args.quick else 512
    x = rng.standard_normal((1, 256, 200, 272)).astype(np.float32)            # P2 of 800x1088
    rois = proposals(rng, R)
    xt, rt = torch.from_numpy(x), torch.from_numpy(rois)
    print(f"CPU: input [1, 256, 200, 272] float32, {R} RoIs, 7x7; numba threads "
          f"{numba.get_num_threads()}, torch threads 1; median of {reps}")
    header()

    # --- roi_align
    for backend in ("numba", "numpy"):
        t_ours, t_tv = paired(lambda: roi_align_forward(x, rois, 7, 0.25, 2, False, backend),
                              lambda: torchvision.ops.roi_align(xt, rt, 7, 0.25, 2, False), reps)
        row(f"roi_align fwd ({backend})", t_ours, t_tv, 5)
        out, cache = roi_align_forward(x, rois, 7, 0.25, 2, False, backend)
        dout = rng.standard_normal(out.shape).astype(np.float32)
        dt = torch.from_numpy(dout)
        t_ours, t_tv = paired(lambda: roi_align_backward(dout, cache),
                              lambda: torch.ops.torchvision._roi_align_backward(
                                  dt, rt, 0.25, 7, 7, 1, 256, 200, 272, 2, False), reps)
        row(f"roi_align bwd ({backend})", t_ours, t_tv, 5)
        if args.quick:
            break

    # --- roi_pool
    for backend in ("numba",):
        t_ours, t_tv = paired(lambda: roi_pool_forward(x, rois, 7, 0.25, backend),
                              lambda: torch.ops.torchvision.roi_pool(xt, rt, 0.25, 7, 7), reps)
        row(f"roi_pool fwd ({backend})", t_ours, t_tv, 3)
        out, cache = roi_pool_forward(x, rois, 7, 0.25, backend)
        dout = rng.standard_normal(out.shape).astype(np.float32)
        dt = torch.from_numpy(dout)
        _, argmax = torch.ops.torchvision.roi_pool(xt, rt, 0.25, 7, 7)
        t_ours, t_tv = paired(lambda: roi_pool_backward(dout, cache),
                              lambda: torch.ops.torchvision._roi_pool_backward(
                                  dt, rt, argmax, 0.25, 7, 7, 1, 256, 200, 272), reps)
        row(f"roi_pool bwd ({backend})", t_ours, t_tv, 3)

    # --- multi_scale_roi_align over P2..P5, forward + backward
    R_ms = 100 if args.quick else 1000
    feats = [rng.standard_normal((1, 256, 800 // s, 1088 // s)).astype(np.float32)
             for s in (4, 8, 16, 32)]
    rois_ms = proposals(rng, R_ms, smin=16, smax=800)
    image_sizes = [(800, 1088)]
    dout = rng.standard_normal((R_ms, 256, 7, 7)).astype(np.float32)

    def ours_ms():
        out, cache = multi_scale_roi_align_forward(feats, rois_ms, image_sizes, 7, 2,
                                                   backend="numba")
        multi_scale_roi_align_backward(dout, cache)

    pooler = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    fts = OrderedDict((str(i), torch.from_numpy(f).requires_grad_(True)) for i, f in enumerate(feats))
    boxes_t = [torch.from_numpy(rois_ms[:, 1:])]
    dt = torch.from_numpy(dout)

    def tv_ms():
        for f in fts.values():
            f.grad = None
        pooler(fts, boxes_t, image_sizes).backward(dt)

    levels = multi_scale_roi_align_forward(feats, rois_ms[:4], image_sizes)[1]["mapper"](rois_ms[:, 1:])
    row(f"multi_scale fwd+bwd, {R_ms} RoIs {np.bincount(levels, minlength=4).tolist()}",
        *paired(ours_ms, tv_ms, reps), 4)


def bench_gpu(args):
    from numba import cuda
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or not cuda.is_available():
        print("--gpu: no NVIDIA GPU present here (or NUMBA_ENABLE_CUDASIM=1 is set): "
              "nothing to time. Run this on a machine with a GPU.")
        return
    import torch
    import torchvision
    if not torch.cuda.is_available():
        print("--gpu: numba sees a GPU but this torch build has no CUDA: cannot compare.")
        return
    from kernels.nms_cuda import nms_cuda
    from kernels.roi_align_cuda import roi_align_backward_device, roi_align_forward_device
    from mrcnn_np.ops.roi_align import GEOMETRY_FIELDS, roi_align_params

    def geometry(rois):  # the per-RoI geometry the reference hands the kernels (timed with them)
        prm = roi_align_params(rois, 0.25, 7, 7, 2, False)
        return [prm[k] for k in GEOMETRY_FIELDS]

    rng = np.random.default_rng(0)
    reps = 3 if args.quick else max(args.repeats, 20)
    name = cuda.get_current_device().name
    name = name.decode() if isinstance(name, bytes) else name
    print(f"GPU: {name} (numba) / {torch.cuda.get_device_name()} (torch); median of {reps}")
    header(("ours ms", "tv ms"))
    sync_both = lambda: (cuda.synchronize(), torch.cuda.synchronize())  # noqa: E731
    for R in ((512,) if args.quick else (512, 2000)):
        x = rng.standard_normal((1, 256, 200, 272)).astype(np.float32)
        rois = proposals(rng, R)
        d_x = cuda.to_device(x)
        xt, rt = torch.from_numpy(x).cuda(), torch.from_numpy(rois).cuda()
        t_ours, t_tv = paired(lambda: roi_align_forward_device(d_x, geometry(rois), 7, 7),
                              lambda: torchvision.ops.roi_align(xt, rt, 7, 0.25, 2, False),
                              reps, sync_both)
        row(f"roi_align fwd cuda, {R} RoIs", t_ours, t_tv, 1 / 1.5)
        dout = rng.standard_normal((R, 256, 7, 7)).astype(np.float32)
        d_dout, dt = cuda.to_device(dout), torch.from_numpy(dout).cuda()
        t_ours, t_tv = paired(lambda: roi_align_backward_device(d_dout, geometry(rois),
                                                                (1, 256, 200, 272)),
                              lambda: torch.ops.torchvision._roi_align_backward(
                                  dt, rt, 0.25, 7, 7, 1, 256, 200, 272, 2, False),
                              reps, sync_both)
        row(f"roi_align bwd cuda, {R} RoIs", t_ours, t_tv, 1 / 1.5)
    for n in ((1000,) if args.quick else (1000, 4000, 12000)):
        xy = rng.uniform(0, 1000, (n, 2))
        wh = rng.uniform(10, 200, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        scores = rng.random(n).astype(np.float32)
        bt, st = torch.from_numpy(boxes).cuda(), torch.from_numpy(scores).cuda()
        keep = nms_cuda(boxes, scores, 0.7)
        assert np.array_equal(keep, torchvision.ops.nms(bt, st, 0.7).cpu().numpy())
        t_ours, t_tv = paired(lambda: nms_cuda(boxes, scores, 0.7),
                              lambda: torchvision.ops.nms(bt, st, 0.7), reps, sync_both)
        row(f"nms cuda (ours host in/out), {n} boxes", t_ours, t_tv, 1 / 2)


if __name__ == "__main__":
    ARGS = parse()
    bench_gpu(ARGS) if ARGS.gpu else bench_cpu(ARGS)
