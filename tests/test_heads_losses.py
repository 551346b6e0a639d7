"""RPN and RoI-head losses against torchvision's own loss code, values and gradients.

torchvision samples anchors with torch's RNG; to compare like with like we hand its RPN the
same sampled anchors ours used (its ``fg_bg_sampler`` is replaced by one that returns our
masks). fastrcnn_loss and maskrcnn_loss are plain functions in torchvision and are called
directly.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import oracle
from mrcnn_np.nn.gradcheck import numerical_grad, rel_error
from mrcnn_np.roi_heads import (FastRCNNPredictor, MaskRCNNPredictor, TwoMLPHead,
                                fastrcnn_loss_backward, fastrcnn_loss_forward,
                                maskrcnn_loss_backward, maskrcnn_loss_forward,
                                project_masks_on_boxes)
from mrcnn_np.rpn import (RPNHead, flatten_predictions, rpn_loss_backward, rpn_loss_forward,
                          unflatten_predictions)


def _boxes(rng, n, size):
    xy = rng.uniform(0, size * 0.7, (n, 2))
    wh = rng.uniform(2, size * 0.3, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


@settings(max_examples=15)
@given(seed=st.integers(0, 2**31 - 1), R=st.integers(1, 40), K=st.integers(2, 6))
def test_fastrcnn_loss_matches_torchvision(seed, R, K):
    torch, _ = oracle()
    from torchvision.models.detection.roi_heads import fastrcnn_loss
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(R, K)).astype(np.float64)
    box_reg = rng.normal(size=(R, 4 * K)).astype(np.float64)
    labels = rng.integers(0, K, R).astype(np.int64)
    targets = rng.normal(size=(R, 4)).astype(np.float64)

    lc, lb, cache = fastrcnn_loss_forward(logits, box_reg, labels, targets)
    dl, db = fastrcnn_loss_backward(1.0, 1.0, cache)

    tl = torch.tensor(logits, requires_grad=True)
    tb = torch.tensor(box_reg, requires_grad=True)
    tlc, tlb = fastrcnn_loss(tl, tb, [torch.tensor(labels)], [torch.tensor(targets)])
    (tlc + tlb).backward()
    np.testing.assert_allclose(lc, tlc.item(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lb, tlb.item(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dl, tl.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-10, atol=1e-12)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**31 - 1), P=st.integers(0, 6), K=st.integers(2, 5))
def test_maskrcnn_loss_matches_torchvision(seed, P, K):
    """Targets by RoIAlign of the GT masks (project_masks_on_boxes), per-class sigmoid BCE on
    the label's channel only; the gradient is zero on every other channel."""
    torch, _ = oracle()
    from torchvision.models.detection.roi_heads import maskrcnn_loss
    rng = np.random.default_rng(seed)
    H, W, G, M = 40, 48, 3, 28
    gt_masks = (rng.random((G, H, W)) > 0.5).astype(np.uint8)
    gt_labels = rng.integers(1, K, G).astype(np.int64)
    boxes = _boxes(rng, P, 40).astype(np.float64)
    matched = rng.integers(0, G, P).astype(np.int64)
    logits = rng.normal(size=(P, K, M, M))

    targets = project_masks_on_boxes(gt_masks, boxes, matched, M, backend="numpy")
    loss, cache = maskrcnn_loss_forward(logits, gt_labels[matched], targets)
    dlogits = maskrcnn_loss_backward(1.0, cache)

    tlog = torch.tensor(logits, requires_grad=True)
    tloss = maskrcnn_loss(tlog, [torch.tensor(boxes)], [torch.tensor(gt_masks)],
                          [torch.tensor(gt_labels)], [torch.tensor(matched)])
    tloss.backward()
    np.testing.assert_allclose(loss, tloss.item(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dlogits, tlog.grad.numpy(), rtol=1e-8, atol=1e-12)
    if P:
        other = np.ones((P, K), bool)
        other[np.arange(P), gt_labels[matched]] = False
        assert np.all(dlogits[other] == 0)


def test_mask_loss_softmax_variant_gradient_by_finite_differences():
    from gradcheck import numerical_grad
    rng = np.random.default_rng(3)
    P, K, M = 2, 3, 4
    logits = rng.normal(size=(P, K, M, M))
    labels = np.array([1, 2])
    targets = rng.random((P, M, M))
    loss, cache = maskrcnn_loss_forward(logits, labels, targets, mode="softmax")
    d = maskrcnn_loss_backward(1.0, cache)
    num = numerical_grad(lambda x: maskrcnn_loss_forward(x, labels, targets, mode="softmax")[0],
                         logits.copy(), 1.0)
    np.testing.assert_allclose(d, num, rtol=1e-6, atol=1e-8)


def test_empty_heads_losses_are_zero_and_finite():
    lc, lb, cache = fastrcnn_loss_forward(np.zeros((0, 4)), np.zeros((0, 16)),
                                          np.zeros(0, np.int64), np.zeros((0, 4)))
    assert lc == 0 and lb == 0
    dl, db = fastrcnn_loss_backward(1.0, 1.0, cache)
    assert dl.shape == (0, 4) and db.shape == (0, 16)
    loss, cache = maskrcnn_loss_forward(np.zeros((0, 4, 28, 28)), np.zeros(0, np.int64),
                                        np.zeros((0, 28, 28)))
    assert loss == 0
    assert maskrcnn_loss_backward(1.0, cache).shape == (0, 4, 28, 28)


@settings(max_examples=8)
@given(seed=st.integers(0, 2**31 - 1), N=st.integers(1, 2))
def test_rpn_loss_matches_torchvision_with_the_same_sampled_anchors(seed, N):
    torch, _ = oracle()
    from torchvision.models.detection.rpn import RegionProposalNetwork, concat_box_prediction_layers
    rng = np.random.default_rng(seed)
    A, sizes = 3, [(6, 5), (3, 3)]
    objectness = [rng.normal(size=(N, A, h, w)) for h, w in sizes]
    deltas = [rng.normal(size=(N, 4 * A, h, w)) for h, w in sizes]
    obj, box, shapes = flatten_predictions(objectness, deltas)  # [N, T, 1], [N, T, 4]
    T = obj.shape[1]
    labels = rng.choice([-1, 0, 1], size=(N, T), p=[0.5, 0.3, 0.2]).astype(np.float64)
    labels[:, 0] = 0  # at least one sampled anchor per image
    reg_targets = rng.normal(size=(N, T, 4))

    lo, lb, cache = rpn_loss_forward(obj, box, labels, reg_targets)
    dobj, dbox = rpn_loss_backward(1.0, 1.0, cache)
    dobjectness, ddeltas = unflatten_predictions(dobj, dbox, shapes)

    rpn = RegionProposalNetwork(None, None, 0.7, 0.3, 256, 0.5, {}, {}, 0.7)
    rpn.fg_bg_sampler = lambda labs: ([torch.tensor(l == 1) for l in labels],
                                      [torch.tensor(l == 0) for l in labels])
    tobj = [torch.tensor(o, requires_grad=True) for o in objectness]
    tdel = [torch.tensor(d, requires_grad=True) for d in deltas]
    tob, tbx = concat_box_prediction_layers(tobj, tdel)
    tlo, tlb = rpn.compute_loss(tob, tbx, [torch.tensor(l) for l in labels],
                                [torch.tensor(r) for r in reg_targets])
    (tlo + tlb).backward()
    np.testing.assert_allclose(lo, tlo.item(), rtol=1e-12)
    np.testing.assert_allclose(lb, tlb.item(), rtol=1e-12, atol=1e-15)
    for ours, theirs in zip(dobjectness + ddeltas, tobj + tdel):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-10, atol=1e-14)


