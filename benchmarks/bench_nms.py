"""NMS and IoU speed: ours (numba backend) against torchvision.ops on the CPU, same run.

Cases (the figures to reach are in issue 3):

- ``nms`` on N = 1,000, 6,000 and 20,000 clustered boxes at IoU 0.7 (target: >= 4x at 6,000).
  Boxes come in clusters of ~20 around random centres (like detections around objects),
  spread so that about half are suppressed; the suppressed fraction is printed.
- ``batched_nms`` on 5,000 boxes in 80 classes at IoU 0.5 (torchvision takes its per-class
  path at this size; ours runs one class-aware numba pass).
- ``box_iou`` on 261,888 x 50: matterport's anchors against 50 GT boxes (target: >= 4x).

Each timing is the median of ``--repeats`` runs after one warm-up run (numba compiles on
the first call). Both sides run on one thread (``torch.set_num_threads(1)``; our kernels are
single-threaded), and every result is checked equal to torchvision's before it is timed.

    python benchmarks/bench_nms.py              # 7 repeats
    python benchmarks/bench_nms.py --repeats 3
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mrcnn_np.ops import batched_nms, box_iou, matterport_anchors, nms  # noqa: E402


def clustered_boxes(n, rng, per_cluster=20, jitter=6.0):
    """``[n, 4]`` float32 boxes, ~``per_cluster`` per cluster, in a field that grows with n
    (so the density, hence the suppressed fraction, stays about the same); ``[n]`` scores."""
    n_clusters = max(1, n // per_cluster)
    field = 60.0 * np.sqrt(n_clusters) + 100                    # px
    centres = rng.uniform(0, field, (n_clusters, 2))            # [n_clusters, 2]
    ctr = centres[rng.integers(0, n_clusters, n)] + rng.normal(0, jitter, (n, 2))  # [n, 2]
    wh = rng.uniform(40, 80, (n, 2))                            # [n, 2]
    boxes = np.concatenate([ctr - wh / 2, ctr + wh / 2], axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, n).astype(np.float32)            # distinct almost surely
    return boxes, scores


def median_time(fn, repeats):
    fn()                                                        # warm-up (numba compiles)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    import torch
    import torchvision
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = []

    for n in (1_000, 6_000, 20_000):
        boxes, scores = clustered_boxes(n, rng)
        tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
        ref = torchvision.ops.nms(tb, ts, 0.7).numpy()
        assert np.array_equal(nms(boxes, scores, 0.7, backend="numba"), ref)
        ours = median_time(lambda: nms(boxes, scores, 0.7, backend="numba"), args.repeats)
        theirs = median_time(lambda: torchvision.ops.nms(tb, ts, 0.7), args.repeats)
        rows.append((f"nms N={n:,} ({1 - len(ref) / n:.0%} suppressed)", ours, theirs))

    boxes, scores = clustered_boxes(5_000, rng)
    idxs = rng.integers(0, 80, 5_000)
    tb, ts, ti = torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(idxs)
    ref = torchvision.ops.batched_nms(tb, ts, ti, 0.5).numpy()
    assert np.array_equal(batched_nms(boxes, scores, idxs, 0.5, backend="numba"), ref)
    ours = median_time(lambda: batched_nms(boxes, scores, idxs, 0.5, backend="numba"), args.repeats)
    theirs = median_time(lambda: torchvision.ops.batched_nms(tb, ts, ti, 0.5), args.repeats)
    rows.append((f"batched_nms 5,000 boxes, 80 classes ({1 - len(ref) / 5000:.0%} supp.)",
                 ours, theirs))

    anchors = matterport_anchors()                              # [261888, 4]
    xy = rng.uniform(0, 900, (50, 2))
    gt = np.concatenate([xy, xy + rng.uniform(20, 300, (50, 2))], 1).astype(np.float32)
    ta, tg = torch.from_numpy(anchors), torch.from_numpy(gt)
    assert np.array_equal(box_iou(anchors, gt, backend="numba"),
                          torchvision.ops.box_iou(ta, tg).numpy())
    ours = median_time(lambda: box_iou(anchors, gt, backend="numba"), args.repeats)
    theirs = median_time(lambda: torchvision.ops.box_iou(ta, tg), args.repeats)
    rows.append(("box_iou 261,888 x 50", ours, theirs))

    print(f"median of {args.repeats} runs, 1 thread each, numpy {np.__version__}, "
          f"torch {torch.__version__}, torchvision {torchvision.__version__}")
    print(f"{'case':<52} {'ours (numba)':>13} {'torchvision':>12} {'speed-up':>9}")
    for name, ours, theirs in rows:
        print(f"{name:<52} {ours * 1e3:>10.2f} ms {theirs * 1e3:>9.2f} ms {theirs / ours:>8.1f}x")


if __name__ == "__main__":
    main()
