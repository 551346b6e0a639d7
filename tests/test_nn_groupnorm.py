"""GroupNorm: hand-worked, finite differences in float64, torch's F.group_norm (values and
gradients through autograd), empty batches, the module's state_dict against torch.nn.GroupNorm."""
import numpy as np
import pytest
from conftest import oracle
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import numerical_grad, rel_error
from mrcnn_np.nn import GroupNorm, groupnorm_backward, groupnorm_forward

# float64 finite differences vs analytic, relative to the largest entry: 1e-6, as for batch norm
# (a group of two close values is a sharp function of x, which raises the O(h^2) error)...
GRAD_TOL = 1e-6
# ...or absolute: a group of two values normalises to about (-1, +1) whatever x is, so dx can be
# ~1e-4 everywhere, near the differences' rounding floor: sum(dout * f) adds up to ~200 terms of
# size ~1, each rounded by ~1e-16, and the difference divides by 2h = 2e-6, so ~1e-8
GRAD_ATOL = 1e-8


def grad_close(analytic, numeric):
    """rel_error below GRAD_TOL, or every entry within GRAD_ATOL."""
    return (rel_error(analytic, numeric) < GRAD_TOL
            or float(np.max(np.abs(analytic - numeric), initial=0.0)) < GRAD_ATOL)


@st.composite
def gn_case(draw):
    """(shape [N, C, H, W], G): N 1..2, C = G * (1..3) with G 1..3, maps 1x1 up to 3x4.
    Covers N=1, 1x1 maps, G=1 (layer norm) and G=C (instance norm)."""
    G = draw(st.integers(1, 3))
    C = G * draw(st.integers(1, 3))
    shape = (draw(st.integers(1, 2)), C, draw(st.integers(1, 3)), draw(st.integers(1, 4)))
    return shape, G


def close(ours, theirs, tol, scale):
    """max|ours - theirs| <= tol * max(scale, max|ours|, max|theirs|)."""
    top = max(scale, float(np.max(np.abs(ours), initial=0.0)),
              float(np.max(np.abs(theirs), initial=0.0)))
    return float(np.max(np.abs(ours - theirs), initial=0.0)) <= tol * top


def _params(rng, C, dtype=np.float64):
    gamma = (0.5 + rng.random(C)).astype(dtype)                   # [C], away from 0
    beta = rng.standard_normal(C).astype(dtype)                   # [C]
    return gamma, beta


# -- hand-worked -------------------------------------------------------------------------------
def test_hand_worked_two_groups():
    """One image, C = 4 channels of a 1x2 map, G = 2 groups of 2 channels, eps = 0:

        group 0 = channels 0, 1 = [1, 3 | 5, 7]  mean 4, var (9 + 1 + 1 + 9) / 4 = 5
        group 1 = channels 2, 3 = [2, 2 | 2, 6]  mean 3, var (1 + 1 + 1 + 9) / 4 = 3
        xhat group 0 = [-3, -1, 1, 3] / sqrt(5);  group 1 = [-1, -1, -1, 3] / sqrt(3)
    gamma = [1, 2, 1, 1], beta = [0, 0, 10, 0]:
        out = [-3, -1 | 2, 6] / sqrt(5)  and  [-1 + 10*sqrt(3), same | -1, 3] / sqrt(3)
    A constant dout = 1 has dx = 0 where gamma is constant over the group (group 1):
    shifting all of a group's values shifts its mean and leaves xhat alone. dbeta = [2, 2, 2, 2].
    """
    x = np.array([[[[1.0, 3.0]], [[5.0, 7.0]], [[2.0, 2.0]], [[2.0, 6.0]]]])   # [1, 4, 1, 2]
    gamma, beta = np.array([1.0, 2.0, 1.0, 1.0]), np.array([0.0, 0.0, 10.0, 0.0])
    out, cache = groupnorm_forward(x, gamma, beta, 2, eps=0.0)
    r5, r3 = np.sqrt(5.0), np.sqrt(3.0)
    expected = np.array([[[[-3 / r5, -1 / r5]], [[2 / r5, 6 / r5]],
                          [[-1 / r3 + 10, -1 / r3 + 10]], [[-1 / r3, 3 / r3]]]])
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    dx, dgamma, dbeta = groupnorm_backward(np.ones_like(out), cache)
    np.testing.assert_allclose(dx[0, 2:], 0.0, atol=1e-12)
    np.testing.assert_array_equal(dbeta, [2.0, 2.0, 2.0, 2.0])
    # dgamma = sum of xhat per channel: [-4, 4] / sqrt(5) and [-2, 2] / sqrt(3)
    np.testing.assert_allclose(dgamma, [-4 / r5, 4 / r5, -2 / r3, 2 / r3], rtol=1e-12)


