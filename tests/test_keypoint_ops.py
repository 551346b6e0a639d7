"""Keypoint targets, loss and inference (mrcnn_np/ops/keypoints.py) and torch's bicubic resize
(mrcnn_np/nn/bicubic.py): hand-worked examples, torchvision/torch as the oracle, and float64
finite differences for the loss's backward.
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from conftest import oracle
from mrcnn_np.nn.bicubic import cubic_weights, interpolate_bicubic
from mrcnn_np.nn.gradcheck import numerical_grad, rel_error
from mrcnn_np.ops.keypoints import (heatmaps_to_keypoints, keypoint_targets,
                                    keypointrcnn_inference, keypointrcnn_loss,
                                    keypointrcnn_loss_backward, keypointrcnn_loss_forward,
                                    keypoints_to_heatmap)


def _tv_roi_heads():
    oracle()
    from torchvision.models.detection import roi_heads
    return roi_heads


def _rois(rng, R, dtype=np.float32, zero_size=True):
    """R boxes of varied sizes: under a pixel, non-integer, integer, a few zero-width ones."""
    xy = rng.uniform(0, 60, (R, 2))
    kind = rng.integers(0, 4, (R, 2))
    wh = np.where(kind == 0, rng.uniform(0.05, 1.0, (R, 2)),  # smaller than a pixel
                  np.where(kind == 1, rng.integers(1, 30, (R, 2)).astype(float),  # integer
                           rng.uniform(1, 40, (R, 2))))  # non-integer
    if zero_size:
        wh[rng.random((R, 2)) < 0.05] = 0.0  # degenerate: x1 == x2 or y1 == y2
    return np.concatenate([xy, xy + wh], 1).astype(dtype)  # [R, 4]


def _keypoints(rng, rois, K, S, dtype=np.float32):
    """[R, K, 3] keypoints in, around and on the edges of their RoI, some on bin edges, some
    invisible (v = 0), some occluded (v = 1)."""
    R = len(rois)
    x1, y1, x2, y2 = (rois[:, i:i + 1].astype(np.float64) for i in range(4))
    w, h = x2 - x1, y2 - y1
    u = rng.uniform(-0.3, 1.3, (R, K, 2))  # relative position, 30% margin either side
    x = x1 + u[..., 0] * w
    y = y1 + u[..., 1] * h
    kind = rng.integers(0, 6, (R, K))
    x = np.where(kind == 0, x1, np.where(kind == 1, x2, x))  # exactly on the left / right edge
    y = np.where(kind == 2, y1, np.where(kind == 3, y2, y))  # top / bottom edge
    b = rng.integers(0, S + 1, (R, K))
    x = np.where(kind == 4, x1 + b * w / S, x)  # on a bin edge (up to rounding)
    kp = np.stack([x, y, rng.integers(0, 3, (R, K))], -1).astype(dtype)  # [R, K, 3]
    kp[rng.random((R, K)) < 0.05, :2] = rng.uniform(-50, 150, 2)  # far away
    return kp


# -- keypoints_to_heatmap --------------------------------------------------------------------
def test_keypoints_to_heatmap_by_hand():
    """RoI (10, 20)-(18, 24) on a 4 x 4 grid: x bins 2 px wide, y bins 1 px high.

        x:  10   12   14   16   18        y: 20  21  22  23  24
            | 0  | 1  | 2  | 3  |            | 0 | 1 | 2 | 3 |
    """
    rois = np.array([[10, 20, 18, 24]], np.float32)
    kp = np.array([[
        [10.0, 20.0, 2],   # the top-left corner: bin (0, 0)               -> 0
        [18.0, 24.0, 2],   # the bottom-right corner, x == x2 and y == y2  -> bin (3, 3) = 15
        [17.9, 23.9, 1],   # just inside it, occluded (v = 1 counts)       -> (3, 3) = 15
        [13.0, 21.5, 2],   # x bin floor(3 / 2) = 1, y bin 1               -> 1 * 4 + 1 = 5
        [18.0, 22.5, 2],   # on the right edge, y bin 2                    -> 2 * 4 + 3 = 11
        [14.0, 24.0, 2],   # on the bottom edge, x exactly on bin edge 2   -> 3 * 4 + 2 = 14
        [9.99, 22.0, 2],   # left of the RoI                               -> invalid
        [18.01, 22.0, 2],  # right of it                                   -> invalid
        [18.0, 24.5, 2],   # on the right edge but below the RoI           -> invalid
        [13.0, 21.5, 0],   # inside but not labelled (v = 0)               -> invalid
    ]], np.float32)
    heatmaps, valid = keypoints_to_heatmap(kp, rois, 4)
    assert heatmaps.dtype == np.int64 and valid.dtype == bool
    np.testing.assert_array_equal(heatmaps[0], [0, 15, 15, 5, 11, 14, 0, 0, 0, 0])
    np.testing.assert_array_equal(valid[0], [1, 1, 1, 1, 1, 1, 0, 0, 0, 0])

    tv = _tv_roi_heads()
    torch = oracle()[0]
    th, tvalid = tv.keypoints_to_heatmap(torch.from_numpy(kp), torch.from_numpy(rois), 4)
    np.testing.assert_array_equal(heatmaps, th.numpy())
    np.testing.assert_array_equal(valid, tvalid.numpy().astype(bool))


def test_keypoints_to_heatmap_degenerate_roi():
    """A zero-width RoI: only a keypoint exactly on its (single) x is kept, in the last bin."""
    rois = np.array([[5, 0, 5, 8]], np.float32)  # x1 == x2 == 5
    kp = np.array([[[5, 4, 2], [5.5, 4, 2], [4, 4, 2]]], np.float32)
    heatmaps, valid = keypoints_to_heatmap(kp, rois, 8)
    np.testing.assert_array_equal(valid[0], [True, False, False])
    assert heatmaps[0, 0] == 4 * 8 + 7  # y bin 4, x bin S - 1

    tv = _tv_roi_heads()
    torch = oracle()[0]
    th, tvalid = tv.keypoints_to_heatmap(torch.from_numpy(kp), torch.from_numpy(rois), 8)
    np.testing.assert_array_equal(heatmaps, th.numpy())
    np.testing.assert_array_equal(valid, tvalid.numpy().astype(bool))


@settings(max_examples=40)
@given(seed=st.integers(0, 2**31 - 1), R=st.integers(0, 12), K=st.integers(1, 6),
       S=st.sampled_from([1, 3, 7, 56]), dtype=st.sampled_from([np.float32, np.float64]))
def test_keypoints_to_heatmap_matches_torchvision(seed, R, K, S, dtype):
    tv = _tv_roi_heads()
    torch = oracle()[0]
    rng = np.random.default_rng(seed)
    rois = _rois(rng, R, dtype)
    kp = _keypoints(rng, rois, K, S, dtype)
    kp0, rois0 = kp.copy(), rois.copy()
    heatmaps, valid = keypoints_to_heatmap(kp, rois, S)
    th, tvalid = tv.keypoints_to_heatmap(torch.from_numpy(kp), torch.from_numpy(rois), S)
    np.testing.assert_array_equal(heatmaps, th.numpy())
    np.testing.assert_array_equal(valid, tvalid.numpy().astype(bool))
    np.testing.assert_array_equal(kp, kp0)  # inputs left unmodified
    np.testing.assert_array_equal(rois, rois0)
    assert np.all((heatmaps >= 0) & (heatmaps < S * S))


def test_keypoints_to_heatmap_rejects_bad_shapes():
    with pytest.raises(ValueError):
        keypoints_to_heatmap(np.zeros((2, 3, 2), np.float32), np.zeros((2, 4), np.float32), 56)
    with pytest.raises(ValueError):
        keypoints_to_heatmap(np.zeros((2, 3, 3), np.float32), np.zeros((3, 4), np.float32), 56)
    with pytest.raises(ValueError):
        keypoints_to_heatmap(np.zeros((2, 3, 3), np.int64), np.zeros((2, 4), np.float32), 56)


@settings(max_examples=15)
@given(seed=st.integers(0, 2**31 - 1), n_img=st.integers(1, 3), K=st.integers(1, 4))
def test_keypoint_targets_gather_as_torchvision(seed, n_img, K):
    """Each positive RoI takes its matched ground truth's keypoints; flattened per image and
    concatenated, as torchvision's keypointrcnn_loss builds its targets."""
    tv = _tv_roi_heads()
    torch = oracle()[0]
    rng = np.random.default_rng(seed)
    S = 7
    gts, roiss, midxs, expect_h, expect_v = [], [], [], [], []
    for _ in range(n_img):
        G, P = int(rng.integers(1, 4)), int(rng.integers(0, 5))
        rois = _rois(rng, P)
        gt = _keypoints(rng, _rois(rng, G), K, S)
        midx = rng.integers(0, G, P)
        gts.append(gt), roiss.append(rois), midxs.append(midx)
        h, v = tv.keypoints_to_heatmap(torch.from_numpy(gt)[torch.from_numpy(midx)],
                                       torch.from_numpy(rois), S)
        expect_h.append(h.view(-1).numpy()), expect_v.append(v.view(-1).numpy())
    heatmaps, valid = keypoint_targets(gts, roiss, midxs, S)
    np.testing.assert_array_equal(heatmaps, np.concatenate(expect_h))
    np.testing.assert_array_equal(valid, np.concatenate(expect_v).astype(bool))


