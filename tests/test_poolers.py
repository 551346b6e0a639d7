"""FPN level assignment and multi-scale RoIAlign, against torchvision's LevelMapper and
MultiScaleRoIAlign (values, and gradients routed to each level)."""
from collections import OrderedDict

import numpy as np
import pytest
from conftest import oracle
from gradcheck import numerical_grad, rel_error
from hypothesis import given, settings
from hypothesis import strategies as st

from mrcnn_np.ops import (LevelMapper, multi_scale_roi_align, multi_scale_roi_align_backward,
                          multi_scale_roi_align_forward, roi_align)
from mrcnn_np.ops.poolers import infer_scale, setup_scales


def test_level_mapper_by_hand():
    # k = floor(4 + log2(sqrt(w h) / 224) + 1e-6), clamped to [2, 5], minus k_min = 2:
    #   224 x 224 -> 4 + log2(1)   = 4    -> index 2
    #   112 x 112 -> 4 + log2(1/2) = 3    -> index 1 (eps keeps an exact 3.0 at 3)
    #   111 x 111 -> 4 + log2(0.4955..) = 2.98.. -> 2 -> index 0
    #    32 x 32  -> 4 - 2.807 = 1.19 -> 1, clamped to 2 -> index 0
    #   448 x 112 -> sqrt = 224 -> index 2 (only the area matters)
    #   1000 x 1000 -> 4 + 2.158 = 6.16 -> 6, clamped to 5 -> index 3
    #   zero area -> log2(0) = -inf, clamped to 2 -> index 0
    boxes = np.array([[0, 0, 224, 224], [10, 10, 122, 122], [0, 0, 111, 111], [0, 0, 32, 32],
                      [0, 0, 448, 112], [0, 0, 1000, 1000], [5, 5, 5, 9]], np.float32)
    assert LevelMapper(2, 5)(boxes).tolist() == [2, 1, 0, 0, 2, 3, 0]
    assert LevelMapper(2, 5).levels(boxes).tolist() == [4, 3, 2, 2, 4, 5, 2]


@pytest.mark.oracle
@given(st.integers(0, 2 ** 31 - 1), st.sampled_from([np.float32, np.float64]))
def test_level_mapper_matches_torchvision(seed, dtype):
    torch, torchvision = oracle()
    from torchvision.ops.poolers import LevelMapper as TVLevelMapper
    rng = np.random.default_rng(seed)
    side = np.exp(rng.uniform(np.log(1), np.log(1500), (50, 2)))
    side[:10] = rng.choice([56, 112, 224, 448, 896], (10, 1))          # exact powers of two
    xy = rng.uniform(0, 800, (50, 2))
    boxes = np.concatenate([xy, xy + side], 1).astype(dtype)
    want = TVLevelMapper(2, 5)([torch.tensor(boxes[:20]), torch.tensor(boxes[20:])]).numpy()
    assert np.array_equal(LevelMapper(2, 5)([boxes[:20], boxes[20:]]), want)


