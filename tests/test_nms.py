"""NMS and batched NMS: the six-box walk-through, the tie rule, backends, torchvision.

Tolerances: none; kept indices are compared exactly. torchvision's CPU NMS sorts scores with
an unstable sort above 16 boxes, so where scores tie among more than 16 boxes we hand
torchvision tie-free scores with the same order as our stable sort (ranks), and compare.
"""
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import oracle
from mrcnn_np.ops import batched_nms, nms
from mrcnn_np.ops._backend import BackendUnavailable
from mrcnn_np.ops.nms import (batched_nms_coordinate_trick, batched_nms_per_class, nms_steps,
                              score_order)
from test_boxes import boxes_st

BACKENDS = ("numpy", "numba")

# The walk-through of chapter 06: two people, six boxes.
#   person A stands at x 10..60, person B at x 70..120 (they do not overlap).
#   idx  box                    score  whose  IoU with the box that suppresses it
#   0    (10, 20, 60, 140)      0.95   A      (kept first)
#   1    (12, 22, 62, 142)      0.90   A      with 0: inter 48*118 = 5664, areas 6000 + 6000,
#                                             union 6336, IoU = 0.894 > 0.6
#   2    (70, 30, 120, 150)     0.90   B      with 0: no overlap, IoU 0 -> kept in pass 2
#   3    (74, 34, 122, 150)     0.80   B      with 2: inter 46*116 = 5336, areas 6000 + 5568,
#                                             union 6232, IoU = 0.856 > 0.6
#   4    (5, 15, 58, 138)       0.70   A      with 0: inter 48*118 = 5664, areas 6000 + 6519,
#                                             union 6855, IoU = 0.826 > 0.6
#   5    (66, 26, 118, 146)     0.70   B      with 2: inter 48*116 = 5568, areas 6000 + 6240,
#                                             union 6672, IoU = 0.835 > 0.6
# Pass 1 keeps 0 (0.95) and suppresses 1 and 4; left: 2 (0.9), 3 (0.8), 5 (0.7).
# Pass 2 keeps 2 (0.9) and suppresses 3 and 5. Result: [0, 2]. (Boxes 1 and 2 tie at 0.9;
# box 1 comes first by the tie rule, but it is already gone.)
SIX_BOXES = np.array([[10, 20, 60, 140], [12, 22, 62, 142], [70, 30, 120, 150],
                      [74, 34, 122, 150], [5, 15, 58, 138], [66, 26, 118, 146]], np.float32)
SIX_SCORES = np.array([0.95, 0.9, 0.9, 0.8, 0.7, 0.7], np.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_six_box_walkthrough(backend):
    keep = nms(SIX_BOXES, SIX_SCORES, 0.6, backend=backend)
    assert keep.dtype == np.int64
    np.testing.assert_array_equal(keep, [0, 2])


def test_six_box_steps():
    steps = nms_steps(SIX_BOXES, SIX_SCORES, 0.6)
    assert [s["keep"] for s in steps] == [0, 2]
    assert steps[0]["suppressed"] == [1, 4] and steps[0]["remaining"] == [2, 3, 5]
    assert steps[1]["suppressed"] == [3, 5] and steps[1]["remaining"] == []
    np.testing.assert_allclose(steps[0]["ious"], [5664 / 6336, 5664 / 6855], rtol=1e-6)
    np.testing.assert_allclose(steps[1]["ious"], [5336 / 6232, 5568 / 6672], rtol=1e-6)


@pytest.mark.oracle
def test_six_box_walkthrough_vs_torchvision():
    torch, tv = oracle()
    ref = tv.ops.nms(torch.from_numpy(SIX_BOXES), torch.from_numpy(SIX_SCORES), 0.6).numpy()
    np.testing.assert_array_equal(ref, [0, 2])


@pytest.mark.parametrize("backend", BACKENDS)
def test_tie_rule_and_edge_cases(backend):
    box = [0, 0, 10, 10]
    # three identical boxes, equal scores: the lowest index survives
    np.testing.assert_array_equal(nms(np.array([box] * 3, np.float32), np.ones(3, np.float32),
                                      0.5, backend=backend), [0])
    # equal scores, apart: all kept, in index order
    apart = np.array([[0, 0, 1, 1], [5, 5, 6, 6], [2, 2, 3, 3]], np.float32)
    np.testing.assert_array_equal(nms(apart, np.zeros(3, np.float32), 0.5, backend=backend),
                                  [0, 1, 2])
    # empty, and one box
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5,
               backend=backend).shape == (0,)
    np.testing.assert_array_equal(nms(np.array([box], np.float32), np.array([0.3], np.float32),
                                      0.5, backend=backend), [0])
    # zero-area boxes: IoU 0/0 = nan never suppresses, even two identical points
    pts = np.array([[3, 3, 3, 3], [3, 3, 3, 3], [3, 3, 3, 7]], np.float32)
    np.testing.assert_array_equal(nms(pts, np.array([0.2, 0.9, 0.5], np.float32), 0.0,
                                      backend=backend), [1, 2, 0])
    # IoU exactly at the threshold is kept ("> t" suppresses): IoU((0,0,2,1), (1,0,3,1)) = 1/3
    two = np.array([[0, 0, 2, 1], [1, 0, 3, 1]], np.float64)
    np.testing.assert_array_equal(nms(two, np.array([1.0, 0.5]), 1 / 3, backend=backend), [0, 1])
    np.testing.assert_array_equal(nms(two, np.array([1.0, 0.5]), 0.33, backend=backend), [0])


