"""Losses: hand-worked, finite differences, torch oracle, empty inputs."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import numerical_grad, rel_error
from mrcnn_np.nn.losses import (bce_with_logits_backward, bce_with_logits_forward,
                                cross_entropy_backward, cross_entropy_forward, l1_backward,
                                l1_forward, smooth_l1_backward, smooth_l1_forward)

GRAD_TOL = 1e-7
REDS = ["mean", "sum", "none"]


def _dloss(rng, loss):
    return rng.standard_normal(np.shape(loss)) if np.ndim(loss) else np.float64(rng.standard_normal())


# -- cross entropy -----------------------------------------------------------------------------
def test_cross_entropy_hand_worked():
    # logits [0, 0] for label 1: softmax (1/2, 1/2), loss log 2.
    # logits [log 3, 0] for label 0: softmax (3/4, 1/4), loss -log(3/4) = log(4/3)
    # mean = (log 2 + log 4/3) / 2 = log(8/3) / 2
    logits = np.array([[0.0, 0.0], [math.log(3), 0.0]])
    loss, cache = cross_entropy_forward(logits, np.array([1, 0]))
    assert abs(loss - math.log(8 / 3) / 2) < 1e-15
    # dlogits = (softmax - onehot) / 2 = [[1/4, -1/4], [-1/8, 1/8]]
    np.testing.assert_allclose(cross_entropy_backward(1.0, cache),
                               [[0.25, -0.25], [-0.125, 0.125]], atol=1e-15)


@settings(max_examples=20)
@given(st.integers(1, 5), st.integers(1, 4), st.sampled_from(REDS), st.integers(0, 999))
def test_cross_entropy_gradcheck(R, K, reduction, seed):
    rng = np.random.default_rng(seed)
    x = 3 * rng.standard_normal((R, K))
    labels = rng.integers(0, K, R)
    labels[rng.random(R) < 0.3] = -100
    loss, cache = cross_entropy_forward(x, labels, reduction=reduction)
    dloss = _dloss(rng, loss)
    num = numerical_grad(lambda v: cross_entropy_forward(v, labels, reduction=reduction)[0], x, dloss)
    if reduction == "mean" and (labels == -100).all():
        num = np.zeros_like(x)  # the loss is nan everywhere; torch's gradient is 0
    assert rel_error(cross_entropy_backward(dloss, cache), num) < GRAD_TOL


@pytest.mark.oracle
@pytest.mark.parametrize("reduction", REDS)
@pytest.mark.parametrize("ignore", [-100, 2])
def test_cross_entropy_vs_torch(torch, reduction, ignore):
    rng = np.random.default_rng(1)
    R, K = 13, 5
    x = (4 * rng.standard_normal((R, K))).astype(np.float32)
    x[0] = [100.0, -100.0, 0.0, 50.0, 99.0]   # large logits: no overflow
    labels = rng.integers(0, K, R)
    labels[[1, 4]] = ignore
    loss, cache = cross_entropy_forward(x, labels, ignore_index=ignore, reduction=reduction)
    dloss = np.asarray(_dloss(rng, loss), dtype=np.float32)
    dx = cross_entropy_backward(dloss, cache)
    xt = torch.tensor(x, requires_grad=True)
    lt = torch.nn.functional.cross_entropy(xt, torch.tensor(labels), ignore_index=ignore,
                                           reduction=reduction)
    lt.backward(torch.tensor(dloss))
    assert np.asarray(loss).dtype == dx.dtype == np.float32
    np.testing.assert_allclose(loss, lt.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.oracle
def test_cross_entropy_empty(torch):
    x = np.zeros((0, 3), np.float32)
    y = np.zeros(0, np.int64)
    lt = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(y))
    loss, cache = cross_entropy_forward(x, y)
    assert np.isnan(loss) and np.isnan(lt.item())           # torch: mean over nothing is nan
    loss, cache = cross_entropy_forward(x, y, zero_if_empty=True)
    assert loss == 0.0                                      # our explicit "no RoIs" rule
    assert cross_entropy_backward(1.0, cache).shape == (0, 3)
    assert cross_entropy_forward(x, y, reduction="sum")[0] == 0.0
    # every row ignored: nan (torch) or 0 on request, with zero gradient either way
    x = np.ones((2, 3))
    y = np.array([-100, -100])
    loss, cache = cross_entropy_forward(x, y, zero_if_empty=True)
    assert loss == 0.0
    np.testing.assert_array_equal(cross_entropy_backward(1.0, cache), 0)
    with pytest.raises(ValueError):
        cross_entropy_forward(x, np.array([0, 3]))


# -- BCE with logits ----------------------------------------------------------------------------
def test_bce_hand_worked():
    # x = 0, y = 1: loss log 2, grad (1/2 - 1) = -1/2; x = log 3, y = 0: s = 3/4,
    # loss -log(1/4) = log 4, grad 3/4. Weighted by w = (1, 2); mean over 2 elements:
    # loss (log 2 + 2 log 4) / 2 = 5 log 2 / 2; grads (-1/2 * 1, 3/4 * 2) / 2 = (-1/4, 3/4)
    x = np.array([0.0, math.log(3)])
    loss, cache = bce_with_logits_forward(x, np.array([1.0, 0.0]), weight=np.array([1.0, 2.0]))
    assert abs(loss - 2.5 * math.log(2)) < 1e-15
    np.testing.assert_allclose(bce_with_logits_backward(1.0, cache), [-0.25, 0.75], atol=1e-15)


@settings(max_examples=20)
@given(st.integers(1, 4), st.integers(1, 4), st.sampled_from(REDS), st.booleans(), st.integers(0, 999))
def test_bce_gradcheck(R, M, reduction, weighted, seed):
    rng = np.random.default_rng(seed)
    x = 3 * rng.standard_normal((R, M, M))
    y = rng.random((R, M, M))
    w = rng.random((R, 1, M)) if weighted else None
    loss, cache = bce_with_logits_forward(x, y, w, reduction)
    dloss = _dloss(rng, loss)
    num = numerical_grad(lambda v: bce_with_logits_forward(v, y, w, reduction)[0], x, dloss)
    assert rel_error(bce_with_logits_backward(dloss, cache), num) < GRAD_TOL


@pytest.mark.oracle
@pytest.mark.parametrize("reduction", REDS)
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_vs_torch(torch, reduction, weighted):
    rng = np.random.default_rng(2)
    x = (5 * rng.standard_normal((4, 28, 28))).astype(np.float32)
    x[0, 0, :3] = [200.0, -200.0, 0.0]   # stable at extreme logits
    y = (rng.random((4, 28, 28)) > 0.5).astype(np.float32)
    w = rng.random((4, 1, 28)).astype(np.float32) if weighted else None
    loss, cache = bce_with_logits_forward(x, y, w, reduction)
    dloss = np.asarray(_dloss(rng, loss), dtype=np.float32)
    dx = bce_with_logits_backward(dloss, cache)
    xt = torch.tensor(x, requires_grad=True)
    lt = torch.nn.functional.binary_cross_entropy_with_logits(
        xt, torch.tensor(y), weight=None if w is None else torch.tensor(w), reduction=reduction)
    lt.backward(torch.tensor(dloss))
    assert dx.dtype == np.float32 and np.asarray(loss).dtype == np.float32
    np.testing.assert_allclose(loss, lt.detach().numpy(), rtol=1e-5, atol=1e-6)
    # atol: sigmoid(x) - y cancels near s = 1, where one float32 ulp of s is 6e-8
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-5, atol=2e-7)


def test_bce_empty():
    x = np.zeros((0, 28, 28), np.float32)
    assert np.isnan(bce_with_logits_forward(x, x)[0])
    loss, cache = bce_with_logits_forward(x, x, zero_if_empty=True)
    assert loss == 0.0 and bce_with_logits_backward(1.0, cache).shape == x.shape


# -- smooth L1 and L1 ---------------------------------------------------------------------------------
def test_smooth_l1_hand_worked():
    # beta = 1: d = 0.5 -> 0.5 * 0.25 = 0.125 (grad 0.5); d = -3 -> 3 - 0.5 = 2.5 (grad -1)
    # sum = 2.625
    loss, cache = smooth_l1_forward(np.array([0.5, -3.0]), np.zeros(2), beta=1.0, reduction="sum")
    assert loss == 2.625
    np.testing.assert_array_equal(smooth_l1_backward(1.0, cache), [0.5, -1.0])
    # beta = 1/9 (torchvision's box loss): d = 0.05 < 1/9 -> 0.5 * 0.0025 * 9 = 0.01125
    loss, _ = smooth_l1_forward(np.array([0.05]), np.zeros(1), beta=1 / 9, reduction="sum")
    assert abs(loss - 0.01125) < 1e-15


@settings(max_examples=20)
@given(st.integers(1, 6), st.sampled_from([0.0, 1 / 9, 0.5, 1.0]), st.sampled_from(REDS),
       st.integers(0, 999))
def test_smooth_l1_and_l1_gradcheck(R, beta, reduction, seed):
    rng = np.random.default_rng(seed)
    x, t = rng.standard_normal((R, 4)), rng.standard_normal((R, 4))
    d = x - t
    x[np.abs(np.abs(d) - beta) < 1e-3] += 0.01   # away from the kinks at |d| = beta and 0
    x[np.abs(d) < 1e-3] += 0.01
    loss, cache = smooth_l1_forward(x, t, beta, reduction)
    dloss = _dloss(rng, loss)
    num = numerical_grad(lambda v: smooth_l1_forward(v, t, beta, reduction)[0], x, dloss)
    assert rel_error(smooth_l1_backward(dloss, cache), num) < 1e-6
    loss, cache = l1_forward(x, t, reduction)
    num = numerical_grad(lambda v: l1_forward(v, t, reduction)[0], x, dloss)
    assert rel_error(l1_backward(dloss, cache), num) < 1e-6


@pytest.mark.oracle
@pytest.mark.parametrize("beta", [0.0, 1 / 9, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("reduction", REDS)
def test_smooth_l1_vs_torch(torch, beta, reduction):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 4)).astype(np.float32)
    t = rng.standard_normal((50, 4)).astype(np.float32)
    t[0] = x[0]   # d = 0 exactly: sign(0) = 0
    loss, cache = smooth_l1_forward(x, t, beta, reduction)
    dloss = np.asarray(_dloss(rng, loss), dtype=np.float32)
    dx = smooth_l1_backward(dloss, cache)
    xt = torch.tensor(x, requires_grad=True)
    lt = torch.nn.functional.smooth_l1_loss(xt, torch.tensor(t), beta=beta, reduction=reduction)
    lt.backward(torch.tensor(dloss))
    assert dx.dtype == np.float32
    np.testing.assert_allclose(loss, lt.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.oracle
@pytest.mark.parametrize("reduction", REDS)
def test_l1_vs_torch(torch, reduction):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((20, 4)).astype(np.float32)
    t = rng.standard_normal((20, 4)).astype(np.float32)
    t[0] = x[0]
    loss, cache = l1_forward(x, t, reduction)
    dloss = np.asarray(_dloss(rng, loss), dtype=np.float32)
    xt = torch.tensor(x, requires_grad=True)
    lt = torch.nn.functional.l1_loss(xt, torch.tensor(t), reduction=reduction)
    lt.backward(torch.tensor(dloss))
    np.testing.assert_allclose(loss, lt.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(l1_backward(dloss, cache), xt.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_smooth_l1_empty_and_bad_reduction():
    e = np.zeros((0, 4))
    assert np.isnan(smooth_l1_forward(e, e)[0])
    loss, cache = smooth_l1_forward(e, e, beta=1 / 9, zero_if_empty=True)
    assert loss == 0.0 and smooth_l1_backward(1.0, cache).shape == (0, 4)
    assert smooth_l1_forward(e, e, reduction="sum")[0] == 0.0
    assert l1_forward(e, e, zero_if_empty=True)[0] == 0.0
    with pytest.raises(ValueError):
        l1_forward(e, e, reduction="average")
