"""Backbone (ResNet body + FPN): names, shapes, values and gradients against torchvision, finite
differences in float64, freezing, odd sizes and empty batches (chapter 02)."""
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import oracle
from gradcheck import rel_error
from hypothesis import given, settings
from hypothesis import strategies as st

from mrcnn_np.backbone import (FEATURE_NAMES, FEATURE_STRIDES, TINY, ResNetFPN, multiply_adds,
                               resnet50_fpn, resnet_fpn_tiny)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import tv_agreement  # noqa: E402 (tools/ is not a package)

# -- torch oracles -------------------------------------------------------------------------------


def torch_backbone(block_counts=(3, 4, 6, 3), width=64, fpn_channels=256, norm="frozen",
                   trainable_layers=3):
    """torchvision's own classes at any width: ``tools/tv_agreement.torchvision_resnet_fpn``
    (written once there; benchmarks/bench_tiny.py builds its twin with it too)."""
    oracle()
    return tv_agreement.torchvision_resnet_fpn(block_counts, width, fpn_channels, norm,
                                               trainable_layers)


def randomise_(bb, seed=0):
    """Make every norm layer a non-identity (random affine and running statistics) and every FPN
    bias non-zero, so that the comparison sees them."""
    torch, tv = oracle()
    g = torch.Generator().manual_seed(seed)
    norms = (torch.nn.BatchNorm2d, tv.ops.FrozenBatchNorm2d)
    with torch.no_grad():
        for m in bb.modules():
            if isinstance(m, norms):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            elif isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
    return bb