def test_one_value_groups_give_beta():
    """G = C on a 1x1 map: each group holds one value, var = 0, xhat = 0, out = beta (as torch),
    and every gradient to x is 0."""
    x = np.arange(6.0).reshape(2, 3, 1, 1)
    gamma, beta = np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 2.0])
    out, cache = groupnorm_forward(x, gamma, beta, 3)
    np.testing.assert_array_equal(out, np.broadcast_to(beta[None, :, None, None], x.shape))
    dx, _, _ = groupnorm_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(dx, 0.0)


# -- finite differences -----------------------------------------------------------------------
@settings(max_examples=20)
@given(case=gn_case(), seed=st.integers(0, 2**16))
def test_gradcheck(case, seed):
    """dx, dgamma, dbeta against central differences in float64; tolerance: ``grad_close``
    (relative 1e-6 or absolute 1e-8; reached: median 2e-10 relative in 2000 draws; the draws
    above 1e-6 relative are tiny gradients, within 5e-9 absolute)."""
    shape, G = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    gamma, beta = _params(rng, shape[1])
    dout = rng.standard_normal(shape)
    out, cache = groupnorm_forward(x, gamma, beta, G)
    dx, dgamma, dbeta = groupnorm_backward(dout, cache)
    f = lambda: groupnorm_forward(x, gamma, beta, G)[0]   # noqa: E731 (reads the arrays each call)
    assert grad_close(dx, numerical_grad(lambda _: f(), x, dout))
    assert grad_close(dgamma, numerical_grad(lambda _: f(), gamma, dout))
    assert grad_close(dbeta, numerical_grad(lambda _: f(), beta, dout))


