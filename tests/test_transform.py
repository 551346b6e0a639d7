"""The transform (normalize, resize, pad) and its resamplers, against torch / torchvision.

Tolerances: bilinear resizing of float32 values in 0..1 agrees with ``F.interpolate`` to 1e-6
(a few float32 steps; we see <= 2e-7), float64 to 1e-12; nearest resizing, image sizes, box
scaling and mask resizing agree exactly. Normalized images (values up to ~2.6) agree to 2e-6.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import oracle
from mrcnn_np.nn.resample import (interpolate_bilinear, interpolate_nearest,
                                  linear_indices_weights, nearest_indices)
from mrcnn_np.transform import Transform, resize_boxes

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _torch_interp(x, mode, **kw):
    torch, _ = oracle()
    import torch.nn.functional as F
    extra = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(torch.from_numpy(x), mode=mode, **kw, **extra).numpy()


# ------------------------------------------------------------------------------------------------
# hand-worked examples
# ------------------------------------------------------------------------------------------------
def test_bilinear_upsample_by_hand():
    # One row [0, 1] (W = 2) to W = 4: scale = 2 / 4 = 0.5, src = (d + 0.5) * 0.5 - 0.5
    #   d:    0      1     2     3
    #   src: -0.25  0.25  0.75  1.25
    #   clamp at 0 -> 0; i0 = floor(src), last pixel repeats (i1 = i0 at index 1)
    #   value: 0     0.25  0.75  x[1] = 1   (1.25 -> i0 = 1 = last, so x[1] alone)
    x = np.array([[[[0.0, 1.0]]]], dtype=np.float32)  # [1, 1, 1, 2]
    out = interpolate_bilinear(x, size=(1, 4))
    np.testing.assert_array_equal(out[0, 0, 0], np.array([0.0, 0.25, 0.75, 1.0], np.float32))
    assert out.dtype == np.float32


def test_bilinear_downsample_by_hand():
    # A 4x4 arange grid to 2x2: scale = 2, src = (d + 0.5) * 2 - 0.5 = 0.5, 2.5 on both axes.
    #    0  1  2  3
    #    4  5  6  7        out[0,0] = mean(0, 1, 4, 5)      = 2.5
    #    8  9 10 11        out[0,1] = mean(2, 3, 6, 7)      = 4.5
    #   12 13 14 15        out[1,0] = mean(8, 9, 12, 13)    = 10.5, out[1,1] = 12.5
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    out = interpolate_bilinear(x, size=2)
    np.testing.assert_array_equal(out[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    assert out.dtype == np.float64


def test_nearest_by_hand():
    # 3 -> 5: scale = 3/5 = 0.6, src = floor(d * 0.6) = floor(0, .6, 1.2, 1.8, 2.4) = 0 0 1 1 2
    np.testing.assert_array_equal(nearest_indices(3, 5), [0, 0, 1, 1, 2])
    # 5 -> 2: scale 2.5, floor(0, 2.5) = 0, 2 (the left edge of each output pixel, not its centre)
    np.testing.assert_array_equal(nearest_indices(5, 2), [0, 2])
    # exact doubling uses d // 2; equal sizes copy
    np.testing.assert_array_equal(nearest_indices(3, 6), [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(nearest_indices(4, 4), [0, 1, 2, 3])


def test_linear_weights_equal_sizes_copy():
    # out == in: torch copies whatever the scale; weights (1, 0)
    i0, i1, l0, l1 = linear_indices_weights(5, 5, scale=0.9)
    np.testing.assert_array_equal(i0, np.arange(5))
    np.testing.assert_array_equal(l0, 1)
    np.testing.assert_array_equal(l1, 0)


def test_recompute_scale_factor_changes_the_grid():
    # H = 10, s = 1.37: out = floor(13.7) = 13. recompute=True samples with 10/13 = 0.769...,
    # recompute=False with 1/1.37 = 0.7299...: the same output size, different pixels.
    x = np.random.default_rng(0).random((1, 1, 10, 10)).astype(np.float32)
    a = interpolate_bilinear(x, scale_factor=1.37, recompute_scale_factor=True)
    b = interpolate_bilinear(x, scale_factor=1.37, recompute_scale_factor=False)
    assert a.shape == b.shape == (1, 1, 13, 13)
    assert np.abs(a - b).max() > 1e-2
    np.testing.assert_allclose(a, _torch_interp(x, "bilinear", scale_factor=1.37,
                                                recompute_scale_factor=True), rtol=0, atol=1e-6)
    np.testing.assert_allclose(b, _torch_interp(x, "bilinear", scale_factor=1.37,
                                                recompute_scale_factor=False), rtol=0, atol=1e-6)


def test_interpolate_argument_errors():
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError):
        interpolate_bilinear(x)
    with pytest.raises(ValueError):
        interpolate_bilinear(x, size=2, scale_factor=2.0)
    with pytest.raises(ValueError):
        interpolate_bilinear(x, size=2, recompute_scale_factor=True)
    with pytest.raises(TypeError):
        interpolate_bilinear(x.astype(np.uint8), size=2)


def test_resize_boxes_by_hand():
    # (h, w) 10x20 -> 15x10: ratio_h = 1.5, ratio_w = 0.5; (x1, y1, x2, y2) = (2, 4, 8, 6)
    # -> (2 * 0.5, 4 * 1.5, 8 * 0.5, 6 * 1.5) = (1, 6, 4, 9)
    b = resize_boxes(np.array([[2.0, 4.0, 8.0, 6.0]], np.float32), (10, 20), (15, 10))
    np.testing.assert_array_equal(b, [[1.0, 6.0, 4.0, 9.0]])
    assert resize_boxes(np.zeros((0, 4), np.float32), (10, 20), (15, 10)).shape == (0, 4)


# ------------------------------------------------------------------------------------------------
# resamplers against F.interpolate
# ------------------------------------------------------------------------------------------------
_path = st.sampled_from(["size", "recompute", "keep_scale"])


@settings(max_examples=25)
@given(seed=st.integers(0, 2**31 - 1), C=st.integers(1, 3), H=st.integers(1, 24),
       W=st.integers(1, 24), path=_path, double=st.booleans())
def test_interpolate_matches_torch(seed, C, H, W, path, double):
    rng = np.random.default_rng(seed)
    x = rng.random((2, C, H, W)).astype(np.float64 if double else np.float32)
    if path == "size":
        kw = dict(size=(int(rng.integers(1, 40)), int(rng.integers(1, 40))))
    else:
        s = float(rng.uniform(0.25, 3.0))
        if int(H * s) < 1 or int(W * s) < 1:
            s = 2.0
        kw = dict(scale_factor=s, recompute_scale_factor=(path == "recompute"))
    ours = interpolate_bilinear(x, **kw)
    ref = _torch_interp(x, "bilinear", **kw)
    assert ours.shape == ref.shape and ours.dtype == x.dtype
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12 if double else 1e-6)
    # nearest copies values: exact equality
    np.testing.assert_array_equal(interpolate_nearest(x, **kw), _torch_interp(x, "nearest", **kw))


def test_bilinear_long_rows_match_torch():
    # At source positions near 1000 one float32 step is 6e-5 px: the source index must be rounded
    # exactly as torch's fused multiply-add does, or values drift by ~1e-4 * (pixel difference).
    rng = np.random.default_rng(1)
    x = (rng.random((1, 3, 2, 1000)) * 5 - 2.5).astype(np.float32)  # like normalized pixels
    for size in [(2, 1333), (2, 777), (3, 1001)]:
        np.testing.assert_allclose(interpolate_bilinear(x, size=size),
                                   _torch_interp(x, "bilinear", size=size), rtol=0, atol=2e-6)


def test_interpolate_leaves_input_alone():
    x = np.random.default_rng(2).random((1, 2, 5, 7)).astype(np.float32)
    x0 = x.copy()
    interpolate_bilinear(x, scale_factor=1.7, recompute_scale_factor=True)
    interpolate_nearest(x, size=(3, 3))
    np.testing.assert_array_equal(x, x0)


# ------------------------------------------------------------------------------------------------
# the transform against GeneralizedRCNNTransform
# ------------------------------------------------------------------------------------------------
def _tv_transform(min_size, max_size, training, fixed_size=None):
    oracle()
    from torchvision.models.detection.transform import GeneralizedRCNNTransform
    t = GeneralizedRCNNTransform(min_size, max_size, MEAN, STD, fixed_size=fixed_size)
    return t.train() if training else t.eval()


def _images(rng, sizes):
    return [rng.random((3, h, w)).astype(np.float32) for h, w in sizes]


def _targets(rng, images, G=3):
    out = []
    for img in images:
        H, W = img.shape[1:]
        xy = rng.uniform(0, 0.6, (G, 2)) * [W, H]
        wh = rng.uniform(0.1, 0.4, (G, 2)) * [W, H]
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)  # [G, 4]
        masks = (rng.random((G, H, W)) > 0.5).astype(np.uint8)  # [G, H, W]
        out.append({"boxes": boxes, "labels": np.arange(1, G + 1, dtype=np.int64),
                    "masks": masks})
    return out


def _to_torch(targets):
    torch, _ = oracle()
    return [{k: torch.from_numpy(v.copy()) for k, v in t.items()} for t in targets]


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31 - 1))
def test_transform_eval_matches_torchvision(seed):
    torch, _ = oracle()
    rng = np.random.default_rng(seed)
    sizes = [tuple(int(v) for v in rng.integers(12, 90, 2)) for _ in range(3)]
    images = _images(rng, sizes)
    batch, image_sizes, targets = Transform(min_size=64, max_size=100)(images)
    ref, _ = _tv_transform(64, 100, training=False)([torch.from_numpy(i) for i in images])
    assert targets is None
    assert image_sizes == [tuple(s) for s in ref.image_sizes]
    assert batch.shape == tuple(ref.tensors.shape) and batch.dtype == np.float32
    assert batch.shape[2] % 32 == 0 and batch.shape[3] % 32 == 0
    np.testing.assert_allclose(batch, ref.tensors.numpy(), rtol=0, atol=2e-6)


def test_transform_training_with_targets_matches_torchvision():
    torch, _ = oracle()
    rng = np.random.default_rng(3)
    images = _images(rng, [(37, 50), (60, 41), (23, 90)])
    targets = _targets(rng, images)
    keep = [{k: v.copy() for k, v in t.items()} for t in targets]
    # Training draws each image's min_size from the tuple with our rng; torchvision draws with
    # torch's RNG. So we give torchvision, image by image, the size our rng drew (a twin
    # generator with the same seed replays the draws).
    T = Transform(min_size=(48, 64), max_size=100)
    batch, image_sizes, out = T(images, targets, training=True, rng=np.random.default_rng(7))
    redraw = np.random.default_rng(7)
    for i, img in enumerate(images):
        size_i = (48, 64)[int(redraw.integers(2))]
        ref_list, ref_t = _tv_transform(size_i, 100, training=True)(
            [torch.from_numpy(img)], _to_torch([targets[i]]))
        h, w = ref_list.image_sizes[0]
        assert image_sizes[i] == (h, w)
        np.testing.assert_allclose(batch[i, :, :h, :w], ref_list.tensors.numpy()[0, :, :h, :w],
                                   rtol=0, atol=2e-6)
        np.testing.assert_array_equal(batch[i, :, h:, :], 0)  # padding is zeros
        np.testing.assert_array_equal(batch[i, :, :, w:], 0)
        np.testing.assert_allclose(out[i]["boxes"], ref_t[0]["boxes"].numpy(), rtol=1e-7, atol=0)
        assert out[i]["masks"].dtype == np.uint8
        np.testing.assert_array_equal(out[i]["masks"], ref_t[0]["masks"].numpy())
        np.testing.assert_array_equal(out[i]["labels"], targets[i]["labels"])
    for t, k in zip(targets, keep):  # the caller's targets are untouched
        for key in k:
            np.testing.assert_array_equal(t[key], k[key])


def test_training_picks_min_size_with_rng():
    rng = np.random.default_rng(0)
    img = rng.random((3, 40, 40)).astype(np.float32)  # square: output side = chosen min_size
    T = Transform(min_size=(16, 24, 32), max_size=1000, size_divisible=1)
    seen = {T([img], training=True, rng=np.random.default_rng(s))[1][0][0] for s in range(20)}
    assert seen == {16, 24, 32}
    assert T([img])[1][0] == (32, 32)  # evaluation uses the last size
    with pytest.raises(ValueError):
        T([img], training=True)  # several sizes and no rng


def test_fixed_size_matches_torchvision():
    torch, _ = oracle()
    rng = np.random.default_rng(4)
    images = _images(rng, [(30, 45), (50, 20)])
    batch, image_sizes, _ = Transform(min_size=64, max_size=100, fixed_size=(40, 24))(images)
    ref, _ = _tv_transform(64, 100, training=False, fixed_size=(40, 24))(
        [torch.from_numpy(i) for i in images])
    assert image_sizes == [(24, 40), (24, 40)] == [tuple(s) for s in ref.image_sizes]
    np.testing.assert_allclose(batch, ref.tensors.numpy(), rtol=0, atol=2e-6)


def test_no_objects_target():
    rng = np.random.default_rng(5)
    img = rng.random((3, 30, 40)).astype(np.float32)
    target = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
              "masks": np.zeros((0, 30, 40), np.uint8)}
    _, sizes, out = Transform(min_size=60, max_size=100)([img], [target], training=True)
    h, w = sizes[0]
    assert (h, w) == (60, 80)
    assert out[0]["boxes"].shape == (0, 4)
    assert out[0]["masks"].shape == (0, h, w) and out[0]["masks"].dtype == np.uint8


def test_float64_images_stay_float64():
    img = np.random.default_rng(6).random((3, 20, 30))
    batch, _, _ = Transform(min_size=40, max_size=80)([img])
    assert batch.dtype == np.float64


def test_square_mode():
    # matterport preset: long side -> 64, short side -> round(30 * 64 / 48) = 40, pad to 64x64
    rng = np.random.default_rng(8)
    images = _images(rng, [(48, 30), (20, 64)])
    targets = _targets(rng, images, G=2)
    T = Transform(min_size=64, max_size=64, square=64)
    batch, sizes, out = T(images, targets, training=True)
    assert batch.shape == (2, 3, 64, 64)
    assert sizes == [(64, 40), (20, 64)]
    # boxes scaled per axis by new/old size
    ratio = np.array([40 / 30, 64 / 48] * 2)  # (w, h, w, h)
    np.testing.assert_allclose(out[0]["boxes"], targets[0]["boxes"] * ratio, rtol=1e-6)
    assert out[0]["masks"].shape == (2, 64, 40)
    np.testing.assert_array_equal(batch[0, :, :, 40:], 0)
    np.testing.assert_array_equal(batch[1, :, 20:, :], 0)
    # the image part is the bilinear resize of the normalized image
    norm = T.normalize(images[0])
    np.testing.assert_allclose(batch[0, :, :, :40],
                               interpolate_bilinear(norm[None], size=(64, 40))[0])


def test_postprocess_matches_torchvision():
    torch, _ = oracle()
    rng = np.random.default_rng(9)
    original_sizes = [(37, 50), (60, 41)]
    image_sizes = [(64, 86), (93, 64)]  # what min_size=64, max_size=100 makes of them
    detections = []
    for h, w in image_sizes:
        D = 6
        xy = rng.uniform(0, 0.7, (D, 2)) * [w, h]
        wh = rng.uniform(0.02, 0.3, (D, 2)) * [w, h]
        boxes = np.minimum(np.concatenate([xy, xy + wh], 1), [w, h, w, h]).astype(np.float32)
        detections.append({"boxes": boxes, "scores": rng.random(D).astype(np.float32),
                           "labels": rng.integers(1, 5, D),
                           "masks": rng.random((D, 1, 28, 28)).astype(np.float32)})
    detections.append({"boxes": np.zeros((0, 4), np.float32),  # an image with no detections
                       "scores": np.zeros(0, np.float32), "labels": np.zeros(0, np.int64),
                       "masks": np.zeros((0, 1, 28, 28), np.float32)})
    original_sizes.append((20, 30))
    image_sizes.append((64, 96))

    ours = Transform(min_size=64, max_size=100).postprocess(detections, image_sizes, original_sizes)
    ref = _tv_transform(64, 100, training=False).postprocess(
        _to_torch(detections), image_sizes, original_sizes)
    for o, r, (H, W) in zip(ours, ref, original_sizes):
        np.testing.assert_allclose(o["boxes"], r["boxes"].numpy(), rtol=1e-7, atol=0)
        assert o["masks"].shape == tuple(r["masks"].shape) == (len(o["boxes"]), 1, H, W)
        np.testing.assert_allclose(o["masks"], r["masks"].numpy(), rtol=0, atol=1e-6)
        np.testing.assert_array_equal(o["scores"], r["scores"].numpy())


def test_transform_at_full_size_matches_torchvision():
    # torchvision's defaults (800 / 1333): a 120x160 image is enlarged 6.67x to 800x1066, so
    # source indices run up to ~160 and the padded batch is 800x1088.
    torch, _ = oracle()
    img = np.random.default_rng(10).random((3, 120, 160)).astype(np.float32)
    batch, sizes, _ = Transform()([img])
    ref, _ = _tv_transform(800, 1333, training=False)([torch.from_numpy(img)])
    assert sizes == [(800, 1066)] == [tuple(s) for s in ref.image_sizes]
    assert batch.shape == (1, 3, 800, 1088)
    np.testing.assert_allclose(batch, ref.tensors.numpy(), rtol=0, atol=2e-6)
