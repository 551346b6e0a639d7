"""RoIPool: the 2x2 pool on a 5x5 arange map worked by hand, the tie rule, finite differences,
torchvision (values and autograd gradients, ties included), numba vs NumPy, empty inputs."""
import numpy as np
import pytest
from conftest import oracle
from gradcheck import numerical_grad, rel_error
from hypothesis import given, settings
from hypothesis import strategies as st

from mrcnn_np.ops import roi_pool, roi_pool_backward, roi_pool_forward
from mrcnn_np.ops._backend import BackendUnavailable


def test_2x2_roipool_on_5x5_arange_by_hand():
    # input = arange(25).reshape(5, 5), v = 5y + x:
    #
    #          x=0   1   2   3   4
    #   y=0:    0    1   2   3   4
    #   y=1:    5   [6   7   8]  9        RoI (x1, y1, x2, y2) = (0.6, 1.2, 3.4, 3.5), scale 1
    #   y=2:   10   [11 12  13] 14        rounded (halves away from zero):
    #   y=3:   15   [16 17  18] 19          x: 0.6 -> 1, 3.4 -> 3;  y: 1.2 -> 1, 3.5 -> 4
    #   y=4:   20   [21 22  23] 24        pixels x 1..3 (3 wide), y 1..4 (4 high), inclusive
    #
    # bin_size_h = 4 / 2 = 2, bin_size_w = 3 / 2 = 1.5
    #   rows: ph=0 -> floor(0)..ceil(2) = [0, 2) + 1 = rows 1, 2;  ph=1 -> [2, 4) + 1 = rows 3, 4
    #   cols: pw=0 -> floor(0)..ceil(1.5) = [0, 2) + 1 = cols 1, 2
    #         pw=1 -> floor(1.5)..ceil(3) = [1, 3) + 1 = cols 2, 3   (column 2 is in both bins)
    #   bin (0,0) = max{6, 7, 11, 12} = 12 at (2, 2)    bin (0,1) = max{7, 8, 12, 13} = 13 at (2, 3)
    #   bin (1,0) = max{16,17,21,22} = 22 at (4, 2)    bin (1,1) = max{17,18,22,23} = 23 at (4, 3)
    x = np.arange(25, dtype=np.float64).reshape(1, 1, 5, 5)
    out, cache = roi_pool_forward(x, np.array([[0, 0.6, 1.2, 3.4, 3.5]]), 2)
    assert out[0, 0].tolist() == [[12, 13], [22, 23]]
    dx = roi_pool_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)[0, 0]
    want = np.zeros((5, 5))
    want[2, 2], want[2, 3], want[4, 2], want[4, 3] = 1, 2, 3, 4
    assert np.array_equal(dx, want)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_tie_rule_first_in_row_major_order(backend):
    # A constant map: every pixel of a bin ties. The gradient goes to the bin's first pixel in
    # row-major order (top-left). RoI (0, 0, 3, 3) -> 4x4 pixels, 2x2 bins of 2x2 pixels:
    # bins start at (0,0), (0,2), (2,0), (2,2); dout 1, 2, 3, 4 lands exactly there.
    x = np.full((1, 1, 4, 4), 7.0)
    out, cache = roi_pool_forward(x, np.array([[0, 0, 0, 3, 3]]), 2, backend=backend)
    assert (out == 7).all()
    dx = roi_pool_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)[0, 0]
    want = np.zeros((4, 4))
    want[0, 0], want[0, 2], want[2, 0], want[2, 2] = 1, 2, 3, 4
    assert np.array_equal(dx, want)


def test_gradient_finite_differences():
    rng = np.random.default_rng(2)
    x = rng.permutation(2 * 2 * 6 * 7).reshape(2, 2, 6, 7) / 10.0   # distinct values: no ties
    rois = np.array([[0, 0.3, 0.7, 5.1, 4.9], [1, -2, 1.5, 3.3, 7.8], [1, 2.2, 2.0, 2.6, 2.3]])
    dout = rng.standard_normal((3, 2, 2, 3))
    out, cache = roi_pool_forward(x, rois, (2, 3))
    numeric = numerical_grad(lambda a: roi_pool_forward(a, rois, (2, 3))[0], x, dout, h=1e-4)
    assert rel_error(roi_pool_backward(dout, cache), numeric) < 1e-8


