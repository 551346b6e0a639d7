"""The whole model: the total loss's gradient by finite differences, edge cases, the API.

The finite-difference checks run the tiny preset in float64. Anchor and RoI sampling are
random, and a nudged weight could change which proposals survive NMS; so the checks draw the
samples once (``sample_targets``) and pass them to ``loss_forward``, which makes the loss a
smooth function of the weights, up to the kinks of ReLU and max-pool (handled explicitly).
"""
import numpy as np
import pytest

from mrcnn_np import MaskRCNN
from mrcnn_np.config import tiny
from mrcnn_np.model import LOSS_NAMES


def _scene(rng, h=64, w=80, boxes=((8, 10, 40, 44), (30, 20, 70, 60)), labels=(1, 2),
           dtype=np.float32):
    """An image with filled rectangles/ellipses as objects, and their targets."""
    img = (0.2 + 0.1 * rng.random((3, h, w))).astype(dtype)
    masks = np.zeros((len(boxes), h, w), np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        if i % 2 == 0:
            m = (xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2)
        else:
            m = ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1
        masks[i] = m
        img[:, m] = np.array([0.9, 0.3 + 0.3 * i, 0.1], dtype)[:, None]
    target = dict(boxes=np.array(boxes, dtype).reshape(-1, 4),
                  labels=np.array(labels, np.int64), masks=masks)
    return img, target


def _tiny_model(dtype=np.float32, **overrides):
    cfg = tiny(min_size=(64,), max_size=96, **overrides)
    model = MaskRCNN(cfg, rng=np.random.default_rng(0))
    return model.astype(dtype) if dtype != np.float32 else model


def _total(losses):
    return sum(losses[k] for k in LOSS_NAMES)


def _fixed_samples(model, images, targets, seed=1):
    """Transform the batch and draw the samples once (``sample_targets``), as ``forward_train``
    would with ``rng = default_rng(seed)``. The finite-difference checks then measure the loss
    against these fixed samples with ``loss_forward``: a smooth function of the weights."""
    model.train(True)
    rng = np.random.default_rng(seed)
    batch, image_sizes, targets = model.transform(images, targets, training=True, rng=rng)
    features = model.features_forward(batch)
    proposals = model.propose(features, image_sizes, training=True)
    samples = model.sample_targets(features.anchors, proposals, targets, rng)
    assert samples.mask_targets.shape[0] > 0, "need positive RoIs to test the mask branch"
    return batch, image_sizes, samples


def _entries(g, pick):
    """The entries of one tensor to check: its largest gradient, a random one, and the one
    nearest zero (as flat indices, distinct)."""
    a = np.abs(g).reshape(-1)
    largest, nearest_zero = int(np.argmax(a)), int(np.argmin(a))
    others = np.setdiff1d(np.arange(a.size), [largest, nearest_zero])
    return [largest, int(pick.choice(others)), nearest_zero] if largest != nearest_zero else \
        [largest, int(pick.choice(others))]


def _check_entry(loss_at, name, idx, old, analytic, tol, h=1e-6):
    """Central difference at one entry; where the loss has a kink there (a ReLU that is exactly
    0, a max-pool over tied zeros: the no-norm tiny preset has many), backward must give one of
    the two one-sided derivatives. Returns True if the entry sits on a kink."""
    lp, lm = loss_at(old + h), loss_at(old - h)
    num = (lp - lm) / (2 * h)
    if abs(num - analytic) <= tol + 1e-4 * abs(num):
        return False
    # Not smooth here? Then the left and right derivatives differ, and backward gives one of
    # them (the first maximum wins a tie, as torch), never something else.
    l0 = loss_at(old)
    right, left = (lp - l0) / h, (l0 - lm) / h
    assert abs(right - left) > 1e-4 * abs(num), (name, idx, num, analytic, "smooth, yet wrong")
    assert min(abs(analytic - right), abs(analytic - left)) <= tol + 1e-3 * abs(num), \
        (name, idx, left, right, analytic)
    return True


def test_total_loss_gradient_matches_finite_differences():
    """Every parameter tensor of the tiny preset, at three entries each (the largest gradient,
    a random entry, the entry nearest zero), against central differences of the total loss
    in float64. Tolerance per tensor: 2e-8 (the differences' rounding noise on a loss of ~4)
    plus 1e-4 of the tensor's largest gradient. (16 sampled RoIs instead of 64 keep it fast;
    the parameters are the preset's. backend="numpy": the check is of the reference, and the
    kernels' agreement with it is tested op by op; on a busy 2-core machine the numba copies'
    thread start-up costs more than these tiny convolutions.)"""
    rng = np.random.default_rng(0)
    model = _tiny_model(np.float64, box_batch_size_per_image=16, backend="numpy")
    img, tgt = _scene(rng, dtype=np.float64)
    batch, image_sizes, samples = _fixed_samples(model, [img], [tgt])
    features = model.features_forward(batch)
    losses, cache = model.loss_forward(features, samples, image_sizes)
    assert all(np.isfinite(v) for v in losses.values())
    model.zero_grad()
    model.backward_train(cache)

    params = list(model.named_parameters())
    assert len(params) == len([k for k in model.state_dict() if "running" not in k])
    pick = np.random.default_rng(2)
    checked, kinks = 0, []
    for name, p, g in params:
        # a head's weights do not change the backbone's output: reuse the features
        head_only = name.startswith("roi_heads.")
        tol = 2e-8 + 1e-4 * float(np.abs(g).max())
        flat = p.reshape(-1)  # a view: writing it nudges the weight

        def loss_at(value, i=None):
            old = flat[i]
            flat[i] = value
            f = features if head_only else model.features_forward(batch)
            out = _total(model.loss_forward(f, samples, image_sizes)[0])
            flat[i] = old
            return out

        for i in _entries(g, pick):
            checked += 1
            if _check_entry(lambda v: loss_at(v, i), name, i, flat[i], g.reshape(-1)[i], tol):
                kinks.append(name)
    assert checked == 3 * len(params)
    assert len(kinks) <= checked // 5, kinks  # kinks are the exception, not the rule


def test_backward_train_gradient_for_the_feature_maps():
    """``backward_train`` on its own, from the five losses to the FPN maps P2..P6 (the RPN
    head, both RoIAlign poolers, both heads): the backbone is cut off and the maps are the
    input, checked at three entries per level against central differences in float64."""
    rng = np.random.default_rng(0)
    model = _tiny_model(np.float64, box_batch_size_per_image=16, backend="numpy")
    img, tgt = _scene(rng, dtype=np.float64)
    batch, image_sizes, samples = _fixed_samples(model, [img], [tgt])
    maps, _ = model.backbone.forward(batch)  # P2..P6, the input of this check
    got = {}
    object.__setattr__(model.backbone, "forward", lambda x: (maps, None))
    object.__setattr__(model.backbone, "backward", lambda d, c: got.setdefault("dmaps", d))
    _, cache = model.loss_forward(model.features_forward(batch), samples, image_sizes)
    model.zero_grad()
    model.backward_train(cache)
    dmaps = got["dmaps"]
    assert [d.shape for d in dmaps] == [m.shape for m in maps]
    pick = np.random.default_rng(3)
    kinks = 0
    for level, (m, d) in enumerate(zip(maps, dmaps)):
        assert np.abs(d).max() > 0, f"no gradient reaches level {level}"
        tol = 2e-8 + 1e-4 * float(np.abs(d).max())
        flat = m.reshape(-1)

        def loss_at(value, i=None):
            old = flat[i]
            flat[i] = value
            out = _total(model.loss_forward(model.features_forward(batch), samples, image_sizes)[0])
            flat[i] = old
            return out

        for i in _entries(d, pick):
            kinks += _check_entry(lambda v: loss_at(v, i), f"P{level + 2}", i, flat[i],
                                  d.reshape(-1)[i], tol)
    assert kinks <= 3


def test_image_without_objects_trains_with_a_finite_loss():
    rng = np.random.default_rng(0)
    model = _tiny_model()
    img, _ = _scene(rng)
    empty = dict(boxes=np.zeros((0, 4), np.float32), labels=np.zeros(0, np.int64),
                 masks=np.zeros((0,) + img.shape[1:], np.uint8))
    losses = model.forward_backward([img], [empty], np.random.default_rng(0))
    assert np.isfinite(losses["loss"])
    assert losses["loss_mask"] == 0 and losses["loss_box_reg"] == 0 and losses["loss_rpn_box_reg"] == 0
    grads = [g for _, _, g in model.named_parameters()]
    assert all(np.all(np.isfinite(g)) for g in grads)
    assert any(np.abs(g).sum() > 0 for g in grads)  # the classifiers still learn "background"


def test_object_smaller_than_the_smallest_anchor():
    rng = np.random.default_rng(0)
    model = _tiny_model()
    img, tgt = _scene(rng, boxes=((20, 20, 24, 23),), labels=(3,))  # 4x3 px, anchors start at 16
    losses = model.forward_backward([img], [tgt], np.random.default_rng(0))
    assert np.isfinite(losses["loss"])
    assert losses["loss_mask"] > 0  # the GT box itself is added as a RoI, so the mask trains


def test_batch_of_two_images_of_different_sizes():
    rng = np.random.default_rng(0)
    model = _tiny_model()
    a, ta = _scene(rng, 64, 80)
    b, tb = _scene(rng, 72, 64, boxes=((5, 5, 30, 40),), labels=(2,))
    losses = model.forward_backward([a, b], [ta, tb], np.random.default_rng(0))
    assert np.isfinite(losses["loss"]) and losses["loss_mask"] > 0
    out = model.predict([a, b])
    assert len(out) == 2
    for o, im in zip(out, (a, b)):
        D = len(o["boxes"])
        assert o["boxes"].shape == (D, 4) and o["labels"].shape == (D,) and o["scores"].shape == (D,)
        assert o["masks"].shape == (D, 1) + im.shape[1:]
        if D:
            assert 0 <= o["masks"].min() and o["masks"].max() <= 1
            assert np.all(o["labels"] >= 1)


@pytest.mark.parametrize("variant", [dict(mask_loss="softmax"), dict(class_agnostic_masks=True),
                                     dict(rpn_objectness="softmax")])
def test_ablation_variants_train(variant):
    rng = np.random.default_rng(0)
    model = _tiny_model(**variant)
    img, tgt = _scene(rng)
    losses = model.forward_backward([img], [tgt], np.random.default_rng(0))
    assert np.isfinite(losses["loss"])
    assert model.predict([img])[0]["masks"].shape[1:] == (1,) + img.shape[1:]


def test_weights_round_trip_npz(tmp_path):
    model = _tiny_model()
    path = tmp_path / "w.npz"
    model.save(path)
    other = MaskRCNN(model.cfg, rng=np.random.default_rng(123))
    other.load(path)
    for (n1, p1, _), (n2, p2, _) in zip(model.named_parameters(), other.named_parameters()):
        assert n1 == n2 and np.array_equal(p1, p2)


def test_loading_weights_of_another_architecture_names_the_tensors(tmp_path):
    model = _tiny_model()
    other = MaskRCNN(tiny(num_classes=7))
    with pytest.raises(ValueError, match="roi_heads.box_predictor.cls_score.weight"):
        model.load_state_dict(other.state_dict())


def test_checkpoint_is_atomic_and_readable(tmp_path):
    import os
    import stat
    from mrcnn_np.checkpoint import load_npz, save_npz_atomic
    path = tmp_path / "c.npz"
    save_npz_atomic(path, {"a": np.arange(3)})
    good = path.read_bytes()

    class Boom:  # np.savez fails half-way through on an object it cannot write
        def __array__(self, *a, **k):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_npz_atomic(path, {"a": np.arange(5), "b": Boom()})
    assert path.read_bytes() == good  # the old good file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary left behind
    assert np.array_equal(load_npz(path)["a"], np.arange(3))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_matterport_preset_builds_with_261888_anchors():
    """matterport's 1024x1024 squares: 3 anchors per location on P2..P6 (strides 4..64),
    3 * (256^2 + 128^2 + 64^2 + 32^2 + 16^2) = 3 * 87,296 = 261,888."""
    from mrcnn_np.config import matterport
    model = MaskRCNN(matterport())
    assert model.transform.square == 1024
    feature_sizes = [(1024 // s, 1024 // s) for s in (4, 8, 16, 32, 64)]
    anchors = model.anchor_generator((1024, 1024), feature_sizes)
    assert anchors.shape == (261_888, 4)
    assert model.rpn.head.cls_logits.params["weight"].shape[0] == 2 * 3  # 2-way softmax per anchor


def test_no_cache_drops_the_layer_caches_inside_and_restores_them():
    model = _tiny_model()
    conv = model.rpn.head.cls_logits
    x = np.zeros((1, conv.params["weight"].shape[1], 4, 4), np.float32)
    with model.no_cache():
        assert conv.forward(x)[1] is None  # predict() runs inside this: no im2col kept
    assert conv.forward(x)[1] is not None
    with pytest.raises(KeyError):
        with model.no_cache():
            raise KeyError("an error inside")
    assert all(m.keep_cache for _, m in model.named_modules())
    img, tgt = _scene(np.random.default_rng(0))
    model.predict([img])
    assert np.isfinite(model.forward_backward([img], [tgt], np.random.default_rng(0))["loss"])


def test_mask_rois_per_image_trains_the_mask_branch_on_a_subset_of_the_positives():
    """``mask_rois_per_image = n``: each image's mask branch gets n of its positive RoIs
    (all of them when it has fewer), with their own labels and GT masks; the box branch keeps
    every sampled RoI. n = 0 (the default) gives the mask branch every positive."""
    rng = np.random.default_rng(0)
    img, tgt = _scene(rng)
    full = _fixed_samples(_tiny_model(), [img], [tgt])[2]
    cut = _fixed_samples(_tiny_model(mask_rois_per_image=3), [img], [tgt])[2]
    pos = full.rois[0][full.labels[0] > 0]  # [Rp, 4] every positive
    assert len(pos) > 3  # the scene has more positives than the cap
    assert np.array_equal(full.pos_rois[0], pos)
    assert np.array_equal(full.mask_labels[0], full.labels[0][full.labels[0] > 0])
    # the box branch is unchanged: the same RoIs, drawn before the subset
    assert np.array_equal(cut.rois[0], full.rois[0]) and np.array_equal(cut.labels[0], full.labels[0])
    assert len(cut.pos_rois[0]) == 3 and cut.mask_targets.shape[0] == 3
    rows = [int(np.flatnonzero((pos == r).all(1))[0]) for r in cut.pos_rois[0]]  # into pos
    assert len(set(rows)) == 3 and rows == sorted(rows)  # distinct, in proposal order
    assert np.array_equal(cut.mask_labels[0], full.mask_labels[0][rows])
    np.testing.assert_array_equal(cut.mask_targets, full.mask_targets[rows])


def test_keypoint_rois_per_image_trains_the_keypoint_branch_on_a_subset():
    """``keypoint_rois_per_image = n``: each image's keypoint branch gets n of its positive
    RoIs that have keypoints, with their own targets (K rows each); the mask branch keeps all."""
    from mrcnn_np.config import tiny_keypoints
    rng = np.random.default_rng(0)
    img, tgt = _scene(rng)
    tgt["keypoints"] = np.array([[[20, 20, 2], [30, 40, 2], [0, 0, 0]],
                                 [[50, 40, 2], [40, 30, 1], [60, 50, 2]]], np.float32)

    def samples(n):
        cfg = tiny_keypoints(min_size=(64,), max_size=96, keypoints=3, num_classes=4,
                             keypoint_rois_per_image=n)
        return _fixed_samples(MaskRCNN(cfg, rng=np.random.default_rng(0)), [img], [tgt])[2]
    full, cut = samples(0), samples(3)
    assert len(full.keypoint_rois[0]) > 3 and len(cut.keypoint_rois[0]) == 3
    assert np.array_equal(cut.pos_rois[0], full.pos_rois[0])  # the mask branch is unchanged
    rows = [int(np.flatnonzero((full.keypoint_rois[0] == r).all(1))[0]) for r in cut.keypoint_rois[0]]
    assert len(set(rows)) == 3 and rows == sorted(rows)
    K = 3
    pick = np.concatenate([np.arange(r * K, (r + 1) * K) for r in rows])
    np.testing.assert_array_equal(cut.keypoint_heatmaps, full.keypoint_heatmaps[pick])
    np.testing.assert_array_equal(cut.keypoint_valid, full.keypoint_valid[pick])
