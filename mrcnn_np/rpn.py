"""The Region Proposal Network: head, loss, and their backward (chapter 05).

The RPN slides a small network over every FPN level. At each location and for each of the A
anchors there it predicts an objectness logit ("is there an object here?") and four box
deltas ("how should this anchor move to fit it?").

    feature [N, C, H, W] --conv3x3+ReLU--> t [N, C, H, W] --1x1--> objectness [N, A, H, W]
                                                           --1x1--> deltas     [N, 4A, H, W]

The same head (same weights) is applied to P2..P6, so its gradients are the sum over levels.

Where the gradient stops: anchors, the matched ground truth, the sampled labels and the
proposals get none. Proposals are decoded from the deltas but treated as constants by the
RoI heads, as in Faster R-CNN and torchvision (``pred_bbox_deltas.detach()``); the RPN learns
only from its own two losses.
"""
import numpy as np

from .nn.losses import (bce_with_logits_backward, bce_with_logits_forward,
                        cross_entropy_backward, cross_entropy_forward, smooth_l1_backward,
                        smooth_l1_forward)
from .nn.modules import Conv2d, Module, ReLU, Sequential
from .nn import init

RPN_BOX_BETA = 1.0 / 9  # smooth-L1 beta of the RPN box loss (torchvision rpn.py)


class RPNHead(Module):
    """conv3x3 + ReLU, then 1x1 convs for objectness and deltas; torchvision's parameter names
    (``conv.0.0``, ``cls_logits``, ``bbox_pred``), normal(std=0.01) weights and zero biases.

    ``objectness="softmax"`` predicts two logits per anchor (background, object), as matterport
    does; ``"sigmoid"`` predicts one, as torchvision does. The two are equivalent in power: a
    2-way softmax is a sigmoid of the difference of its logits.
    """

    def __init__(self, in_channels, num_anchors, objectness="sigmoid", rng=None):
        super().__init__()
        rng = rng if rng is not None else np.random.default_rng(0)
        normal = lambda shape, r: init.normal(shape, r, std=0.01)  # noqa: E731
        self.num_anchors = num_anchors
        self.logits_per_anchor = {"sigmoid": 1, "softmax": 2}[objectness]
        self.conv = Sequential(Sequential(Conv2d(in_channels, in_channels, 3, 1, 1, rng=rng,
                                                 init_fn=normal), ReLU()))
        self.cls_logits = Conv2d(in_channels, num_anchors * self.logits_per_anchor, 1, rng=rng,
                                 init_fn=normal)
        self.bbox_pred = Conv2d(in_channels, num_anchors * 4, 1, rng=rng, init_fn=normal)

    def forward(self, features):
        """features: list of L arrays [N, C, H_l, W_l].
        Returns (objectness: list of [N, A*c, H_l, W_l], deltas: list of [N, 4A, H_l, W_l], cache)."""
        objectness, deltas, caches = [], [], []
        for x in features:
            t, c_conv = self.conv.forward(x)  # [N, C, H, W]
            o, c_cls = self.cls_logits.forward(t)  # [N, A*c, H, W]
            d, c_box = self.bbox_pred.forward(t)  # [N, 4A, H, W]
            objectness.append(o)
            deltas.append(d)
            caches.append((c_conv, c_cls, c_box))
        return objectness, deltas, caches

    def backward(self, dobjectness, ddeltas, caches):
        """Returns the gradient for each level's feature map (list of [N, C, H_l, W_l])."""
        dfeatures = []
        for do, dd, (c_conv, c_cls, c_box) in zip(dobjectness, ddeltas, caches):
            dt = self.cls_logits.backward(do, c_cls) + self.bbox_pred.backward(dd, c_box)
            dfeatures.append(self.conv.backward(dt, c_conv))
        return dfeatures


def flatten_predictions(objectness, deltas, logits_per_anchor=1):
    """Lay the per-level head outputs out in anchor order (torchvision's
    ``concat_box_prediction_layers``): level-major, then location (y, x), then anchor.

    objectness: list of [N, A*c, H_l, W_l]; deltas: list of [N, 4A, H_l, W_l]
    Returns obj [N, A_total, c] (c = 1 or 2), box [N, A_total, 4], and the per-level shapes
    needed to undo it.
    """
    obj_flat, box_flat, shapes = [], [], []
    for o, d in zip(objectness, deltas):
        N, AC, H, W = o.shape
        A = d.shape[1] // 4
        c = AC // A
        obj_flat.append(o.reshape(N, A, c, H, W).transpose(0, 3, 4, 1, 2).reshape(N, H * W * A, c))
        box_flat.append(d.reshape(N, A, 4, H, W).transpose(0, 3, 4, 1, 2).reshape(N, H * W * A, 4))
        shapes.append((N, A, c, H, W))
    return np.concatenate(obj_flat, 1), np.concatenate(box_flat, 1), shapes


