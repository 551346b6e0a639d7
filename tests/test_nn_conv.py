"""conv2d and conv_transpose2d: hand-worked, finite differences, torch oracle, edge cases."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import numerical_grad, rel_error
from mrcnn_np.nn.conv import (col2im, conv2d, conv2d_backward, conv2d_forward, conv_transpose2d,
                              conv_transpose2d_backward, conv_transpose2d_forward, im2col)

GRAD_TOL = 1e-7        # float64 finite differences vs analytic (relative to the largest entry)
F32_RTOL, F32_ATOL = 1e-5, 1e-5  # float32 values vs torch (different summation order)


@st.composite
def conv_case(draw, transpose=False):
    k = draw(st.sampled_from([1, 2, 3]))
    s = draw(st.sampled_from([1, 2]))
    p = draw(st.sampled_from([0, 1])) if k > 1 or not transpose else 0
    if transpose:
        p = min(p, k - 1)
    # smallest input that leaves an output: conv needs H + 2p >= k; transposed conv needs
    # (H - 1)*s - 2p + k >= 1
    lo = (2 if p else 1) if transpose else max(1, k - 2 * p)
    N, C, F = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H, W = draw(st.integers(lo, 5)), draw(st.integers(lo, 5))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return N, C, F, H, W, k, s, p, bias, seed


def _arrays(case, transpose=False, dtype=np.float64):
    N, C, F, H, W, k, s, p, bias, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((C, F, k, k) if transpose else (F, C, k, k)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype) if bias else None
    return x, w, b, s, p, rng


# -- hand-worked -----------------------------------------------------------------------------
def test_conv2d_hand_worked():
    # x = 0 1 2      w = 1 0     out[i, j] = x[i, j] - x[i+1, j+1] (+ bias 10)
    #     3 4 5          0 -1    out = 0-4 1-5  = -4 -4  -> +10 -> 6 6
    #     6 7 8                        3-7 4-8    -4 -4             6 6
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    w = np.array([[1.0, 0.0], [0.0, -1.0]]).reshape(1, 1, 2, 2)
    out, cache = conv2d_forward(x, w, np.array([10.0]))
    np.testing.assert_array_equal(out, np.full((1, 1, 2, 2), 6.0))
    # dout = all ones: dx[i,j] = (# windows where x[i,j] is the top-left) - (# where bottom-right)
    #   1 1 0        0 0 0       1  1  0
    #   1 1 0   -    0 1 1   =   1  0 -1
    #   0 0 0        0 1 1       0 -1 -1
    # dw[a, b] = sum of the 2x2 window of x starting at (a, b): 0+1+3+4=8, 12, 20, 24;  db = 4
    dx, dw, db = conv2d_backward(np.ones((1, 1, 2, 2)), cache)
    np.testing.assert_array_equal(dx[0, 0], [[1, 1, 0], [1, 0, -1], [0, -1, -1]])
    np.testing.assert_array_equal(dw[0, 0], [[8, 12], [20, 24]])
    np.testing.assert_array_equal(db, [4.0])


def test_im2col_layout_and_col2im_adjoint():
    # 1 image, 1 channel, 3x3 input, 2x2 kernel, stride 1 -> 4 patches (columns) of 4 rows.
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    cols = im2col(x, 2, 2, 1, 2, 2)
    # column 0 is the top-left patch (0, 1, 3, 4); column 3 the bottom-right (4, 5, 7, 8)
    assert cols.shape == (4, 4)  # [C*kh*kw, N*Ho*Wo]
    np.testing.assert_array_equal(cols[:, 0], [0, 1, 3, 4])
    np.testing.assert_array_equal(cols[:, 3], [4, 5, 7, 8])
    # a second image's patches follow the first's: column (n*Ho + oh)*Wo + ow
    x2 = np.concatenate([x, x + 100], 0)                          # [2, 1, 3, 3]
    cols2 = im2col(x2, 2, 2, 1, 2, 2)                             # [4, 8]
    np.testing.assert_array_equal(cols2[:, 4], [100, 101, 103, 104])
    np.testing.assert_array_equal(cols2[:, 7], [104, 105, 107, 108])
    # col2im is im2col's adjoint: <im2col(x), c> == <x, col2im(c)>
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6, 5))
    c = rng.standard_normal((3 * 9, 2 * 2 * 2))
    lhs = np.sum(im2col(x, 3, 3, 2, 2, 2) * c)
    rhs = np.sum(x * col2im(c, x.shape, 3, 3, 2, 2, 2))
    assert abs(lhs - rhs) < 1e-10


def test_conv_transpose2d_hand_worked_k2_s2():
    # k = s = 2: each input pixel paints its own 2x2 block, no overlap.
    # x = 1 2 , w = 1 2  ->  out =  1 2 2 4
    #     3 4       3 4             3 4 6 8
    #                               3 6 4 8
    #                               9 12 12 16
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    w = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    out, cache = conv_transpose2d_forward(x, w, stride=2)
    np.testing.assert_array_equal(out[0, 0], [[1, 2, 2, 4], [3, 4, 6, 8],
                                              [3, 6, 4, 8], [9, 12, 12, 16]])
    # dout = ones: dx[p] = sum(w) = 10 for every pixel; dw[i, j] = sum(x) = 10
    dx, dw, db = conv_transpose2d_backward(np.ones((1, 1, 4, 4)), cache)
    np.testing.assert_array_equal(dx, np.full((1, 1, 2, 2), 10.0))
    np.testing.assert_array_equal(dw, np.full((1, 1, 2, 2), 10.0))
    assert db is None


# -- finite differences ------------------------------------------------------------------------
@settings(max_examples=15)
@given(conv_case())
def test_conv2d_gradcheck(case):
    x, w, b, s, p, rng = _arrays(case)
    out, cache = conv2d_forward(x, w, b, s, p)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv2d_backward(dout, cache)
    assert rel_error(dx, numerical_grad(lambda v: conv2d_forward(v, w, b, s, p)[0], x, dout)) < GRAD_TOL
    assert rel_error(dw, numerical_grad(lambda v: conv2d_forward(x, v, b, s, p)[0], w, dout)) < GRAD_TOL
    if b is None:
        assert db is None
    else:
        assert rel_error(db, numerical_grad(lambda v: conv2d_forward(x, w, v, s, p)[0], b, dout)) < GRAD_TOL


@settings(max_examples=15)
@given(conv_case(transpose=True))
def test_conv_transpose2d_gradcheck(case):
    x, w, b, s, p, rng = _arrays(case, transpose=True)
    out, cache = conv_transpose2d_forward(x, w, b, s, p)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv_transpose2d_backward(dout, cache)
    f = conv_transpose2d_forward
    assert rel_error(dx, numerical_grad(lambda v: f(v, w, b, s, p)[0], x, dout)) < GRAD_TOL
    assert rel_error(dw, numerical_grad(lambda v: f(x, v, b, s, p)[0], w, dout)) < GRAD_TOL
    if b is not None:
        assert rel_error(db, numerical_grad(lambda v: f(x, w, v, s, p)[0], b, dout)) < GRAD_TOL


# -- torch oracle --------------------------------------------------------------------------------
def _torch_grads(torch, fn, x, w, b, dout, **kw):
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True) if b is not None else None
    out = fn(xt, wt, bt, **kw)
    out.backward(torch.tensor(dout))
    return (out.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(),
            bt.grad.numpy() if bt is not None else None)


def _compare(ours, theirs, rtol, atol):
    for a, t in zip(ours, theirs):
        if t is None:
            assert a is None
        else:
            assert a.dtype == t.dtype
            np.testing.assert_allclose(a, t, rtol=rtol, atol=atol)


@pytest.mark.oracle
@pytest.mark.parametrize("k,s,p", [(1, 1, 0), (1, 2, 0), (3, 1, 1), (3, 2, 1), (3, 1, 0),
                                   (7, 2, 3), (2, 1, 0)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_vs_torch(torch, k, s, p, bias):
    rng = np.random.default_rng(k * 100 + s * 10 + p)
    x = rng.standard_normal((2, 3, 11, 9)).astype(np.float32)    # odd sizes with stride 2
    w = rng.standard_normal((4, 3, k, k)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32) if bias else None
    out, cache = conv2d_forward(x, w, b, s, p)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    ours = (out,) + conv2d_backward(dout, cache)
    theirs = _torch_grads(torch, torch.nn.functional.conv2d, x, w, b, dout, stride=s, padding=p)
    _compare(ours, theirs, F32_RTOL, 1e-4)
    np.testing.assert_array_equal(conv2d(x, w, b, s, p), out)


@pytest.mark.oracle
@settings(max_examples=20)
@given(conv_case())
def test_conv2d_vs_torch_float64_drawn(case):
    from conftest import oracle
    torch, _ = oracle()
    x, w, b, s, p, rng = _arrays(case)
    out, cache = conv2d_forward(x, w, b, s, p)
    dout = rng.standard_normal(out.shape)
    ours = (out,) + conv2d_backward(dout, cache)
    theirs = _torch_grads(torch, torch.nn.functional.conv2d, x, w, b, dout, stride=s, padding=p)
    _compare(ours, theirs, 1e-10, 1e-10)


@pytest.mark.oracle
@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (4, 2, 1), (3, 1, 1), (1, 1, 0), (3, 3, 0)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_transpose2d_vs_torch(torch, k, s, p, bias):
    rng = np.random.default_rng(k * 100 + s * 10 + p)
    x = rng.standard_normal((2, 3, 7, 5)).astype(np.float32)
    w = rng.standard_normal((3, 4, k, k)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32) if bias else None
    out, cache = conv_transpose2d_forward(x, w, b, s, p)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    ours = (out,) + conv_transpose2d_backward(dout, cache)
    theirs = _torch_grads(torch, torch.nn.functional.conv_transpose2d, x, w, b, dout,
                          stride=s, padding=p)
    _compare(ours, theirs, F32_RTOL, 1e-4)
    np.testing.assert_array_equal(conv_transpose2d(x, w, b, s, p), out)


@pytest.mark.oracle
def test_mask_head_deconv_vs_torch(torch):
    """The mask head's layer: 256 -> 256 channels, 2x2 stride 2, 14x14 -> 28x28."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 256, 14, 14)).astype(np.float32)
    w = (0.05 * rng.standard_normal((256, 256, 2, 2))).astype(np.float32)
    b = rng.standard_normal(256).astype(np.float32)
    out, cache = conv_transpose2d_forward(x, w, b, stride=2)
    assert out.shape == (3, 256, 28, 28)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    ours = (out,) + conv_transpose2d_backward(dout, cache)
    theirs = _torch_grads(torch, torch.nn.functional.conv_transpose2d, x, w, b, dout, stride=2)
    _compare(ours, theirs, 1e-4, 1e-3)


