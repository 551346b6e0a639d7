"""The fast training paths compute what the readable one computes.

The reference is NumPy on one core: ``backend="numpy"`` (NumPy's im2col/col2im, RoIAlign, NMS
and IoU) and one BLAS thread. The fast paths are ``backend="auto"`` (the numba kernels, which
split copies and loops over the cores) with two BLAS threads, and ``parallel.DataParallel``
(one worker process per image of the batch, the gradients summed; ``make demo`` trains so).

Bit-exact is not what the arithmetic allows: OpenBLAS splits a matrix product differently over
two threads (the sums are added in another order), and the RoIAlign kernel lets LLVM fuse its
multiply-adds. In float32 those last-bit differences grow over iterations of training until a
sampled RoI or an NMS decision flips, so twenty float32 iterations are not comparable number by
number. In float64 the same differences are ~1e-16 and stay far below anything that flips a
decision, which is what the comparison needs to see: that the two paths compute the same
function. So both paths train 20 iterations in float64 from the same seed, and every loss of
every iteration must agree to 1e-6 relative (the im2col/col2im kernels alone are checked bit
for bit in tests/test_nn_conv.py).

Each run is its own process, since OpenBLAS reads its thread count once, at start-up.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mrcnn_np.data.shapes import make_shapes_dataset
from mrcnn_np.data.stickfigures import make_figures_dataset

ITERS = 20
RTOL = 1e-6
ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys
import numpy as np
from mrcnn_np import MaskRCNN
from mrcnn_np.config import get_config
from mrcnn_np.nn.optim import SGD
from mrcnn_np.parallel import DataParallel
from mrcnn_np.train import load_split, sample_batch
data, backend, iters, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
preset = sys.argv[5]
ds = load_split(data, "train")
cfg = get_config(preset, num_classes=ds.num_classes, backend=backend, min_size=(96,),
                 max_size=96)
model = MaskRCNN(cfg, rng=np.random.default_rng(0))
model.astype(np.float64)
opt = SGD(model, lr=0.01, momentum=0.9, weight_decay=1e-4)
step = DataParallel(model, workers).forward_backward if workers > 1 else model.forward_backward
rng = np.random.default_rng(0)
rows = []
for i in range(iters):
    images, targets = sample_batch(ds, np.arange(len(ds)), rng, 2)
    losses = step([im.astype(np.float64) for im in images], targets, rng)
    opt.step()
    rows.append([losses[k] for k in sorted(losses)])
print(json.dumps(rows))
"""


def _train(data, backend, blas_threads, workers=1, preset="tiny"):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(blas_threads))
    done = subprocess.run([sys.executable, "-c", CHILD, str(data), backend, str(ITERS),
                           str(workers), preset],
                          check=True, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    return np.array(json.loads(done.stdout.strip().splitlines()[-1]))  # [ITERS, total and each loss]


@pytest.mark.slow
def test_fast_path_trains_like_the_reference(tmp_path):
    data = tmp_path / "data"
    make_shapes_dataset(data, num_train=8, num_val=2, image_size=(96, 96), seed=3)
    ref = _train(data, "numpy", 1)
    fast = _train(data, "auto", 2)
    workers = _train(data, "auto", 1, workers=2)
    assert ref.shape == (ITERS, 6) and np.isfinite(ref).all()
    assert ref[:, 0].std() > 0 and (ref > 0).all()  # real losses that change as it trains
    np.testing.assert_allclose(fast, ref, rtol=RTOL, atol=0)
    np.testing.assert_allclose(workers, ref, rtol=RTOL, atol=0)


@pytest.mark.slow
def test_workers_train_the_keypoint_model_like_the_reference(tmp_path):
    """The same with the keypoint branch on (``tiny_keypoints``, stick figures): a worker's
    keypoint loss enters the batch's with its share of the valid (RoI, keypoint) pairs."""
    data = tmp_path / "figures"
    make_figures_dataset(data, num_train=8, num_val=2, image_size=(96, 96), seed=3)
    ref = _train(data, "numpy", 1, preset="tiny_keypoints")
    workers = _train(data, "auto", 1, workers=2, preset="tiny_keypoints")
    assert ref.shape == (ITERS, 7) and np.isfinite(ref).all()  # total + 6 losses
    assert ref[:, 0].std() > 0 and (ref > 0).all()
    np.testing.assert_allclose(workers, ref, rtol=RTOL, atol=0)
