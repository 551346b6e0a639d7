"""The switches of chapter 14 (the Mask R-CNN paper's Table 2): RoI extractor, RoIAlign's
bin reduction, the pooling level, the mask head, with the mask loss and class-agnostic masks.

Four kinds of check:
1. each switch: the whole model's total loss against float64 central differences, on the
   tiny preset (64-px image, 16 sampled RoIs) with that switch set;
2. the pooler with a fixed level is exactly the plain op on that level (values and gradient);
3. RoIAlign's "max" reduction against a loop written out below, by hand on a tie, and its
   gradient against finite differences;
4. the config: every switch is saved and loaded, and an unknown value is a ValueError.
"""
import math

import numpy as np
import pytest
from gradcheck import numerical_grad, rel_error
from test_model import _check_entry, _fixed_samples, _scene, _tiny_model, _total

from mrcnn_np import MaskRCNN
from mrcnn_np.config import CHOICES, config_from_dict, tiny
from mrcnn_np.ops import BackendUnavailable, crop_and_resize, roi_align, roi_pool, roi_warp
from mrcnn_np.ops.poolers import pooler_backward, pooler_forward
from mrcnn_np.ops.roi_align import roi_align_max, roi_align_max_backward, roi_align_max_forward
from mrcnn_np.ops.roi_pool import roi_pool_backward, roi_pool_forward

# Every non-default value of every switch, and the combinations the mask head must survive.
SWITCHES = [
    dict(roi_extractor="pool"), dict(roi_extractor="warp"),
    dict(roi_extractor="crop_and_resize"), dict(roi_align_reduction="max"),
    dict(roi_extractor="warp", roi_align_reduction="max"),
    dict(pool_level="stride16"), dict(pool_level="stride32"),
    dict(roi_extractor="pool", pool_level="stride32"),
    dict(mask_loss="softmax"), dict(class_agnostic_masks=True),
    dict(mask_head="mlp"), dict(mask_head="mlp", mask_loss="softmax"),
    dict(mask_head="mlp", class_agnostic_masks=True),
]


# ------------------------------------------------------------------------------------------
# 1. The whole model, one switch at a time
# ------------------------------------------------------------------------------------------
def _checked_entries(model):
    """(name, flat index) of the parameters checked: the largest gradient entry of each FPN
    output conv (the maps P2..P5 that the poolers read: every pooler's backward reaches
    them) and of every head parameter, and one random entry of each mask-branch weight."""
    pick = np.random.default_rng(2)
    out = []
    for name, p, g in model.named_parameters():
        a = np.abs(g).reshape(-1)
        if name.startswith("roi_heads.") or name.startswith("backbone.fpn.layer_blocks.") \
                and name.endswith(".weight"):
            out.append((name, int(np.argmax(a))))
        if name.startswith("roi_heads.mask_") and name.endswith(".weight"):
            out.append((name, int(pick.integers(a.size))))
    return out