# -- edge cases and conventions ------------------------------------------------------------------
def test_float32_in_float32_out_and_inputs_unmodified():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    x0, w0 = x.copy(), w.copy()
    out, cache = conv2d_forward(x, w, None, 2, 1)
    grads = conv2d_backward(np.ones_like(out), cache)
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads[:2])
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)
    out, cache = conv_transpose2d_forward(x, w.transpose(1, 0, 2, 3).copy(), None, 2, 1)
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in conv_transpose2d_backward(np.ones_like(out), cache)[:2])


@pytest.mark.parametrize("k,s,p", [(1, 1, 0), (1, 2, 0), (3, 1, 1), (3, 2, 1)])
def test_conv2d_zero_batch(k, s, p):
    x = np.zeros((0, 3, 6, 6), np.float32)
    w = np.ones((4, 3, k, k), np.float32)
    out, cache = conv2d_forward(x, w, np.ones(4, np.float32), s, p)
    assert out.shape == (0, 4, (6 + 2 * p - k) // s + 1, (6 + 2 * p - k) // s + 1)
    dx, dw, db = conv2d_backward(out, cache)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, 0)
    out, cache = conv_transpose2d_forward(x, np.ones((3, 4, 2, 2), np.float32), None, 2)
    assert out.shape == (0, 4, 12, 12)
    dx, dw, _ = conv_transpose2d_backward(out, cache)
    assert dx.shape == x.shape and not dw.any()


