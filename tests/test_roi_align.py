"""RoIAlign: a bin worked by hand, finite differences, torchvision (values and autograd
gradients) on hypothesis-drawn inputs, the numba backend against the NumPy reference, and
empty / degenerate inputs."""
import numpy as np
import pytest
from conftest import oracle
from gradcheck import numerical_grad, rel_error
from hypothesis import given, settings
from hypothesis import strategies as st

from mrcnn_np.ops import roi_align, roi_align_backward, roi_align_forward

TOL = {np.float32: 2e-5, np.float64: 1e-12}   # relative to the largest entry


# ------------------------------------------------------------------ hand-worked example ---

def test_one_bin_four_bilinear_samples_by_hand():
    # Input 3x3, v = (3y + x)^2 (not bilinear, so the four taps matter):
    #
    #          x=0  x=1  x=2
    #   y=0:    0    1    4
    #   y=1:    9   16   25
    #   y=2:   36   49   64
    #
    # RoI (x1, y1, x2, y2) = (0.5, 0.5, 1.5, 1.5), one 1x1 bin, sampling_ratio 2, aligned=False,
    # scale 1: roi_start = 0.5, bin_size = 1, samples at 0.5 + (0.5, 1.5) * 1/2 = 0.75, 1.25
    # on each axis -> four samples (y, x):
    #
    #   (0.75, 0.75): taps (0,0)=0 (0,1)=1 (1,0)=9 (1,1)=16, ly = lx = .75, hy = hx = .25
    #                 .25*.25*0 + .25*.75*1 + .75*.25*9 + .75*.75*16 = 10.875
    #   (0.75, 1.25): taps (0,1)=1 (0,2)=4 (1,1)=16 (1,2)=25, ly = .75, lx = .25
    #                 .25*.75*1 + .25*.25*4 + .75*.75*16 + .75*.25*25 = 14.125
    #   (1.25, 0.75): taps (1,0)=9 (1,1)=16 (2,0)=36 (2,1)=49, ly = .25, lx = .75
    #                 .75*.25*9 + .75*.75*16 + .25*.25*36 + .25*.75*49 = 22.125
    #   (1.25, 1.25): taps (1,1)=16 (1,2)=25 (2,1)=49 (2,2)=64, ly = lx = .25
    #                 .75*.75*16 + .75*.25*25 + .25*.75*49 + .25*.25*64 = 26.875
    #
    #   bin = (10.875 + 14.125 + 22.125 + 26.875) / 4 = 74 / 4 = 18.5
    x = ((3 * np.arange(3)[:, None] + np.arange(3)[None, :]) ** 2).astype(np.float64)[None, None]
    rois = np.array([[0, 0.5, 0.5, 1.5, 1.5]])
    out, cache = roi_align_forward(x, rois, 1, 1.0, 2, False)
    assert out.shape == (1, 1, 1, 1)
    assert out[0, 0, 0, 0] == pytest.approx(18.5, abs=1e-12)
    # Backward with dout = 1: each pixel gets (sum of its weights over the 4 samples) / 4.
    #   centre (1,1) is a tap of all four samples with weight .75*.75 = .5625 each -> .5625
    #   corner (0,0) is a tap of sample (0.75, 0.75) only, weight .25*.25 -> .0625 / 4
    #   edge   (0,1) gets .25*.75 (sample 1) + .25*.75 (sample 2) = .375 -> .375 / 4
    dx = roi_align_backward(np.ones_like(out), cache)[0, 0]
    assert dx[1, 1] == pytest.approx(0.5625)
    assert dx[0, 0] == pytest.approx(0.015625)
    assert dx[0, 1] == pytest.approx(0.09375)
    assert dx.sum() == pytest.approx(1.0)   # the weights of a bin sum to 1


def test_out_of_map_rules():
    # A 1x1 map of value 5. Samples at y in [-1, 0] are clamped to 0 and read the pixel;
    # samples below -1 are empty (0). aligned=True, sampling 1, one bin:
    #   box y from -1.5 to -0.5 (after the -0.5 offset: -2.0 .. -1.0), sample at -1.5 -> empty
    #   box y from -0.5 to  0.5 (-1.0 .. 0.0), sample at -0.5 -> clamped to 0 -> 5
    x = np.full((1, 1, 1, 1), 5.0)
    rois = np.array([[0, 0.0, -1.5, 1.0, -0.5], [0, 0.0, -0.5, 1.0, 0.5]])
    out = roi_align(x, rois, 1, sampling_ratio=1, aligned=True, backend="numpy")
    assert out[:, 0, 0, 0].tolist() == [0.0, 5.0]


# --------------------------------------------------------------------- finite differences ---

@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_gradient_finite_differences(aligned, sampling_ratio):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 5, 6))
    rois = np.array([[0, 0.3, 0.7, 4.1, 3.9], [1, -1.2, 2.5, 3.3, 6.8], [1, 2.2, 2.0, 2.6, 2.3]])
    dout = rng.standard_normal((3, 2, 2, 3))
    out, cache = roi_align_forward(x, rois, (2, 3), 1.0, sampling_ratio, aligned)
    analytic = roi_align_backward(dout, cache)
    numeric = numerical_grad(lambda a: roi_align_forward(a, rois, (2, 3), 1.0, sampling_ratio,
                                                         aligned)[0], x, dout)
    assert rel_error(analytic, numeric) < 1e-7   # linear in x: FD is exact up to rounding


# --------------------------------------------------------------- torchvision, hypothesis ---

