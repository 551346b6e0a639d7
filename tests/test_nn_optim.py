"""SGD and AdamW against torch.optim, exact resume, the warm-up/step schedule, the weight
average (WeightEMA) against torch's AveragedModel, initialisers."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mrcnn_np.nn import init
from mrcnn_np.nn.modules import Conv2d, Linear, Sequential
from mrcnn_np.nn.optim import SGD, AdamW, WeightEMA, warmup_multistep_lr


def _model():
    rng = np.random.default_rng(0)
    return Sequential(Conv2d(2, 3, 3, rng=rng), Linear(4, 5, rng=rng))


def _grads(n_steps, model):
    rng = np.random.default_rng(1)
    return [{name: rng.standard_normal(p.shape).astype(np.float32)
             for name, p, _ in model.named_parameters()} for _ in range(n_steps)]


def _run(opt, model, grads):
    for g in grads:
        for name, _, grad in model.named_parameters():
            grad[...] = g[name]
        opt.step()


HYPER = [dict(momentum=0.0), dict(momentum=0.9), dict(momentum=0.9, weight_decay=1e-4),
         dict(momentum=0.9, weight_decay=1e-2, nesterov=True), dict(momentum=0.5, dampening=0.3),
         dict(weight_decay=0.1)]


def _against_torch(torch, ours, theirs, lr, hyper, steps=5):
    """``steps`` steps of our optimiser and torch's from the same weights and gradients, the
    learning rate changed between steps as a schedule does: the same weights after each."""
    model = _model()
    params = {name: torch.tensor(p.copy(), requires_grad=True) for name, p, _ in model.named_parameters()}
    topt = theirs(list(params.values()), lr=lr, **hyper)
    opt = ours(model, lr=lr, **hyper)
    for i, g in enumerate(_grads(steps, model)):
        opt.lr = lr * (i + 1) / steps
        for group in topt.param_groups:
            group["lr"] = opt.lr
        for name, t in params.items():
            t.grad = torch.tensor(g[name])
        topt.step()
        _run(opt, model, [g])
        for name, p, _ in model.named_parameters():
            assert p.dtype == np.float32
            np.testing.assert_allclose(p, params[name].detach().numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.oracle
@pytest.mark.parametrize("hyper", HYPER, ids=[str(h) for h in HYPER])
def test_sgd_vs_torch(torch, hyper):
    _against_torch(torch, SGD, torch.optim.SGD, 0.1, hyper)


def test_sgd_hand_worked():
    # one weight p = 1, grad 1, lr 0.1, momentum 0.9, weight decay 0.5:
    # step 1: g = 1 + 0.5*1 = 1.5; buf = 1.5; p = 1 - 0.15 = 0.85
    # step 2: g = 1 + 0.5*0.85 = 1.425; buf = 0.9*1.5 + 1.425 = 2.775; p = 0.85 - 0.2775 = 0.5725
    model = Linear(1, 1, bias=False)
    model.params["weight"][...] = 1.0
    opt = SGD(model, lr=0.1, momentum=0.9, weight_decay=0.5)
    model.grads["weight"][...] = 1.0
    opt.step()
    assert abs(model.params["weight"][0, 0] - 0.85) < 1e-6
    opt.step()
    assert abs(model.params["weight"][0, 0] - 0.5725) < 1e-6
    assert opt.steps == 2


def _resume_is_exact(opt_class, hyper, bad_key):
    """6 steps in one go == 3 steps, state saved through .npz, fresh objects, 3 more steps;
    a state key that fits no parameter is an error naming it."""
    grads = _grads(6, _model())
    full = _model()
    _run(opt_class(full, **hyper), full, grads)
    part = _model()
    opt = opt_class(part, **hyper)
    _run(opt, part, grads[:3])
    import io
    buf = io.BytesIO()
    np.savez(buf, **opt.state_dict())
    buf.seek(0)
    saved = dict(np.load(buf, allow_pickle=False))
    resumed = _model()
    resumed.load_state_dict(part.state_dict())
    opt2 = opt_class(resumed, **hyper)
    opt2.load_state_dict(saved)
    assert opt2.steps == 3
    _run(opt2, resumed, grads[3:])
    for (_, a, _), (_, b, _) in zip(full.named_parameters(), resumed.named_parameters()):
        np.testing.assert_array_equal(a, b)
    bad = dict(saved, **{bad_key: np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="9.weight"):
        opt_class(_model(), **hyper).load_state_dict(bad)


def test_sgd_state_dict_resume_is_exact():
    _resume_is_exact(SGD, dict(lr=0.05, momentum=0.9, weight_decay=1e-4, nesterov=True),
                     "momentum_buffer.9.weight")


def test_sgd_nesterov_needs_momentum():
    with pytest.raises(ValueError):
        SGD(_model(), lr=0.1, nesterov=True)


ADAM_HYPER = [dict(), dict(weight_decay=0.0), dict(weight_decay=0.1, betas=(0.8, 0.99), eps=1e-6)]


@pytest.mark.oracle
@pytest.mark.parametrize("hyper", ADAM_HYPER, ids=[str(h) for h in ADAM_HYPER])
def test_adamw_vs_torch(torch, hyper):
    _against_torch(torch, AdamW, torch.optim.AdamW, 0.01, hyper, steps=6)


def test_adamw_hand_worked():
    # p = 1, grad 2 twice, lr 0.1, betas (0.5, 0.75), eps 0, weight decay 0.5:
    # step 1: p = 1 * (1 - 0.05) = 0.95; m = 0.5 * 2 = 1; v = 0.25 * 4 = 1
    #         m_hat = 1 / 0.5 = 2, v_hat = 1 / 0.25 = 4: p = 0.95 - 0.1 * 2 / 2 = 0.85
    # step 2: p = 0.85 * 0.95 = 0.8075; m = 0.5 + 1 = 1.5; v = 0.75 + 1 = 1.75
    #         m_hat = 1.5 / 0.75 = 2, v_hat = 1.75 / 0.4375 = 4: p = 0.8075 - 0.1 = 0.7075
    model = Linear(1, 1, bias=False)
    model.params["weight"][...] = 1.0
    opt = AdamW(model, lr=0.1, betas=(0.5, 0.75), eps=0.0, weight_decay=0.5)
    model.grads["weight"][...] = 2.0
    opt.step()
    assert abs(model.params["weight"][0, 0] - 0.85) < 1e-6
    opt.step()
    assert abs(model.params["weight"][0, 0] - 0.7075) < 1e-6
    assert opt.steps == 2


def test_adamw_state_dict_resume_is_exact():
    _resume_is_exact(AdamW, dict(lr=0.01, weight_decay=1e-2), "exp_avg.9.weight")


def test_warmup_multistep_lr_hand_worked():
    # base 0.02, warm-up over 4 iterations from factor 0.001, milestones 6 and 8, gamma 0.1
    #   it 0: 0.02 * 0.001                                    = 0.00002
    #   it 2: 0.02 * (0.001 + 0.999 * 2/4) = 0.02 * 0.5005     = 0.01001
    #   it 4: warm-up done                                     = 0.02
    #   it 5: before the first milestone                      = 0.02
    #   it 6: one milestone passed                            = 0.002
    #   it 8: two milestones passed                           = 0.0002
    kw = dict(base_lr=0.02, warmup_iters=4, warmup_factor=0.001, milestones=[6, 8])
    expected = {0: 0.00002, 2: 0.01001, 4: 0.02, 5: 0.02, 6: 0.002, 7: 0.002, 8: 0.0002, 100: 0.0002}
    for it, lr in expected.items():
        assert math.isclose(warmup_multistep_lr(it, **kw), lr, rel_tol=1e-12), it
    # no warm-up at all
    assert warmup_multistep_lr(0, 0.1, 0, 0.001, [], 0.1) == 0.1


@pytest.mark.oracle
def test_warmup_multistep_lr_vs_torch_schedulers(torch):
    """torch's LinearLR followed by MultiStepLR, both stepped every iteration, give the same lr."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.02)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.001, total_iters=10)
    steps = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[15, 20], gamma=0.1)
    for it in range(25):
        ours = warmup_multistep_lr(it, 0.02, 10, 0.001, [15, 20], 0.1)
        assert math.isclose(opt.param_groups[0]["lr"], ours, rel_tol=1e-9), it
        opt.step()
        warm.step()
        steps.step()