@pytest.mark.oracle
def test_conv2d_1x1_map_and_batch_of_one(torch):
    # 1x1 spatial map, 3x3 kernel, padding 1: only the centre tap sees data.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 4, 1, 1)).astype(np.float32)
    w = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    out, cache = conv2d_forward(x, w, None, 2, 1)
    np.testing.assert_allclose(out[0, :, 0, 0], w[:, :, 1, 1] @ x[0, :, 0, 0], rtol=1e-6)
    dout = np.ones_like(out)
    theirs = _torch_grads(torch, torch.nn.functional.conv2d, x, w, None, dout, stride=2, padding=1)
    _compare((out,) + conv2d_backward(dout, cache), theirs, 1e-5, 1e-5)


def test_kernel_larger_than_input_is_an_error():
    with pytest.raises(ValueError):
        conv2d_forward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)))
    with pytest.raises(ValueError):
        conv2d_forward(np.zeros((1, 2, 4, 4)), np.zeros((1, 3, 1, 1)))


@pytest.mark.oracle
@settings(max_examples=20)
@given(conv_case(transpose=True))
def test_conv_transpose2d_vs_torch_float64_drawn(case):
    from conftest import oracle
    torch, _ = oracle()
    x, w, b, s, p, rng = _arrays(case, transpose=True)
    out, cache = conv_transpose2d_forward(x, w, b, s, p)
    dout = rng.standard_normal(out.shape)
    ours = (out,) + conv_transpose2d_backward(dout, cache)
    theirs = _torch_grads(torch, torch.nn.functional.conv_transpose2d, x, w, b, dout,
                          stride=s, padding=p)
    _compare(ours, theirs, 1e-10, 1e-10)


