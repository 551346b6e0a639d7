"""Inference post-processing against torchvision: detections, mask selection, mask pasting.

Tolerances: pasted masks (float32 probabilities) agree with torchvision's to 1e-6; detection
scores to 1e-6 and boxes to 1e-4 px (numpy's and torch's float32 ``exp`` may differ in the last
bit); labels and the order of detections exactly.
"""
import types
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import oracle
from mrcnn_np.config import get_config
from mrcnn_np.postprocess import (expand_boxes, expand_masks, masks_from_logits,
                                  paste_mask_subpixel, paste_masks_in_image,
                                  postprocess_detections)


# ------------------------------------------------------------------------------------------------
# paste_masks_in_image
# ------------------------------------------------------------------------------------------------
def test_paste_by_hand():
    # A 2x2 mask of ones in the box (0, 0, 2, 2), pasted into a 5x5 image.
    # 1. pad: M = 2 -> 4x4 with a zero ring; scale = (2 + 2) / 2 = 2
    #       0 0 0 0
    #       0 1 1 0
    #       0 1 1 0
    #       0 0 0 0
    # 2. grow the box about its centre (1, 1) by 2: half width 1 -> 2: (-1, -1, 3, 3)
    # 3. integer box (-1, -1, 3, 3) covers pixels -1..3: w = h = 3 - (-1) + 1 = 5
    # 4. resize the 4-pixel profile p = [0, 1, 1, 0] to 5: scale 4/5 = 0.8,
    #    src = (d + 0.5) * 0.8 - 0.5 = -0.1, 0.7, 1.5, 2.3, 3.1
    #      d=0: clamp to 0            -> p[0]                  = 0
    #      d=1: 0.3 * p[0] + 0.7 * p[1]                        = 0.7
    #      d=2: 0.5 * p[1] + 0.5 * p[2]                        = 1
    #      d=3: 0.7 * p[2] + 0.3 * p[3]                        = 0.7
    #      d=4: floor(3.1) = 3, the last pixel -> p[3]         = 0
    #    -> [0, 0.7, 1, 0.7, 0] on each axis; the 2-D mask is the outer product.
    # 5. paste: pixel -1 is off the image, so image pixels 0..3 get profile entries 1..4,
    #    [0.7, 1, 0.7, 0]; image row/column 4 lies outside the box and stays 0.
    masks = np.ones((1, 1, 2, 2), np.float32)
    boxes = np.array([[0.0, 0.0, 2.0, 2.0]], np.float32)
    out = paste_masks_in_image(masks, boxes, (5, 5))
    prof = np.array([0.7, 1.0, 0.7, 0.0, 0.0])
    np.testing.assert_allclose(out[0, 0], np.outer(prof, prof), atol=1e-6)
    assert out.shape == (1, 1, 5, 5) and out.dtype == np.float32


def test_expand_by_hand():
    padded, scale = expand_masks(np.ones((3, 1, 28, 28), np.float32), padding=1)
    assert padded.shape == (3, 1, 30, 30) and scale == 30 / 28
    assert padded[:, :, 0].sum() == 0 and padded[:, :, 1:-1, 1:-1].min() == 1
    # box (10, 20, 30, 60): centre (20, 40), half sizes (10, 20) * 1.5 = (15, 30)
    np.testing.assert_array_equal(expand_boxes(np.array([[10.0, 20, 30, 60]]), 1.5),
                                  [[5.0, 10, 35, 70]])


def test_paste_no_detections():
    out = paste_masks_in_image(np.zeros((0, 1, 28, 28), np.float32), np.zeros((0, 4), np.float32),
                               (7, 9))
    assert out.shape == (0, 1, 7, 9) and out.dtype == np.float32


def test_paste_box_outside_image_is_empty():
    # torchvision's slicing fails for such boxes; they never occur for boxes clipped to the image
    masks = np.ones((2, 1, 4, 4), np.float32)
    boxes = np.array([[30.0, 2, 40, 8], [-20.0, -20, -10, -12]], np.float32)
    out = paste_masks_in_image(masks, boxes, (10, 10))
    assert out.shape == (2, 1, 10, 10) and not out.any()


