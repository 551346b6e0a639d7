"""Box geometry: box_area, box_iou, clip_boxes_to_image, remove_small_boxes.

Tolerances: none. These functions repeat torchvision's float32 arithmetic operation for
operation, so the oracle tests compare bit for bit (``array_equal``, nan == nan), and the
numba kernel must equal the NumPy definition exactly.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import oracle
from mrcnn_np.ops import box_area, box_iou, clip_boxes_to_image, remove_small_boxes


@st.composite
def boxes_st(draw, min_n=0, max_n=12, dtype=np.float32):
    """``[n, 4]`` boxes on a coarse half-pixel grid, so that identical boxes, shared edges,
    ties and zero-area boxes (w or h = 0) come up often."""
    n = draw(st.integers(min_n, max_n))
    coord = st.integers(0, 40).map(lambda v: v / 2)
    size = st.integers(0, 24).map(lambda v: v / 2)
    rows = draw(st.lists(st.tuples(coord, coord, size, size), min_size=n, max_size=n))
    b = np.array([(x, y, x + w, y + h) for x, y, w, h in rows], dtype=np.float64).reshape(-1, 4)
    if draw(st.booleans()):  # sometimes off the grid: random sub-pixel offsets
        seed = draw(st.integers(0, 2**16))
        b = b + np.random.default_rng(seed).uniform(0, 1, size=(len(b), 1))
    return b.astype(dtype)


def assert_same(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    np.testing.assert_array_equal(a, b)  # nan == nan here


def test_iou_by_hand():
    # box a = (0, 0, 4, 4), area 16; box b = (2, 2, 6, 6), area 16
    #   +---------+            intersection = (2, 2, 4, 4): 2 x 2 = 4
    #   |  a  +---|-----+      union        = 16 + 16 - 4 = 28
    #   |     | 4 |     |      IoU          = 4 / 28 = 1/7
    #   +-----|---+  b  |
    #         +---------+
    # box c = (4, 0, 8, 4) touches a along x = 4: intersection 0 -> IoU 0
    # box d = (1, 1, 3, 3) inside a: 4 / 16 = 0.25
    a = np.array([[0, 0, 4, 4]], np.float64)
    others = np.array([[2, 2, 6, 6], [4, 0, 8, 4], [1, 1, 3, 3], [0, 0, 4, 4]], np.float64)
    for backend in ("numpy", "numba"):
        np.testing.assert_allclose(box_iou(a, others, backend=backend),
                                   [[1 / 7, 0.0, 0.25, 1.0]], rtol=1e-15)
    np.testing.assert_array_equal(box_area(others), [16, 16, 4, 16])


def test_zero_area_and_empty():
    a = np.array([[1, 1, 1, 5], [0, 0, 2, 2]], np.float32)   # a zero-width box, a 2x2 box
    for backend in ("numpy", "numba"):
        iou = box_iou(a, a, backend=backend)
        assert np.isnan(iou[0, 0])            # 0 / 0, as torchvision
        assert iou[0, 1] == 0 and iou[1, 0] == 0 and iou[1, 1] == 1
        assert box_iou(np.zeros((0, 4), np.float32), a, backend=backend).shape == (0, 2)
        assert box_iou(a, np.zeros((0, 4), np.float32), backend=backend).shape == (2, 0)
        assert box_iou(np.zeros((0, 4)), np.zeros((0, 4)), backend=backend).shape == (0, 0)
    assert box_area(np.zeros((0, 4), np.float32)).shape == (0,)
    assert remove_small_boxes(np.zeros((0, 4), np.float32), 1.0).shape == (0,)
    assert clip_boxes_to_image(np.zeros((0, 4), np.float32), (5, 5)).shape == (0, 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept_and_inputs_untouched(dtype):
    a = np.array([[0, 0, 3, 3], [1, 2, 5, 9]], dtype)
    a0 = a.copy()
    for backend in ("numpy", "numba"):
        assert box_iou(a, a, backend=backend).dtype == dtype
    assert box_area(a).dtype == dtype
    assert clip_boxes_to_image(a, (4, 4)).dtype == dtype
    np.testing.assert_array_equal(a, a0)


def test_box_iou_cuda_backend_is_refused():
    with pytest.raises((ValueError, RuntimeError)):
        box_iou(np.zeros((1, 4)), np.zeros((1, 4)), backend="cuda")
    with pytest.raises(ValueError):
        box_iou(np.zeros((1, 4)), np.zeros((1, 4)), backend="torch")


@given(boxes_st(), boxes_st())
def test_box_iou_numba_equals_numpy(b1, b2):
    assert_same(box_iou(b1, b2, backend="numba"), box_iou(b1, b2, backend="numpy"))
    b1, b2 = b1.astype(np.float64), b2.astype(np.float64)
    assert_same(box_iou(b1, b2, backend="numba"), box_iou(b1, b2, backend="numpy"))


@pytest.mark.oracle
@given(boxes_st(), boxes_st(), st.sampled_from([np.float32, np.float64]))
def test_box_iou_area_vs_torchvision(b1, b2, dtype):
    torch, tv = oracle()
    b1, b2 = b1.astype(dtype), b2.astype(dtype)
    ref = tv.ops.box_iou(torch.from_numpy(b1), torch.from_numpy(b2)).numpy()
    for backend in ("numpy", "numba"):
        assert_same(box_iou(b1, b2, backend=backend), ref)
    assert_same(box_area(b1), tv.ops.box_area(torch.from_numpy(b1)).numpy())


@pytest.mark.oracle
@given(boxes_st(), st.integers(1, 30), st.integers(1, 30),
       st.sampled_from([0.0, 1e-3, 0.5, 1.0, 2.5]))
def test_clip_and_remove_small_vs_torchvision(b, h, w, min_size):
    torch, tv = oracle()
    b = b - 5  # some boxes now stick out on the top and left
    ref = tv.ops.clip_boxes_to_image(torch.from_numpy(b), (h, w)).numpy()
    clipped = clip_boxes_to_image(b, (h, w))
    assert_same(clipped, ref)
    keep_ref = tv.ops.remove_small_boxes(torch.from_numpy(clipped), min_size).numpy()
    assert_same(remove_small_boxes(clipped, min_size), keep_ref)