# -- the heads' own backward, by finite differences (float64) --------------------------------
HEAD_TOL = 1e-6  # rel_error of analytic vs central differences (mrcnn_np.nn.gradcheck)


def _check_module_gradients(module, inputs, run):
    """``run(module, inputs) -> (outputs, backward)`` where ``backward(douts) -> dinputs``.
    Checks the input gradients and every parameter's against central differences of
    ``sum(dout * out)`` with random ``dout``; returns the names checked."""
    rng = np.random.default_rng(7)
    module.set_backend("numpy")  # the reference convolutions: thousands of tiny calls
    for _, p, _ in module.named_parameters():
        if p.ndim == 1:  # zero-initialised biases: a dead row would sit exactly on a ReLU kink
            p[...] = rng.uniform(-0.1, 0.1, p.shape)
    outputs, _ = run(module, inputs)
    douts = [rng.standard_normal(o.shape) for o in outputs]

    def loss():
        return sum(np.sum(d * o) for d, o in zip(douts, run(module, inputs)[0]))

    module.zero_grad()
    _, backward = run(module, inputs)
    dinputs = backward(douts)
    checked = []
    for k, (x, dx) in enumerate(zip(inputs, dinputs)):
        assert rel_error(dx, numerical_grad(lambda _: loss(), x, 1.0)) < HEAD_TOL, f"input {k}"
        checked.append(f"input {k}")
    for name, p, g in module.named_parameters():
        assert np.abs(g).max() > 0, name
        assert rel_error(g, numerical_grad(lambda _: loss(), p, 1.0)) < HEAD_TOL, name
        checked.append(name)
    return checked