def _boxes_touching_image(rng, D, h, w):
    """Boxes that overlap an h x w image: some partly outside, some tiny (under a pixel)."""
    x1 = rng.uniform(-0.3 * w, w - 1, D)
    y1 = rng.uniform(-0.3 * h, h - 1, D)
    bw = rng.uniform(0, 0.8 * w, D)
    bh = rng.uniform(0, 0.8 * h, D)
    tiny = rng.random(D) < 0.3
    x1[tiny] = rng.uniform(0, w - 1, tiny.sum())
    y1[tiny] = rng.uniform(0, h - 1, tiny.sum())
    bw[tiny] = rng.uniform(0, 0.9, tiny.sum())
    bh[tiny] = rng.uniform(0, 0.9, tiny.sum())
    x2 = np.maximum(x1 + bw, 0.5)  # the right edge inside the image: the box touches it
    y2 = np.maximum(y1 + bh, 0.5)
    return np.stack([x1, y1, x2, y2], 1)


def _masks_and_boxes(seed, D, M, h, w, double, min_size=0.0):
    """D random [M, M] masks in 0..1 and D boxes touching an h x w image (each at least
    ``min_size`` wide and high), in float64 or float32; returns (masks, boxes, dtype)."""
    rng = np.random.default_rng(seed)
    dtype = np.float64 if double else np.float32
    masks = rng.random((D, 1, M, M)).astype(dtype)  # [D, 1, M, M]
    boxes = _boxes_touching_image(rng, D, h, w)  # [D, 4]
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + min_size)
    return masks, boxes.astype(dtype), dtype


@settings(max_examples=25)
@given(seed=st.integers(0, 2**31 - 1), D=st.integers(0, 8), M=st.integers(2, 28),
       h=st.integers(5, 60), w=st.integers(5, 60), double=st.booleans())
def test_paste_matches_torchvision(seed, D, M, h, w, double):
    torch, _ = oracle()
    from torchvision.models.detection.roi_heads import paste_masks_in_image as tv_paste
    masks, boxes, dtype = _masks_and_boxes(seed, D, M, h, w, double)
    ours = paste_masks_in_image(masks, boxes, (h, w))
    ref = tv_paste(torch.from_numpy(masks), torch.from_numpy(boxes), (h, w)).numpy()
    assert ours.shape == ref.shape == (D, 1, h, w) and ours.dtype == dtype
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12 if double else 1e-6)


def test_paste_leaves_inputs_alone():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 1, 28, 28)).astype(np.float32)
    boxes = _boxes_touching_image(rng, 3, 30, 40).astype(np.float32)
    m0, b0 = masks.copy(), boxes.copy()
    paste_masks_in_image(masks, boxes, (30, 40))
    np.testing.assert_array_equal(masks, m0)
    np.testing.assert_array_equal(boxes, b0)


# ------------------------------------------------------------------------------------------------
# paste_masks_in_image(method="subpixel"): detectron2's paste
# ------------------------------------------------------------------------------------------------
def test_paste_subpixel_by_hand():
    # A 2x2 mask with one 1 at the top left, in the box (0, 0, 4, 4) of a 4x4 image.
    # Each cell spans 2 px; pixel i's centre i + 0.5 sits at u = (i + 0.5) / 4 * 2 - 0.5 cells:
    #   i = 0, 1, 2, 3 -> u = -0.25, 0.25, 0.75, 1.25
    # The weight of cell 0 (the only 1) at u: 1 - |u| within a cell of it, else 0:
    #   0.75, 0.75, 0.25, 0   (u = -0.25 mixes cell 0 with the zero outside the mask)
    # Rows take the same weights; the pasted value is the product.
    mask = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)
    w = np.array([0.75, 0.75, 0.25, 0.0], np.float32)
    out = paste_masks_in_image(mask[None, None], np.array([[0.0, 0, 4, 4]], np.float32), (4, 4),
                               method="subpixel")
    np.testing.assert_allclose(out[0, 0], np.outer(w, w), rtol=0, atol=1e-7)


@settings(max_examples=25)
@given(lo=st.floats(-3, 10), size=st.floats(0.2, 12), M=st.integers(2, 28), axis=st.sampled_from([0, 1]))
def test_paste_subpixel_ones_cover_the_pixel_centres_in_the_box(lo, size, M, axis):
    # Along one axis a mask of ones rises from 0 to 1 over the half cell on each side of the
    # box's edge (1 - |u| at u cells outside the first cell's centre), so it is > 0.5 exactly
    # where the pixel's centre is inside the box. The other axis spans -100 .. 200 px, so the
    # 16 pixels there sit well inside its cells (weight 1). Centres within 1e-4 px of an edge
    # are left out (rounding decides them).
    box = np.array([lo, -100.0, lo + size, 200.0]) if axis == 1 else \
        np.array([-100.0, lo, 200.0, lo + size])
    out = paste_mask_subpixel(np.ones((M, M)), box, 16, 16)
    profile = out[0] if axis == 1 else out[:, 0]  # every row (column) is the same
    np.testing.assert_allclose(out, np.broadcast_to(
        profile[None] if axis == 1 else profile[:, None], out.shape), rtol=0, atol=1e-12)
    centres = np.arange(16) + 0.5
    inside = (centres > lo) & (centres < lo + size)
    clear = np.minimum(np.abs(centres - lo), np.abs(centres - lo - size)) > 1e-4
    assert ((profile > 0.5) == inside)[clear].all()