# -- the weight average ----------------------------------------------------------------------
def test_weight_ema_hand_worked():
    # decay 0.5; the weight after each step: 4, 2, 8, 6
    #   update 1: copy                     ema = 4
    #   update 2: d = min(0.5, 2/11)       ema = 2/11 * 4 + 9/11 * 2 = 26/11
    #   update 3: d = min(0.5, 3/12)       ema = 1/4 * 26/11 + 3/4 * 8 = 290/44
    #   update 4: d = min(0.5, 4/13)       ema = 4/13 * 290/44 + 9/13 * 6
    model = Linear(1, 1, bias=False)
    ema = WeightEMA(model, decay=0.5)
    expected = [4.0, 26 / 11, 290 / 44, 4 / 13 * 290 / 44 + 9 / 13 * 6]
    for w, e in zip([4.0, 2.0, 8.0, 6.0], expected):
        model.params["weight"][...] = w
        ema.update()
        assert abs(ema.averages["weight"][0, 0] - e) < 1e-6 * e
    assert ema.updates == 4
    # past the ramp the decay is the one asked for: (1 + n) / (10 + n) > 0.5 from n = 9 on
    for _ in range(10):
        ema.update()
    before = ema.averages["weight"].copy()
    model.params["weight"][...] = 0.0
    ema.update()
    np.testing.assert_allclose(ema.averages["weight"], 0.5 * before, rtol=1e-7)
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightEMA(model, decay=1.0)