@st.composite
def roi_pool_case(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    N, C = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    scale = draw(st.sampled_from([1.0, 0.5, 0.25, 1 / 16, 1 / 32]))
    R = draw(st.integers(0, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 31 - 1)))
    img_h, img_w = H / scale, W / scale
    x1 = rng.uniform(-0.5 * img_w, 1.2 * img_w, R)
    y1 = rng.uniform(-0.5 * img_h, 1.2 * img_h, R)
    sub = rng.random(R) < 0.3                                   # sub-pixel and zero-size RoIs
    w = np.where(sub, rng.uniform(0, 1, R) / scale, rng.uniform(0, img_w, R))
    h = np.where(sub, 0.0, rng.uniform(0, img_h, R))
    rois = np.stack([rng.integers(0, N, R), x1, y1, x1 + w, y1 + h], 1).astype(dtype)
    if draw(st.booleans()):
        x = rng.integers(0, 3, (N, C, H, W)).astype(dtype)     # many ties
    else:
        x = rng.standard_normal((N, C, H, W)).astype(dtype)
    dout = rng.standard_normal((R, C, 3, 2)).astype(dtype)
    return dict(x=x, rois=rois, dout=dout, scale=scale)


@pytest.mark.oracle
@given(roi_pool_case())
def test_matches_torchvision_values_and_gradients(c):
    torch, torchvision = oracle()
    xt = torch.tensor(c["x"], requires_grad=True)
    want = torchvision.ops.roi_pool(xt, torch.tensor(c["rois"]), (3, 2), c["scale"])
    want.backward(torch.tensor(c["dout"]))
    for backend in ("numpy", "numba"):
        out, cache = roi_pool_forward(c["x"], c["rois"], (3, 2), c["scale"], backend)
        dx = roi_pool_backward(c["dout"], cache)
        assert out.dtype == c["x"].dtype and dx.dtype == c["x"].dtype
        assert np.array_equal(out, want.detach().numpy())          # a max is exact
        assert rel_error(dx, xt.grad.numpy()) < 1e-6                # sums of dout: rounding only


@given(roi_pool_case())
@settings(max_examples=10)
def test_numba_matches_numpy(c):
    out0, cache0 = roi_pool_forward(c["x"], c["rois"], (3, 2), c["scale"], "numpy")
    out1, cache1 = roi_pool_forward(c["x"], c["rois"], (3, 2), c["scale"], "numba")
    assert np.array_equal(out0, out1)
    assert np.array_equal(cache0["argmax"], cache1["argmax"])
    assert rel_error(roi_pool_backward(c["dout"], cache1), roi_pool_backward(c["dout"], cache0)) < 1e-6


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_no_rois_and_off_map(backend):
    x = np.ones((1, 2, 4, 4), np.float32)
    out, cache = roi_pool_forward(x, np.zeros((0, 5)), 7, 1.0, backend)
    assert out.shape == (0, 2, 7, 7) and out.dtype == np.float32
    assert not roi_pool_backward(np.zeros((0, 2, 7, 7)), cache).any()
    # A RoI wholly off the map: every bin is empty -> 0, and no gradient.
    out, cache = roi_pool_forward(x, np.array([[0, 10, 10, 20, 20]]), 2, 1.0, backend)
    assert not out.any() and (cache["argmax"] == -1).all()
    assert not roi_pool_backward(np.ones_like(out), cache).any()


def test_minus_inf_bin_passes_no_gradient():
    # torchvision starts the running max at -FLT_MAX and replaces it on a strict '>':
    # a bin of -inf outputs -FLT_MAX and keeps argmax -1.
    x = np.full((1, 1, 2, 2), -np.inf, np.float32)
    out, cache = roi_pool_forward(x, np.array([[0, 0, 0, 1, 1]]), 1)
    assert out[0, 0, 0, 0] == -np.finfo(np.float32).max and cache["argmax"][0, 0, 0, 0] == -1


def test_convenience_matches_forward():
    x = np.arange(50, dtype=np.float32).reshape(1, 2, 5, 5)
    rois = np.array([[0, 1, 1, 4, 3]], np.float32)
    assert np.array_equal(roi_pool(x, rois, 2), roi_pool_forward(x, rois, 2)[0])
    assert np.array_equal(roi_pool(x, [rois[:, 1:]], 2), roi_pool_forward(x, rois, 2)[0])


def test_cuda_backend_is_refused_with_a_clear_error():
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(BackendUnavailable, match="no CUDA kernel"):
        roi_pool(x, np.array([[0, 0, 0, 3, 3]], np.float32), 2, backend="cuda")
