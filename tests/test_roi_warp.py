"""RoIWarp and crop_and_resize: hand-worked cases, finite differences, torchvision where it has
the same operation (RoIAlign on whole-pixel boxes; grid_sample with align_corners=True), and
empty inputs."""
import numpy as np
import pytest
from conftest import oracle
from gradcheck import numerical_grad, rel_error
from hypothesis import given, settings
from hypothesis import strategies as st

from mrcnn_np.ops import (crop_and_resize, crop_and_resize_backward, crop_and_resize_forward,
                          roi_align, roi_warp, roi_warp_backward, roi_warp_forward)

# ---------------------------------------------------------------------------------- RoIWarp ---


def test_roi_warp_by_hand():
    # input 4x5, v = 5y + x (bilinear, so a bin's mean is the value at its centre).
    # RoI (0.4, 0.6, 3.2, 2.5) is rounded like RoIPool: (0, 1, 3, 3)  [0.6 -> 1, 2.5 -> 3].
    # Then RoIAlign (aligned=False, sampling 2) on (x1, y1, x2, y2) = (0, 1, 3, 3):
    # 2x2 bins of height 1 and width 1.5; bin centres y = 1.5, 2.5 and x = 0.75, 2.25:
    #   (1.5, 0.75) -> 8.25    (1.5, 2.25) -> 9.75
    #   (2.5, 0.75) -> 13.25   (2.5, 2.25) -> 14.75
    x = np.arange(20, dtype=np.float64).reshape(1, 1, 4, 5)
    out = roi_warp(x, np.array([[0, 0.4, 0.6, 3.2, 2.5]]), 2, backend="numpy")
    assert np.allclose(out[0, 0], [[8.25, 9.75], [13.25, 14.75]], atol=1e-12)


def test_roi_warp_ignores_sub_pixel_shifts():
    # The quantization is the point: shifting a RoI by less than half a pixel changes nothing
    # (here 0.3 px: 1.0 -> 1.3 still rounds to 1), while RoIAlign's output moves.
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 8))
    a = np.array([[0, 1.0, 1.0, 5.0, 6.0]])
    b = a + np.array([[0, 0.3, 0.3, 0.3, 0.3]])
    assert np.array_equal(roi_warp(x, a, 3), roi_warp(x, b, 3))
    assert not np.allclose(roi_align(x, a, 3, sampling_ratio=2), roi_align(x, b, 3, sampling_ratio=2))


@pytest.mark.oracle
@given(st.integers(0, 2 ** 31 - 1), st.sampled_from([1.0, 0.5, 0.25]),
       st.sampled_from([-1, 1, 2]), st.sampled_from([np.float32, np.float64]))
@settings(max_examples=15)
def test_roi_warp_is_roi_align_on_rounded_boxes(seed, scale, sampling_ratio, dtype):
    # On boxes whose scaled corners are whole pixels, rounding is a no-op: RoIWarp must equal
    # torchvision's RoIAlign (aligned=False), values and gradients.
    torch, torchvision = oracle()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 2, 7, 8)).astype(dtype)
    corners = rng.integers(-2, 9, (4, 4)).astype(np.float64) / scale
    rois = np.concatenate([rng.integers(0, 2, (4, 1)), corners], 1).astype(dtype)
    dout = rng.standard_normal((4, 2, 3, 3)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    want = torchvision.ops.roi_align(xt, torch.tensor(rois), 3, scale, sampling_ratio, False)
    want.backward(torch.tensor(dout))
    out, cache = roi_warp_forward(x, rois, 3, scale, sampling_ratio)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    assert rel_error(out, want.detach().numpy()) < tol
    assert rel_error(roi_warp_backward(dout, cache), xt.grad.numpy()) < tol


def test_roi_warp_finite_differences():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 6, 6))
    rois = np.array([[0, 0.4, 1.6, 4.4, 5.2], [0, -1.3, 2.2, 2.6, 3.7]])
    dout = rng.standard_normal((2, 2, 2, 2))
    out, cache = roi_warp_forward(x, rois, 2)
    numeric = numerical_grad(lambda a: roi_warp_forward(a, rois, 2)[0], x, dout)
    assert rel_error(roi_warp_backward(dout, cache), numeric) < 1e-7


def test_roi_warp_empty():
    out, cache = roi_warp_forward(np.ones((1, 3, 4, 4), np.float32), np.zeros((0, 5)), 7)
    assert out.shape == (0, 3, 7, 7) and out.dtype == np.float32
    assert roi_warp_backward(out, cache).shape == (1, 3, 4, 4)


# -------------------------------------------------------------------------- crop_and_resize ---

