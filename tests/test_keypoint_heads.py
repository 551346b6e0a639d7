"""The keypoint head and predictor (chapter 15): against torchvision's modules with the same
weights, the 2x bilinear upsampling against ``F.interpolate`` and by hand, and every backward
against float64 finite differences.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import oracle
from mrcnn_np.keypoint_heads import KeypointRCNNHeads, KeypointRCNNPredictor, resize_keypoints
from mrcnn_np.nn.gradcheck import numerical_grad, rel_error
from mrcnn_np.nn.resample import upsample_bilinear_backward, upsample_bilinear_forward


# ---------------------------------------------------------------------------------------
# the 2x bilinear upsampling
# ---------------------------------------------------------------------------------------
def test_upsample_2x_hand_worked():
    """x = [[0, 1],        output pixel d reads source d / 2 - 0.25 (align_corners=False):
            [2, 3]]        d = 0: -0.25, clamped to 0 -> x[0]
                           d = 1:  0.25 -> 0.75 x[0] + 0.25 x[1]
                           d = 2:  0.75 -> 0.25 x[0] + 0.75 x[1]
                           d = 3:  1.25 -> past the last pixel: x[1]
    so along a row [0, 1] becomes [0, 0.25, 0.75, 1], and rows mix the same way:

        0.0  0.25 0.75 1.0        <- row 0
        0.5  0.75 1.25 1.5        <- 0.75 row 0 + 0.25 row 1
        1.5  1.75 2.25 2.5        <- 0.25 row 0 + 0.75 row 1
        2.0  2.25 2.75 3.0        <- row 1
    """
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    out, cache = upsample_bilinear_forward(x, scale_factor=2.0, recompute_scale_factor=False)
    expected = np.array([[0.0, 0.25, 0.75, 1.0],
                         [0.5, 0.75, 1.25, 1.5],
                         [1.5, 1.75, 2.25, 2.5],
                         [2.0, 2.25, 2.75, 3.0]], np.float32)
    np.testing.assert_array_equal(out[0, 0], expected)
    # backward of all-ones: each input pixel collects the weights it was read with. Along one
    # axis pixel 0 is read with 1 + 0.75 + 0.25 = 2 and so is pixel 1; in 2-D, 2 x 2 = 4.
    dx = upsample_bilinear_backward(np.ones((1, 1, 4, 4), np.float32), cache)
    np.testing.assert_array_equal(dx, np.full((1, 1, 2, 2), 4.0, np.float32))
    # a single output gradient at (1, 2) goes back with weights (0.75, 0.25) x (0.25, 0.75)
    d = np.zeros((1, 1, 4, 4), np.float32)
    d[0, 0, 1, 2] = 1
    np.testing.assert_array_equal(upsample_bilinear_backward(d, cache)[0, 0],
                                  [[0.75 * 0.25, 0.75 * 0.75], [0.25 * 0.25, 0.25 * 0.75]])


@settings(max_examples=20)
@given(seed=st.integers(0, 2**31 - 1), N=st.integers(1, 3), C=st.integers(1, 3),
       H=st.integers(1, 9), W=st.integers(1, 9),
       how=st.sampled_from(["x2", "size", "x1.7", "x1.7 recompute"]),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_upsample_bilinear_matches_torch(seed, N, C, H, W, how, dtype):
    """Values and the gradient (torch autograd of sum(dout * out)), within float32 rounding
    (1e-6 on values of size ~1: torch's kernel rounds its products in another order; 7e-9
    measured) or float64 rounding; gradients likewise (the sums run in another order)."""
    torch, _ = oracle()
    import torch.nn.functional as F
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, C, H, W)).astype(dtype)
    kw = {"x2": dict(scale_factor=2.0, recompute_scale_factor=False),
          "size": dict(size=(int(rng.integers(1, 12)), int(rng.integers(1, 12)))),
          "x1.7": dict(scale_factor=1.7, recompute_scale_factor=False),
          "x1.7 recompute": dict(scale_factor=1.7, recompute_scale_factor=True)}[how]
    out, cache = upsample_bilinear_forward(x, **kw)
    tx = torch.tensor(x, requires_grad=True)
    tout = F.interpolate(tx, mode="bilinear", align_corners=False, **kw)
    vtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=0, atol=vtol)
    dout = rng.normal(size=out.shape).astype(dtype)
    (tout * torch.tensor(dout)).sum().backward()
    dx = upsample_bilinear_backward(dout, cache)
    assert dx.shape == x.shape and dx.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol)


def test_upsample_bilinear_gradcheck():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 2, 5, 3))
    dout = rng.normal(size=(2, 2, 10, 6))
    _, cache = upsample_bilinear_forward(x, scale_factor=2.0, recompute_scale_factor=False)
    num = numerical_grad(lambda v: upsample_bilinear_forward(
        v, scale_factor=2.0, recompute_scale_factor=False)[0], x, dout)
    assert rel_error(upsample_bilinear_backward(dout, cache), num) < 1e-8


def test_upsample_bilinear_empty_batch_and_unmodified_input():
    x = np.zeros((0, 3, 28, 28), np.float32)
    out, cache = upsample_bilinear_forward(x, scale_factor=2.0, recompute_scale_factor=False)
    assert out.shape == (0, 3, 56, 56)
    assert upsample_bilinear_backward(out, cache).shape == (0, 3, 28, 28)
    y = np.random.default_rng(1).random((1, 2, 3, 4)).astype(np.float32)
    y0 = y.copy()
    o, c = upsample_bilinear_forward(y, size=(5, 7))
    upsample_bilinear_backward(np.ones_like(o), c)
    np.testing.assert_array_equal(y, y0)


# ---------------------------------------------------------------------------------------
# head and predictor against torchvision's modules
# ---------------------------------------------------------------------------------------
def _load_into_torch(torch, module, ours):
    sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ours.state_dict().items()}
    module.load_state_dict(sd, strict=True)
    return module.eval()


def test_parameter_names_shapes_and_init_equal_torchvisions():
    """Keys and shapes as torchvision's at its own sizes (8 x 512, 17 keypoints), biases zero,
    weights Kaiming-normal with fan_out = out_channels * 9 (conv) and C_in * 16 (the
    deconvolution, whose weight is [C_in, K, 4, 4]: torch reads axis 0 as fan-out)."""
    _, torchvision = oracle()
    from torchvision.models.detection.keypoint_rcnn import (KeypointRCNNHeads as TH,
                                                            KeypointRCNNPredictor as TP)
    rng = np.random.default_rng(0)
    head, pred = KeypointRCNNHeads(256, (512,) * 8, rng), KeypointRCNNPredictor(512, 17, rng)
    for ours, theirs in ((head, TH(256, (512,) * 8)), (pred, TP(512, 17))):
        t = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
        assert {k: v.shape for k, v in ours.state_dict().items()} == t
    assert sorted(head.state_dict()) == sorted(f"{2 * i}.{p}" for i in range(8)
                                               for p in ("weight", "bias"))
    for i in range(8):
        w = head[2 * i].params["weight"]
        assert not head[2 * i].params["bias"].any()
        assert abs(w.std() / np.sqrt(2 / (512 * 9)) - 1) < 0.02  # 1.2-2.4 M draws
        assert abs(w.mean()) < 3e-4
    w = pred.kps_score_lowres.params["weight"]  # [512, 17, 4, 4]
    assert abs(w.std() / np.sqrt(2 / (512 * 16)) - 1) < 0.02
    assert not pred.kps_score_lowres.params["bias"].any()


@settings(max_examples=5)
@given(seed=st.integers(0, 2**31 - 1), R=st.integers(0, 4))
def test_head_and_predictor_match_torchvision(seed, R):
    """Same weights (random biases too, so they are really compared), float32: the head's
    output within float32 rounding of torch's (1e-5 relative to its largest value), the
    predictor's 56x56 logits likewise."""
    torch, _ = oracle()
    from torchvision.models.detection.keypoint_rcnn import (KeypointRCNNHeads as TH,
                                                            KeypointRCNNPredictor as TP)
    rng = np.random.default_rng(seed)
    C, layers, K = 16, (24, 24, 32), 5
    head, pred = KeypointRCNNHeads(C, layers, rng), KeypointRCNNPredictor(layers[-1], K, rng)
    for m in (head, pred):
        for _, mod in m.named_modules():
            if "bias" in mod.params:
                mod.params["bias"] = rng.normal(0, 0.1, mod.params["bias"].shape).astype(np.float32)
    th = _load_into_torch(torch, TH(C, layers), head)
    tp = _load_into_torch(torch, TP(layers[-1], K), pred)
    x = rng.normal(size=(R, C, 14, 14)).astype(np.float32)
    h, _ = head.forward(x)
    logits, _ = pred.forward(h)
    assert h.shape == (R, 32, 14, 14) and logits.shape == (R, K, 56, 56)
    assert logits.dtype == np.float32
    with torch.no_grad():
        th_out = th(torch.from_numpy(x))
        tp_out = tp(th_out).numpy()
    if R:
        th_out = th_out.numpy()
        assert np.abs(h - th_out).max() <= 1e-5 * np.abs(th_out).max()
        assert np.abs(logits - tp_out).max() <= 1e-5 * np.abs(tp_out).max()
    else:
        assert tp_out.shape == logits.shape


