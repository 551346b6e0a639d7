"""A numba kernel gives the same bits when it is compiled as when it is loaded from the cache.

Every CPU kernel in ``kernels/`` is ``cache=True``: the first process compiles it and writes
the machine code to disk, later processes load it. Both must compute the same numbers, or a
run's first process and a later one (``train --resume``, a second ``make demo``) train
different models on one machine. With ``fastmath=True`` the RoIAlign forward did not
(2026-12-02: the last bit of some outputs, and from the first iteration on another run).

The test runs one script twice in fresh interpreters that share an empty ``NUMBA_CACHE_DIR``:
the first compiles every kernel (and writes the cache), the second loads them. The script
runs a tiny model's training step (RoIAlign forward and backward, NMS, box IoU, the im2col
and col2im kernels on two numba threads), RoIPool forward and backward, the AdamW kernel and
the sum of squares, and prints a digest of every result. The two digests must be equal.
"""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import hashlib, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from mrcnn_np import MaskRCNN
from mrcnn_np.config import tiny
from mrcnn_np.ops.roi_pool import roi_pool_backward, roi_pool_forward
from kernels.optim_numba import adamw_step_numba, sum_of_squares

digest = hashlib.sha256()
rng = np.random.default_rng(0)
model = MaskRCNN(tiny(), rng=np.random.default_rng(0))
image = rng.random((3, 64, 64)).astype(np.float32)
masks = np.zeros((2, 64, 64), np.uint8)
masks[0, 8:30, 10:40] = 1
masks[1, 30:60, 20:50] = 1
target = dict(boxes=np.array([[10, 8, 40, 30], [20, 30, 50, 60]], np.float32),
              labels=np.array([1, 2]), masks=masks)
losses = model.forward_backward([image, image[:, ::-1].copy()], [target, target],
                                np.random.default_rng(1))
digest.update(repr(sorted(losses.items())).encode())
for name, p, g in model.named_parameters():
    digest.update(g.tobytes())
x = rng.standard_normal((1, 8, 20, 20)).astype(np.float32)
rois = np.array([[0, 1.5, 2.0, 15.5, 12.0], [0, 0.0, 0.0, 19.0, 19.0]], np.float32)
out, cache = roi_pool_forward(x, rois, 7, 1.0, backend="numba")
digest.update(out.tobytes())
digest.update(roi_pool_backward(np.ones_like(out), cache).tobytes())
p, g = rng.standard_normal(1000).astype(np.float32), rng.standard_normal(1000).astype(np.float32)
m, v = np.zeros_like(p), np.zeros_like(p)
adamw_step_numba(p, g, m, v, 1e-3, (0.9, 0.999), 1e-8, 1e-4, 1)
digest.update(p.tobytes() + m.tobytes() + v.tobytes())
digest.update(repr(sum_of_squares(g)).encode())
print(digest.hexdigest())
"""


def test_compiled_and_cached_kernels_give_the_same_bits(tmp_path):
    script = tmp_path / "step.py"
    script.write_text(SCRIPT)
    cache = tmp_path / "numba_cache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), NUMBA_NUM_THREADS="2",
               OPENBLAS_NUM_THREADS="1")
    env.pop("NUMBA_DISABLE_JIT", None)
    digests = []
    for run in ("compiles", "loads"):
        r = subprocess.run([sys.executable, str(script), str(ROOT)], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        digests.append(r.stdout.strip().splitlines()[-1])
        if run == "compiles":  # the first process wrote every kernel it ran to the cache
            written = {f.name.split("-")[0] for f in cache.rglob("*.nbi")}
            for kernel in ("roi_align_numba._forward_kernel", "roi_align_numba._backward_kernel",
                           "roi_pool_numba._forward_kernel", "nms_numba.nms_classwise_sorted",
                           "boxes_numba._box_iou_kernel", "conv_numba.im2col",
                           "conv_numba.col2im", "optim_numba._adamw_kernel",
                           "optim_numba._pairwise_sum_of_squares"):
                assert kernel in written, (kernel, sorted(written))
    assert len(digests[0]) == len(hashlib.sha256().hexdigest())
    assert digests[0] == digests[1]
