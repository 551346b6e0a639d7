"""Facts the model chapters (05 RPN head and loss, 07 RoI sampling and targets, 09 heads and
losses) teach, pinned down by hand-worked examples and properties.

The lessons show these numbers; the tests keep the library honest about them.
"""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import numerical_grad, rel_error
from mrcnn_np.ops import AnchorGenerator, box_iou
from mrcnn_np.roi_heads import (maskrcnn_loss_backward, maskrcnn_loss_forward,
                                project_masks_on_boxes, select_training_samples)
from mrcnn_np.rpn import (RPN_BOX_BETA, flatten_predictions, rpn_loss_backward, rpn_loss_forward,
                          unflatten_predictions)


# -- chapter 05 ------------------------------------------------------------------------------
def test_flattened_prediction_i_belongs_to_anchor_i():
    # Two levels on a 32 x 32 image: 8 x 8 (stride 4) and 4 x 4 (stride 8), A = 3.
    # Channel a of level l at (y, x) goes to i = offset_l + (y * W_l + x) * A + a.
    # Level 1, (y, x) = (2, 3), a = 1: offset 8*8*3 = 192, i = 192 + (2*4 + 3)*3 + 1 = 226,
    # and the anchor there is centred at (x, y) * stride = (24, 16).
    gen = AnchorGenerator(((8,), (16,)), ((0.5, 1.0, 2.0),) * 2)
    anchors = gen((32, 32), [(8, 8), (4, 4)])                              # [240, 4]
    rng = np.random.default_rng(0)
    obj = [rng.normal(size=(1, 3, 8, 8)), rng.normal(size=(1, 3, 4, 4))]   # [N, A, H, W]
    box = [rng.normal(size=(1, 12, 8, 8)), rng.normal(size=(1, 12, 4, 4))]  # [N, 4A, H, W]
    o, b, shapes = flatten_predictions(obj, box)
    i = 226
    assert o.shape == (1, 240, 1) and anchors.shape == (240, 4)
    assert o[0, i, 0] == obj[1][0, 1, 2, 3]
    assert np.array_equal(b[0, i], box[1][0, 4:8, 2, 3])
    np.testing.assert_allclose((anchors[i, :2] + anchors[i, 2:]) / 2, [24, 16])
    back_o, back_b = unflatten_predictions(o, b, shapes)
    assert all(np.array_equal(u, v) for u, v in zip(back_o + back_b, obj + box))


def test_two_way_softmax_objectness_is_bce_of_the_logit_difference():
    # softmax(z)_1 = sigmoid(z1 - z0): the losses agree, and the softmax gradient is the
    # sigmoid gradient g on z1 and -g on z0.
    rng = np.random.default_rng(3)
    z = rng.normal(size=(2, 7, 2)) * 2                                    # [N, A, 2]
    box = rng.normal(size=(2, 7, 4))
    labels = np.array([[1, 0, -1, 0, 1, -1, 0], [0, 0, 1, -1, -1, 1, 0]])
    tgt = rng.normal(size=(2, 7, 4))
    lo2, lb2, c2 = rpn_loss_forward(z, box, labels, tgt)
    lo1, lb1, c1 = rpn_loss_forward(z[..., 1:] - z[..., :1], box, labels, tgt)
    np.testing.assert_allclose(lo2, lo1, rtol=1e-12)
    np.testing.assert_allclose(lb2, lb1, rtol=1e-12)
    d2, _ = rpn_loss_backward(1.0, 1.0, c2)
    d1, _ = rpn_loss_backward(1.0, 1.0, c1)
    np.testing.assert_allclose(d2[..., 1], d1[..., 0], atol=1e-15)
    np.testing.assert_allclose(d2[..., 0], -d1[..., 0], atol=1e-15)