def unflatten_predictions(dobj, dbox, shapes):
    """The backward of ``flatten_predictions``: a pure re-layout, so gradients move unchanged."""
    dobjectness, ddeltas, start = [], [], 0
    for N, A, c, H, W in shapes:
        n = H * W * A
        o = dobj[:, start:start + n].reshape(N, H, W, A, c).transpose(0, 3, 4, 1, 2)
        d = dbox[:, start:start + n].reshape(N, H, W, A, 4).transpose(0, 3, 4, 1, 2)
        dobjectness.append(np.ascontiguousarray(o.reshape(N, A * c, H, W)))
        ddeltas.append(np.ascontiguousarray(d.reshape(N, A * 4, H, W)))
        start += n
    return dobjectness, ddeltas


def objectness_logit(obj):
    """The score the proposal layer ranks by, one logit per anchor: [N, A_total, c] -> [N, A_total].
    For the 2-way softmax, P(object) = sigmoid(l_obj - l_bg), so the difference is the logit."""
    return obj[..., 0] if obj.shape[-1] == 1 else obj[..., 1] - obj[..., 0]


def rpn_loss_forward(obj, box, labels, reg_targets):
    """RPN losses over the sampled anchors of all images, averaged as torchvision averages them.

    obj:         [N, A_total, c] objectness logits (c = 1 sigmoid, c = 2 softmax)
    box:         [N, A_total, 4] predicted deltas
    labels:      [N, A_total] 1 positive, 0 negative, -1 not sampled (ignored)
    reg_targets: [N, A_total, 4] encoded deltas of each anchor's matched ground truth

    loss_objectness = mean over sampled anchors of BCE-with-logits (or 2-way cross-entropy)
    loss_rpn_box_reg = sum over positive anchors of smooth-L1(beta=1/9) / number sampled
    """
    shapes = (obj.shape, box.shape)  # [N, A_total, c], [N, A_total, 4]
    labels = labels.reshape(-1)
    c = obj.shape[-1]
    obj = obj.reshape(-1, c)  # [N*A_total, c]
    box = box.reshape(-1, 4)
    reg_targets = reg_targets.reshape(-1, 4)
    sampled = np.flatnonzero(labels >= 0)  # [S]
    pos = np.flatnonzero(labels == 1)  # [P]
    if c == 1:
        loss_obj, c_obj = bce_with_logits_forward(obj[sampled, 0], labels[sampled].astype(obj.dtype))
    else:
        loss_obj, c_obj = cross_entropy_forward(obj[sampled], labels[sampled].astype(np.int64))
    loss_box_sum, c_box = smooth_l1_forward(box[pos], reg_targets[pos], beta=RPN_BOX_BETA,
                                            reduction="sum")
    denom = max(len(sampled), 1)
    cache = (shapes, obj.dtype, sampled, pos, c, c_obj, c_box, denom)
    return loss_obj, loss_box_sum / denom, cache


def rpn_loss_backward(dloss_obj, dloss_box, cache):
    """Returns (dobj [N, A_total, c], dbox [N, A_total, 4]); zero for unsampled anchors."""
    (obj_shape, box_shape), dtype, sampled, pos, c, c_obj, c_box, denom = cache
    dobj = np.zeros((int(np.prod(obj_shape[:-1])), c), dtype)  # [N*A_total, c]
    dbox = np.zeros((int(np.prod(box_shape[:-1])), 4), dtype)  # [N*A_total, 4]
    if c == 1:
        dobj[sampled, 0] = bce_with_logits_backward(dloss_obj, c_obj)
    else:
        dobj[sampled] = cross_entropy_backward(dloss_obj, c_obj)
    if len(pos):
        dbox[pos] = smooth_l1_backward(dloss_box / denom, c_box)
    return dobj.reshape(obj_shape), dbox.reshape(box_shape)