def test_infer_scale():
    # P2..P5 of an 800 x 1088 batch: 200/800 = 1/4 ... 25/800 = 1/32; a 801-high image padded
    # to 832 gives 208/832 = 1/4 (round(log2(.25)) = -2) -> levels 2..5.
    shapes = [(1, 8, 800 // s, 1088 // s) for s in (4, 8, 16, 32)]
    scales, mapper = setup_scales(shapes, [(800, 1088)])
    assert scales == [0.25, 0.125, 0.0625, 0.03125] and (mapper.k_min, mapper.k_max) == (2, 5)
    assert infer_scale((1, 8, 208, 272), (832, 1088)) == 0.25
    assert setup_scales(shapes, (800, 1088))[0] == scales   # the padded batch size alone


def _case(rng, dtype, n_rois=24):
    image_sizes = [(128, 160), (120, 150)]
    features = [rng.standard_normal((2, 3, 128 // s, 160 // s)).astype(dtype) for s in (4, 8, 16, 32)]
    side = np.exp(rng.uniform(np.log(4), np.log(400), (n_rois, 2)))  # all four levels
    xy = rng.uniform(-10, 150, (n_rois, 2))
    b = np.concatenate([xy, xy + side], 1)
    batch = rng.integers(0, 2, n_rois)
    order = np.argsort(batch, kind="stable")                           # torchvision's order
    b, batch = b[order], batch[order]
    rois = np.concatenate([batch[:, None], b], 1).astype(dtype)
    return features, rois, image_sizes


@pytest.mark.oracle
@given(st.integers(0, 2 ** 31 - 1), st.sampled_from([np.float32, np.float64]),
       st.sampled_from(["numpy", "numba"]))
@settings(max_examples=10)
def test_matches_torchvision_multiscale_roi_align(seed, dtype, backend):
    torch, torchvision = oracle()
    rng = np.random.default_rng(seed)
    features, rois, image_sizes = _case(rng, dtype)
    out, cache = multi_scale_roi_align_forward(features, rois, image_sizes, 7, 2, backend=backend)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dfeatures = multi_scale_roi_align_backward(dout, cache)

    pooler = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    ft = OrderedDict((str(i), torch.tensor(f, requires_grad=True)) for i, f in enumerate(features))
    boxes = [torch.tensor(rois[rois[:, 0] == i, 1:]) for i in range(2)]
    want = pooler(ft, boxes, image_sizes)
    want.backward(torch.tensor(dout))
    tol = 2e-5 if dtype == np.float32 else 1e-12
    assert out.dtype == dtype and rel_error(out, want.detach().numpy()) < tol
    for l, df in enumerate(dfeatures):
        assert df.shape == features[l].shape and df.dtype == dtype
        assert rel_error(df, ft[str(l)].grad.numpy()) < tol


def test_gradient_routed_to_the_right_level():
    # One small RoI (20 x 20: level 2 -> index 0) and one larger (150 x 120: sqrt = 134,
    # floor(4 + log2(134 / 224)) = 3 -> index 1): only those two levels get gradient. Every
    # sample is on the map, so each bin's weights sum to 1: a level's gradient sums to
    # (bins 2 * 2) * (channels 3) = 12 for dout = 1.
    rng = np.random.default_rng(0)
    features, _, image_sizes = _case(rng, np.float64)
    rois = np.array([[0, 10, 10, 30, 30], [1, 0, 0, 150, 120]], np.float64)
    out, cache = multi_scale_roi_align_forward(features, rois, image_sizes, 2, 2)
    assert cache["levels"].tolist() == [0, 1]
    assert np.allclose(out[0], roi_align(features[0], rois[:1], 2, 1 / 4, 2))
    assert np.allclose(out[1], roi_align(features[1], rois[1:], 2, 1 / 8, 2))
    g = multi_scale_roi_align_backward(np.ones_like(out), cache)
    assert g[0][0].any() and not g[0][1].any() and g[1][1].any() and not g[1][0].any()
    assert not g[2].any() and not g[3].any()
    assert g[0].sum() == pytest.approx(12) and g[1].sum() == pytest.approx(12)


def test_finite_differences():
    rng = np.random.default_rng(1)
    features, rois, image_sizes = _case(rng, np.float64, n_rois=6)
    features = [f[:, :1] for f in features]                             # one channel: cheap
    dout = rng.standard_normal((6, 1, 2, 2))
    out, cache = multi_scale_roi_align_forward(features, rois, image_sizes, 2, 2, backend="numpy")
    grads = multi_scale_roi_align_backward(dout, cache)
    for l in (2, 3):                                                    # the small maps
        def f(a, l=l):
            fs = list(features)
            fs[l] = a
            return multi_scale_roi_align_forward(fs, rois, image_sizes, 2, 2, backend="numpy")[0]
        assert rel_error(grads[l], numerical_grad(f, features[l], dout)) < 1e-7


def test_single_level_and_aligned_option():
    rng = np.random.default_rng(2)
    f = rng.standard_normal((1, 2, 16, 16))
    rois = np.array([[0, 3, 3, 50, 40], [0, 0, 0, 8, 8]])
    # One level: no mapping, every RoI pooled from it (torchvision does the same).
    assert np.allclose(multi_scale_roi_align([f], rois, [(64, 64)], 3),
                       roi_align(f, rois, 3, 0.25, 2))
    assert np.allclose(multi_scale_roi_align([f], rois, [(64, 64)], 3, aligned=True),
                       roi_align(f, rois, 3, 0.25, 2, aligned=True))


def test_no_rois():
    rng = np.random.default_rng(3)
    features, _, image_sizes = _case(rng, np.float32)
    out, cache = multi_scale_roi_align_forward(features, np.zeros((0, 5)), image_sizes, 7)
    assert out.shape == (0, 3, 7, 7) and out.dtype == np.float32
    grads = multi_scale_roi_align_backward(out, cache)
    assert [g.shape for g in grads] == [f.shape for f in features]
    assert not any(g.any() for g in grads)