def test_rpn_loss_gradient_is_sigmoid_minus_label_over_the_sampled_count():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1, 9, 1))
    box = rng.normal(size=(1, 9, 4)) * 0.2
    labels = np.array([[1, 0, -1, 1, 0, 0, -1, -1, 1]])                  # S = 6 sampled
    tgt = rng.normal(size=(1, 9, 4)) * 0.2
    _, _, cache = rpn_loss_forward(x, box, labels, tgt)
    dx, dbox = rpn_loss_backward(1.0, 1.0, cache)
    sig = 1 / (1 + np.exp(-x[0, :, 0]))
    np.testing.assert_allclose(dx[0, :, 0], np.where(labels[0] >= 0, sig - labels[0], 0) / 6)
    d = box - tgt
    slope = np.where(np.abs(d) < RPN_BOX_BETA, d / RPN_BOX_BETA, np.sign(d))
    np.testing.assert_allclose(dbox, np.where((labels == 1)[..., None], slope, 0) / 6)
    num = numerical_grad(lambda v: rpn_loss_forward(v, box, labels, tgt)[0], x, np.float64(1))
    assert rel_error(num, dx) < 1e-7


# -- chapter 07 ------------------------------------------------------------------------------
GT = np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32)            # labels 2, 1
PROPOSALS = np.array([[0, 0, 10, 20],     # IoU with gt0 = 100 / 200 = 0.5   -> positive, 2
                      [0, 0, 10, 21],     # IoU with gt0 = 100 / 210 < 0.5   -> background
                      [20, 20, 40, 30],   # IoU with gt1 = 200 / 400 = 0.5   -> positive, 1
                      [50, 50, 60, 60]],  # no overlap                        -> background
                     np.float32)


def test_select_training_samples_by_hand():
    rois, matched, labels, targets = select_training_samples(
        [PROPOSALS], [GT], [np.array([2, 1])], np.random.default_rng(0))
    # Everything fits in 512: the 4 proposals, then the 2 appended GT boxes, in that order.
    np.testing.assert_array_equal(rois[0], np.concatenate([PROPOSALS, GT]))
    np.testing.assert_array_equal(labels[0], [2, 0, 1, 0, 2, 1])
    np.testing.assert_array_equal(matched[0][labels[0] > 0], [0, 1, 0, 1])
    # p0: centre (5, 10), 10 x 20; gt0: centre (5, 5), 10 x 10
    #     t = (10 * 0 / 10, 10 * (5 - 10) / 20, 5 log(10/10), 5 log(10/20)) = (0, -2.5, 0, -3.4657)
    # p2: centre (30, 25), 20 x 10; gt1: centre (30, 30), 20 x 20
    #     t = (0, 10 * 5 / 10, 0, 5 log 2) = (0, 5, 0, 3.4657)
    # appended GT boxes: all zeros
    np.testing.assert_allclose(targets[0][[0, 2, 4, 5]],
                               [[0, -2.5, 0, 5 * np.log(0.5)], [0, 5, 0, 5 * np.log(2)],
                                [0, 0, 0, 0], [0, 0, 0, 0]], atol=1e-5)


def test_select_training_samples_caps_the_positives():
    # 4 RoIs at 25% positive: int(4 * 0.25) = 1 positive; negatives fill up to 3 but only 2 exist.
    rois, matched, labels, _ = select_training_samples(
        [PROPOSALS], [GT], [np.array([2, 1])], np.random.default_rng(0),
        batch_size_per_image=4, positive_fraction=0.25)
    assert len(rois[0]) == 3 and np.sum(labels[0] > 0) == 1 and np.sum(labels[0] == 0) == 2


def test_select_training_samples_without_objects_is_all_background():
    rois, matched, labels, targets = select_training_samples(
        [PROPOSALS], [np.zeros((0, 4), np.float32)], [np.zeros(0, np.int64)],
        np.random.default_rng(0))
    assert len(rois[0]) == 4 and np.all(labels[0] == 0) and targets[0].shape == (4, 4)


@settings(max_examples=15)
@given(seed=st.integers(0, 2**31 - 1), n_props=st.integers(0, 40), n_gt=st.integers(1, 4),
       batch=st.integers(1, 24))