# ---------------------------------------------------------------------------------------
# gradient checks (float64)
# ---------------------------------------------------------------------------------------
def _param_grad_check(module, forward_sum, name, tol=1e-7):
    """Every entry of the parameter ``name`` of ``module`` (a dotted path below it)."""
    mname, pname = name.rsplit(".", 1)
    mod = dict(module.named_modules())[mname]
    p = mod.params[pname]
    num = numerical_grad(lambda _: forward_sum(), p, np.float64(1))
    return rel_error(mod.grads[pname], num) < tol


def test_head_gradcheck():
    """dx and every weight and bias of a 2-layer head, against central differences.
    Random biases keep the ReLUs away from exact zeros (no kinks at h = 1e-6)."""
    rng = np.random.default_rng(0)
    head = KeypointRCNNHeads(3, (4, 5), rng).astype(np.float64)
    for i in (0, 2):
        head[i].params["bias"] = rng.normal(0, 0.3, head[i].params["bias"].shape)
    x = rng.normal(size=(2, 3, 5, 5))
    dout = rng.normal(size=(2, 5, 5, 5))
    out, cache = head.forward(x)
    head.zero_grad()
    dx = head.backward(dout, cache)
    assert rel_error(dx, numerical_grad(lambda v: head.forward(v)[0], x, dout)) < 1e-7
    f = lambda: np.sum(dout * head.forward(x)[0])  # noqa: E731
    for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
        assert _param_grad_check(head, f, name), name