@pytest.mark.parametrize("switch", SWITCHES,
                         ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_total_loss_gradient_with_the_switch(switch):
    """Backward against central differences (h = 1e-6) of the total loss, float64. Tolerance
    per tensor as in test_model: 2e-8 + 1e-4 of the tensor's largest gradient. A max (RoIPool,
    RoIAlign-max, ReLU) nudged across a tie is a kink: there backward must give one of the two
    one-sided derivatives, and kinks must stay rare."""
    rng = np.random.default_rng(0)
    model = _tiny_model(np.float64, box_batch_size_per_image=16, backend="numpy", **switch)
    for key, value in switch.items():
        assert getattr(model.cfg, key) == value
    img, tgt = _scene(rng, dtype=np.float64)
    batch, image_sizes, samples = _fixed_samples(model, [img], [tgt])
    features = model.features_forward(batch)
    losses, cache = model.loss_forward(features, samples, image_sizes)
    assert all(math.isfinite(v) for v in losses.values()) and losses["loss_mask"] > 0
    model.zero_grad()
    model.backward_train(cache)
    params = {name: (p, g) for name, p, g in model.named_parameters()}
    entries = _checked_entries(model)
    kinks = 0
    for name, i in entries:
        p, g = params[name]
        flat = p.reshape(-1)  # a view: writing it nudges the weight
        tol = 2e-8 + 1e-4 * float(np.abs(g).max())
        head_only = name.startswith("roi_heads.")

        def loss_at(value):
            old = flat[i]
            flat[i] = value
            f = features if head_only else model.features_forward(batch)
            out = _total(model.loss_forward(f, samples, image_sizes)[0])
            flat[i] = old
            return out

        kinks += _check_entry(loss_at, name, i, flat[i], g.reshape(-1)[i], tol)
    assert len(entries) >= 16 and kinks <= len(entries) // 5


def test_mlp_mask_head_shapes_and_names():
    """The MLP of Table 2e at tiny width: flatten [R, 64*14*14] -> fc6 256 -> fc7 256 ->
    K*28*28 logits; class-agnostic: 1*28*28. The default keeps torchvision's FCN names."""
    mlp = MaskRCNN(tiny(mask_head="mlp"), rng=np.random.default_rng(0)).state_dict()
    assert mlp["roi_heads.mask_head.fc6.weight"].shape == (256, 64 * 14 * 14)
    assert mlp["roi_heads.mask_head.fc7.weight"].shape == (256, 256)
    assert mlp["roi_heads.mask_predictor.mask_fc_logits.weight"].shape == (4 * 28 * 28, 256)
    agnostic = MaskRCNN(tiny(mask_head="mlp", class_agnostic_masks=True)).state_dict()
    assert agnostic["roi_heads.mask_predictor.mask_fc_logits.weight"].shape == (28 * 28, 256)
    fcn = MaskRCNN(tiny()).state_dict()
    assert "roi_heads.mask_head.0.0.weight" in fcn
    assert not any(k.startswith("roi_heads.mask_head.fc") for k in fcn)


@pytest.mark.parametrize("switch", [dict(mask_head="mlp"), dict(roi_extractor="pool"),
                                    dict(roi_align_reduction="max", pool_level="stride32")],
                         ids=["mlp", "pool", "max-stride32"])
def test_switched_model_predicts(switch):
    img, tgt = _scene(np.random.default_rng(0))
    model = _tiny_model(**switch)
    out = model.predict([img])[0]
    assert len(out["boxes"]) > 0 and out["masks"].shape[1:] == (1,) + img.shape[1:]
    assert np.all(np.isfinite(out["masks"]))


# ------------------------------------------------------------------------------------------
# 2. The pooler with a fixed level is the plain op on that level
# ------------------------------------------------------------------------------------------
def _pyramid(rng, dtype=np.float64, n_rois=10, C=2, size=(128, 160)):
    """P2..P5 of a batch of two images of ``size`` (the second a little smaller) and RoIs
    of sides 4 .. size/0.8 px, some partly off the map."""
    H, W = size
    image_sizes = [(H, W), (H - 8, W - 10)]
    features = [rng.standard_normal((2, C, H // s, W // s)).astype(dtype) for s in (4, 8, 16, 32)]
    side = np.exp(rng.uniform(np.log(4), np.log(W / 0.8), (n_rois, 2)))
    xy = rng.uniform(-10, 0.9 * W, (n_rois, 2))
    batch = rng.integers(0, 2, n_rois)
    rois = np.concatenate([batch[:, None], xy, xy + side], 1).astype(dtype)  # [R, 5]
    return features, rois, image_sizes


def _plain(extractor, feature, rois, S, scale, backend="numpy"):
    """The op itself, called as a student would call it on one map."""
    if extractor == "pool":
        return roi_pool(feature, rois, S, scale, backend=backend)
    if extractor == "warp":
        return roi_warp(feature, rois, S, scale, 2, backend=backend)
    if extractor == "crop_and_resize":
        return crop_and_resize(feature, rois[:, 1:], rois[:, 0].astype(int), S, scale)
    return roi_align(feature, rois, S, scale, 2, backend=backend)


@pytest.mark.parametrize("extractor", ["pool", "warp", "crop_and_resize", "align"])
@pytest.mark.parametrize("stride", [16, 32])
def test_fixed_level_is_exactly_the_op_on_that_level(extractor, stride):
    features, rois, image_sizes = _pyramid(np.random.default_rng(stride))
    level = {16: 2, 32: 3}[stride]
    out, cache = pooler_forward(features, rois, image_sizes, 7, 2, extractor=extractor,
                                stride=stride, backend="numpy")
    want = _plain(extractor, features[level], rois, 7, 1 / stride)
    np.testing.assert_array_equal(out, want)
    assert cache["levels"].tolist() == [level] * len(rois)
    grads = pooler_backward(np.ones_like(out), cache)
    assert not any(g.any() for l, g in enumerate(grads) if l != level)
    assert grads[level].any()


def test_fixed_level_pool_gradient_is_roi_pool_backward():
    features, rois, image_sizes = _pyramid(np.random.default_rng(5))
    out, cache = pooler_forward(features, rois, image_sizes, 7, extractor="pool", stride=32)
    dout = np.random.default_rng(6).standard_normal(out.shape)
    _, c = roi_pool_forward(features[3], rois, 7, 1 / 32)
    np.testing.assert_array_equal(pooler_backward(dout, cache)[3], roi_pool_backward(dout, c))


@pytest.mark.parametrize("extractor", ["pool", "warp", "crop_and_resize"])
def test_each_fpn_level_uses_the_extractor(extractor):
    """With the level mapper, each RoI is the op on the level Eqn. 1 gives it."""
    features, rois, image_sizes = _pyramid(np.random.default_rng(7), n_rois=12)
    one_per_level = [[0, 5, 5, 25, 25], [1, 0, 10, 150, 140],              # P2, P3
                     [0, 0, 0, 300, 250], [1, 0, 0, 600, 500]]             # P4, P5
    rois = np.concatenate([rois, np.array(one_per_level, np.float64)])
    out, cache = pooler_forward(features, rois, image_sizes, 5, 2, extractor=extractor,
                                backend="numpy")
    assert set(cache["levels"].tolist()) == {0, 1, 2, 3}
    for r, level in enumerate(cache["levels"]):
        np.testing.assert_array_equal(
            out[r:r + 1],
            _plain(extractor, features[level], rois[r:r + 1], 5, 1 / 2 ** (level + 2)))


@pytest.mark.parametrize("extractor,reduction", [("pool", "avg"), ("warp", "avg"),
                                                 ("crop_and_resize", "avg"), ("align", "max"),
                                                 ("warp", "max")])
def test_pooler_gradient_finite_differences(extractor, reduction):
    """Multi-level pooler backward with each extractor, every level, against central
    differences (float64, one channel, 2x2 bins). 1e-7 relative: no tie in random values."""
    rng = np.random.default_rng(8)
    features, rois, image_sizes = _pyramid(rng, n_rois=6, C=1, size=(64, 96))
    dout = rng.standard_normal((6, 1, 2, 2))

    def run(fs):
        return pooler_forward(fs, rois, image_sizes, 2, 2, extractor=extractor,
                              reduction=reduction, backend="numpy")

    out, cache = run(features)
    grads = pooler_backward(dout, cache)
    for l in range(4):
        def f(a, l=l):
            fs = list(features)
            fs[l] = a
            return run(fs)[0]
        assert rel_error(grads[l], numerical_grad(f, features[l], dout)) < 1e-7, l


def test_model_pools_from_p5_with_stride32():
    """The model's own pooler with pool_level="stride32", roi_extractor="pool": RoIPool on P5."""
    model = _tiny_model(roi_extractor="pool", pool_level="stride32", backend="numpy")
    img, _ = _scene(np.random.default_rng(0))
    batch, image_sizes, _ = model.transform([img], None, training=False)
    maps = model.features_forward(batch).maps
    boxes = [np.array([[4, 6, 40, 30], [20, 10, 70, 60]], np.float32)]
    out, _ = model._pool(maps, boxes, 7, 2, image_sizes)
    rois = np.concatenate([np.zeros((2, 1), np.float32), boxes[0]], 1)
    np.testing.assert_array_equal(out, roi_pool(maps[3], rois, 7, 1 / 32))


def test_unknown_extractor_or_level():
    features, rois, image_sizes = _pyramid(np.random.default_rng(9))
    with pytest.raises(ValueError, match="extractor must be one of"):
        pooler_forward(features, rois, image_sizes, 7, extractor="bilinear")
    with pytest.raises(ValueError, match="no feature level of stride 64"):
        pooler_forward(features, rois, image_sizes, 7, stride=64)


# ------------------------------------------------------------------------------------------
# 3. RoIAlign, max over each bin's samples
# ------------------------------------------------------------------------------------------
def _bilinear(plane, y, x):
    """torchvision's ``bilinear_interpolate`` (roi_align_kernel.cpp), one sample."""
    H, W = plane.shape
    if y < -1.0 or y > H or x < -1.0 or x > W:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= H - 1:
        y_high = y_low = H - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= W - 1:
        x_high = x_low = W - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * plane[y_low, x_low] + hy * lx * plane[y_low, x_high]
            + ly * hx * plane[y_high, x_low] + ly * lx * plane[y_high, x_high])


def _roi_align_max_loop(x, rois, S, scale, sampling_ratio, aligned):
    """The slow reference: torchvision's RoIAlign loops, with max in place of the mean."""
    R, C = len(rois), x.shape[1]
    out = np.zeros((R, C, S, S))
    offset = 0.5 if aligned else 0.0
    for r, (b, x1, y1, x2, y2) in enumerate(rois):
        start_w, start_h = x1 * scale - offset, y1 * scale - offset
        roi_w, roi_h = x2 * scale - offset - start_w, y2 * scale - offset - start_h
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / S, roi_w / S
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / S)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / S)
        for c in range(C):
            for ph in range(S):
                for pw in range(S):
                    samples = [_bilinear(x[int(b), c],
                                         start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h,
                                         start_w + pw * bin_w + (ix + 0.5) * bin_w / grid_w)
                               for iy in range(max(grid_h, 0)) for ix in range(max(grid_w, 0))]
                    out[r, c, ph, pw] = max(samples) if samples else 0.0
    return out


def _max_case(rng, n_rois=5):
    x = rng.standard_normal((2, 2, 9, 11))
    xy = rng.uniform(-6, 40, (n_rois, 2))
    wh = rng.uniform(0.5, 30, (n_rois, 2))
    rois = np.concatenate([rng.integers(0, 2, (n_rois, 1)), xy, xy + wh], 1)  # [R, 5]
    return x, rois


@pytest.mark.parametrize("sampling_ratio,aligned", [(2, False), (3, True), (-1, False), (-1, True)])
def test_roi_align_max_matches_the_loop(sampling_ratio, aligned):
    x, rois = _max_case(np.random.default_rng(abs(sampling_ratio) + 10 * aligned))
    got = roi_align_max(x, rois, 3, 0.25, sampling_ratio, aligned)
    want = _roi_align_max_loop(x, rois, 3, 0.25, sampling_ratio, aligned)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    # a max of samples is at least their mean; one sample per bin: max IS the mean
    assert np.all(got >= roi_align(x, rois, 3, 0.25, sampling_ratio, aligned) - 1e-12)
    np.testing.assert_allclose(roi_align_max(x, rois, 3, 0.25, 1, aligned),
                               roi_align(x, rois, 3, 0.25, 1, aligned), rtol=0, atol=1e-12)


@pytest.mark.parametrize("sampling_ratio,aligned", [(2, False), (-1, True)])
def test_roi_align_max_gradient_finite_differences(sampling_ratio, aligned):
    """Central differences in float64 (h = 1e-6); random values never tie, so the max is
    smooth at the point and the error is rounding only: 1e-7 relative."""
    rng = np.random.default_rng(4)
    x, rois = _max_case(rng)
    out, cache = roi_align_max_forward(x, rois, 3, 0.25, sampling_ratio, aligned)
    dout = rng.standard_normal(out.shape)
    dx = roi_align_max_backward(dout, cache)
    num = numerical_grad(lambda a: roi_align_max(a, rois, 3, 0.25, sampling_ratio, aligned),
                         x, dout)
    assert dx.any() and rel_error(dx, num) < 1e-7


def test_roi_align_max_tie_by_hand():
    # A constant map: all four samples of the one bin (2 x 2 grid) equal 1; the first in
    # row-major order wins the tie. RoI (0, 0)-(4, 4) at scale 1: bin 4 x 4, samples at
    # y, x in {1, 3}; the winner (1, 1) sits on a pixel centre, so pixel (1, 1) gets all of it.
    x = np.ones((1, 1, 6, 6))
    rois = np.array([[0, 0, 0, 4, 4]], np.float64)
    out, cache = roi_align_max_forward(x, rois, 1, 1.0, 2)
    assert out[0, 0, 0, 0] == 1.0 and cache["argmax"][0, 0, 0, 0] == 0
    dx = roi_align_max_backward(np.full((1, 1, 1, 1), 5.0), cache)
    want = np.zeros_like(x)
    want[0, 0, 1, 1] = 5.0
    np.testing.assert_array_equal(dx, want)


def test_roi_align_max_empty_and_backend():
    x = np.zeros((1, 3, 4, 4), np.float32)
    out, cache = roi_align_max_forward(x, np.zeros((0, 5)), 2)
    assert out.shape == (0, 3, 2, 2) and out.dtype == np.float32
    assert roi_align_max_backward(out, cache).shape == x.shape
    # aligned=True, x2 < x1, adaptive grid: no samples -> 0, and no gradient
    out, cache = roi_align_max_forward(x + 1, np.array([[0, 3, 3, 1, 1]], np.float32), 2, 1.0,
                                       -1, True)
    assert not out.any() and not roi_align_max_backward(np.ones_like(out), cache).any()
    with pytest.raises(BackendUnavailable, match="has no"):
        roi_align_max(x, np.array([[0, 0, 0, 2, 2]], np.float32), 2, backend="numba")


# ------------------------------------------------------------------------------------------
# 4. The config
# ------------------------------------------------------------------------------------------
def test_switches_saved_loaded_and_checked():
    cfg = tiny(roi_extractor="warp", roi_align_reduction="max", pool_level="stride32",
               mask_head="mlp", mask_loss="softmax", mask_mlp_dim=128)
    assert config_from_dict(cfg.to_dict()) == cfg
    new = ("roi_extractor", "roi_align_reduction", "pool_level", "mask_head", "mask_mlp_dim")
    old = {k: v for k, v in tiny().to_dict().items() if k not in new}
    assert config_from_dict(old) == tiny()  # a config saved before the switches: today's model
    assert set(CHOICES) == set(new[:4]) | {"mask_loss", "mask_paste"}  # + inference's paste
    for name in CHOICES:
        with pytest.raises(ValueError, match=f"unknown {name} 'nope'; choose one of"):
            tiny(**{name: "nope"})
        with pytest.raises(ValueError, match=f"unknown {name}"):
            config_from_dict(dict(tiny().to_dict(), **{name: "nope"}))
    defaults = tiny()
    assert (defaults.roi_extractor, defaults.roi_align_reduction, defaults.pool_level,
            defaults.mask_head) == ("align", "avg", "fpn", "fcn")