# -- oracle --------------------------------------------------------------------------------------
@settings(max_examples=20)
@given(case=gn_case(), seed=st.integers(0, 2**16), dtype=st.sampled_from([np.float32, np.float64]))
def test_matches_torch_group_norm(case, seed, dtype):
    """Values and gradients (x, weight, bias) against torch.nn.functional.group_norm through
    autograd, run in float64 on the same values (torch's own float32 kernel strays up to ~4e-5
    from it when a group's values nearly agree; ours stays within ~6e-7). Tolerances
    (``close``): float64 1e-10 (reached ~3e-14), float32 2e-6 (reached ~6e-7), of the largest
    entry or of the size of the terms summed (see below).

    torch refuses a batch whose groups hold one value in all (N * C/G * H * W = 1: its check for
    "more than 1 value per channel", shared with batch norm); we return beta there
    (test_one_value_groups_give_beta), so that case is only checked to raise in torch."""
    torch, _ = oracle()
    shape, G = case
    if shape[0] * (shape[1] // G) * shape[2] * shape[3] == 1:
        with pytest.raises(ValueError):
            torch.nn.functional.group_norm(torch.zeros(shape), G)
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    gamma, beta = _params(rng, shape[1], dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    out, cache = groupnorm_forward(x, gamma, beta, G)
    dx, dgamma, dbeta = groupnorm_backward(dout, cache)
    assert out.dtype == dx.dtype == dgamma.dtype == dbeta.dtype == dtype
    # torch in float64 on the same values: the truth for both dtypes
    xt, gt, bt = (torch.tensor(a.astype(np.float64), requires_grad=True) for a in (x, gamma, beta))
    ot = torch.nn.functional.group_norm(xt, G, gt, bt, eps=1e-5)
    ot.backward(torch.from_numpy(dout.astype(np.float64)))
    tol = 1e-10 if dtype == np.float64 else 2e-6
    # out, dgamma and dbeta are sums of terms of size ~1 (xhat is ~1 by construction), so 1 is a
    # floor for their scale: a group of one value has dgamma = 0 exactly here and ~1e-14 in torch
    for ours, theirs in ((out, ot), (dgamma, gt.grad), (dbeta, bt.grad)):
        assert close(ours, theirs.detach().numpy(), tol, 1.0)
    # dx = invstd * (g - mean(g) - xhat * mean(g xhat)) cancels: for a group of two values it
    # is ~1e-3 of its terms, and both libraries round at the scale of the terms, max|g| invstd
    terms = np.max(np.abs(dout * gamma[:, None, None])) * np.max(cache[1])
    assert close(dx, xt.grad.numpy(), tol, terms)


def test_matches_torch_larger_and_eps():
    """One bigger case with detectron2's 32 groups (C = 64, 2 channels a group) and another eps,
    float32 against torch's float32 kernel: 2e-5 of the largest entry."""
    torch, _ = oracle()
    rng = np.random.default_rng(3)
    x = (3.0 + 2.0 * rng.standard_normal((2, 64, 5, 7))).astype(np.float32)
    gamma, beta = _params(rng, 64, np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    out, cache = groupnorm_forward(x, gamma, beta, 32, eps=1e-3)
    dx, dgamma, dbeta = groupnorm_backward(dout, cache)
    xt, gt, bt = (torch.tensor(a, requires_grad=True) for a in (x, gamma, beta))
    ot = torch.nn.functional.group_norm(xt, 32, gt, bt, eps=1e-3)
    ot.backward(torch.from_numpy(dout))
    for ours, theirs in ((out, ot), (dx, xt.grad), (dgamma, gt.grad), (dbeta, bt.grad)):
        assert rel_error(ours, theirs.detach().numpy()) < 2e-5


# -- edges -----------------------------------------------------------------------------------------
def test_empty_batch_and_empty_map(torch):
    """N = 0 (and a 0-wide map): empty outputs of the right shapes, zero dgamma and dbeta. torch
    agrees for N = 0 (shapes, and zero weight grads); it refuses a 0-wide map, where we choose to
    return the empty output like every other layer here."""
    for shape in ((0, 4, 3, 3), (2, 4, 0, 3)):
        x = np.zeros(shape, np.float32)
        gamma, beta = np.ones(4, np.float32), np.zeros(4, np.float32)
        out, cache = groupnorm_forward(x, gamma, beta, 2)
        assert out.shape == shape and out.dtype == np.float32
        dx, dgamma, dbeta = groupnorm_backward(np.zeros_like(out), cache)
        assert dx.shape == shape
        np.testing.assert_array_equal(dgamma, 0.0)
        np.testing.assert_array_equal(dbeta, 0.0)
        if shape[0] == 0:
            gt = torch.tensor(gamma, requires_grad=True)
            ot = torch.nn.functional.group_norm(torch.from_numpy(x), 2, gt, torch.from_numpy(beta))
            ot.sum().backward()
            assert tuple(ot.shape) == shape
            np.testing.assert_array_equal(gt.grad.numpy(), 0.0)
        else:
            with pytest.raises(RuntimeError):
                torch.nn.functional.group_norm(torch.from_numpy(x), 2)


def test_inputs_not_modified_and_bad_groups():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3, 3))
    gamma, beta = _params(rng, 4)
    copies = [a.copy() for a in (x, gamma, beta)]
    out, cache = groupnorm_forward(x, gamma, beta, 2)
    dout = rng.standard_normal(out.shape)
    d0 = dout.copy()
    groupnorm_backward(dout, cache)
    for a, c in zip((x, gamma, beta, dout), copies + [d0]):
        np.testing.assert_array_equal(a, c)
    with pytest.raises(ValueError):
        groupnorm_forward(x, gamma, beta, 3)   # 4 channels do not split into 3 groups
    with pytest.raises(ValueError):
        GroupNorm(3, 4)


def test_same_in_train_and_eval():
    """No running statistics: train() and eval() give the same output, and an image's output
    does not depend on the other images of its batch."""
    rng = np.random.default_rng(1)
    m = GroupNorm(2, 4)
    x = rng.standard_normal((3, 4, 2, 2)).astype(np.float32)
    a = m.train().forward(x)[0]
    b = m.eval().forward(x)[0]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(m.forward(x[1:2])[0], a[1:2], rtol=1e-6, atol=1e-6)


# -- the module ------------------------------------------------------------------------------------
def test_module_state_dict_and_grads_match_torch(torch):
    """GroupNorm(8, 32): the state_dict keys, shapes and initial values of torch.nn.GroupNorm;
    after loading random weights, the same output and accumulated parameter grads (two backward
    passes add up, as every layer's grads do)."""
    ours, theirs = GroupNorm(8, 32), torch.nn.GroupNorm(8, 32)
    sd_t = {k: v.detach().numpy() for k, v in theirs.state_dict().items()}
    sd = ours.state_dict()
    assert sorted(sd) == sorted(sd_t) == ["bias", "weight"]
    for k in sd:
        np.testing.assert_array_equal(sd[k], sd_t[k])
        assert sd[k].dtype == sd_t[k].dtype == np.float32
    assert sorted(k for k, _ in theirs.named_parameters()) == sorted(k for k, _, _ in
                                                                      ours.named_parameters())
    rng = np.random.default_rng(2)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(_params(rng, 32, np.float32)[0]))
        theirs.bias.copy_(torch.from_numpy(_params(rng, 32, np.float32)[1]))
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = rng.standard_normal((2, 32, 4, 3)).astype(np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    ot = theirs(xt)
    ot.backward(torch.from_numpy(dout))
    ours.zero_grad()
    out, cache = ours.forward(x)
    dx = ours.backward(dout, cache)
    ours.backward(dout, cache)   # a second pass: grads accumulate
    assert rel_error(out, ot.detach().numpy()) < 2e-5
    assert rel_error(dx, xt.grad.numpy()) < 2e-5
    assert rel_error(ours.grads["weight"], 2 * theirs.weight.grad.numpy()) < 2e-5
    assert rel_error(ours.grads["bias"], 2 * theirs.bias.grad.numpy()) < 2e-5