def test_sampled_rois_respect_the_thresholds_and_the_budget(seed, n_props, n_gt, batch):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 60, (n_props + n_gt, 2))
    wh = rng.uniform(2, 30, (n_props + n_gt, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    props, gt = boxes[:n_props], boxes[n_props:]
    gl = rng.integers(1, 4, n_gt)
    rois, matched, labels, _ = select_training_samples([props], [gt], [gl], rng,
                                                       batch_size_per_image=batch)
    rois, matched, labels = rois[0], matched[0], labels[0]
    pos = labels > 0
    assert len(rois) <= batch and pos.sum() <= int(batch * 0.25)
    iou = box_iou(gt, rois)                                               # [G, R]
    assert np.all(iou[matched[pos], np.flatnonzero(pos)] >= 0.5)
    np.testing.assert_array_equal(labels[pos], gl[matched[pos]])
    assert np.all(iou[:, ~pos].max(0, initial=0) < 0.5)


def test_mask_target_edge_bin_by_hand():
    # GT mask: ones on [0, 32) x [0, 32) of 64 x 64. RoI (16, 16, 48, 48), M = 28, aligned=False.
    # Bin size 32/28 = 8/7, 2 samples per bin (ceil(8/7)) at 1/4 and 3/4 of the bin. Pixel i's
    # value sits at coordinate i, so along x the mask is 1 up to 31, 0 from 32, linear between.
    #   bin 12: x = 16 + 12.25 * 8/7 = 30.0 and 30.57         -> 1, 1        -> 1
    #   bin 13: x = 16 + 13.25 * 8/7 = 31.143 and 31.714      -> 6/7, 2/7    -> 4/7
    #   bin 14: x = 16 + 14.25 * 8/7 = 32.29 and 32.86        -> 0, 0        -> 0
    # The corner bin (13, 13) is soft both ways: (4/7)^2 = 16/49.
    square = np.zeros((1, 64, 64), np.uint8)
    square[0, :32, :32] = 1
    t = project_masks_on_boxes(square, np.array([[16, 16, 48, 48], [8, 8, 24, 24]], np.float64),
                               np.array([0, 0]), 28, backend="numpy")     # float64: exact to 1e-12
    assert t.dtype == np.float64
    np.testing.assert_allclose(t[0, :13, :13], 1, atol=1e-12)
    np.testing.assert_allclose(t[0, :13, 13], 4 / 7, atol=1e-12)
    np.testing.assert_allclose(t[0, 13, 13], 16 / 49, atol=1e-12)
    assert np.all(t[0, 14:] == 0) and np.all(t[0, :, 14:] == 0)
    np.testing.assert_allclose(t[1], 1, atol=1e-12)                       # RoI inside the object


# -- chapter 09 ------------------------------------------------------------------------------
def test_sigmoid_mask_loss_ignores_the_other_classes_softmax_does_not():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(2, 3, 4, 4))                                # [P, K, M, M]
    labels = np.array([2, 1])
    y = (rng.random((2, 4, 4)) > 0.5).astype(np.float64)
    base_sig = maskrcnn_loss_forward(logits, labels, y)[0]
    base_soft = maskrcnn_loss_forward(logits, labels, y, mode="softmax")[0]
    other = logits.copy()
    other[0, 0] += 3.0                                                    # a channel RoI 0 is not
    other[1, 2] -= 2.0                                                    # ... and RoI 1 is not
    assert maskrcnn_loss_forward(other, labels, y)[0] == base_sig
    assert maskrcnn_loss_forward(other, labels, y, mode="softmax")[0] != base_soft
    _, cache = maskrcnn_loss_forward(logits, labels, y)
    g = maskrcnn_loss_backward(1.0, cache)
    sig = 1 / (1 + np.exp(-logits[[0, 1], labels]))
    np.testing.assert_allclose(g[[0, 1], labels], (sig - y) / 32)
    assert np.all(g[0, :2] == 0) and np.all(g[1, [0, 2]] == 0)


def test_class_agnostic_mask_loss_is_the_per_class_loss_on_channel_0():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(3, 4, 5, 5))
    y = rng.random((3, 5, 5))
    agn, cache = maskrcnn_loss_forward(logits[:, :1], np.array([3, 1, 2]), y)
    ch0, _ = maskrcnn_loss_forward(logits, np.zeros(3, np.int64), y)
    np.testing.assert_allclose(agn, ch0, rtol=1e-12)
    assert maskrcnn_loss_backward(1.0, cache).shape == (3, 1, 5, 5)