def test_threshold_compared_in_float64():
    # IoU of (0,0,5,1) and (2,0,5,1): inter 3, union 5, IoU float32(0.6) = 0.60000002384...
    # torchvision compares the float32 IoU with the double threshold 0.6: 0.6000000238 > 0.6,
    # so the second box is suppressed (a float32 comparison would say 0.6f > 0.6f: false).
    b = np.array([[0, 0, 5, 1], [2, 0, 5, 1]], np.float32)
    for backend in BACKENDS:
        np.testing.assert_array_equal(nms(b, np.array([1, 0], np.float32), 0.6, backend=backend),
                                      [0])


@st.composite
def nms_case(draw, max_n=40):
    boxes = draw(boxes_st(max_n=max_n))
    n = len(boxes)
    scores = np.array(draw(st.lists(st.integers(0, 6), min_size=n, max_size=n)), np.float32) / 6
    thr = draw(st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]))
    return boxes, scores, thr


@given(nms_case(), st.sampled_from([np.float32, np.float64]))
def test_numba_equals_numpy(case, dtype):
    boxes, scores, thr = case
    boxes = boxes.astype(dtype)
    ref = nms(boxes, scores, thr, backend="numpy")
    np.testing.assert_array_equal(nms(boxes, scores, thr, backend="numba"), ref)
    # and the plain port of torchvision's loop (kernel version 2) agrees too
    from kernels.nms_numba import nms_sorted
    order = score_order(scores)
    b = boxes[order]
    pos = nms_sorted(*[np.ascontiguousarray(b[:, k]) for k in range(4)], np.float64(thr),
                     b.dtype.type(0))
    np.testing.assert_array_equal(order[pos], ref)
    # malformed boxes (x2 < x1) must not fool the x-sweep's pruning either
    flipped = boxes[:, [2, 1, 0, 3]]
    np.testing.assert_array_equal(nms(flipped, scores, thr, backend="numba"),
                                  nms(flipped, scores, thr, backend="numpy"))


def tie_free_scores(scores):
    """Distinct scores with the same order as our stable descending sort."""
    ranks = np.empty(len(scores), np.float32)
    ranks[score_order(scores)] = np.arange(len(scores), 0, -1)
    return ranks


@pytest.mark.oracle
@given(nms_case())
def test_nms_vs_torchvision(case):
    torch, tv = oracle()
    boxes, scores, thr = case
    tb = torch.from_numpy(boxes)
    if len(boxes) <= 16:   # torchvision's sort is stable here: ties compared as they are
        ref = tv.ops.nms(tb, torch.from_numpy(scores), thr).numpy()
    else:                  # above 16 its ties are unspecified: give it our order, tie-free
        ref = tv.ops.nms(tb, torch.from_numpy(tie_free_scores(scores)), thr).numpy()
    for backend in BACKENDS:
        np.testing.assert_array_equal(nms(boxes, scores, thr, backend=backend), ref)