# -- the loss --------------------------------------------------------------------------------
@settings(max_examples=20)
@given(seed=st.integers(0, 2**31 - 1), n_img=st.integers(1, 2), K=st.integers(1, 4),
       S=st.sampled_from([4, 7, 12]))
def test_keypointrcnn_loss_matches_torchvision(seed, n_img, K, S):
    """Value and gradient against torchvision's keypointrcnn_loss (torch autograd), float64."""
    tv = _tv_roi_heads()
    torch = oracle()[0]
    rng = np.random.default_rng(seed)
    gts, roiss, midxs = [], [], []
    for _ in range(n_img):
        G, P = int(rng.integers(1, 4)), int(rng.integers(0, 5))
        roiss.append(_rois(rng, P, np.float64, zero_size=False))
        gts.append(_keypoints(rng, _rois(rng, G, np.float64), K, S, np.float64))
        midxs.append(rng.integers(0, G, P))
    R = sum(len(r) for r in roiss)
    logits = rng.normal(scale=3.0, size=(R, K, S, S))

    heatmaps, valid = keypoint_targets(gts, roiss, midxs, S)
    loss, cache = keypointrcnn_loss_forward(logits, heatmaps, valid)
    dlogits = keypointrcnn_loss_backward(1.0, cache)

    tlog = torch.tensor(logits, requires_grad=True)
    tloss = tv.keypointrcnn_loss(tlog, [torch.from_numpy(r) for r in roiss],
                                 [torch.from_numpy(g) for g in gts],
                                 [torch.from_numpy(m) for m in midxs])
    tloss.backward()
    np.testing.assert_allclose(loss, tloss.item(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dlogits, tlog.grad.numpy(), rtol=1e-10, atol=1e-14)
    assert keypointrcnn_loss(logits, roiss, gts, midxs) == loss
    # rows that do not count get exactly no gradient
    np.testing.assert_array_equal(dlogits.reshape(R * K, S * S)[~valid], 0)


def test_keypointrcnn_loss_gradient_finite_differences():
    rng = np.random.default_rng(3)
    R, K, S = 2, 3, 4
    logits = rng.normal(size=(R, K, S, S))
    heatmaps = rng.integers(0, S * S, R * K)
    valid = np.array([1, 0, 1, 1, 1, 0], bool)
    loss, cache = keypointrcnn_loss_forward(logits, heatmaps, valid)
    dlogits = keypointrcnn_loss_backward(2.5, cache)
    num = numerical_grad(lambda x: keypointrcnn_loss_forward(x, heatmaps, valid)[0], logits, 2.5)
    assert rel_error(dlogits, num) < 1e-7


def test_keypointrcnn_loss_by_hand():
    """One RoI, three keypoints, 2 x 2 maps, all three maps with logits (0, 0, ln 2, ln 4):
    exp sums to 1 + 1 + 2 + 4 = 8, the softmax is (1/8, 1/8, 1/4, 1/2).
    Keypoint 0 at position 3 costs -ln(1/2) = ln 2; keypoint 1 at position 0 costs ln 8;
    keypoint 2 is not valid. Mean over the 2 valid ones: (ln 2 + 3 ln 2) / 2 = 2 ln 2.
    Gradient: (softmax - onehot) / 2 on the valid rows, 0 on the third."""
    logits = np.tile(np.log([1.0, 1.0, 2.0, 4.0]).reshape(1, 1, 2, 2), (1, 3, 1, 1))
    heatmaps = np.array([3, 0, 2])
    valid = np.array([True, True, False])
    loss, cache = keypointrcnn_loss_forward(logits, heatmaps, valid)
    np.testing.assert_allclose(loss, 2 * np.log(2), rtol=1e-14)
    d = keypointrcnn_loss_backward(1.0, cache).reshape(3, 4)
    np.testing.assert_allclose(d[0], np.array([1, 1, 2, -4]) / 16, atol=1e-15)
    np.testing.assert_allclose(d[1], np.array([-7, 1, 2, 4]) / 16, atol=1e-15)
    np.testing.assert_array_equal(d[2], 0)


@pytest.mark.parametrize("R", [0, 3])
def test_keypointrcnn_loss_nothing_valid(R):
    """No RoI, or no labelled keypoint inside its RoI: loss 0, gradient 0, as torchvision."""
    tv = _tv_roi_heads()
    torch = oracle()[0]
    K, S = 2, 5
    rng = np.random.default_rng(0)
    rois = _rois(rng, R, np.float64, zero_size=False)
    gt = _keypoints(rng, rois, K, S, np.float64)
    gt[..., 2] = 0  # nothing labelled
    midx = np.arange(R)
    logits = rng.normal(size=(R, K, S, S))
    heatmaps, valid = keypoint_targets([gt], [rois], [midx], S)
    loss, cache = keypointrcnn_loss_forward(logits, heatmaps, valid)
    d = keypointrcnn_loss_backward(1.0, cache)
    assert loss == 0 and np.isfinite(loss)
    assert d.shape == logits.shape and not d.any()
    tlog = torch.tensor(logits, requires_grad=True)
    tloss = tv.keypointrcnn_loss(tlog, [torch.from_numpy(rois)], [torch.from_numpy(gt)],
                                 [torch.from_numpy(midx)])
    tloss.backward()
    assert tloss.item() == 0
    np.testing.assert_array_equal(d, tlog.grad.numpy())


def test_keypointrcnn_loss_rejects_bad_input():
    with pytest.raises(ValueError):  # not square
        keypointrcnn_loss_forward(np.zeros((1, 2, 3, 4)), np.zeros(2, int), np.ones(2, bool))
    with pytest.raises(ValueError):  # wrong number of targets
        keypointrcnn_loss_forward(np.zeros((1, 2, 3, 3)), np.zeros(3, int), np.ones(3, bool))
    with pytest.raises(ValueError):  # a valid target off the grid
        keypointrcnn_loss_forward(np.zeros((1, 2, 3, 3)), np.array([0, 9]), np.ones(2, bool))


# -- bicubic ---------------------------------------------------------------------------------
def test_cubic_weights_by_hand():
    """Keys' kernel with a = -0.75 at t = 0 (a copy), 0.5 (midway) and 0.25 (worked out):
    W(s) = 1.25 s^3 - 2.25 s^2 + 1 for s <= 1, -0.75 (s^3 - 5 s^2 + 8 s - 4) for 1 < s < 2."""
    w = cubic_weights(np.array([0.0, 0.5, 0.25]), np.float64)
    np.testing.assert_allclose(w[0], [0, 1, 0, 0], atol=1e-15)
    # W(1.5) = -0.75 * 0.125, W(0.5) = 1.25 / 8 - 2.25 / 4 + 1
    np.testing.assert_allclose(w[1], [-0.09375, 0.59375, 0.59375, -0.09375], atol=1e-15)
    np.testing.assert_allclose(w[2], [-0.10546875, 0.87890625, 0.26171875, -0.03515625],
                               atol=1e-15)
    np.testing.assert_allclose(w.sum(1), 1, atol=1e-15)


def test_bicubic_ramp_by_hand():
    """A ramp 0, 1, 2, 3 upsampled 2x. Output d reads src = d / 2 - 0.25:
    d = 0: src -0.25, taps -2..1 clamped to 0, 0, 0, 1 with t = 0.75 -> -0.10546875 (below 0!)
    d = 1: src  0.25, taps -1..2 -> values 0, 0, 1, 2, t = 0.25 -> 0.26171875 - 2 * 0.03515625
    d = 2: src  0.75, values 0, 0, 1, 2, t = 0.75 -> 0.87890625 - 2 * 0.10546875
    d = 3: src  1.25, values 0, 1, 2, 3, t = 0.25 -> 1.296875, not 1.25: with a = -0.75 the
    cubic does not reproduce a straight line (only a = -0.5 does)."""
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 1, 4)
    out = interpolate_bicubic(x, size=(1, 8))
    np.testing.assert_array_equal(out[0, 0, 0, :4],
                                  np.float32([-0.10546875, 0.19140625, 0.66796875, 1.296875]))
    torch = oracle()[0]
    t = torch.nn.functional.interpolate(torch.from_numpy(x), size=(1, 8), mode="bicubic",
                                        align_corners=False)
    np.testing.assert_array_equal(out, t.numpy())