def test_crop_and_resize_by_hand():
    # input 4x5, v = 5y + x. Box (x1, y1, x2, y2) = (0.5, 0, 1.5, 3), crop 2x3: corners sampled,
    #   y: 0, 3            (2 samples from y1 to y2, step (3 - 0) / 1)
    #   x: 0.5, 1.0, 1.5   (3 samples from x1 to x2, step (1.5 - 0.5) / 2)
    # v is bilinear, so each sample is 5y + x: row y=0 -> 0.5, 1, 1.5; row y=3 -> 15.5, 16, 16.5.
    x = np.arange(20, dtype=np.float64).reshape(1, 1, 4, 5)
    out = crop_and_resize(x, [[0.5, 0, 1.5, 3]], [0], (2, 3))
    assert np.allclose(out[0, 0], [[0.5, 1, 1.5], [15.5, 16, 16.5]], atol=1e-12)
    # Samples off the map (x = -1 < 0) take the extrapolation value, the others are bilinear:
    # box (-1, 0, 1, 3), crop 2x3 -> x: -1, 0, 1.
    out = crop_and_resize(x, [[-1, 0, 1, 3]], [0], (2, 3), extrapolation_value=-7)
    assert np.allclose(out[0, 0], [[-7, 0, 1], [-7, 15, 16]])
    # A 1x1 crop samples the box centre: ((0 + 4) / 2, (0 + 2) / 2) = (x 2, y 1) -> 7.
    assert crop_and_resize(x, [[0, 0, 4, 2]], [0], 1)[0, 0, 0, 0] == pytest.approx(7.0)


def test_crop_and_resize_identity_and_flip():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    # The whole map, corner to corner, at its own size, is the map itself (TF's box (0,0,1,1)).
    out = crop_and_resize(x, [[0, 0, 4, 3], [0, 0, 4, 3]], [0, 1], (4, 5))
    assert out.dtype == np.float32 and np.allclose(out, x, atol=1e-6)
    # x2 < x1 flips the crop left-right, as in TensorFlow.
    flipped = crop_and_resize(x, [[4, 0, 0, 3]], [1], (4, 5))
    assert np.allclose(flipped[0], x[1, :, :, ::-1], atol=1e-6)


@pytest.mark.oracle
@given(st.integers(0, 2 ** 31 - 1), st.sampled_from([np.float32, np.float64]))
@settings(max_examples=15)
def test_crop_and_resize_matches_grid_sample_inside_the_map(seed, dtype):
    # For boxes inside the map, crop_and_resize is torch's grid_sample (bilinear,
    # align_corners=True) at the corner-aligned sample points: x_norm = 2 x / (W - 1) - 1.
    torch, _ = oracle()
    rng = np.random.default_rng(seed)
    N, C, H, W, R, S_h, S_w = 2, 2, 6, 7, 3, 3, 4
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    p1 = rng.uniform(0, 1, (R, 2)) * [W - 1, H - 1]
    p2 = rng.uniform(0, 1, (R, 2)) * [W - 1, H - 1]
    boxes = np.concatenate([p1, p2], 1).astype(dtype)                     # inside, any order
    idx = rng.integers(0, N, R)
    dout = rng.standard_normal((R, C, S_h, S_w)).astype(dtype)
    ys = boxes[:, 1:2] + np.arange(S_h) * (boxes[:, 3:4] - boxes[:, 1:2]) / (S_h - 1)  # [R, S_h]
    xs = boxes[:, 0:1] + np.arange(S_w) * (boxes[:, 2:3] - boxes[:, 0:1]) / (S_w - 1)  # [R, S_w]
    grid = np.stack(np.broadcast_arrays(2 * xs[:, None, :] / (W - 1) - 1,
                                        2 * ys[:, :, None] / (H - 1) - 1), -1)       # [R, S_h, S_w, 2]
    xt = torch.tensor(x, requires_grad=True)
    want = torch.nn.functional.grid_sample(xt[torch.tensor(idx)], torch.tensor(grid.astype(dtype)),
                                           mode="bilinear", padding_mode="zeros", align_corners=True)
    want.backward(torch.tensor(dout))
    out, cache = crop_and_resize_forward(x, boxes, idx, (S_h, S_w))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    assert rel_error(out, want.detach().numpy()) < tol
    assert rel_error(crop_and_resize_backward(dout, cache), xt.grad.numpy()) < tol


def test_crop_and_resize_finite_differences():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 2, 5, 6))
    boxes = np.array([[0.3, 0.7, 4.1, 3.9], [-1.2, 2.5, 3.3, 6.8], [2.2, 2.0, 2.6, 2.3]])
    idx = np.array([0, 1, 1])
    dout = rng.standard_normal((3, 2, 3, 2))
    out, cache = crop_and_resize_forward(x, boxes, idx, (3, 2), 1.0, 0.5)
    numeric = numerical_grad(lambda a: crop_and_resize_forward(a, boxes, idx, (3, 2), 1.0, 0.5)[0],
                             x, dout)
    assert rel_error(crop_and_resize_backward(dout, cache), numeric) < 1e-7


def test_crop_and_resize_empty_and_spatial_scale():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    out, cache = crop_and_resize_forward(x, np.zeros((0, 4)), np.zeros(0, int), 7)
    assert out.shape == (0, 1, 7, 7) and not crop_and_resize_backward(out, cache).any()
    # spatial_scale 1/4: an image box (0, 0, 12, 12) is the feature box (0, 0, 3, 3).
    assert np.allclose(crop_and_resize(x, [[0, 0, 12, 12]], [0], 4, spatial_scale=0.25), x)
