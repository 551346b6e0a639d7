"""numba.cuda kernels (RoIAlign forward/backward, NMS) against the NumPy reference and
torchvision.

Without a GPU, conftest turns on numba's CUDA simulator, which costs ~170 us per simulated
thread: the simulator cases below are tiny (tens to a few hundred threads). On a machine with a
GPU the same tests take the real-GPU path, with the larger cases of ``GPU_CASES``.
"""
import numpy as np
import pytest
from conftest import cuda_simulated, oracle
from gradcheck import rel_error

from mrcnn_np.ops import roi_align_backward, roi_align_forward

pytestmark = pytest.mark.cudasim

SIM = cuda_simulated()
# (N, C, H, W, R, S): simulator cases stay under ~200 threads (R * C * S * S).
ROI_CASES = [(1, 1, 5, 6, 3, 2), (2, 2, 6, 7, 4, 2)] if SIM else [(2, 16, 40, 50, 64, 7), (1, 256, 50, 68, 256, 7)]
NMS_SIZES = [0, 1, 5, 70] if SIM else [0, 1, 5, 70, 1000, 5000]


def _rois(rng, N, H, W, R, scale, dtype):
    x1 = rng.uniform(-0.3 * W, W, R) / scale
    y1 = rng.uniform(-0.3 * H, H, R) / scale
    w = rng.uniform(0, W, R) / scale * (rng.random(R) > 0.2)         # some zero-size RoIs
    h = rng.uniform(0, H, R) / scale
    return np.stack([rng.integers(0, N, R), x1, y1, x1 + w, y1 + h], 1).astype(dtype)


@pytest.mark.parametrize("case", ROI_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("aligned, sampling_ratio, scale", [(False, 2, 0.5), (True, -1, 1.0)])
def test_roi_align_cuda_matches_numpy(case, dtype, aligned, sampling_ratio, scale):
    N, C, H, W, R, S = case
    rng = np.random.default_rng(sum(case))
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    rois = _rois(rng, N, H, W, R, scale, dtype)
    out0, cache0 = roi_align_forward(x, rois, S, scale, sampling_ratio, aligned, backend="numpy")
    out1, cache1 = roi_align_forward(x, rois, S, scale, sampling_ratio, aligned, backend="cuda")
    dout = rng.standard_normal(out0.shape).astype(dtype)
    dx0 = roi_align_backward(dout, cache0)
    dx1 = roi_align_backward(dout, cache1)
    assert out1.dtype == dtype and dx1.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12  # float32: positions in float64 in the kernel
    assert rel_error(out1, out0) < tol
    assert rel_error(dx1, dx0) < tol


def test_roi_align_cuda_no_rois():
    x = np.ones((1, 2, 4, 4), np.float32)
    out, cache = roi_align_forward(x, np.zeros((0, 5)), 2, 1.0, 2, False, backend="cuda")
    assert out.shape == (0, 2, 2, 2)
    assert not roi_align_backward(out, cache).any()


def _boxes(rng, n, dtype):
    xy = rng.uniform(0, 60, (n, 2))
    wh = rng.uniform(0, 25, (n, 2)) * (rng.random((n, 1)) > 0.05)   # a few empty boxes
    boxes = np.concatenate([xy, xy + wh], 1).astype(dtype)
    scores = rng.integers(0, 6, n).astype(dtype)                     # many tied scores
    return boxes, scores


@pytest.mark.oracle
@pytest.mark.parametrize("n", NMS_SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nms_cuda_matches_torchvision_and_numpy(n, dtype):
    torch, torchvision = oracle()
    from kernels.nms_cuda import nms_cuda
    from mrcnn_np.ops.nms import nms
    rng = np.random.default_rng(n)
    boxes, scores = _boxes(rng, n, dtype)
    for thr in (0.3, 0.7):
        keep = nms_cuda(boxes, scores, thr)
        assert keep.dtype == np.int64
        want = torchvision.ops.nms(torch.tensor(boxes), torch.tensor(scores), thr).numpy()
        assert np.array_equal(keep, want)
        assert np.array_equal(keep, nms(boxes, scores, thr, backend="numpy"))
        assert np.array_equal(keep, nms(boxes, scores, thr, backend="cuda"))


def test_nms_cuda_by_hand_with_ties():
    # Three boxes, scores 0.9, 0.9, 0.8 (a tie first). Stable descending order: 0, 1, 2.
    #   box 0 = (0, 0, 10, 10), box 1 = (1, 0, 11, 10): IoU = 90 / 110 = 0.818 > 0.5 -> 1 dropped
    #   box 2 = (20, 20, 30, 30): no overlap -> kept.
    # Equal scores keep the lower index: box 0 (not box 1) survives.
    from kernels.nms_cuda import nms_cuda
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], np.float32)
    assert nms_cuda(boxes, np.array([0.9, 0.9, 0.8]), 0.5).tolist() == [0, 2]
    assert nms_cuda(boxes[[1, 0, 2]], np.array([0.9, 0.9, 0.8]), 0.5).tolist() == [0, 2]
    assert nms_cuda(boxes, np.array([0.9, 0.9, 0.8]), 0.9).tolist() == [0, 1, 2]


def test_nms_mask_bits_across_tiles():
    # 70 identical boxes (two tiles: 64 + 6) with distinct scores: box 0 suppresses all the
    # others, so its mask row has every later bit set in both words; the keep pass keeps 1 box.
    from numba import cuda

    from kernels.nms_cuda import keep_pass, nms_mask_device
    boxes = np.tile(np.array([[0, 0, 4, 4]], np.float32), (70, 1))
    mask = nms_mask_device(cuda.to_device(boxes), 0.5).copy_to_host()
    assert mask.shape == (70, 2) and mask.dtype == np.uint64
    assert mask[0, 0] == np.uint64(0xFFFFFFFFFFFFFFFE)       # bits 1..63 (not itself)
    assert mask[0, 1] == np.uint64(0x3F)                     # bits 0..5 of tile 1 (boxes 64..69)
    assert keep_pass(mask, 70).sum() == 1
