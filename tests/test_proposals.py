"""The proposal layer against torchvision's RegionProposalNetwork (decode + filter_proposals).

Tolerances: the kept boxes, their number and their order are compared exactly; scores to
rtol 1e-6 (NumPy's and torch's float32 ``exp`` in the sigmoid may differ in the last bit) and
boxes to rtol 1e-6 / atol 1e-4 px (the same, in decoding). Logits are drawn distinct, except
in the tie test, which stays in the range where torchvision's sort is stable (<= 16 boxes).
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import oracle
from mrcnn_np.ops import AnchorGenerator, generate_proposals
from mrcnn_np.ops.proposals import top_n_idx


def tv_rpn(pre_nms_top_n, post_nms_top_n, nms_thresh=0.7, score_thresh=0.0):
    torch, tv = oracle()
    from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
    from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
    rpn = RegionProposalNetwork(TVAnchorGenerator(), RPNHead(1, 3), 0.7, 0.3, 256, 0.5,
                                dict(training=pre_nms_top_n, testing=pre_nms_top_n),
                                dict(training=post_nms_top_n, testing=post_nms_top_n),
                                nms_thresh, score_thresh)
    return rpn.eval()


def tv_proposals(rpn, objectness, deltas, anchors, image_sizes, num_anchors_per_level):
    torch, _ = oracle()
    n = objectness.shape[0]
    proposals = rpn.box_coder.decode(torch.from_numpy(deltas.reshape(-1, 4)),
                                     [torch.from_numpy(anchors)] * n).view(n, -1, 4)
    boxes, scores = rpn.filter_proposals(proposals, torch.from_numpy(objectness),
                                         image_sizes, num_anchors_per_level)
    return [b.numpy() for b in boxes], [s.numpy() for s in scores]


def assert_same_proposals(ours, theirs):
    for b, s, tb, ts in zip(*ours, *theirs):
        assert b.shape == tb.shape and s.shape == ts.shape, (b.shape, tb.shape)
        assert b.dtype == np.float32 and s.dtype == np.float32
        np.testing.assert_allclose(s, ts, rtol=1e-6, atol=0)
        np.testing.assert_allclose(b, tb, rtol=1e-6, atol=1e-4)


def make_inputs(seed, n, image_size, feature_sizes, spread=1.0):
    rng = np.random.default_rng(seed)
    gen = AnchorGenerator()
    anchors = gen(image_size, feature_sizes)                            # [A, 4]
    per_level = gen.num_anchors_per_level(feature_sizes)                # [L]
    a = anchors.shape[0]
    objectness = (rng.permutation(n * a).reshape(n, a) / (n * a) * 8 - 4).astype(np.float32)
    deltas = (rng.normal(0, 0.3, (n, a, 4)) * spread).astype(np.float32)  # [N, A, 4]
    return objectness, deltas, anchors, per_level


@pytest.mark.oracle
@given(st.integers(0, 2**16), st.integers(1, 2), st.sampled_from([10, 60, 1000]),
       st.sampled_from([5, 50, 2000]), st.sampled_from([0.5, 0.7]),
       st.sampled_from([0.0, 0.3]), st.booleans())
def test_vs_torchvision(seed, n, pre, post, nms_thresh, score_thresh, big):
    # big: 128 x 128 -> 4,092 anchors; with pre = 1000 more than 1,000 boxes reach NMS, so
    # both libraries take batched_nms's per-class path; otherwise the coordinate trick.
    if big:
        image_size, feature_sizes = (128, 128), [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    else:
        image_size, feature_sizes = (64, 48), [(16, 12), (8, 6), (4, 3), (2, 2), (1, 1)]
    objectness, deltas, anchors, per_level = make_inputs(seed, n, image_size, feature_sizes, 3.0)
    image_sizes = [(image_size[0] - 7 * i, image_size[1] - 3 * i) for i in range(n)]
    rpn = tv_rpn(pre, post, nms_thresh, score_thresh)
    ref = tv_proposals(rpn, objectness, deltas, anchors, image_sizes, per_level)
    for backend in ("numpy", "numba"):
        ours = generate_proposals(objectness, deltas, anchors, image_sizes, per_level, pre, post,
                                  nms_thresh, score_thresh=score_thresh, backend=backend)
        assert_same_proposals(ours, ref)


def canonical(boxes, scores):
    """Sort by (score desc, x1, y1, x2, y2): the order among equal scores is not compared."""
    order = np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], -scores))
    return boxes[order], scores[order]


@pytest.mark.oracle
def test_ties_identical_and_zero_area_vs_torchvision():
    # One level, 2x2 locations x 3 anchors = 12 anchors in an 8x8 image (stride 4). Logits
    # tie in groups; anchors 0 and 1 are made identical (same box, same logit), so whichever
    # of the two is visited first, NMS keeps the same box. torch.topk orders equal logits
    # arbitrarily (we measured [.., 1, 0, ..]), so the order *among equal scores* is not
    # compared; which boxes survive, and their scores, are.
    feature_sizes = [(2, 2)]
    gen = AnchorGenerator(((4,),), ((0.5, 1.0, 2.0),))
    anchors = gen((8, 8), feature_sizes)                               # [12, 4]
    anchors[1] = anchors[0]                                            # identical boxes
    objectness = np.array([[2, 2, 1, 1, 3, 3, 0, 0, 1, 2, -1, -1]], np.float32)  # ties
    deltas = np.zeros((1, 12, 4), np.float32)
    deltas[0, 5, 2] = -30          # width * e^-30: a zero-area box after decoding -> removed
    deltas[0, 6, 3] = -30          # the same in height
    rpn = tv_rpn(10, 8, 0.5)
    (tb,), (ts,) = tv_proposals(rpn, objectness, deltas, anchors, [(8, 8)], [12])
    for backend in ("numpy", "numba"):
        (b,), (s,) = generate_proposals(objectness, deltas, anchors, [(8, 8)], [12], 10, 8, 0.5,
                                        backend=backend)
        # top 10 logits: anchors 4, 5, 0, 1, 9, 2, 3, 8, 6, 7; 5 and 6 are zero-area (removed),
        # 1 duplicates 0 (suppressed): 7 left
        assert b.shape == tb.shape == (7, 4)
        np.testing.assert_array_equal(s, np.sort(s)[::-1])             # by decreasing score
        for x, y in zip(canonical(b, s), canonical(tb, ts)):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6)
    assert not np.any(np.all(b == anchors[5], axis=1))                 # zero-area box gone


def test_pipeline_by_hand():
    # 2 anchors in one level, image 10 x 10:
    #   a0 = (0, 0, 4, 4), logit 2 -> score sigmoid(2) = 0.881, deltas 0: stays (0, 0, 4, 4)
    #   a1 = (1, 0, 5, 4), logit 1 -> 0.731; IoU with a0 = 12 / 20 = 0.6 > 0.5: suppressed
    # a third anchor (8, 8, 14, 14) sticks out: clipped to (8, 8, 10, 10), kept (no overlap)
    anchors = np.array([[0, 0, 4, 4], [1, 0, 5, 4], [8, 8, 14, 14]], np.float32)
    objectness = np.array([[2, 1, 0]], np.float32)
    deltas = np.zeros((1, 3, 4), np.float32)
    (boxes,), (scores,) = generate_proposals(objectness, deltas, anchors, [(10, 10)], [3],
                                             pre_nms_top_n=3, post_nms_top_n=5, nms_thresh=0.5)
    np.testing.assert_array_equal(boxes, [[0, 0, 4, 4], [8, 8, 10, 10]])
    np.testing.assert_allclose(scores, [1 / (1 + np.exp(-2)), 0.5], rtol=1e-6)
    # post_nms_top_n = 1 keeps the best only; score_thresh = 0.6 drops the 0.5 box
    (b1,), _ = generate_proposals(objectness, deltas, anchors, [(10, 10)], [3], 3, 1, 0.5)
    np.testing.assert_array_equal(b1, [[0, 0, 4, 4]])
    (b2,), _ = generate_proposals(objectness, deltas, anchors, [(10, 10)], [3], 3, 5, 0.5,
                                  score_thresh=0.6)
    np.testing.assert_array_equal(b2, [[0, 0, 4, 4]])


def test_top_n_per_level_and_ties():
    ob = np.array([[0, 5, 5, 1, 9, 3, 3, 3]], np.float32)   # levels of 3 and 5 anchors
    np.testing.assert_array_equal(top_n_idx(ob, [3, 5], 2), [[1, 2, 4, 5]])  # ties: lower first
    np.testing.assert_array_equal(top_n_idx(ob, [3, 5], 10), [[1, 2, 0, 4, 5, 6, 7, 3]])


def test_empty_and_all_removed():
    anchors = np.array([[0, 0, 4, 4]], np.float32)
    ob = np.zeros((2, 1), np.float32)
    deltas = np.zeros((2, 1, 4), np.float32)
    deltas[1, 0, 2] = -200                                   # image 1: the box vanishes
    boxes, scores = generate_proposals(ob, deltas, anchors, [(8, 8), (8, 8)], [1], 5, 5)
    assert boxes[0].shape == (1, 4) and boxes[1].shape == (0, 4) and scores[1].shape == (0,)
    boxes, scores = generate_proposals(np.zeros((1, 0), np.float32), np.zeros((1, 0, 4), np.float32),
                                       np.zeros((0, 4), np.float32), [(8, 8)], [0], 5, 5)
    assert boxes[0].shape == (0, 4) and scores[0].shape == (0,)


def test_inputs_untouched_and_numba_equals_numpy():
    objectness, deltas, anchors, per_level = make_inputs(3, 2, (64, 64),
                                                         [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)])
    copies = [x.copy() for x in (objectness, deltas, anchors)]
    a = generate_proposals(objectness, deltas, anchors, [(64, 64), (50, 60)], per_level, 100, 50,
                           backend="numpy")
    b = generate_proposals(objectness, deltas, anchors, [(64, 64), (50, 60)], per_level, 100, 50,
                           backend="numba")
    for x, y in zip(a[0] + a[1], b[0] + b[1]):
        np.testing.assert_array_equal(x, y)
    for x, c in zip((objectness, deltas, anchors), copies):
        np.testing.assert_array_equal(x, c)