def test_predictor_gradcheck():
    """Deconvolution (4x4, stride 2, padding 1) and the 2x bilinear upsampling together:
    [2, 3, 4, 4] -> [2, K, 8, 8] -> [2, K, 16, 16]; dx, dw, db against central differences."""
    rng = np.random.default_rng(1)
    pred = KeypointRCNNPredictor(3, 2, rng).astype(np.float64)
    pred.kps_score_lowres.params["bias"] = rng.normal(size=2)
    x = rng.normal(size=(2, 3, 4, 4))
    out, cache = pred.forward(x)
    assert out.shape == (2, 2, 16, 16)
    dout = rng.normal(size=out.shape)
    pred.zero_grad()
    dx = pred.backward(dout, cache)
    assert rel_error(dx, numerical_grad(lambda v: pred.forward(v)[0], x, dout)) < 1e-8
    f = lambda: np.sum(dout * pred.forward(x)[0])  # noqa: E731
    for name in ("kps_score_lowres.weight", "kps_score_lowres.bias"):
        assert _param_grad_check(pred, f, name, tol=1e-8), name


def test_head_needs_a_layer():
    with pytest.raises(ValueError, match="at least one conv layer"):
        KeypointRCNNHeads(8, (), np.random.default_rng(0))


# ---------------------------------------------------------------------------------------
# keypoints through the transform's resize
# ---------------------------------------------------------------------------------------
def test_resize_keypoints_matches_torchvision():
    torch, _ = oracle()
    from torchvision.models.detection.transform import resize_keypoints as tv_resize
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 300, (4, 7, 2)), rng.integers(0, 3, (4, 7, 1))],
                        2).astype(np.float32)
    for old, new in [((240, 320), (600, 800)), ((333, 517), (257, 399)), ((10, 10), (10, 10))]:
        ours = resize_keypoints(kp, old, new)
        theirs = tv_resize(torch.from_numpy(kp), list(old), list(new)).numpy()
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(kp, resize_keypoints(kp, (5, 5), (5, 5)))
    with pytest.raises(ValueError, match=r"\[G, K, 3\]"):
        resize_keypoints(np.zeros((3, 2)), (5, 5), (10, 10))