@pytest.mark.oracle
@given(st.integers(0, 2**16), st.sampled_from([1, 5, 200, 1500]), st.integers(1, 6),
       st.sampled_from([0.3, 0.5, 0.7]))
def test_batched_nms_vs_torchvision(seed, n, num_classes, thr):
    # n <= 1000 takes the coordinate trick, n > 1000 one NMS per class, in both libraries
    torch, tv = oracle()
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 60, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, 20, (n, 2))], 1).astype(np.float32)
    scores = rng.permutation(n).astype(np.float32)             # distinct
    idxs = rng.integers(0, num_classes, n)
    ref = tv.ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                             torch.from_numpy(idxs), thr).numpy()
    for backend in BACKENDS:
        np.testing.assert_array_equal(batched_nms(boxes, scores, idxs, thr, backend=backend), ref)


@given(nms_case(max_n=30), st.integers(1, 4), st.integers(0, 2**16))
def test_batched_paths_agree(case, num_classes, seed):
    boxes, scores, thr = case
    idxs = np.random.default_rng(seed).integers(0, num_classes, len(boxes))
    ref = batched_nms_per_class(boxes, scores, idxs, thr, backend="numpy")
    # one NMS per class == one class-aware pass (numba), tie rule included
    np.testing.assert_array_equal(batched_nms_per_class(boxes, scores, idxs, thr,
                                                        backend="numba"), ref)
    # and the per-class result equals NMS of each class alone
    for c in np.unique(idxs):
        members = np.nonzero(idxs == c)[0]
        alone = members[nms(boxes[members], scores[members], thr, backend="numpy")]
        np.testing.assert_array_equal(ref[np.isin(ref, members)], alone)
    if np.all(boxes * 2 == np.round(boxes * 2)):  # half-pixel grid: the trick's shift is exact
        for backend in BACKENDS:
            np.testing.assert_array_equal(
                batched_nms_coordinate_trick(boxes, scores, idxs, thr, backend=backend), ref)


def test_batched_nms_empty_and_single():
    for backend in BACKENDS:
        e = batched_nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                        np.zeros(0, np.int64), 0.5, backend=backend)
        assert e.shape == (0,) and e.dtype == np.int64
        np.testing.assert_array_equal(
            batched_nms(np.array([[0, 0, 1, 1]], np.float32), np.array([0.5], np.float32),
                        np.array([3]), 0.5, backend=backend), [0])
        # identical boxes in different classes do not suppress each other
        same = np.array([[0, 0, 4, 4]] * 3, np.float32)
        np.testing.assert_array_equal(
            batched_nms(same, np.array([0.1, 0.9, 0.5], np.float32), np.array([0, 1, 0]), 0.5,
                        backend=backend), [1, 2])


def test_cuda_backend_without_kernel_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "kernels.nms_cuda", None)  # importing it now fails
    with pytest.raises(BackendUnavailable, match="nms_cuda"):
        nms(SIX_BOXES, SIX_SCORES, 0.6, backend="cuda")


def test_unknown_backend():
    with pytest.raises(ValueError):
        nms(SIX_BOXES, SIX_SCORES, 0.6, backend="gpu")


@pytest.mark.cudasim
def test_cuda_backend_dispatches_to_the_kernel():
    # kernels/nms_cuda.py (the GPU issue) must share our tie rule; a tiny case in the simulator
    np.testing.assert_array_equal(nms(SIX_BOXES, SIX_SCORES, 0.6, backend="cuda"), [0, 2])
    same = np.array([[0, 0, 10, 10]] * 3 + [[20, 20, 30, 30]], np.float32)
    np.testing.assert_array_equal(
        batched_nms(same, np.array([0.5, 0.5, 0.5, 0.5], np.float32), np.array([0, 1, 0, 0]),
                    0.5, backend="cuda"), [0, 1, 3])