@settings(max_examples=25)
@given(seed=st.integers(0, 2**31 - 1), D=st.integers(1, 6), M=st.integers(1, 28),
       h=st.integers(1, 40), w=st.integers(1, 40), double=st.booleans())
def test_paste_subpixel_matches_grid_sample(seed, D, M, h, w, double):
    # detectron2's paste is grid_sample(align_corners=False, zeros outside) at the pixel centres
    torch, _ = oracle()
    masks, boxes, dtype = _masks_and_boxes(seed, D, M, h, w, double, min_size=0.05)
    ours = paste_masks_in_image(masks, boxes, (h, w), method="subpixel")
    b = torch.from_numpy(boxes.astype(np.float64))
    gx = (torch.arange(w, dtype=torch.float64)[None] + 0.5 - b[:, :1]) / (b[:, 2:3] - b[:, :1])
    gy = (torch.arange(h, dtype=torch.float64)[None] + 0.5 - b[:, 1:2]) / (b[:, 3:4] - b[:, 1:2])
    grid = torch.stack([(2 * gx - 1)[:, None, :].expand(D, h, w),
                        (2 * gy - 1)[:, :, None].expand(D, h, w)], -1)
    ref = torch.nn.functional.grid_sample(torch.from_numpy(masks.astype(np.float64)), grid,
                                          mode="bilinear", padding_mode="zeros",
                                          align_corners=False).numpy()
    assert ours.shape == ref.shape == (D, 1, h, w) and ours.dtype == dtype
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12 if double else 1e-5)


def test_paste_methods_of_the_presets_and_unknown_method():
    assert get_config("tiny").mask_paste == "subpixel"
    assert get_config("torchvision_r50_fpn").mask_paste == "torchvision"
    assert get_config("matterport").mask_paste == "torchvision"
    with pytest.raises(ValueError, match="unknown paste method 'nearest'"):
        paste_masks_in_image(np.ones((1, 1, 2, 2)), np.array([[0.0, 0, 2, 2]]), (3, 3),
                             method="nearest")
    with pytest.raises(ValueError, match="unknown mask_paste"):
        get_config("tiny", mask_paste="nearest")


# ------------------------------------------------------------------------------------------------
# masks_from_logits
# ------------------------------------------------------------------------------------------------
def test_masks_from_logits_matches_maskrcnn_inference():
    torch, _ = oracle()
    from torchvision.models.detection.roi_heads import maskrcnn_inference
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(7, 5, 6, 6)) * 4).astype(np.float32)  # [D, K, M, M]
    labels = [rng.integers(1, 5, 4), rng.integers(1, 5, 3)]  # two images, 4 + 3 detections
    ours = masks_from_logits(logits, np.concatenate(labels))
    ref = torch.cat(maskrcnn_inference(torch.from_numpy(logits),
                                       [torch.from_numpy(v) for v in labels])).numpy()
    assert ours.shape == ref.shape == (7, 1, 6, 6) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=3e-7)  # a float32 step or two


def test_masks_from_logits_by_hand():
    # K = 2, class 1's logit ln 3 and background's 0 everywhere:
    #   sigmoid(ln 3) = 3 / (3 + 1) = 0.75; softmax(0, ln 3)[1] = 3 / (1 + 3) = 0.75 too
    # (with two channels, softmax over (a, b) is sigmoid(b - a)).
    logits = np.zeros((1, 2, 3, 3))
    logits[:, 1] = np.log(3.0)
    np.testing.assert_allclose(masks_from_logits(logits, [1]), 0.75)
    np.testing.assert_allclose(masks_from_logits(logits, [1], activation="softmax"), 0.75)
    # class 0's channel, as a class-agnostic head would give: sigmoid(0) = 0.5
    np.testing.assert_allclose(masks_from_logits(logits, [1], class_agnostic=True), 0.5)