def to_numpy_state(bb):
    """torchvision's state dict as numpy arrays, without num_batches_tracked (which we do not keep)."""
    return {k: v.detach().numpy().copy() for k, v in bb.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def pair(block_counts=(1, 1, 1, 1), width=16, fpn_channels=32, norm="frozen", trainable_layers=3,
         seed=0, dtype=np.float32):
    """(torch backbone with randomised weights, ours holding the same weights), in ``dtype``."""
    torch, _ = oracle()
    torch.manual_seed(seed)
    theirs = randomise_(torch_backbone(block_counts, width, fpn_channels, norm, trainable_layers), seed)
    if dtype == np.float64:
        theirs = theirs.double()
    ours = ResNetFPN(block_counts, width, fpn_channels, norm, trainable_layers, dtype=dtype)
    ours.load_state_dict(to_numpy_state(theirs))
    return theirs, ours


def run_both(theirs, ours, x, grads):
    """Forward both, backward ``sum(P_i * grads_i)`` through both; return (ours P, their P,
    our param grads by name, their param grads by name)."""
    torch, _ = oracle()
    xt = torch.from_numpy(x)
    out = theirs(xt)
    ps_t = [out[k] for k in FEATURE_NAMES]
    ours.zero_grad()
    ps, cache = ours.forward(x)
    g_t = {}
    if grads is not None:
        sum(((p * torch.from_numpy(g)).sum() for p, g in zip(ps_t, grads) if g is not None)).backward()
        g_t = {k: p.grad.numpy() for k, p in theirs.named_parameters() if p.requires_grad}
        ours.backward(grads, cache)
    g_ours = {k: g for k, _, g in ours.named_parameters()}
    return ps, [p.detach().numpy() for p in ps_t], g_ours, g_t


# -- names and shapes ----------------------------------------------------------------------------


def test_state_dict_matches_torchvision_frozen():
    """norm="frozen": exactly the keys and shapes of resnet_fpn_backbone(resnet50, FrozenBN)."""
    torch, tv = oracle()
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops import FrozenBatchNorm2d
    theirs = resnet_fpn_backbone(backbone_name="resnet50", weights=None,
                                 norm_layer=FrozenBatchNorm2d, trainable_layers=3)
    ref = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    model = resnet50_fpn(norm="frozen")
    ours = {k: v.shape for k, v in model.state_dict().items()}
    assert ours == ref
    assert list(ours) == list(ref)  # even the order
    assert "body.layer1.0.downsample.1.running_var" in ours and "fpn.inner_blocks.0.0.weight" in ours
    # the trainable parameters are the same too (trainable_layers=3: layer2..4 and the FPN)
    ref_train = {k for k, p in theirs.named_parameters() if p.requires_grad}
    assert {k for k, _, _ in model.named_parameters()} == ref_train


def test_state_dict_matches_maskrcnn_backbone_batchnorm():
    """maskrcnn_resnet50_fpn(weights=None) uses BatchNorm2d: keys equal ours up to
    num_batches_tracked (one per norm layer, which we drop), shapes equal."""
    torch, tv = oracle()
    theirs = tv.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).backbone
    sd = theirs.state_dict()
    ours = resnet50_fpn(norm="batch", trainable_layers=5)
    ref = {k: tuple(v.shape) for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert {k: v.shape for k, v in ours.state_dict().items()} == ref
    assert sum(k.endswith("num_batches_tracked") for k in sd) == 53  # 53 norm layers in R50
    # with no pretrained weights torchvision trains all 5 layers; so do we with trainable_layers=5
    assert {k for k, _, _ in ours.named_parameters()} == \
        {k for k, p in theirs.named_parameters() if p.requires_grad}
    n = sum(p.size for _, p, _ in ours.named_parameters())
    assert n == sum(p.numel() for p in theirs.parameters()) == 26_852_416


@pytest.mark.parametrize("t", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("norm", ["frozen", "batch"])
def test_trainable_layers_as_torchvision(t, norm):
    theirs = torch_backbone((1, 1, 1, 1), 8, 16, norm, t)
    ours = ResNetFPN((1, 1, 1, 1), 8, 16, norm, t)
    assert {k for k, _, _ in ours.named_parameters()} == \
        {k for k, p in theirs.named_parameters() if p.requires_grad}
    assert set(ours.state_dict()) == set(to_numpy_state(theirs))  # frozen ones stay in the state
    # freeze() re-applies the rule to a built model, unfreezing too
    refrozen = ResNetFPN((1, 1, 1, 1), 8, 16, norm, 5 - t).freeze(t)
    assert {k for k, _, _ in refrozen.named_parameters()} == {k for k, _, _ in ours.named_parameters()}


def test_shapes_1024_resnet50_by_arithmetic_and_tiny():
    """For 1024x1024 every stride divides: C_k and P_k are 1024 / 2**k on a side.
    1024 -conv1 s2-> 512 -maxpool s2-> 256 (C2) -> 128 (C3) -> 64 (C4) -> 32 (C5); P6 = 16."""
    m = resnet_fpn_tiny(np.random.default_rng(0)).eval()
    x = np.zeros((1, 3, 1024, 1024), np.float32)
    cs, _ = m.body.forward(x)
    assert [c.shape for c in cs] == [(1, 64, 256, 256), (1, 128, 128, 128), (1, 256, 64, 64),
                                     (1, 512, 32, 32)]
    assert resnet50_fpn().body.out_channels == [256, 512, 1024, 2048]
    assert TINY["width"] * 4 == 64
    assert FEATURE_STRIDES == (4, 8, 16, 32, 64)


def test_multiply_adds():
    """Stem by hand at 224 x 224: conv1 7x7 s2 p3 gives 112 x 112 outputs, each 64 filters of
    3 x 7 x 7 = 147 weights: 112 * 112 * 64 * 147 = 118,013,952. The whole ResNet-50 body at
    224 is 4.087 G, torchvision's documented 4.09 GFLOPS for resnet50 (their fc adds 2 M)."""
    r50 = resnet50_fpn()
    macs = multiply_adds(r50, 224, 224)
    assert macs["stem"] == 112 * 112 * 64 * 147 == 118_013_952
    body = sum(v for k, v in macs.items() if k != "fpn")
    assert body == 4_087_136_256 and round(body / 1e9 + 2048 * 1000 / 1e9, 2) == 4.09
    # the FPN from the real shapes of an odd-sized forward: lateral C_i*F + output F*F*9 per cell
    m = ResNetFPN((1, 1, 1, 1), 4, 8, "frozen", 5)
    ps, _ = m.forward(np.zeros((1, 3, 65, 97), np.float32))
    fpn = sum((c_in * 8 + 8 * 8 * 9) * p.shape[2] * p.shape[3]
              for c_in, p in zip(m.body.out_channels, ps[:4]))
    assert multiply_adds(m, 65, 97)["fpn"] == fpn


def test_dtype_kept_float32_and_float64():
    for dtype in (np.float32, np.float64):
        m = ResNetFPN((1, 1, 1, 1), 4, 8, "batch", 5, np.random.default_rng(0), dtype)
        x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(dtype)
        ps, cache = m.forward(x)
        assert all(p.dtype == dtype for p in ps)
        m.backward([np.ones_like(p) for p in ps], cache)
        assert all(g.dtype == dtype for _, _, g in m.named_parameters())


# -- oracle: values and gradients ----------------------------------------------------------------


def compare_with_torch(arch, norm, t, x, train=False, seed=0, tol32=1e-5, tol64=1e-11):
    """Our backbone against torchvision's holding the same random weights.

    float32: P2..P6 (rel_error < tol32) and the running statistics after the forward.
    float64: P2..P6, every trainable parameter's gradient for a random upstream gradient on all
    5 levels, and the running statistics (all < tol64). Returns the float64 grads by name.

    Why the gradients in float64: a deep ResNet with random weights is ill-conditioned in
    float32. A pre-activation within rounding of 0 can land on the other side of a ReLU, and a
    whole term of the gradient changes. On ResNet-50 at [2, 3, 64, 64], torch's own float32
    gradients differ from its float64 ones by 4e-3 (rel_error): that measures float32, not us.
    """
    rng = np.random.default_rng(seed)
    shapes = None
    for dtype in (np.float32, np.float64):
        theirs, ours = pair(*arch, norm, t, seed=seed, dtype=dtype)
        theirs.train(train), ours.train(train)
        grads = None if shapes is None else [rng.standard_normal(s) for s in shapes]
        ps, ps_t, g, g_t = run_both(theirs, ours, x.astype(dtype), grads)
        shapes = [p.shape for p in ps]
        assert [p.shape for p in ps_t] == shapes and all(p.dtype == dtype for p in ps)
        tol = tol32 if dtype == np.float32 else tol64
        worst = max(rel_error(a, b) for a, b in zip(ps, ps_t))
        assert worst < tol, (dtype, worst)
        ref = to_numpy_state(theirs)
        for k, v in ours.state_dict().items():
            assert rel_error(v, ref[k]) < tol, k  # e.g. running stats moved the same way
    assert set(g) == set(g_t)
    for k in g:
        assert rel_error(g[k], g_t[k]) < tol64, k
    return g


@pytest.mark.parametrize("shape", [(1, 3, 96, 128), (2, 3, 64, 64)])
def test_resnet50_fpn_eval_matches_torchvision(shape):
    """Full ResNet-50-FPN, FrozenBN with random statistics, trainable_layers=3 (so conv1 and
    layer1 get no gradient). Reached: values 2e-6 (float32), 6e-15 (float64); grads 6e-15."""
    x = np.random.default_rng(0).standard_normal(shape)
    g = compare_with_torch(((3, 4, 6, 3), 64, 256), "frozen", 3, x, tol32=2e-5)
    assert not any(k.startswith(("body.conv1", "body.layer1")) for k in g)
    assert g["body.layer2.0.conv1.weight"].any()


@pytest.mark.parametrize("shape", [(1, 3, 96, 128), (2, 3, 64, 64), (1, 3, 65, 97)])
@pytest.mark.parametrize("t", [3, 5])
def test_small_frozen_eval_matches_torchvision(shape, t):
    """Two blocks per stage (so a block without downsample is covered), width 8, FPN 16,
    non-square and odd sizes. Reached: values 7e-7 (float32)."""
    x = np.random.default_rng(1).standard_normal(shape)
    compare_with_torch(((2, 2, 2, 2), 8, 16), "frozen", t, x, seed=1)


@pytest.mark.parametrize("t", [3, 5])
def test_batchnorm_training_mode_matches_torch(t):
    """norm="batch" in training mode: batch statistics, running statistics updated in place
    (also in frozen stages, as torch does), values and gradients. Reached: values 5e-6 (float32)."""
    x = np.random.default_rng(2).standard_normal((2, 3, 64, 96))
    compare_with_torch(((1, 2, 1, 1), 8, 16), "batch", t, x, train=True, seed=2, tol32=5e-5)


def test_tiny_preset_training_mode_matches_torch():
    """The tiny preset itself (width 16, FPN 64, no normalization, all layers train) at
    2 x 128 x 128."""
    x = np.random.default_rng(3).standard_normal((2, 3, 128, 128))
    arch = (TINY["block_counts"], TINY["width"], TINY["fpn_channels"])
    g = compare_with_torch(arch, TINY["norm"], TINY["trainable_layers"], x, train=True, seed=3,
                           tol32=5e-5)
    assert TINY["norm"] == "none"
    assert len(g) == 33  # 17 body convs (no bias, no norm), 8 FPN convs x (weight, bias)


def test_none_levels_equal_zero_gradients():
    """A level given None contributes nothing: same grads as passing zeros for it; a level that
    gets no gradient from above or below leaves its convs' grads at zero."""
    rng = np.random.default_rng(3)
    m = ResNetFPN((1, 1, 1, 1), 4, 8, "frozen", 5, rng, np.float64)
    x = rng.standard_normal((1, 3, 64, 64))
    ps, cache = m.forward(x)
    gs = [rng.standard_normal(p.shape) for p in ps]
    with_none = [None, gs[1], None, None, None]
    with_zero = [np.zeros_like(p) for p in ps]
    with_zero[1] = gs[1]
    m.backward(with_none, cache)
    a = {k: g.copy() for k, _, g in m.named_parameters()}
    m.zero_grad()
    m.backward(with_zero, cache)
    for k, _, g in m.named_parameters():
        np.testing.assert_allclose(a[k], g, rtol=1e-12, atol=1e-14, err_msg=k)
    # only P3 has a gradient: P2's output conv, and P4/P5's output convs, get none
    for k in ("fpn.layer_blocks.0.0.weight", "fpn.layer_blocks.2.0.weight",
              "fpn.inner_blocks.0.0.weight"):
        assert not a[k].any(), k
    # P3's top-down path reaches C4's and C5's laterals (P3 = conv(lat3 + up(lat4 + up(lat5))))
    assert a["fpn.inner_blocks.3.0.weight"].any() and a["body.conv1.weight"].any()
    m.zero_grad()
    m.backward([None] * 5, cache)
    assert not any(g.any() for _, _, g in m.named_parameters())


def test_frozen_stages_are_never_visited():
    """trainable_layers=3: backward must not enter layer1 or the stem (no wasted work), and
    block 0 of layer2 is asked for no input gradient; trainable_layers=0: the body is skipped."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 3, 64, 64)).astype(np.float32)
    for t in (3, 0):
        m = ResNetFPN((1, 1, 1, 1), 4, 8, "frozen", t, rng)
        calls = []

        def spy(module, name):
            inner = module.backward

            def wrapped(*a, **k):
                calls.append((name, k.get("need_dx", True)))
                return inner(*a, **k)
            module.backward = wrapped
        for s in (1, 2, 3, 4):
            spy(m.body.children[f"layer{s}"][0], f"layer{s}")
        spy(m.body.conv1, "conv1")
        ps, cache = m.forward(x)
        m.backward([np.ones_like(p) for p in ps], cache)
        if t == 3:
            assert calls == [("layer4", True), ("layer3", True), ("layer2", False)]
        else:
            assert calls == []
        assert not any(g.any() for _, m_ in m.body.layer1.named_modules() for g in m_.grads.values())


# -- finite differences (float64) -----------------------------------------------------------------


def sampled_fd(m, x, grads, name, idx, h=1e-6):
    """Central difference of L = sum_i sum(P_i * grads_i) with respect to m's param ``name`` at
    the flat indices ``idx``."""
    mname, pname = name.rsplit(".", 1)
    p = dict(m.named_modules())[mname].params[pname].reshape(-1)  # a view: writes reach m
    out = []
    for i in idx:
        old = p[i]
        p[i] = old + h
        lp = sum(np.sum(a * g) for a, g in zip(m.forward(x)[0], grads))
        p[i] = old - h
        lm = sum(np.sum(a * g) for a, g in zip(m.forward(x)[0], grads))
        p[i] = old
        out.append((lp - lm) / (2 * h))
    return np.array(out)


@pytest.mark.parametrize("norm", ["batch", "frozen"])
def test_tiny_finite_differences(norm):
    """The tiny architecture (one bottleneck per stage) at width 4 / FPN 8 to stay cheap, float64,
    training mode (batch statistics for norm="batch"): 2 random entries of every trainable
    parameter of body and FPN. Tolerance: rel_error 1e-6 (reached: 5e-8)."""
    rng = np.random.default_rng(5)
    m = ResNetFPN(TINY["block_counts"], 4, 8, norm, 5, rng, np.float64).train()
    x = rng.standard_normal((2, 3, 32, 48))
    ps, cache = m.forward(x)
    grads = [rng.standard_normal(p.shape) for p in ps]
    m.backward(grads, cache)
    analytic = {k: g for k, _, g in m.named_parameters()}
    assert len(analytic) == (67 if norm == "batch" else 33)  # 17 convs (+ 17 norms x 2), 8 FPN
    for name in analytic:
        idx = rng.choice(analytic[name].size, size=2, replace=False)
        fd = sampled_fd(m, x, grads, name, idx)
        assert rel_error(analytic[name].reshape(-1)[idx], fd) < 1e-6, name


# -- edges -----------------------------------------------------------------------------------------


@settings(max_examples=8)
@given(h=st.integers(33, 80), w=st.integers(33, 80), n=st.integers(1, 2))
def test_odd_sizes_shapes(h, w, n):
    """Any size works: each stride-2 step maps s -> floor((s - 1) / 2) + 1 = ceil(s / 2), and the
    top-down upsampling goes to the lateral's size. Worked for 65 x 97:
    conv1 (k7 s2 p3): (65 + 6 - 7) // 2 + 1 = 33, (97 + 6 - 7) // 2 + 1 = 49
    maxpool (k3 s2 p1): 17 x 25 (C2); layer2: 9 x 13; layer3: 5 x 7; layer4: 3 x 4; P6: 2 x 2."""
    m = ResNetFPN((1, 1, 1, 1), 4, 8, "frozen", 5, np.random.default_rng(0))
    x = np.random.default_rng(h * w).standard_normal((n, 3, h, w)).astype(np.float32)
    ps, cache = m.forward(x)
    up = lambda s, k: s if k == 0 else up(-(-s // 2), k - 1)  # noqa: E731 (ceil halving)
    assert [p.shape for p in ps] == [(n, 8, up(h, k), up(w, k)) for k in (2, 3, 4, 5, 6)]
    m.backward([np.ones_like(p) for p in ps], cache)


def test_worked_65x97():
    m = ResNetFPN((1, 1, 1, 1), 4, 8, "frozen", 5, np.random.default_rng(0))
    ps, _ = m.forward(np.zeros((1, 3, 65, 97), np.float32))
    assert [p.shape[2:] for p in ps] == [(17, 25), (9, 13), (5, 7), (3, 4), (2, 2)]


def test_empty_batch():
    """N = 0 in eval mode: five empty feature maps of the right shapes, and a backward that
    leaves every grad at zero."""
    m = ResNetFPN((1, 1, 1, 1), 4, 8, "frozen", 5, np.random.default_rng(0))
    ps, cache = m.eval().forward(np.zeros((0, 3, 64, 64), np.float32))
    assert [p.shape for p in ps] == [(0, 8, 16, 16), (0, 8, 8, 8), (0, 8, 4, 4), (0, 8, 2, 2),
                                     (0, 8, 1, 1)]
    m.backward([np.zeros_like(p) for p in ps], cache)
    assert not any(g.any() for _, _, g in m.named_parameters())


def test_input_not_modified_and_bad_arguments():
    m = resnet_fpn_tiny(np.random.default_rng(0))  # training-mode BN: C5 needs > 1 value
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    x0 = x.copy()
    ps, cache = m.forward(x)
    m.backward([np.ones_like(p) for p in ps], cache)
    np.testing.assert_array_equal(x, x0)
    with pytest.raises(ValueError):
        ResNetFPN(trainable_layers=6)
    with pytest.raises(ValueError):
        ResNetFPN((1, 1, 1, 1), 4, 8, norm="instance")
    with pytest.raises(TypeError):
        resnet_fpn_tiny(depth=3)
    assert resnet_fpn_tiny(fpn_channels=32, norm="frozen").out_channels == 32


def test_same_seed_same_weights():
    a = resnet_fpn_tiny(np.random.default_rng(7)).state_dict()
    b = resnet_fpn_tiny(np.random.default_rng(7)).state_dict()
    c = resnet_fpn_tiny(np.random.default_rng(8)).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["body.conv1.weight"], c["body.conv1.weight"])


# -- norm="group" ---------------------------------------------------------------------------------


def test_group_norm_groups_rule():
    """32 groups but at least 4 channels a group, and a divisor of C (worked: 16 // 4 = 4 groups,
    64 // 4 = 16, 256 -> min(32, 64) = 32; 4 -> 1 (layer norm); 24 -> min(32, 6) = 6 divides 24;
    20 -> 5; 3 -> 1)."""
    from mrcnn_np.backbone import group_norm_groups
    assert [group_norm_groups(c) for c in (16, 32, 64, 128, 256, 2048, 4, 24, 20, 3)] == \
        [4, 8, 16, 32, 32, 32, 1, 6, 5, 1]
    m = resnet_fpn_tiny(np.random.default_rng(0), norm="group")
    assert m.body.bn1.num_groups == 4 and m.body.layer4[0].bn3.num_groups == 32


def test_group_norm_matches_torch_groupnorm():
    """norm="group" against torchvision's ResNet/FPN classes whose BatchNorm2d layers are swapped
    for torch.nn.GroupNorm(group_norm_groups(C), C) with random affine parameters: the same
    state_dict keys, and values and every parameter's gradient in float64 (reached 3e-15)."""
    torch, _ = oracle()
    from mrcnn_np.backbone import group_norm_groups
    torch.manual_seed(4)
    theirs = torch_backbone((1, 1, 1, 1), 8, 16, "batch", 5)
    g = torch.Generator().manual_seed(4)
    for parent in list(theirs.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.BatchNorm2d):
                C = child.num_features
                gn = torch.nn.GroupNorm(group_norm_groups(C), C)
                with torch.no_grad():
                    gn.weight.copy_(0.5 + torch.rand(C, generator=g))
                    gn.bias.copy_(0.2 * torch.randn(C, generator=g))
                setattr(parent, name, gn)
    theirs = randomise_(theirs, 4).double()  # non-zero FPN biases
    ours = ResNetFPN((1, 1, 1, 1), 8, 16, "group", 5, dtype=np.float64)
    assert sorted(ours.state_dict()) == sorted(to_numpy_state(theirs))
    ours.load_state_dict(to_numpy_state(theirs))
    x = np.random.default_rng(4).standard_normal((2, 3, 48, 64))
    shapes = [p.shape for p in ours.forward(x)[0]]
    grads = [np.random.default_rng(5 + i).standard_normal(s) for i, s in enumerate(shapes)]
    ps, ps_t, g_ours, g_t = run_both(theirs, ours, x, grads)
    assert max(rel_error(a, b) for a, b in zip(ps, ps_t)) < 1e-11
    assert set(g_ours) == set(g_t) and len(g_ours) == 67  # 17 convs, 17 GroupNorms x 2, 8 FPN
    for k in g_ours:
        assert rel_error(g_ours[k], g_t[k]) < 1e-11, k


def test_tiny_finite_differences_group_norm():
    """norm="group" on the tiny architecture at width 4 / FPN 8 (groups: 4 channels -> 1,
    8 -> 2, 16 -> 4, 32 -> 8, 64 -> 16, 128 -> 32), float64: 2 random entries of every
    trainable parameter against central differences. Tolerance: rel_error 1e-6 (reached: 7e-8)."""
    rng = np.random.default_rng(6)
    m = ResNetFPN(TINY["block_counts"], 4, 8, "group", 5, rng, np.float64)
    x = rng.standard_normal((2, 3, 32, 48))
    ps, cache = m.forward(x)
    grads = [rng.standard_normal(p.shape) for p in ps]
    m.backward(grads, cache)
    analytic = {k: g for k, _, g in m.named_parameters()}
    assert len(analytic) == 67  # 17 convs + 17 GroupNorms x 2 + 8 FPN
    for name in analytic:
        idx = rng.choice(analytic[name].size, size=2, replace=False)
        fd = sampled_fd(m, x, grads, name, idx)
        assert rel_error(analytic[name].reshape(-1)[idx], fd) < 1e-6, name
