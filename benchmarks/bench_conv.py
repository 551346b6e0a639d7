"""Convolution speed: ours (im2col + BLAS) against torch, on ResNet-50-FPN's conv shapes.

For a batch of one 800x1088 image (torchvision's detection resize of a 4:3 COCO image,
padded to a multiple of 32), every convolution of ResNet-50 (stem, the bottlenecks of
layer1..layer4, the downsample convs) and of the FPN (four 1x1 inner convs, four 3x3 layer
convs) is listed once per unique shape with the number of times it appears. For each we time
forward + backward (input and weight gradients, and the bias gradient where the layer has a
bias) and print the median over ``--repeats`` runs, ours next to torch's, in the same process.
The overall ratio weights each shape by its count: the time for the whole conv stack.

    python benchmarks/bench_conv.py                 # full size, 3 repeats
    python benchmarks/bench_conv.py --quick         # a 256x352 image, 1 repeat: a smoke test
    python benchmarks/bench_conv.py --threads 2 --repeats 5

Both libraries get the same number of threads: ``--threads`` sets OpenBLAS's thread count
(before numpy is imported) and ``torch.set_num_threads``.
"""
import argparse
import os
import sys
import time


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per shape (median)")
    ap.add_argument("--quick", action="store_true", help="small image, 1 repeat")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="BLAS and torch threads")
    ap.add_argument("--size", type=int, nargs=2, default=(800, 1088), metavar=("H", "W"))
    return ap.parse_args()


ARGS = parse() if __name__ == "__main__" else None
if ARGS is not None:  # the thread count must be fixed before numpy loads OpenBLAS
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from mrcnn_np.nn.conv import conv2d_backward, conv2d_forward  # noqa: E402


def resnet50_fpn_convs(H, W):
    """``[(name, C, F, k, stride, padding, H_in, W_in, bias, count)]`` for ResNet-50-FPN.

    torchvision's ResNet-50 (v1.5: the stride sits on the bottleneck's 3x3 conv) with
    blocks (3, 4, 6, 3) and widths (64, 128, 256, 512) x expansion 4; FPN with 256 channels
    on C2..C5 (``resnet_fpn_backbone``: 1x1 inner convs and 3x3 layer convs, both with bias).
    """
    shapes = [("stem 7x7/2", 3, 64, 7, 2, 3, H, W, False, 1)]
    h, w = H // 4, W // 4                                     # after the stem and the max-pool
    c_in = 64
    for li, (planes, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2),
                                                   (512, 3, 2)], start=1):
        out = planes * 4
        ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
        L = f"layer{li}"
        # first block: its own input width, the stride, and the downsample branch
        shapes += [(f"{L}.0 conv1 1x1", c_in, planes, 1, 1, 0, h, w, False, 1),
                   (f"{L}.0 conv2 3x3/{stride}", planes, planes, 3, stride, 1, h, w, False, 1),
                   (f"{L}.0 conv3 1x1", planes, out, 1, 1, 0, ho, wo, False, 1),
                   (f"{L}.0 downsample 1x1/{stride}", c_in, out, 1, stride, 0, h, w, False, 1)]
        n = blocks - 1
        shapes += [(f"{L}.1+ conv1 1x1", out, planes, 1, 1, 0, ho, wo, False, n),
                   (f"{L}.1+ conv2 3x3", planes, planes, 3, 1, 1, ho, wo, False, n),
                   (f"{L}.1+ conv3 1x1", planes, out, 1, 1, 0, ho, wo, False, n)]
        shapes += [(f"fpn inner {li} 1x1", out, 256, 1, 1, 0, ho, wo, True, 1),
                   (f"fpn layer {li} 3x3", 256, 256, 3, 1, 1, ho, wo, True, 1)]
        h, w, c_in = ho, wo, out
    # merge identical shapes (e.g. layer1.0 conv2 and layer1.1+ conv2)
    merged = {}
    for name, C, F, k, s, p, hh, ww, bias, count in shapes:
        key = (C, F, k, s, p, hh, ww, bias)
        if key in merged:
            merged[key][0].append(name)
            merged[key][1] += count
        else:
            merged[key] = [[name], count]
    return [(" + ".join(names), *key, count) for key, (names, count) in merged.items()]


def median_time(fn, repeats):
    fn()  # warm-up (allocations, torch's kernel choice)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(args):
    import torch
    torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    H, W = (256, 352) if args.quick else args.size
    print(f"conv forward+backward, batch 1, {H}x{W} input, float32, median of {repeats}")
    print(f"threads: OpenBLAS {os.environ.get('OPENBLAS_NUM_THREADS')}, "
          f"torch {torch.get_num_threads()} (torch {torch.__version__}, numpy {np.__version__})")
    rng = np.random.default_rng(0)
    rows, tot_ours, tot_torch = [], 0.0, 0.0
    hdr = f"{'layer(s)':48s} {'C':>5s} {'F':>5s} {'k/s':>4s} {'H x W':>9s} {'n':>3s} " \
          f"{'ours ms':>9s} {'torch ms':>9s} {'ratio':>6s}"
    print(hdr)
    print("-" * len(hdr))
    for name, C, F, k, s, p, h, w, bias, count in resnet50_fpn_convs(H, W):
        x = rng.standard_normal((1, C, h, w), dtype=np.float32)
        wt = (rng.standard_normal((F, C, k, k)) / np.sqrt(C * k * k)).astype(np.float32)
        b = np.zeros(F, np.float32) if bias else None

        def ours():
            out, cache = conv2d_forward(x, wt, b, s, p)
            conv2d_backward(np.ones_like(out), cache)

        xt = torch.tensor(x, requires_grad=True)
        wtt = torch.tensor(wt, requires_grad=True)
        bt = torch.tensor(b, requires_grad=True) if bias else None

        def theirs():
            out = torch.nn.functional.conv2d(xt, wtt, bt, s, p)
            out.backward(torch.ones_like(out))
            xt.grad = wtt.grad = None
            if bt is not None:
                bt.grad = None

        t_ours = median_time(ours, repeats)
        t_torch = median_time(theirs, repeats)
        tot_ours += count * t_ours
        tot_torch += count * t_torch
        print(f"{name[:48]:48s} {C:5d} {F:5d} {f'{k}/{s}':>4s} {f'{h}x{w}':>9s} {count:3d} "
              f"{t_ours * 1e3:9.1f} {t_torch * 1e3:9.1f} {t_ours / t_torch:6.2f}", flush=True)
    print("-" * len(hdr))
    print(f"{'whole conv stack (count-weighted)':48s} {'':5s} {'':5s} {'':4s} {'':9s} {'':3s} "
          f"{tot_ours * 1e3:9.1f} {tot_torch * 1e3:9.1f} {tot_ours / tot_torch:6.2f}")


if __name__ == "__main__":
    main(ARGS)
