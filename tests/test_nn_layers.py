"""linear, relu, sigmoid, max_pool2d, batch norm, frozen batch norm, nearest upsampling, add,
flatten: hand-worked, finite differences, torch oracle, edge cases."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gradcheck import numerical_grad, rel_error
from mrcnn_np.nn.layers import (add_backward, add_forward, batchnorm2d_backward,
                                batchnorm2d_forward, flatten_backward, flatten_forward,
                                frozen_batchnorm2d_backward, frozen_batchnorm2d_forward,
                                linear, linear_backward, linear_forward,
                                max_pool2d, max_pool2d_backward, max_pool2d_forward,
                                relu_backward, relu_forward, sigmoid_backward, sigmoid_forward)
from mrcnn_np.nn.resample import (interpolate_nearest, upsample_nearest_backward,
                                  upsample_nearest_forward)

GRAD_TOL = 1e-7   # float64 finite differences vs analytic, relative to the largest entry
shapes4 = st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 5), st.integers(1, 5))


def _t(torch, a, grad=True):
    return torch.tensor(a, requires_grad=grad)


# -- linear ----------------------------------------------------------------------------------
def test_linear_hand_worked():
    # x = [1, 2], w = [[1, 0], [1, 1], [0, -1]], b = [0, 1, 2]  ->  out = [1, 4, 0]
    x = np.array([[1.0, 2.0]])
    w = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    out, cache = linear_forward(x, w, np.array([0.0, 1.0, 2.0]))
    np.testing.assert_array_equal(out, [[1.0, 4.0, 0.0]])
    # dout = [1, 1, 1]: dx = column sums of w = [2, 0]; dw = every row is x; db = [1, 1, 1]
    dx, dw, db = linear_backward(np.ones((1, 3)), cache)
    np.testing.assert_array_equal(dx, [[2.0, 0.0]])
    np.testing.assert_array_equal(dw, [[1, 2], [1, 2], [1, 2]])
    np.testing.assert_array_equal(db, [1, 1, 1])


@settings(max_examples=20)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.booleans(), st.integers(0, 999))
def test_linear_gradcheck(N, D, F, bias, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((N, D)), rng.standard_normal((F, D))
    b = rng.standard_normal(F) if bias else None
    out, cache = linear_forward(x, w, b)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = linear_backward(dout, cache)
    assert rel_error(dx, numerical_grad(lambda v: linear_forward(v, w, b)[0], x, dout)) < GRAD_TOL
    assert rel_error(dw, numerical_grad(lambda v: linear_forward(x, v, b)[0], w, dout)) < GRAD_TOL
    if bias:
        assert rel_error(db, numerical_grad(lambda v: linear_forward(x, w, v)[0], b, dout)) < GRAD_TOL
    else:
        assert db is None


@pytest.mark.oracle
@pytest.mark.parametrize("N", [0, 1, 5])
def test_linear_vs_torch(torch, N):
    rng = np.random.default_rng(N)
    x = rng.standard_normal((N, 12)).astype(np.float32)
    w = rng.standard_normal((7, 12)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    out, cache = linear_forward(x, w, b)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    dx, dw, db = linear_backward(dout, cache)
    xt, wt, bt = _t(torch, x), _t(torch, w), _t(torch, b)
    ot = torch.nn.functional.linear(xt, wt, bt)
    ot.backward(torch.tensor(dout))
    for a, t in [(out, ot), (dx, xt.grad), (dw, wt.grad), (db, bt.grad)]:
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, t.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(linear(x, w, b), out)


# -- relu and sigmoid --------------------------------------------------------------------------
def test_relu_hand_worked_and_zero():
    x = np.array([-2.0, -0.0, 0.0, 3.0, -np.inf, np.inf])
    out, cache = relu_forward(x)
    np.testing.assert_array_equal(out, [0, 0, 0, 3, 0, np.inf])
    # gradient at exactly 0 is 0 (torch's threshold_backward uses x > 0)
    np.testing.assert_array_equal(relu_backward(np.full(6, 5.0), cache), [0, 0, 0, 5, 0, 5])


def test_relu_fast_form_is_the_where_definition_bit_for_bit():
    # relu_forward computes max(x, 0) + 0 (SIMD) instead of where(x > 0, x, 0): the same bits,
    # the sign of every zero included (max(-0.0, 0) may be -0.0; -0.0 + 0 is +0.0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(10_000).astype(np.float32)
    x[::7] = -0.0
    x[3::11] = 0.0
    out, mask = relu_forward(x)
    ref = np.where(x > 0, x, np.float32(0))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.view(np.int32), ref.view(np.int32))
    assert not np.signbit(out).any()
    dout = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(relu_backward(dout, mask), np.where(x > 0, dout, 0))
    # a NaN stays NaN, as torch.relu keeps it (where(x > 0, ...) used to make it 0)
    assert np.isnan(relu_forward(np.array([np.nan, 1.0]))[0][0])


def test_sigmoid_hand_worked_and_extremes():
    out, cache = sigmoid_forward(np.array([0.0, np.log(3.0), -1000.0, 1000.0]))
    # s(0) = 1/2; s(log 3) = 3/4; no overflow at +-1000
    np.testing.assert_allclose(out, [0.5, 0.75, 0.0, 1.0], atol=1e-15)
    # ds = s(1 - s): 1/4, 3/16, 0, 0
    np.testing.assert_allclose(sigmoid_backward(np.ones(4), cache), [0.25, 3 / 16, 0, 0], atol=1e-15)


@settings(max_examples=20)
@given(shapes4, st.integers(0, 999))
def test_relu_sigmoid_gradcheck(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    x[np.abs(x) < 1e-3] = 0.5  # keep finite differences away from relu's kink
    dout = rng.standard_normal(shape)
    for fwd, bwd in [(relu_forward, relu_backward), (sigmoid_forward, sigmoid_backward)]:
        _, cache = fwd(x)
        assert rel_error(bwd(dout, cache), numerical_grad(lambda v: fwd(v)[0], x, dout)) < GRAD_TOL


@pytest.mark.oracle
def test_relu_sigmoid_vs_torch(torch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32) * 5
    x[0, 0, 0, :2] = 0.0
    dout = rng.standard_normal(x.shape).astype(np.float32)
    for fwd, bwd, tf in [(relu_forward, relu_backward, torch.relu),
                         (sigmoid_forward, sigmoid_backward, torch.sigmoid)]:
        out, cache = fwd(x)
        xt = _t(torch, x)
        ot = tf(xt)
        ot.backward(torch.tensor(dout))
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, ot.detach().numpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(bwd(dout, cache), xt.grad.numpy(), rtol=1e-6, atol=1e-7)


# -- max pooling --------------------------------------------------------------------------------
def test_max_pool_hand_worked_with_tie():
    # 1x4 row [1, 3, 3, 2], kernel 2 stride 1 (kernel_size as (1, 2) is not supported, so use a
    # 2x4 map whose second row is all 0):  windows [1 3 / 0 0], [3 3 / 0 0], [3 2 / 0 0]
    # out = 3, 3, 3. The middle window ties between x[0,1] and x[0,2]: the first in row-major
    # order, x[0,1], wins. So x[0,1] collects dout of windows 0 and 1; x[0,2] that of window 2.
    x = np.array([[1.0, 3.0, 3.0, 2.0], [0.0, 0.0, 0.0, 0.0]]).reshape(1, 1, 2, 4)
    out, cache = max_pool2d_forward(x, 2, 1)
    np.testing.assert_array_equal(out[0, 0], [[3, 3, 3]])
    dx = max_pool2d_backward(np.array([10.0, 20.0, 40.0]).reshape(1, 1, 1, 3), cache)
    np.testing.assert_array_equal(dx[0, 0], [[0, 30, 40, 0], [0, 0, 0, 0]])


@settings(max_examples=20)
@given(shapes4, st.sampled_from([(1, 2, 0), (2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 1)]),
       st.integers(0, 999))
def test_max_pool_gradcheck(shape, ksp, seed):
    k, s, p = ksp
    N, C, H, W = shape
    assume(H + 2 * p >= k and W + 2 * p >= k)  # the window fits the padded input
    rng = np.random.default_rng(seed)
    x = rng.permutation(N * C * H * W).reshape(shape) * 0.1  # distinct values: no ties
    out, cache = max_pool2d_forward(x, k, s, p)
    dout = rng.standard_normal(out.shape)
    num = numerical_grad(lambda v: max_pool2d_forward(v, k, s, p)[0], x, dout, h=1e-4)
    assert rel_error(max_pool2d_backward(dout, cache), num) < GRAD_TOL


@pytest.mark.oracle
@pytest.mark.parametrize("ksp", [(3, 2, 1), (1, 2, 0), (2, 2, 0), (3, 1, 1)])
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool_vs_torch(torch, ksp, ties):
    k, s, p = ksp
    rng = np.random.default_rng(k + s + p)
    if ties:  # few distinct values: many windows tie, torch's first-maximum rule must match
        x = rng.integers(0, 3, size=(2, 3, 9, 8)).astype(np.float32)
    else:
        x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    out, cache = max_pool2d_forward(x, k, s, p)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    xt = _t(torch, x)
    ot = torch.nn.functional.max_pool2d(xt, k, s, p)
    ot.backward(torch.tensor(dout))
    np.testing.assert_array_equal(out, ot.detach().numpy())
    dx = max_pool2d_backward(dout, cache)
    assert dx.dtype == np.float32
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(max_pool2d(x, k, s, p), out)


def test_max_pool_edges():
    # all-negative input with padding: the -inf padding never wins
    x = -np.ones((1, 1, 1, 1), np.float32)
    out, cache = max_pool2d_forward(x, 3, 2, 1)
    np.testing.assert_array_equal(out, [[[[-1.0]]]])
    np.testing.assert_array_equal(max_pool2d_backward(np.ones_like(out), cache), [[[[1.0]]]])
    # zero batch
    out, cache = max_pool2d_forward(np.zeros((0, 2, 5, 5)), 3, 2, 1)
    assert out.shape == (0, 2, 3, 3)
    assert max_pool2d_backward(out, cache).shape == (0, 2, 5, 5)
    with pytest.raises(ValueError):
        max_pool2d_forward(np.zeros((1, 1, 4, 4)), 3, 2, 2)


# -- batch norm ------------------------------------------------------------------------------------
def test_batchnorm_hand_worked():
    # one channel, values 1, 2, 3, 6 (N=1, 2x2): mean 3, biased var (4+1+0+9)/4 = 3.5,
    # unbiased var 14/3. Running stats from (0, 1) with momentum 0.1:
    # mean 0.9*0 + 0.1*3 = 0.3, var 0.9*1 + 0.1*14/3 = 0.9 + 0.4666.. = 1.3666..
    x = np.array([1.0, 2.0, 3.0, 6.0]).reshape(1, 1, 2, 2)
    rm, rv = np.zeros(1), np.ones(1)
    out, cache = batchnorm2d_forward(x, np.ones(1), np.zeros(1), rm, rv, training=True, eps=0.0)
    np.testing.assert_allclose(out.ravel(), (np.array([1, 2, 3, 6]) - 3) / np.sqrt(3.5))
    np.testing.assert_allclose(rm, [0.3])
    np.testing.assert_allclose(rv, [0.9 + 0.1 * 14 / 3])
    # a constant upstream gradient has zero effect on a normalised output: dx = 0
    dx, dgamma, dbeta = batchnorm2d_backward(np.ones_like(out), cache)
    np.testing.assert_allclose(dx, 0, atol=1e-15)
    np.testing.assert_allclose(dbeta, [4.0])
    np.testing.assert_allclose(dgamma, [0.0], atol=1e-12)  # sum of xhat is 0


@settings(max_examples=20)
@given(shapes4, st.booleans(), st.integers(0, 999))
def test_batchnorm_gradcheck(shape, training, seed):
    N, C, H, W = shape
    assume(not (training and N * H * W < 2))  # training batch norm needs 2 values a channel
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    g, b = rng.standard_normal(C), rng.standard_normal(C)
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2, C)

    def f(x_, g_, b_):  # fresh copies of the running stats: the forward updates them in place
        return batchnorm2d_forward(x_, g_, b_, rm.copy(), rv.copy(), training)[0]

    out, cache = batchnorm2d_forward(x, g, b, rm.copy(), rv.copy(), training)
    dout = rng.standard_normal(shape)
    dx, dg, db = batchnorm2d_backward(dout, cache)
    tol = 1e-6  # the normalised output is flat along two directions: a little more rounding

    def close(analytic, numeric):
        # With two values per channel the normalised output is +-1 whatever x is, so dx is
        # ~0 and both sides are rounding noise: accept an absolute floor of 1e-8 there.
        return np.abs(analytic - numeric).max(initial=0) < 1e-8 or rel_error(analytic, numeric) < tol

    assert close(dx, numerical_grad(lambda v: f(v, g, b), x, dout))
    assert close(dg, numerical_grad(lambda v: f(x, v, b), g, dout))
    assert close(db, numerical_grad(lambda v: f(x, g, v), b, dout))


@pytest.mark.oracle
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (1, 2, 1, 3), (0, 2, 3, 3)])
def test_batchnorm_vs_torch(torch, training, shape):
    rng = np.random.default_rng(7)
    C = shape[1]
    x = (3 + 2 * rng.standard_normal(shape)).astype(np.float32)
    g = rng.standard_normal(C).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    rm = rng.standard_normal(C).astype(np.float32)
    rv = rng.uniform(0.5, 2, C).astype(np.float32)
    rmt, rvt = torch.tensor(rm), torch.tensor(rv)
    dout = rng.standard_normal(shape).astype(np.float32)
    for step in range(2):  # two steps: the running statistics must keep agreeing
        out, cache = batchnorm2d_forward(x, g, b, rm, rv, training, momentum=0.1, eps=1e-5)
        dx, dg, db = batchnorm2d_backward(dout, cache)
        xt, gt, bt = _t(torch, x), _t(torch, g), _t(torch, b)
        ot = torch.nn.functional.batch_norm(xt, rmt, rvt, gt, bt, training, 0.1, 1e-5)
        ot.backward(torch.tensor(dout))
        for a, t in [(out, ot), (dx, xt.grad), (dg, gt.grad), (db, bt.grad), (rm, rmt), (rv, rvt)]:
            assert a.dtype == np.float32
            np.testing.assert_allclose(a, t.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_batchnorm_one_value_per_channel_is_an_error():
    with pytest.raises(ValueError):
        batchnorm2d_forward(np.ones((1, 2, 1, 1)), np.ones(2), np.zeros(2), np.zeros(2),
                            np.ones(2), training=True)


@pytest.mark.oracle
def test_frozen_batchnorm_vs_torchvision(torch, torchvision):
    rng = np.random.default_rng(2)
    C = 5
    x = rng.standard_normal((2, C, 4, 3)).astype(np.float32)
    bufs = {"weight": rng.standard_normal(C), "bias": rng.standard_normal(C),
            "running_mean": rng.standard_normal(C), "running_var": rng.uniform(0.1, 3, C)}
    bufs = {k: v.astype(np.float32) for k, v in bufs.items()}
    layer = torchvision.ops.FrozenBatchNorm2d(C)
    layer.load_state_dict({k: torch.tensor(v) for k, v in bufs.items()})
    xt = _t(torch, x)
    ot = layer(xt)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    ot.backward(torch.tensor(dout))
    out, cache = frozen_batchnorm2d_forward(x, bufs["weight"], bufs["bias"], bufs["running_mean"],
                                            bufs["running_var"])
    dx = frozen_batchnorm2d_backward(dout, cache)
    assert out.dtype == dx.dtype == np.float32
    np.testing.assert_allclose(out, ot.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-5, atol=1e-6)


@settings(max_examples=10)
@given(shapes4, st.integers(0, 999))
def test_frozen_batchnorm_gradcheck(shape, seed):
    rng = np.random.default_rng(seed)
    C = shape[1]
    w, b, m = rng.standard_normal(C), rng.standard_normal(C), rng.standard_normal(C)
    v = rng.uniform(0.1, 2, C)
    x = rng.standard_normal(shape)
    out, cache = frozen_batchnorm2d_forward(x, w, b, m, v)
    dout = rng.standard_normal(shape)
    num = numerical_grad(lambda u: frozen_batchnorm2d_forward(u, w, b, m, v)[0], x, dout)
    assert rel_error(frozen_batchnorm2d_backward(dout, cache), num) < GRAD_TOL


# -- nearest upsampling -------------------------------------------------------------------------------
def test_upsample_nearest_hand_worked():
    # 1x3 -> 1x7 (and 2 -> 5 rows): scale 3/7, src = floor(j * 3/7) = 0 0 0 1 1 2 2
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).reshape(1, 1, 2, 3)
    out, cache = upsample_nearest_forward(x, (2, 7))
    np.testing.assert_array_equal(out[0, 0, 0], [1, 1, 1, 2, 2, 3, 3])
    # dout = ones: each source pixel collects as many 1s as copies it made: 3, 2, 2
    dx = upsample_nearest_backward(np.ones((1, 1, 2, 7)), cache)
    np.testing.assert_array_equal(dx[0, 0], [[3, 2, 2], [3, 2, 2]])


@settings(max_examples=20)
@given(shapes4, st.integers(1, 9), st.integers(1, 9), st.integers(0, 999))
def test_upsample_nearest_gradcheck(shape, Ho, Wo, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    out, cache = upsample_nearest_forward(x, (Ho, Wo))
    dout = rng.standard_normal(out.shape)
    num = numerical_grad(lambda v: upsample_nearest_forward(v, (Ho, Wo))[0], x, dout)
    assert rel_error(upsample_nearest_backward(dout, cache), num) < GRAD_TOL


@pytest.mark.oracle
@pytest.mark.parametrize("hw,size", [((7, 9), (14, 18)), ((25, 34), (50, 68)), ((5, 7), (13, 11)),
                                     ((13, 17), (25, 34)), ((6, 6), (4, 3)), ((1, 1), (3, 2))])
def test_upsample_nearest_vs_torch(torch, hw, size):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3) + hw).astype(np.float32)
    out, cache = upsample_nearest_forward(x, size)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    xt = _t(torch, x)
    ot = torch.nn.functional.interpolate(xt, size=size, mode="nearest")
    ot.backward(torch.tensor(dout))
    np.testing.assert_array_equal(out, ot.detach().numpy())
    dx = upsample_nearest_backward(dout, cache)
    assert dx.dtype == np.float32
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(interpolate_nearest(x, size), out)


def test_upsample_zero_batch():
    out, cache = upsample_nearest_forward(np.zeros((0, 2, 3, 3)), (6, 6))
    assert out.shape == (0, 2, 6, 6)
    assert upsample_nearest_backward(out, cache).shape == (0, 2, 3, 3)


# -- add and flatten ----------------------------------------------------------------------------------
def test_add_and_flatten():
    a, b = np.arange(6.0).reshape(1, 2, 3, 1), np.ones((1, 2, 3, 1))
    out, cache = add_forward(a, b)
    np.testing.assert_array_equal(out, a + 1)
    dout = np.arange(6.0).reshape(a.shape)
    da, db = add_backward(dout, cache)
    np.testing.assert_array_equal(da, dout)
    np.testing.assert_array_equal(db, dout)
    da[0, 0, 0, 0] = 99  # fresh arrays: writing one changes neither the other nor dout
    assert db[0, 0, 0, 0] == 0 and dout[0, 0, 0, 0] == 0
    out, cache = flatten_forward(a)
    assert out.shape == (1, 6)
    np.testing.assert_array_equal(out[0], [0, 1, 2, 3, 4, 5])  # C-order, as torch.flatten(x, 1)
    assert flatten_backward(out, cache).shape == a.shape
    assert flatten_forward(np.zeros((0, 2, 3)))[0].shape == (0, 6)


@pytest.mark.oracle
@settings(max_examples=20)
@given(shapes4, st.sampled_from([(3, 2, 1), (1, 2, 0), (2, 2, 0), (2, 1, 1), (3, 1, 0)]),
       st.integers(0, 999))
def test_max_pool_vs_torch_drawn_with_ties(shape, ksp, seed):
    from conftest import oracle
    torch, _ = oracle()
    k, s, p = ksp
    N, C, H, W = shape
    assume(H + 2 * p >= k and W + 2 * p >= k)  # the window fits the padded input
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 2, size=shape).astype(np.float64)   # four values: ties everywhere
    out, cache = max_pool2d_forward(x, k, s, p)
    dout = rng.standard_normal(out.shape)
    xt = torch.tensor(x, requires_grad=True)
    ot = torch.nn.functional.max_pool2d(xt, k, s, p)
    ot.backward(torch.tensor(dout))
    np.testing.assert_array_equal(out, ot.detach().numpy())
    np.testing.assert_allclose(max_pool2d_backward(dout, cache), xt.grad.numpy(), rtol=1e-12, atol=1e-12)