# ---------------------------------------------------------------------------------------
# the whole model's total loss, keypoint branch on (float64 finite differences)
# ---------------------------------------------------------------------------------------
def _keypoint_scene(rng, K=3):
    """test_model's two-object scene plus K keypoints per object, inside its box; the second
    object's last keypoint unlabelled (v = 0), one occluded (v = 1)."""
    from test_model import _scene
    img, tgt = _scene(rng, dtype=np.float64)
    kp = np.zeros((2, K, 3))
    for g, (x1, y1, x2, y2) in enumerate(tgt["boxes"]):
        u = rng.uniform(0.15, 0.85, (K, 2))
        kp[g, :, 0], kp[g, :, 1] = x1 + u[:, 0] * (x2 - x1), y1 + u[:, 1] * (y2 - y1)
        kp[g, :, 2] = 2
    kp[1, -1, 2], kp[1, 0, 2] = 0, 1
    return img, dict(tgt, keypoints=kp)


def test_total_loss_gradient_with_the_keypoint_branch():
    """The tiny preset with a keypoint branch (K = 3, two conv layers of 8 channels) and the
    mask branch, float64: the total loss (six losses) by central differences at three entries
    (largest gradient, a random one, the one nearest zero) of every keypoint tensor and of
    P2's FPN conv (the other tensors' total-loss gradient is tests/test_model.py's check).
    Then L_keypoint alone (``loss_weights``: 1 for it, 0 for the others) at three backbone
    tensors: their gradient is then only the path from the keypoint loss through predictor,
    head and RoIAlign into P2 and down the FPN and ResNet.
    Tolerance per tensor as tests/test_model.py: 2e-8 + 1e-4 of its largest gradient; an
    entry on a ReLU kink must match one of the one-sided derivatives. Samples drawn once, so
    the loss is a smooth function of the weights."""
    from test_model import _check_entry, _entries, _fixed_samples, _tiny_model
    rng = np.random.default_rng(0)
    model = _tiny_model(np.float64, box_batch_size_per_image=16, backend="numpy",
                        keypoints=3, keypoint_layers=(8, 8))
    assert model.loss_names[-1] == "loss_keypoint" and len(model.loss_names) == 6
    img, tgt = _keypoint_scene(rng)
    batch, image_sizes, samples = _fixed_samples(model, [img], [tgt])
    assert samples.keypoint_valid.sum() >= 4, "need valid keypoints to test the branch"
    features = model.features_forward(batch)

    def total(weights):
        return lambda f: sum(weights[k] * v for k, v in
                             model.loss_forward(f, samples, image_sizes)[0].items())

    everything = {k: 1.0 for k in model.loss_names}
    only_kp = {k: float(k == "loss_keypoint") for k in model.loss_names}
    # P2's output conv (the RoIs of 32-40 px pool from P2), a lateral reached through the
    # top-down path, and the stem
    backbone = ["backbone.fpn.layer_blocks.0.0.weight", "backbone.fpn.inner_blocks.1.0.weight",
                "backbone.body.conv1.weight"]
    named = {n: (p, g) for n, p, g in model.named_parameters()}
    keypoint_tensors = [n for n in named if "keypoint" in n]
    assert len(keypoint_tensors) == 6
    plan = [(everything, keypoint_tensors + backbone[:1]), (only_kp, backbone)]
    pick = np.random.default_rng(2)
    checked, kinks = 0, []
    for weights, names in plan:
        _, cache = model.loss_forward(features, samples, image_sizes)
        model.zero_grad()
        model.backward_train(cache, loss_weights=weights)
        loss_of = total(weights)
        for name in names:
            p, g = named[name]
            g = g.copy()
            assert np.abs(g).max() > 0, f"no gradient reaches {name}"
            tol = 2e-8 + 1e-4 * float(np.abs(g).max())
            flat = p.reshape(-1)
            head_only = name.startswith("roi_heads.")

            def loss_at(value, i=None):
                old = flat[i]
                flat[i] = value
                out = loss_of(features if head_only else model.features_forward(batch))
                flat[i] = old
                return out

            for i in _entries(g, pick):
                checked += 1
                if _check_entry(lambda v: loss_at(v, i), name, i, flat[i], g.reshape(-1)[i], tol):
                    kinks.append(name)
    assert checked == 3 * (len(plan[0][1]) + len(plan[1][1]))
    assert len(kinks) <= checked // 5, kinks