def test_masks_from_logits_softmax_sums_to_one_over_classes():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 4, 5, 5)).astype(np.float32)
    total = sum(masks_from_logits(logits, [k, k], activation="softmax") for k in range(4))
    np.testing.assert_allclose(total, 1, atol=1e-6)


def test_masks_from_logits_edge_cases():
    assert masks_from_logits(np.zeros((0, 3, 28, 28), np.float32), []).shape == (0, 1, 28, 28)
    big = np.array([-200.0, 0.0, 200.0], np.float32).reshape(1, 1, 1, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings from exp
        np.testing.assert_array_equal(masks_from_logits(big, [0])[0, 0, 0], [0, 0.5, 1])
    with pytest.raises(ValueError):
        masks_from_logits(big, [0], activation="softmax", class_agnostic=True)
    with pytest.raises(ValueError):
        masks_from_logits(big, [0], activation="relu")


# ------------------------------------------------------------------------------------------------
# postprocess_detections
# ------------------------------------------------------------------------------------------------
def _tv_postprocess(class_logits, box_regression, proposals, image_shapes, score_thresh=0.05,
                    nms_thresh=0.5, detections_per_img=100):
    """torchvision's RoIHeads.postprocess_detections on a minimal stand-in for ``self``."""
    torch, _ = oracle()
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.roi_heads import RoIHeads
    heads = types.SimpleNamespace(box_coder=det_utils.BoxCoder((10.0, 10.0, 5.0, 5.0)),
                                  score_thresh=score_thresh, nms_thresh=nms_thresh,
                                  detections_per_img=detections_per_img)
    out = RoIHeads.postprocess_detections(
        heads, torch.from_numpy(class_logits), torch.from_numpy(box_regression),
        [torch.from_numpy(p) for p in proposals], image_shapes)
    return [[t.numpy() for t in per_image] for per_image in out]


def _check_same(ours, ref):
    for o_list, r_list, atol in zip(ours, ref, (1e-4, 1e-6, 0)):
        assert len(o_list) == len(r_list)
        for o, r in zip(o_list, r_list):
            assert o.shape == r.shape
            np.testing.assert_allclose(o, r, rtol=0, atol=atol)


def _proposals(rng, P, h, w):
    xy = rng.uniform(0, 0.7, (P, 2)) * [w, h]
    wh = rng.uniform(0.05, 0.4, (P, 2)) * [w, h]
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)  # [P, 4]


def test_postprocess_detections_by_hand():
    # One proposal (0, 0, 10, 10), K = 2, zero deltas: class 1's box is the proposal itself.
    # logits (0, ln 3): softmax = (1/4, 3/4) -> one detection, score 0.75, label 1.
    logits = np.array([[0.0, np.log(3.0)]], np.float32)
    deltas = np.zeros((1, 8), np.float32)
    proposals = [np.array([[0.0, 0.0, 10.0, 10.0]], np.float32)]
    boxes, scores, labels = postprocess_detections(logits, deltas, proposals, [(20, 20)])
    np.testing.assert_allclose(boxes[0], [[0, 0, 10, 10]])
    np.testing.assert_allclose(scores[0], [0.75], rtol=1e-6)
    np.testing.assert_array_equal(labels[0], [1])
    # in an 8x8 image the box is clipped to (0, 0, 8, 8)
    boxes, _, _ = postprocess_detections(logits, deltas, proposals, [(8, 8)])
    np.testing.assert_allclose(boxes[0], [[0, 0, 8, 8]])
    # class 1's dx = 10 * 0.2 shifts the box by 0.2 * w = 2 px (the weights divide the deltas)
    deltas[0, 4] = 2.0
    boxes, _, _ = postprocess_detections(logits, deltas, proposals, [(20, 20)])
    np.testing.assert_allclose(boxes[0], [[2, 0, 12, 10]], atol=1e-6)


@settings(max_examples=15)
@given(seed=st.integers(0, 2**31 - 1), K=st.sampled_from([2, 3, 6]),
       P=st.lists(st.integers(0, 20), min_size=1, max_size=3))
