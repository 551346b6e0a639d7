"""Layer objects (modules.py): saving/loading, gradient accumulation, Sequential vs torch."""
import numpy as np
import pytest

from gradcheck import numerical_grad, rel_error
from mrcnn_np.nn.modules import (BatchNorm2d, Conv2d, ConvTranspose2d, FrozenBatchNorm2d, Linear,
                                 Module, ReLU, Sequential)


class Tiny(Module):
    """A parent with named children, as torchvision names them."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.conv1 = Conv2d(2, 4, 3, padding=1, bias=False, rng=rng)
        self.bn1 = BatchNorm2d(4)
        self.fc = Linear(4 * 3 * 3, 2, rng=rng)


def test_state_dict_names_and_round_trip():
    m = Tiny()
    sd = m.state_dict()
    assert sorted(sd) == ["bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.weight",
                          "conv1.weight", "fc.bias", "fc.weight"]
    other = Tiny()
    rng = np.random.default_rng(9)
    new = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in sd.items()}
    other.load_state_dict(new)
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, new[k])
        assert v.dtype == np.float32
    new["fc.weight"][0, 0] = 123.0     # the module holds copies, not the caller's arrays
    assert other.fc.params["weight"][0, 0] != 123.0


def test_load_state_dict_mismatch_names_the_tensors():
    m = Tiny()
    sd = m.state_dict()
    bad = dict(sd)
    bad["fc.weight"] = np.zeros((3, 36), np.float32)
    del bad["bn1.running_var"]
    bad["layer9.weight"] = np.zeros(1, np.float32)
    before = m.state_dict()
    with pytest.raises(ValueError) as e:
        m.load_state_dict(bad)
    msg = str(e.value)
    assert "fc.weight" in msg and "bn1.running_var" in msg and "layer9.weight" in msg
    for k, v in m.state_dict().items():   # nothing was changed
        np.testing.assert_array_equal(v, before[k])


def test_grads_accumulate_and_zero_grad():
    rng = np.random.default_rng(1)
    conv = Conv2d(2, 3, 3, padding=1, rng=rng)
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    out, cache = conv.forward(x)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    conv.backward(dout, cache)
    once = {k: g.copy() for k, g in conv.grads.items()}
    out2, cache2 = conv.forward(x)          # applied twice (as the RPN head is, once per level)
    conv.backward(dout, cache2)
    for k in once:
        np.testing.assert_allclose(conv.grads[k], 2 * once[k], rtol=1e-6)
    conv.zero_grad()
    assert all(not g.any() for g in conv.grads.values())


def test_sequential_indexing_and_train_eval():
    seq = Sequential(Conv2d(1, 2, 1), BatchNorm2d(2), ReLU())
    assert len(seq) == 3 and isinstance(seq[1], BatchNorm2d)
    assert [n for n, _ in seq.named_modules()] == ["", "0", "1", "2"]
    seq.eval()
    assert not any(m.training for _, m in seq.named_modules())
    seq.train()
    assert all(m.training for _, m in seq.named_modules())


def test_sequential_gradcheck_float64():
    rng = np.random.default_rng(2)
    seq = Sequential(Conv2d(2, 3, 3, stride=2, padding=1, rng=rng), BatchNorm2d(3), ReLU(),
                     ConvTranspose2d(3, 2, 2, stride=2, rng=rng)).astype(np.float64)
    x = rng.standard_normal((2, 2, 5, 5))
    # BN in training updates its running stats in place: restore them around each call so
    # every finite-difference evaluation sees the same module.
    bn = seq[1]

    def f(v):
        saved = {k: b.copy() for k, b in bn.buffers.items()}
        out = seq.forward(v)[0]
        bn.buffers.update(saved)
        return out

    out, caches = seq.forward(x)
    dout = rng.standard_normal(out.shape)
    dx = seq.backward(dout, caches)
    assert rel_error(dx, numerical_grad(f, x, dout)) < 1e-6
    w = seq[0].params["weight"]
    assert rel_error(seq[0].grads["weight"], numerical_grad(lambda v: f(x), w, dout)) < 1e-6


@pytest.mark.oracle
@pytest.mark.parametrize("training", [True, False])
def test_sequential_vs_torch(torch, torchvision, training):
    rng = np.random.default_rng(3)
    ours = Sequential(Conv2d(3, 4, 3, stride=2, padding=1, rng=rng), BatchNorm2d(4), ReLU(),
                      Conv2d(4, 4, 1, rng=rng), FrozenBatchNorm2d(4),
                      ConvTranspose2d(4, 2, 2, stride=2, rng=rng))
    ours[1].buffers["running_var"][...] = rng.uniform(0.5, 2, 4)
    ours[4].buffers["running_mean"][...] = rng.standard_normal(4)
    nn = torch.nn
    theirs = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.BatchNorm2d(4), nn.ReLU(),
                           nn.Conv2d(4, 4, 1), torchvision.ops.FrozenBatchNorm2d(4),
                           nn.ConvTranspose2d(4, 2, 2, 2))
    # same names: our state dict loads into torch's module as is
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()}, strict=False)
    assert set(ours.state_dict()) <= set(theirs.state_dict())
    ours.train(training)
    theirs.train(training)
    x = rng.standard_normal((2, 3, 9, 7)).astype(np.float32)
    out, caches = ours.forward(x)
    xt = torch.tensor(x, requires_grad=True)
    ot = theirs(xt)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    ot.backward(torch.tensor(dout))
    dx = ours.backward(dout, caches)
    np.testing.assert_allclose(out, ot.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    tp = dict(theirs.named_parameters())
    for name, _, g in ours.named_parameters():
        np.testing.assert_allclose(g, tp[name].grad.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)
    tsd = theirs.state_dict()
    for k in ("1.running_mean", "1.running_var"):
        np.testing.assert_allclose(ours.state_dict()[k], tsd[k].numpy(), rtol=1e-5, atol=1e-6)


def test_astype_casts_params_grads_buffers():
    m = Tiny().astype(np.float64)
    for _, p, g in m.named_parameters():
        assert p.dtype == g.dtype == np.float64
    assert m.bn1.buffers["running_mean"].dtype == np.float64
    x = np.ones((1, 2, 3, 3))
    out, _ = m.conv1.forward(x)
    assert out.dtype == np.float64