def test_keypoint_transform_resizes_targets_and_detections_as_torchvision():
    """The model's transform scales target keypoints with the image (training) and detected
    keypoints back to the original image (postprocess), as GeneralizedRCNNTransform does."""
    torch, _ = oracle()
    from torchvision.models.detection.transform import GeneralizedRCNNTransform
    from mrcnn_np.keypoint_heads import KeypointTransform
    rng = np.random.default_rng(0)
    images = [rng.random((3, 90, 130)).astype(np.float32),
              rng.random((3, 77, 61)).astype(np.float32)]
    targets = []
    for im in images:
        h, w = im.shape[1:]
        kp = np.concatenate([rng.uniform(0, w, (2, 5, 1)), rng.uniform(0, h, (2, 5, 1)),
                             rng.integers(0, 3, (2, 5, 1))], 2).astype(np.float32)
        targets.append(dict(boxes=np.array([[1, 2, 30, 40], [5, 5, 50, 60]], np.float32),
                            labels=np.array([1, 1]), keypoints=kp))
    ours = KeypointTransform(min_size=128, max_size=200)
    tv = GeneralizedRCNNTransform(128, 200, list(ours.image_mean), list(ours.image_std))
    tv.train()
    _, sizes, out = ours(images, targets, training=True)
    tv_list, tv_out = tv([torch.from_numpy(im) for im in images],
                         [{k: torch.from_numpy(v) for k, v in t.items()} for t in targets])
    assert [tuple(s) for s in sizes] == [tuple(s) for s in tv_list.image_sizes]
    for o, t, orig in zip(out, tv_out, targets):
        np.testing.assert_allclose(o["keypoints"], t["keypoints"].numpy(), rtol=0, atol=1e-5)
        assert o["keypoints"] is not orig["keypoints"]  # the caller's targets are left alone
    tv.eval()  # (in training mode torchvision's postprocess returns its input)
    dets = [dict(boxes=t["boxes"], keypoints=t["keypoints"]) for t in out]
    back = ours.postprocess(dets, sizes, [im.shape[1:] for im in images])
    tv_back = tv.postprocess([{k: torch.from_numpy(v) for k, v in d.items()} for d in dets],
                             [tuple(s) for s in sizes], [im.shape[1:] for im in images])
    for b, t, orig in zip(back, tv_back, targets):
        np.testing.assert_allclose(b["keypoints"], t["keypoints"].numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(b["keypoints"], orig["keypoints"], rtol=0, atol=1e-4)