@st.composite
def roi_align_case(draw):
    """Images, RoIs (inside, partly or wholly outside, zero and sub-pixel size), parameters."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H, W = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    scale = draw(st.sampled_from([1.0, 0.5, 0.25, 0.125, 1 / 16, 1 / 32]))
    R = draw(st.integers(0, 6))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    img_h, img_w = H / scale, W / scale                     # image size the map was made from
    x1 = rng.uniform(-0.5 * img_w, 1.2 * img_w, R)
    y1 = rng.uniform(-0.5 * img_h, 1.2 * img_h, R)
    kind = rng.integers(0, 4, R)                            # 0 zero, 1 sub-pixel, 2-3 normal
    w = np.where(kind == 0, 0.0, np.where(kind == 1, rng.uniform(0, 1, R) / scale,
                                          rng.uniform(0, 1.2 * img_w, R)))
    h = np.where(kind == 0, 0.0, np.where(kind == 1, rng.uniform(0, 1, R) / scale,
                                          rng.uniform(0, 1.2 * img_h, R)))
    rois = np.stack([rng.integers(0, N, R), x1, y1, x1 + w, y1 + h], 1).astype(dtype)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    dout = rng.standard_normal((R, C, 2, 3)).astype(dtype)
    return dict(x=x, rois=rois, dout=dout, scale=scale, output_size=(2, 3),
                sampling_ratio=draw(st.sampled_from([-1, 1, 2, 4])),
                aligned=draw(st.booleans()))


def _torch_roi_align(torch, torchvision, c):
    xt = torch.tensor(c["x"], requires_grad=True)
    out = torchvision.ops.roi_align(xt, torch.tensor(c["rois"]), c["output_size"], c["scale"],
                                    c["sampling_ratio"], c["aligned"])
    out.backward(torch.tensor(c["dout"]))
    return out.detach().numpy(), xt.grad.numpy()


@pytest.mark.oracle
@given(roi_align_case())
def test_matches_torchvision_values_and_gradients(c):
    torch, torchvision = oracle()
    want_out, want_dx = _torch_roi_align(torch, torchvision, c)
    out, cache = roi_align_forward(c["x"], c["rois"], c["output_size"], c["scale"],
                                   c["sampling_ratio"], c["aligned"], backend="numpy")
    dx = roi_align_backward(c["dout"], cache)
    assert out.dtype == c["x"].dtype and dx.dtype == c["x"].dtype
    tol = TOL[c["x"].dtype.type]
    assert rel_error(out, want_out) < tol
    assert rel_error(dx, want_dx) < tol


@pytest.mark.oracle
def test_list_of_boxes_like_torchvision(torch, torchvision):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    boxes = [np.array([[1, 1, 6, 5.5]], np.float32), np.array([[0, 2, 3, 7], [2, 2, 4, 4]], np.float32)]
    want = torchvision.ops.roi_align(torch.tensor(x), [torch.tensor(b) for b in boxes], 3).numpy()
    got = roi_align(x, boxes, 3)
    assert rel_error(got, want) < 2e-5


# ------------------------------------------------------------------ numba vs the reference ---

@given(roi_align_case())
@settings(max_examples=15)
def test_numba_matches_numpy(c):
    args = (c["x"], c["rois"], c["output_size"], c["scale"], c["sampling_ratio"], c["aligned"])
    out0, cache0 = roi_align_forward(*args, backend="numpy")
    out1, cache1 = roi_align_forward(*args, backend="numba")
    tol = TOL[c["x"].dtype.type]
    assert out1.dtype == out0.dtype
    assert rel_error(out1, out0) < tol
    assert rel_error(roi_align_backward(c["dout"], cache1), roi_align_backward(c["dout"], cache0)) < tol


# ------------------------------------------------------------------------- empty and edges ---

@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_no_rois(backend):
    x = np.ones((2, 3, 4, 4), np.float32)
    out, cache = roi_align_forward(x, np.zeros((0, 5)), 7, 0.25, 2, False, backend)
    assert out.shape == (0, 3, 7, 7) and out.dtype == np.float32
    dx = roi_align_backward(np.zeros((0, 3, 7, 7), np.float32), cache)
    assert dx.shape == x.shape and not dx.any()
    assert roi_align(x, [np.zeros((0, 4)), np.zeros((0, 4))], 7).shape == (0, 3, 7, 7)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_zero_area_roi(backend):
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    # aligned=True, adaptive sampling: a zero-size RoI has a 0x0 sample grid -> zeros.
    out = roi_align(x, np.array([[0, 1.5, 1.5, 1.5, 1.5]]), 2, aligned=True, backend=backend)
    assert not out.any()
    # aligned=False widens it to 1x1 feature pixel: a bin of size 0.5 starting at (1.5, 1.5).
    # v = 4y + x is bilinear, so each bin is the value at its centre: bin (0,0) is centred at
    # (1.75, 1.75) -> 4*1.75 + 1.75 = 8.75; bin (1,1) at (2.25, 2.25) -> 11.25.
    out = roi_align(x, np.array([[0, 1.5, 1.5, 1.5, 1.5]]), 2, aligned=False, backend=backend)
    assert out[0, 0, 0, 0] == pytest.approx(8.75) and out[0, 0, 1, 1] == pytest.approx(11.25)


def test_inputs_unmodified_and_dtype_kept():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    rois = np.array([[0, 0.5, 0.5, 4, 4]], np.float32)
    x0, r0 = x.copy(), rois.copy()
    out, cache = roi_align_forward(x, rois, 2, 1.0, 2, False)
    dx = roi_align_backward(np.ones_like(out), cache)
    assert np.array_equal(x, x0) and np.array_equal(rois, r0)
    assert out.dtype == np.float32 and dx.dtype == np.float32


def test_bad_backend():
    with pytest.raises(ValueError):
        roi_align(np.zeros((1, 1, 2, 2)), np.zeros((0, 5)), 2, backend="gpu")