# -- the numba im2col / col2im kernels: the reference's numbers, bit for bit --------------------
@settings(max_examples=20)
@given(conv_case(), st.sampled_from([np.float32, np.float64]))
def test_numba_im2col_col2im_equal_numpy_bit_for_bit(case, dtype):
    import mrcnn_np.nn.conv as conv_module
    from kernels.conv_numba import col2im as col2im_numba
    from kernels.conv_numba import im2col as im2col_numba
    x, w, b, s, p, rng = _arrays(case, dtype=dtype)
    k = w.shape[-1]
    Ho, Wo = (x.shape[2] + 2 * p - k) // s + 1, (x.shape[3] + 2 * p - k) // s + 1
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    cols = im2col(xp, k, k, s, Ho, Wo)                             # [C*k*k, N*Ho*Wo]
    np.testing.assert_array_equal(im2col_numba(xp, k, k, s, Ho, Wo), cols)
    c = rng.standard_normal(cols.shape).astype(dtype)
    np.testing.assert_array_equal(col2im_numba(c, *xp.shape, k, k, s, Ho, Wo),
                                  col2im(c, xp.shape, k, k, s, Ho, Wo))
    # through the layers: forward and backward of both kinds of convolution (the layers hand
    # copies below KERNEL_MIN_ELEMENTS to NumPy; lift that so that the kernels run here)
    saved, conv_module.KERNEL_MIN_ELEMENTS = conv_module.KERNEL_MIN_ELEMENTS, 0
    try:
        _layers_agree(x, w, b, s, p, k, rng, dtype)
    finally:
        conv_module.KERNEL_MIN_ELEMENTS = saved


def _layers_agree(x, w, b, s, p, k, rng, dtype):
    out_np, c_np = conv2d_forward(x, w, b, s, p, backend="numpy")
    out_nb, c_nb = conv2d_forward(x, w, b, s, p, backend="numba")
    np.testing.assert_array_equal(out_nb, out_np)
    dout = rng.standard_normal(out_np.shape).astype(dtype)
    for g_np, g_nb in zip(conv2d_backward(dout, c_np), conv2d_backward(dout, c_nb)):
        np.testing.assert_array_equal(g_nb, g_np)
    wt = rng.standard_normal((x.shape[1], 2, k, k)).astype(dtype)
    ot_np, ct_np = conv_transpose2d_forward(x, wt, None, s, 0, backend="numpy")
    ot_nb, ct_nb = conv_transpose2d_forward(x, wt, None, s, 0, backend="numba")
    np.testing.assert_array_equal(ot_nb, ot_np)
    dt = rng.standard_normal(ot_np.shape).astype(dtype)
    for g_np, g_nb in zip(conv_transpose2d_backward(dt, ct_np)[:2], conv_transpose2d_backward(dt, ct_nb)[:2]):
        np.testing.assert_array_equal(g_nb, g_np)


def test_need_dx_false_skips_only_the_input_gradient():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 8))
    w = rng.standard_normal((4, 3, 3, 3))
    for k, s, p in [(3, 2, 1), (1, 1, 0)]:
        out, cache = conv2d_forward(x, w[:, :, :k, :k], np.ones(4), s, p)
        dout = rng.standard_normal(out.shape)
        dx, dw, db = conv2d_backward(dout, cache)
        none, dw2, db2 = conv2d_backward(dout, cache, need_dx=False)
        assert none is None and dx.shape == x.shape
        np.testing.assert_array_equal(dw2, dw)
        np.testing.assert_array_equal(db2, db)


@pytest.mark.parametrize("shape, k, s, p", [((2, 5, 24, 24), 3, 1, 1), ((3, 3, 50, 46), 7, 2, 3),
                                            ((2, 4, 48, 48), 3, 2, 1)])