@settings(max_examples=40)
@given(seed=st.integers(0, 2**31 - 1), H=st.integers(1, 12), W=st.integers(1, 12),
       oh=st.integers(1, 30), ow=st.integers(1, 30),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_bicubic_matches_torch(seed, H, W, oh, ow, dtype):
    """Up- and down-sizing, odd sizes, 1-pixel inputs and outputs."""
    torch = oracle()[0]
    x = np.random.default_rng(seed).normal(size=(2, 3, H, W)).astype(dtype)
    x0 = x.copy()
    out = interpolate_bicubic(x, size=(oh, ow))
    t = torch.nn.functional.interpolate(torch.from_numpy(x), size=(oh, ow), mode="bicubic",
                                        align_corners=False).numpy()
    assert out.dtype == dtype and out.shape == t.shape
    atol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(out, t, rtol=0, atol=atol)
    np.testing.assert_array_equal(x, x0)


@settings(max_examples=20)
@given(seed=st.integers(0, 2**31 - 1), H=st.integers(1, 10), W=st.integers(1, 10),
       s=st.sampled_from([0.5, 0.7, 1.5, 2.0, 2.3, 3.0]),
       recompute=st.sampled_from([None, True]))
def test_bicubic_scale_factor_matches_torch(seed, H, W, s, recompute):
    torch = oracle()[0]
    assume(int(H * s) >= 1 and int(W * s) >= 1)
    x = np.random.default_rng(seed).normal(size=(1, 2, H, W)).astype(np.float32)
    out = interpolate_bicubic(x, scale_factor=s, recompute_scale_factor=recompute)
    t = torch.nn.functional.interpolate(torch.from_numpy(x), scale_factor=s, mode="bicubic",
                                        align_corners=False,
                                        recompute_scale_factor=recompute).numpy()
    assert out.shape == t.shape
    np.testing.assert_allclose(out, t, rtol=0, atol=1e-5)


def test_bicubic_rejects_bad_input():
    with pytest.raises(ValueError):
        interpolate_bicubic(np.zeros((2, 3, 4), np.float32), size=(2, 2))
    with pytest.raises(ValueError):
        interpolate_bicubic(np.zeros((1, 1, 4, 4), np.int64), size=(2, 2))
    with pytest.raises(ValueError):
        interpolate_bicubic(np.zeros((1, 1, 4, 4), np.float32), size=(0, 2))
    with pytest.raises(ValueError):
        interpolate_bicubic(np.zeros((1, 1, 4, 4), np.float32))


# -- heatmaps_to_keypoints -------------------------------------------------------------------
def test_heatmaps_to_keypoints_by_hand():
    """A 4 x 4 RoI of 4 x 4 pixels: the resize is a copy, the peak at column 1, row 2 is the
    pixel whose centre is (10 + 1.5, 20 + 2.5). A 0.5 px wide box counts as 1 px: one column,
    x = x1 + 0.5. A 2.5 px wide box maps to 3 columns, each 2.5 / 3 px wide."""
    S = 4
    maps = np.zeros((3, 1, S, S), np.float32)
    maps[0, 0, 2, 1] = 5.0
    maps[1, 0, 2, :] = 5.0  # a whole row: every column ties; a 1-column resize keeps one
    maps[2, 0, :, 3] = 5.0  # the last column
    rois = np.array([[10, 20, 14, 24], [7, 3, 7.5, 7], [0, 0, 2.5, 4]], np.float32)
    xy, scores = heatmaps_to_keypoints(maps, rois)
    assert xy.shape == (3, 1, 3) and xy.dtype == np.float32 and scores.dtype == np.float32
    np.testing.assert_allclose(xy[0, 0], [11.5, 22.5, 1], atol=1e-6)
    assert scores[0, 0] == 5.0
    np.testing.assert_allclose(xy[1, 0, [0, 2]], [7.5, 1], atol=1e-6)  # x = 7 + 0.5 * 1
    np.testing.assert_allclose(xy[1, 0, 1], 3 + 2.5, atol=1e-6)  # the row: y = 3 + 2.5
    np.testing.assert_allclose(xy[2, 0, 0], (2 + 0.5) * 2.5 / 3, atol=1e-6)  # last column


@settings(max_examples=25)
@given(seed=st.integers(0, 2**31 - 1), R=st.integers(0, 6), K=st.integers(1, 4),
       S=st.sampled_from([5, 8, 14]), dtype=st.sampled_from([np.float32, np.float64]))
def test_heatmaps_to_keypoints_matches_torchvision(seed, R, K, S, dtype):
    """Random maps and boxes of varied sizes (under a pixel, non-integer, integer, degenerate)."""
    tv = _tv_roi_heads()
    torch = oracle()[0]
    rng = np.random.default_rng(seed)
    maps = rng.normal(size=(R, K, S, S)).astype(dtype)
    rois = _rois(rng, R, dtype)
    xy, scores = heatmaps_to_keypoints(maps, rois)
    txy, tscores = tv.heatmaps_to_keypoints(torch.from_numpy(maps), torch.from_numpy(rois))
    assert xy.shape == (R, K, 3) and scores.shape == (R, K)
    np.testing.assert_allclose(xy, txy.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(scores, tscores.numpy(), rtol=0, atol=1e-5)


def test_heatmaps_to_keypoints_full_size_matches_torchvision():
    """torchvision's 56 x 56 maps, 17 keypoints, boxes from 0.3 to 120 px."""
    tv = _tv_roi_heads()
    torch = oracle()[0]
    rng = np.random.default_rng(7)
    R, K, S = 6, 17, 56
    maps = rng.normal(size=(R, K, S, S)).astype(np.float32)
    xy0 = rng.uniform(0, 200, (R, 2))
    wh = np.array([[0.3, 0.8], [3.7, 9.2], [56, 56], [41.5, 77.25], [120, 33.3], [1, 1]])
    rois = np.concatenate([xy0, xy0 + wh], 1).astype(np.float32)
    xy, scores = heatmaps_to_keypoints(maps, rois)
    txy, tscores = tv.heatmaps_to_keypoints(torch.from_numpy(maps), torch.from_numpy(rois))
    np.testing.assert_allclose(xy, txy.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(scores, tscores.numpy(), rtol=0, atol=1e-5)
    # and torchvision's per-image wrapper
    probs, sc = keypointrcnn_inference(maps, [rois[:2], rois[2:]])
    np.testing.assert_array_equal(np.concatenate(probs), xy)
    np.testing.assert_array_equal(np.concatenate(sc), scores)


def test_heatmap_round_trip_on_an_S_pixel_roi():
    """On a RoI of S x S pixels the resize is a copy, so a one-hot target map comes back as
    the centre of the keypoint's pixel: within half a pixel of the keypoint on each axis."""
    rng = np.random.default_rng(1)
    S, K = 8, 20
    rois = np.array([[30, 40, 30 + S, 40 + S]], np.float32)
    kp = np.zeros((1, K, 3), np.float32)
    kp[0, :, 0] = rng.uniform(30, 38, K)
    kp[0, :, 1] = rng.uniform(40, 48, K)
    kp[0, :, 2] = 2
    heatmaps, valid = keypoints_to_heatmap(kp, rois, S)
    assert valid.all()
    maps = np.zeros((1, K, S, S), np.float32)
    maps.reshape(K, S * S)[np.arange(K), heatmaps[0]] = 10.0  # the one-hot targets as logits
    xy, _ = heatmaps_to_keypoints(maps, rois)
    assert np.all(np.abs(xy[0, :, :2] - kp[0, :, :2]) <= 0.5)
    np.testing.assert_array_equal((xy[0, :, :2] - 0.5) % 1, 0)  # pixel centres


def test_heatmaps_to_keypoints_rejects_bad_shapes():
    with pytest.raises(ValueError):
        heatmaps_to_keypoints(np.zeros((2, 3, 4), np.float32), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError):
        heatmaps_to_keypoints(np.zeros((2, 3, 4, 4), np.float32), np.zeros((1, 4), np.float32))