@pytest.mark.parametrize("objectness", ["sigmoid", "softmax"])
def test_rpn_head_gradient(objectness):
    rng = np.random.default_rng(0)
    head = RPNHead(3, 2, objectness, rng).astype(np.float64)
    feats = [rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 2, 3))]  # 2 levels

    def run(m, xs):
        obj, deltas, cache = m.forward(xs)  # [N, A*c, H_l, W_l], [N, 4A, H_l, W_l] per level
        L = len(xs)
        return obj + deltas, lambda d: m.backward(d[:L], d[L:], cache)

    checked = _check_module_gradients(head, feats, run)
    assert len(checked) == 2 + 6  # two levels; conv, cls_logits, bbox_pred weights and biases


def test_two_mlp_head_gradient():
    rng = np.random.default_rng(1)
    head = TwoMLPHead(3 * 2 * 2, 5, rng).astype(np.float64)
    x = rng.standard_normal((4, 3, 2, 2))  # [R, C, S, S]

    def run(m, xs):
        h, cache = m.forward(xs[0])  # [R, rep]
        return [h], lambda d: [m.backward(d[0], cache)]

    assert len(_check_module_gradients(head, [x], run)) == 1 + 4


def test_fast_rcnn_predictor_gradient():
    rng = np.random.default_rng(2)
    pred = FastRCNNPredictor(5, 3, rng).astype(np.float64)
    x = rng.standard_normal((4, 5))  # [R, rep]

    def run(m, xs):
        logits, deltas, cache = m.forward(xs[0])  # [R, K], [R, 4K]
        return [logits, deltas], lambda d: [m.backward(d[0], d[1], cache)]

    assert len(_check_module_gradients(pred, [x], run)) == 1 + 4


def test_mask_rcnn_predictor_gradient():
    rng = np.random.default_rng(3)
    pred = MaskRCNNPredictor(3, 4, 3, rng).astype(np.float64)
    x = rng.standard_normal((2, 3, 4, 4))  # [R, C, S, S]

    def run(m, xs):
        logits, cache = m.forward(xs[0])  # [R, K, 2S, 2S]
        return [logits], lambda d: [m.backward(d[0], cache)]

    assert len(_check_module_gradients(pred, [x], run)) == 1 + 4
