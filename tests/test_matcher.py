"""Matcher, balanced sampler and RPN targets (chapter 04).

Tolerances: matches and labels are compared exactly; regression targets agree with
torchvision's to rtol 1e-6 / atol 1e-6 (float32 ``log`` of two libraries).
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import oracle
from mrcnn_np.ops import BalancedPositiveNegativeSampler, Matcher, box_iou, build_rpn_targets
from mrcnn_np.ops.rpn_targets import match_anchors
from test_boxes import boxes_st

BELOW, BETWEEN = Matcher.BELOW_LOW_THRESHOLD, Matcher.BETWEEN_THRESHOLDS


def test_sentinels_named():
    assert (BELOW, BETWEEN) == (-1, -2)


def test_matcher_by_hand():
    # IoU of 2 GT boxes (rows) with 5 anchors (columns); thresholds 0.7 / 0.3
    #           a0    a1    a2    a3    a4
    #   gt0   0.80  0.50  0.10  0.20  0.00
    #   gt1   0.75  0.20  0.65  0.20  0.00
    # best GT per anchor:  a0 -> gt0 (0.80 >= 0.7: match 0)
    #                      a1 -> gt0 (0.50, between: -2)   a2 -> gt1 (0.65, between: -2)
    #                      a3 -> gt0 (tie 0.20/0.20 -> lower index gt0; 0.2 < 0.3: -1)
    #                      a4 -> gt0 (0.00 < 0.3: -1)
    # low-quality step: gt0's best is 0.80 (a0, already matched); gt1's best is 0.75 (a0,
    # whose own best is gt0 -> stays 0). gt1 gets no anchor: the step restores an anchor's
    # *own* best match, it does not assign gt1.
    q = np.array([[0.80, 0.50, 0.10, 0.20, 0.0],
                  [0.75, 0.20, 0.65, 0.20, 0.0]], np.float32)
    np.testing.assert_array_equal(Matcher(0.7, 0.3)(q), [0, BETWEEN, BETWEEN, BELOW, BELOW])
    np.testing.assert_array_equal(Matcher(0.7, 0.3, True)(q), [0, BETWEEN, BETWEEN, BELOW, BELOW])
    # now gt1's best anchor is a2 (0.65 < 0.7): low-quality matching gives a2 to gt1,
    # and a tie for gt1's best (a2 and a3 both 0.65) restores both
    q[1, 0] = 0.6
    np.testing.assert_array_equal(Matcher(0.7, 0.3, True)(q), [0, BETWEEN, 1, BELOW, BELOW])
    q[1, 3] = 0.65
    np.testing.assert_array_equal(Matcher(0.7, 0.3, True)(q), [0, BETWEEN, 1, 1, BELOW])


def test_matcher_empty():
    m = Matcher(0.7, 0.3, True)
    np.testing.assert_array_equal(m(np.zeros((0, 4), np.float32)), [BELOW] * 4)  # no GT
    assert m(np.zeros((3, 0), np.float32)).shape == (0,)                          # no anchors
    with pytest.raises(ValueError):
        Matcher(0.3, 0.7)


@pytest.mark.oracle
@given(boxes_st(min_n=1, max_n=5), boxes_st(min_n=1, max_n=30), st.booleans(),
       st.sampled_from([(0.7, 0.3), (0.5, 0.5), (0.6, 0.2)]))
def test_matcher_vs_torchvision(gt, anchors, low_quality, thresholds):
    torch, tv = oracle()
    from torchvision.models.detection._utils import Matcher as TVMatcher
    q = box_iou(gt, anchors)                      # coarse grid: many ties, some nan
    ref = TVMatcher(*thresholds, allow_low_quality_matches=low_quality)(torch.from_numpy(q))
    np.testing.assert_array_equal(Matcher(*thresholds, low_quality)(q), ref.numpy())


@pytest.mark.oracle
@given(st.integers(1, 4), st.integers(1, 40), st.integers(0, 2**16))
def test_matcher_vs_torchvision_tied_values(g, a, seed):
    torch, tv = oracle()
    from torchvision.models.detection._utils import Matcher as TVMatcher
    q = (np.random.default_rng(seed).integers(0, 5, (g, a)) / 4).astype(np.float32)  # ties
    for low_quality in (False, True):
        ref = TVMatcher(0.7, 0.3, allow_low_quality_matches=low_quality)(torch.from_numpy(q))
        np.testing.assert_array_equal(Matcher(0.7, 0.3, low_quality)(q), ref.numpy())


# ----------------------------------------------------------------------------------------------
# Sampler
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_pos,n_neg,n_ign,exp_pos,exp_neg", [
    (500, 5000, 100, 128, 128),   # plenty of both: 50% of 256
    (20, 5000, 100, 20, 236),     # few positives: negatives fill the batch
    (500, 30, 0, 128, 30),        # few negatives: the batch stays short (no refill)
    (0, 0, 50, 0, 0),             # nothing to sample
])
def test_sampler_counts(n_pos, n_neg, n_ign, exp_pos, exp_neg):
    labels = np.concatenate([np.ones(n_pos), np.zeros(n_neg), -np.ones(n_ign)]).astype(np.int64)
    labels = np.random.default_rng(1).permutation(labels)
    (pos,), (neg,) = BalancedPositiveNegativeSampler(256, 0.5)([labels], np.random.default_rng(0))
    assert pos.sum() == exp_pos and neg.sum() == exp_neg
    assert np.all(labels[pos] == 1) and np.all(labels[neg] == 0) and not np.any(pos & neg)


def test_sampler_seed_and_uniformity():
    labels = np.array([1] * 10 + [0] * 90)
    sampler = BalancedPositiveNegativeSampler(8, 0.25)           # 2 positives, 6 negatives
    a = sampler([labels, labels], np.random.default_rng(42))
    b = sampler([labels, labels], np.random.default_rng(42))
    c = sampler([labels, labels], np.random.default_rng(43))
    for x, y in zip(a[0] + a[1], b[0] + b[1]):
        np.testing.assert_array_equal(x, y)                    # same seed, same draw
    assert any(not np.array_equal(x, y) for x, y in zip(a[0] + a[1], c[0] + c[1]))
    # uniform: over 2000 draws each positive is picked ~ 2000 * 2/10 = 400 times
    rng = np.random.default_rng(0)
    counts = np.zeros(100)
    for _ in range(2000):
        (p,), (n,) = sampler([labels], rng)
        counts += p + n
    assert np.all(np.abs(counts[:10] - 400) < 4 * np.sqrt(400 * 0.8))     # 4 sigma
    assert np.all(np.abs(counts[10:] - 2000 * 6 / 90) < 4 * np.sqrt(2000 * 6 / 90))


# ----------------------------------------------------------------------------------------------
# RPN targets
# ----------------------------------------------------------------------------------------------
def test_rpn_targets_by_hand():
    anchors = np.array([[0, 0, 10, 10],      # = gt: IoU 1 -> positive
                        [0, 0, 10, 20],      # IoU 100/200 = 0.5 -> between -> ignored
                        [50, 50, 60, 60],    # IoU 0 -> negative
                        [5, 0, 15, 10]],     # IoU 50/150 = 0.333 -> between -> ignored
                       np.float32)
    gt = np.array([[0, 0, 10, 10]], np.float32)
    labels, reg, matched = build_rpn_targets(anchors, gt, np.random.default_rng(0))
    np.testing.assert_array_equal(matched, [0, BETWEEN, BELOW, BETWEEN])
    np.testing.assert_array_equal(labels, [1, -1, 0, -1])
    # anchor 1 (centre (5, 10), w 10, h 20) -> gt (centre (5, 5), w 10, h 10):
    # dx = 0, dy = (5 - 10) / 20 = -0.25, dw = log 1 = 0, dh = log(10/20) = -0.693
    np.testing.assert_allclose(reg[1], [0, -0.25, 0, np.log(0.5)], rtol=1e-6)
    np.testing.assert_allclose(reg[0], 0, atol=0)
    assert reg.dtype == np.float32 and labels.dtype == np.int64


def test_rpn_targets_no_gt_and_sampling():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, (3000, 2))
    anchors = np.concatenate([xy, xy + 40], 1).astype(np.float32)
    labels, reg, matched = build_rpn_targets(anchors, np.zeros((0, 4), np.float32), rng)
    assert (labels == 0).sum() == 256 and (labels == 1).sum() == 0 and (labels == -1).sum() == 2744
    assert np.all(matched == BELOW) and np.all(reg == 0) and reg.shape == (3000, 4)
    gt = anchors[:40] + 2                          # 40 objects: >= 40 positives
    labels, reg, matched = build_rpn_targets(anchors, gt, rng)
    assert (labels == 1).sum() <= 128 and (labels == 1).sum() + (labels == 0).sum() == 256
    assert np.all(matched[labels == 1] >= 0) and np.all(matched[labels == 0] == BELOW)
    # every GT keeps at least one anchor before sampling (low-quality matches)
    assert set(matched[matched >= 0]) == set(range(40))
    # seed reproducibility
    a = build_rpn_targets(anchors, gt, np.random.default_rng(7))
    b = build_rpn_targets(anchors, gt, np.random.default_rng(7))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.oracle
@given(boxes_st(min_n=0, max_n=4), boxes_st(min_n=1, max_n=40))
def test_rpn_assignment_vs_torchvision(gt, anchors):
    """Labels before sampling and regression targets == torchvision's
    assign_targets_to_anchors + box_coder.encode."""
    torch, tv = oracle()
    from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
    from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
    anchors = anchors + np.float32(0.25)
    anchors[:, 2:] += 1                                # positive-size anchors (finite deltas)
    rpn = RegionProposalNetwork(TVAnchorGenerator(), RPNHead(1, 3), 0.7, 0.3, 256, 0.5,
                                dict(training=10, testing=10), dict(training=10, testing=10), 0.7)
    t_labels, t_matched_gt = rpn.assign_targets_to_anchors(
        [torch.from_numpy(anchors)], [{"boxes": torch.from_numpy(gt)}])
    labels, _ = match_anchors(anchors, gt)
    np.testing.assert_array_equal(labels, t_labels[0].numpy().astype(np.int64))
    if len(gt):
        t_reg = rpn.box_coder.encode(t_matched_gt, [torch.from_numpy(anchors)])[0].numpy()
        _, reg, _ = build_rpn_targets(anchors, gt, np.random.default_rng(0))
        np.testing.assert_allclose(reg, t_reg, rtol=1e-6, atol=1e-6)