def test_per_image_product_is_the_batch_product(shape, k, s, p, monkeypatch):
    # Maps of PER_IMAGE_MIN_PIXELS and more are copied and multiplied one image at a time.
    # The columns kept for the backward are the batch's im2col, copied exactly; each output is
    # the same dot product, so it agrees with the one batch product (checked here to float32
    # rounding; on the 2-core machine they are the same bits) and with a float64 reference.
    import mrcnn_np.nn.conv as conv_module
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((6, shape[1], k, k)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    Ho, Wo = (shape[2] + 2 * p - k) // s + 1, (shape[3] + 2 * p - k) // s + 1
    assert Ho * Wo >= conv_module.PER_IMAGE_MIN_PIXELS  # the case is the per-image path's
    out, cache = conv2d_forward(x, w, b, s, p, backend="numpy")
    cols = im2col(conv_module._pad(x, p), k, k, s, Ho, Wo)
    np.testing.assert_array_equal(cache[5], cols)
    batch = (w.reshape(6, -1) @ cols + b[:, None]).reshape(6, shape[0], Ho, Wo).transpose(1, 0, 2, 3)
    np.testing.assert_allclose(out, batch, rtol=1e-5, atol=1e-5)
    ref64 = conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), s, p)[0]
    np.testing.assert_allclose(out, ref64, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(conv_module, "PER_IMAGE_MIN_PIXELS", 10 ** 9)  # the batch product path
    out_batch, cache_batch = conv2d_forward(x, w, b, s, p, backend="numpy")
    np.testing.assert_array_equal(cache_batch[5], cols)
    np.testing.assert_allclose(out, out_batch, rtol=1e-5, atol=1e-5)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    for g, g_batch in zip(conv2d_backward(dout, cache), conv2d_backward(dout, cache_batch)):
        np.testing.assert_array_equal(g, g_batch)  # the same cols: the same backward


@pytest.mark.parametrize("shape, k, s, p, buffer_bytes, big", [
    ((2, 16, 48, 48), 3, 1, 1, None, True),   # big map: 14-row chunks, the last one 6 rows
    ((2, 3, 61, 53), 7, 2, 3, None, True),    # the stem's kind of conv, stride 2, odd sizes
    ((20, 8, 14, 14), 3, 1, 1, None, False),  # mask-head RoIs: groups of 6, the last of 2
    ((5, 4, 9, 7), 3, 2, 1, None, False),     # all five small images in one group
    ((0, 8, 14, 14), 3, 1, 1, None, False),   # no RoIs at all
    ((2, 16, 48, 48), 3, 1, 1, 64, True),     # a buffer smaller than one row: row by row
    ((7, 8, 14, 14), 3, 1, 1, 64, True),      # ... and a small map, one row at a time too
])
def test_streamed_inference_conv_is_the_cached_conv(shape, k, s, p, buffer_bytes, big,
                                                    monkeypatch):
    # keep_cols=False streams the patches through a small buffer (_conv_streamed) in row
    # chunks (big maps) or groups of images (small maps). Each output is the same dot product
    # over the same C*k*k terms as in the cached path, so the two agree to float32 rounding
    # (on the 2-core machine, to the bit) and both agree with a float64 reference.
    import mrcnn_np.nn.conv as conv_module
    if buffer_bytes is not None:
        monkeypatch.setattr(conv_module, "STREAM_BUFFER_BYTES", buffer_bytes)
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((6, shape[1], k, k)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    Ho, Wo = (shape[2] + 2 * p - k) // s + 1, (shape[3] + 2 * p - k) // s + 1
    per_image = shape[1] * k * k * Ho * Wo * 4
    assert (per_image >= conv_module.STREAM_BUFFER_BYTES) == big  # the branch the case names
    streamed, none = conv2d_forward(x, w, b, s, p, keep_cols=False)
    assert none is None and streamed.dtype == np.float32
    cached, cache = conv2d_forward(x, w, b, s, p)
    assert cache is not None and streamed.shape == cached.shape == (shape[0], 6, Ho, Wo)
    np.testing.assert_allclose(streamed, cached, rtol=1e-5, atol=1e-5)
    ref64 = conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), s, p)[0]
    np.testing.assert_allclose(streamed, ref64, rtol=1e-5, atol=1e-5)
    # no bias, and an input that is a view (not contiguous): the same numbers
    xv = np.concatenate([x, x], axis=1)[:, ::2]
    np.testing.assert_allclose(conv2d_forward(xv, w, None, s, p, keep_cols=False)[0],
                               conv2d_forward(xv, w, None, s, p)[0], rtol=1e-5, atol=1e-5)