@pytest.mark.oracle
def test_weight_ema_vs_torch_averaged_model(torch):
    """torch.optim.swa_utils.AveragedModel, given the same decay rule as its ``avg_fn``,
    averaged over the same 30 AdamW steps (fed the same gradients), holds the same numbers."""
    from torch.optim.swa_utils import AveragedModel
    decay = 0.9
    model = _model()
    params = torch.nn.ParameterList(
        [torch.nn.Parameter(torch.tensor(p.copy())) for _, p, _ in model.named_parameters()])

    def avg_fn(e, p, n):  # n: updates so far (AveragedModel copies on the first one itself)
        d = min(decay, (1 + int(n)) / (10 + int(n)))
        return d * e + (1 - d) * p

    theirs = AveragedModel(params, avg_fn=avg_fn)
    topt = torch.optim.AdamW(params, lr=0.01)
    opt, ema = AdamW(model, lr=0.01), WeightEMA(model, decay)
    for g in _grads(30, model):
        for t, (name, _, grad) in zip(params, model.named_parameters()):
            grad[...] = g[name]
            t.grad = torch.tensor(g[name])
        opt.step()
        topt.step()
        ema.update()
        theirs.update_parameters(params)
    assert ema.updates == 30
    for t, (name, _, _) in zip(theirs.module, model.named_parameters()):
        assert ema.averages[name].dtype == np.float32
        np.testing.assert_allclose(ema.averages[name], t.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_weight_ema_applied_swaps_and_restores_bit_for_bit_and_resumes_exactly():
    model = _model()
    opt, ema = SGD(model, lr=0.1, momentum=0.9), WeightEMA(model, 0.8)
    grads = _grads(6, model)
    for g in grads[:3]:
        _run(opt, model, [g])
        ema.update()
    trained = {name: p.copy() for name, p, _ in model.named_parameters()}
    with ema.applied() as m:
        assert m is model
        for name, p, _ in model.named_parameters():
            np.testing.assert_array_equal(p, ema.averages[name])
            assert not np.array_equal(p, trained[name])
    for name, p, _ in model.named_parameters():
        np.testing.assert_array_equal(p, trained[name])
    # a state dict through .npz, a fresh average: the next 3 updates are the same bits
    import io
    buf = io.BytesIO()
    np.savez(buf, **ema.state_dict())
    buf.seek(0)
    again = WeightEMA(model, 0.8)
    again.load_state_dict(dict(np.load(buf, allow_pickle=False)))
    assert again.updates == 3
    for g in grads[3:]:
        _run(opt, model, [g])
        ema.update()
        again.update()
    for name in ema.averages:
        np.testing.assert_array_equal(ema.averages[name], again.averages[name])
    with pytest.raises(ValueError, match="9.weight"):
        again.load_state_dict(dict(ema.state_dict(), **{"9.weight": np.zeros(3, np.float32)}))


# -- initialisers ------------------------------------------------------------------------------
@pytest.mark.oracle
@pytest.mark.parametrize("shape", [(64, 3, 7, 7), (256, 1024), (256, 256, 2, 2), (4, 5)])
def test_fans_match_torch(torch, shape):
    assert init.fans(shape) == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


def test_kaiming_uniform_bound_and_seed():
    rng = np.random.default_rng(0)
    w = init.kaiming_uniform((64, 3, 7, 7), rng)
    bound = 1 / math.sqrt(3 * 7 * 7)   # a = sqrt(5): bound = sqrt(3) * sqrt(2/6) / sqrt(fan_in)
    assert w.dtype == np.float32 and np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    np.testing.assert_array_equal(w, init.kaiming_uniform((64, 3, 7, 7), np.random.default_rng(0)))


def test_kaiming_normal_and_normal_std():
    rng = np.random.default_rng(0)
    w = init.kaiming_normal((256, 64, 3, 3), rng)         # fan_out = 256 * 9
    assert w.dtype == np.float32
    assert abs(w.std() / math.sqrt(2 / (256 * 9)) - 1) < 0.02
    w = init.normal((1000, 100), rng, std=0.01)
    assert abs(w.std() / 0.01 - 1) < 0.02 and abs(w.mean()) < 1e-3
    z = init.zeros((3, 4))
    assert z.dtype == np.float32 and not z.any()
    b = init.uniform_bias(16, 1000, rng)
    assert np.abs(b).max() <= 0.25


@pytest.mark.parametrize("hyper", ADAM_HYPER, ids=[str(h) for h in ADAM_HYPER])
def test_adamw_numba_kernel_is_bit_identical_to_the_numpy_lines(hyper):
    """kernels/optim_numba.py fuses AdamW's NumPy lines into one loop: the same operations in
    the same order and dtype, so 8 steps give exactly the same parameters and moments."""
    runs = []
    for backend in ("numpy", "numba"):
        model = _model()
        opt = AdamW(model, lr=0.01, backend=backend, **hyper)
        _run(opt, model, _grads(8, model))
        runs.append((model.state_dict(), opt.state_dict()))
    for a, b in zip(runs[0], runs[1]):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert AdamW(_model(), lr=0.01, backend="auto").backend == "numba"
    with pytest.raises(ValueError, match="no CUDA kernel"):
        AdamW(_model(), lr=0.01, backend="cuda")


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3000), st.sampled_from([np.float32, np.float64]), st.floats(-6, 3),
       st.integers(0, 2**31 - 1))
def test_sum_of_squares_kernel_is_numpys_sum_bit_for_bit(n, dtype, log_scale, seed):
    """The gradient norm's kernel adds the squares in numpy's pairwise order (blocks of 128,
    8 running sums), so it returns exactly ``np.sum(np.square(g, dtype=np.float64))``."""
    from kernels.optim_numba import sum_of_squares
    g = (np.random.default_rng(seed).standard_normal(n) * 10.0 ** log_scale).astype(dtype)
    assert sum_of_squares(g) == float(np.sum(np.square(g, dtype=np.float64)))


@pytest.mark.parametrize("shape", [(64, 64, 3, 3), (256, 3136), (802816,), (16, 3, 7, 7), (7,)])
def test_sum_of_squares_kernel_on_parameter_shapes(shape):
    # the tiny preset's shapes, fc6's 802,816 weights among them (many levels of halving)
    from kernels.optim_numba import sum_of_squares
    g = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    assert sum_of_squares(g) == float(np.sum(np.square(g, dtype=np.float64)))
    g[3] = np.inf
    assert sum_of_squares(g) == np.inf