def test_postprocess_detections_matches_torchvision(seed, K, P):
    rng = np.random.default_rng(seed)
    image_shapes = [(int(rng.integers(40, 90)), int(rng.integers(40, 90))) for _ in P]
    proposals = [_proposals(rng, n, h, w) for n, (h, w) in zip(P, image_shapes)]
    R = sum(P)
    logits = (rng.normal(size=(R, K)) * 2).astype(np.float32)
    deltas = (rng.normal(size=(R, 4 * K)) * 0.5).astype(np.float32)
    ours = postprocess_detections(logits, deltas, proposals, image_shapes)
    ref = _tv_postprocess(logits, deltas, proposals, image_shapes)
    _check_same(ours, ref)
    for labels in ours[2]:
        assert labels.dtype == np.int64 and (labels >= 1).all()


def test_postprocess_detections_many_overlaps_and_top_k():
    # 60 proposals around a few objects, 4 classes: NMS has work to do, and the cap of 5 bites
    rng = np.random.default_rng(3)
    centres = rng.uniform(20, 60, (3, 2))
    c = centres[rng.integers(0, 3, 60)] + rng.normal(0, 2, (60, 2))
    proposals = [np.concatenate([c - 10, c + 10], 1).astype(np.float32)]
    logits = (rng.normal(size=(60, 4)) * 2).astype(np.float32)
    deltas = (rng.normal(size=(60, 16)) * 0.3).astype(np.float32)
    for cap in (100, 5):
        ours = postprocess_detections(logits, deltas, proposals, [(80, 80)], detections_per_img=cap)
        ref = _tv_postprocess(logits, deltas, proposals, [(80, 80)], detections_per_img=cap)
        _check_same(ours, ref)
    assert len(ours[0][0]) == 5


def test_postprocess_detections_ties():
    # Proposal 0: logits (0, 2, 2) -> classes 1 and 2 tie exactly, at e^2 / (1 + 2 e^2) = 0.468,
    #   with identical boxes (zero deltas). NMS is per class, so both stay, and the tie keeps
    #   the candidates' order: class 1 before class 2.
    # Proposals 1 and 2: the same box and logits (0, 1, -5) -> class 1 at
    #   e / (1 + e + e^-5) = 0.730 for both; the second is suppressed by the first (IoU 1 > 0.5).
    # Final order by score: proposal 1 class 1 (0.730), proposal 0 class 1, proposal 0 class 2.
    proposals = [np.array([[0, 0, 10, 10], [20, 20, 30, 30], [20, 20, 30, 30]], np.float32)]
    logits = np.array([[0, 2, 2], [0, 1, -5], [0, 1, -5]], np.float32)
    deltas = np.zeros((3, 12), np.float32)
    ours = postprocess_detections(logits, deltas, proposals, [(40, 40)])
    ref = _tv_postprocess(logits, deltas, proposals, [(40, 40)])
    _check_same(ours, ref)
    np.testing.assert_array_equal(ours[2][0], [1, 1, 2])
    np.testing.assert_allclose(ours[0][0], [[20, 20, 30, 30], [0, 0, 10, 10], [0, 0, 10, 10]])
    e = np.e
    np.testing.assert_allclose(ours[1][0], [e / (1 + e + e**-5)] + [e**2 / (1 + 2 * e**2)] * 2,
                               rtol=1e-6)


def test_postprocess_detections_nothing_above_threshold():
    rng = np.random.default_rng(4)
    proposals = [_proposals(rng, 6, 50, 50), _proposals(rng, 4, 50, 50)]
    logits = np.zeros((10, 3), np.float32)
    logits[:, 0] = 10.0  # background wins: foreground scores ~4.5e-5 < 0.05
    deltas = rng.normal(size=(10, 12)).astype(np.float32)
    ours = postprocess_detections(logits, deltas, proposals, [(50, 50)] * 2)
    ref = _tv_postprocess(logits, deltas, proposals, [(50, 50)] * 2)
    _check_same(ours, ref)
    for b, s, l in zip(*ours):
        assert b.shape == (0, 4) and s.shape == (0,) and l.shape == (0,)


def test_postprocess_detections_removes_small_boxes():
    # class 1 of proposal 0 decodes to a box 0.005 px wide (< 1e-2): dropped.
    # dw = 5 * log(0.005 / 10) makes exp(dw / 5) * 10 = 0.005.
    proposals = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)]
    logits = np.array([[0, 3], [0, 3]], np.float32)
    deltas = np.zeros((2, 8), np.float32)
    deltas[0, 6] = 5 * np.log(0.005 / 10)
    ours = postprocess_detections(logits, deltas, proposals, [(40, 40)])
    ref = _tv_postprocess(logits, deltas, proposals, [(40, 40)])
    _check_same(ours, ref)
    np.testing.assert_allclose(ours[0][0], [[20, 20, 30, 30]])
