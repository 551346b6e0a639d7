"""Box coding: encode/decode against torchvision's BoxCoder, by hand, and round trips.

Tolerances: the arithmetic is torchvision's operation for operation, but ``log`` and ``exp``
come from different float32 libraries (NumPy's vs torch's), which may differ in the last bit:
deltas agree to rtol 1e-6 (atol 1e-6), decoded boxes to rtol 1e-6 (atol 1e-4 px). In float64
the agreement is to 1e-12.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import oracle
from mrcnn_np.ops import BoxCoder, decode_boxes, encode_boxes
from mrcnn_np.ops.box_coder import BBOX_XFORM_CLIP, BOX_HEAD_WEIGHTS, RPN_WEIGHTS

WEIGHTS = [RPN_WEIGHTS, BOX_HEAD_WEIGHTS]


def test_encode_decode_by_hand():
    # anchor (0, 0, 10, 20): w = 10, h = 20, centre (5, 10)
    # gt     (2, 4, 22, 24): w = 20, h = 20, centre (12, 14)
    # weights (1, 1, 1, 1):  dx = (12 - 5) / 10 = 0.7      dy = (14 - 10) / 20 = 0.2
    #                        dw = log(20 / 10) = log 2     dh = log(20 / 20) = 0
    # weights (10, 10, 5, 5): each multiplied: (7, 2, 5 log 2, 0)
    anchor = np.array([[0, 0, 10, 20]], np.float64)
    gt = np.array([[2, 4, 22, 24]], np.float64)
    np.testing.assert_allclose(encode_boxes(gt, anchor), [[0.7, 0.2, math.log(2), 0]], atol=1e-15)
    np.testing.assert_allclose(BoxCoder((10, 10, 5, 5)).encode(gt, anchor),
                               [[7, 2, 5 * math.log(2), 0]], atol=1e-14)
    # decode back: centre (5 + 0.7 * 10, 10 + 0.2 * 20) = (12, 14), size (10 * 2, 20 * 1)
    np.testing.assert_allclose(decode_boxes([[0.7, 0.2, math.log(2), 0]], anchor), gt, atol=1e-13)


def test_decode_clamps_dw_dh():
    # dw = 100 is clamped to log(1000/16): the box grows at most 62.5x
    anchor = np.array([[0, 0, 16, 16]], np.float64)
    out = decode_boxes([[0, 0, 100, -100]], anchor)
    assert out[0, 2] - out[0, 0] == pytest.approx(1000.0)              # 16 * 62.5
    assert out[0, 3] - out[0, 1] == pytest.approx(16 * math.exp(-100))  # no clamp below
    assert BBOX_XFORM_CLIP == pytest.approx(math.log(62.5))


def test_shapes_dtypes_empty():
    coder = BoxCoder()
    rel = np.zeros((3, 8), np.float32)                    # K = 2 classes
    boxes = np.array([[0, 0, 4, 4]] * 3, np.float32)
    out = coder.decode(rel, boxes)
    assert out.shape == (3, 2, 4) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.broadcast_to(boxes[:, None], (3, 2, 4)))
    assert coder.decode_single(rel, boxes).shape == (3, 8)
    assert coder.decode(np.zeros((0, 8), np.float32), np.zeros((0, 4), np.float32)).shape == (0, 2, 4)
    assert coder.encode(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 4)
    assert coder.encode(boxes, boxes).dtype == np.float32
    # per-image lists, as torchvision's decode takes them
    assert coder.decode(rel, [boxes[:1], boxes[1:]]).shape == (3, 2, 4)


@st.composite
def box_pairs(draw, max_n=10):
    n = draw(st.integers(1, max_n))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-50, 200, (n, 2))
    a = np.concatenate([xy, xy + rng.uniform(4, 100, (n, 2))], 1)   # sizes 4..100: ratios
    xy = rng.uniform(-50, 200, (n, 2))                                # below the 62.5 clamp
    b = np.concatenate([xy, xy + rng.uniform(4, 100, (n, 2))], 1)
    if draw(st.booleans()):
        b[: n // 2] = a[: n // 2]                                    # some identical pairs
    return a, b


@given(box_pairs(), st.sampled_from(WEIGHTS))
def test_round_trip(pair, weights):
    gt, anchors = pair
    coder = BoxCoder(weights)
    deltas = coder.encode(gt, anchors)                               # [R, 4]
    np.testing.assert_allclose(coder.decode(deltas, anchors)[:, 0], gt, rtol=1e-12, atol=1e-10)


@pytest.mark.oracle
@given(box_pairs(), st.sampled_from(WEIGHTS), st.sampled_from([np.float32, np.float64]),
       st.integers(1, 3))
def test_vs_torchvision(pair, weights, dtype, num_classes):
    torch, tv = oracle()
    from torchvision.models.detection._utils import BoxCoder as TVBoxCoder
    gt, anchors = (x.astype(dtype) for x in pair)
    ours, theirs = BoxCoder(weights), TVBoxCoder(weights)
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    d_ref = theirs.encode_single(torch.from_numpy(gt), torch.from_numpy(anchors)).numpy()
    d = ours.encode(gt, anchors)
    assert d.dtype == dtype
    np.testing.assert_allclose(d, d_ref, **tol)
    # decode K classes' deltas, some beyond the clamp
    rng = np.random.default_rng(len(gt))
    rel = rng.normal(0, 1.5, (len(gt), 4 * num_classes)).astype(dtype)
    rel[:, 2::4] *= 3                                               # dw up to ~ +-13 > 4.135
    out_ref = theirs.decode(torch.from_numpy(rel), [torch.from_numpy(anchors)]).numpy()
    out = ours.decode(rel, anchors)
    assert out.shape == out_ref.shape == (len(gt), num_classes, 4) and out.dtype == dtype
    tol = dict(rtol=1e-6, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(out, out_ref, **tol)
