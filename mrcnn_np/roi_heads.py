"""RoI sampling and targets (chapter 07), the box and mask heads and their losses (chapter 09).

For each image the RPN's proposals (plus the ground-truth boxes themselves) are matched to
the ground truth at IoU >= 0.5 and sampled, 25% positive. Each sampled RoI is pooled to a
7x7 feature (MultiScaleRoIAlign), and the box head classifies it and refines its box. The
positive RoIs are pooled again at 14x14 for the mask head, whose 28x28 per-class logits are
trained only on the ground-truth class's channel:

    L = L_cls + L_box + L_mask

Where the gradient stops: the RoI coordinates (proposals), the matched targets, the sampled
labels and the 28x28 mask targets are constants. Gradients flow from the losses back
through the heads into the pooled features and from there, through RoIAlign's bilinear
weights, into the FPN maps.

Parameter names follow torchvision's ``roi_heads.*`` keys.
"""
import numpy as np

from .nn import init
from .nn.layers import flatten_backward, flatten_forward, relu_backward, relu_forward
from .nn.losses import (bce_with_logits_backward, bce_with_logits_forward,
                        cross_entropy_backward, cross_entropy_forward, smooth_l1_backward,
                        smooth_l1_forward)
from .nn.modules import Conv2d, ConvTranspose2d, Linear, Module, ReLU, Sequential
from .ops._backend import DEFAULT_BACKEND
from .ops.box_coder import BOX_HEAD_WEIGHTS, BoxCoder
from .ops.boxes import box_iou
from .ops.matcher import BalancedPositiveNegativeSampler, Matcher
from .ops.roi_align import roi_align

BOX_BETA = 1.0 / 9  # smooth-L1 beta of the box head (torchvision roi_heads.py)


# ---------------------------------------------------------------------------------------
# Sampling and targets (chapter 07)
# ---------------------------------------------------------------------------------------
def select_training_samples(proposals, gt_boxes, gt_labels, rng, fg_iou_thresh=0.5,
                            bg_iou_thresh=0.5, batch_size_per_image=512, positive_fraction=0.25,
                            bbox_reg_weights=BOX_HEAD_WEIGHTS, backend=DEFAULT_BACKEND):
    """Match proposals to ground truth and sample the RoIs the heads train on.

    proposals: list (per image) of [P_i, 4]; gt_boxes: list of [G_i, 4]; gt_labels: list of [G_i]
    backend: of the IoU matrix (``box_iou``).
    Returns four lists (per image): sampled proposals [R_i, 4], matched ground-truth index
    [R_i] (0 for background RoIs, whose target is unused), class labels [R_i] (0 = background)
    and box regression targets [R_i, 4].

    The ground-truth boxes are appended to the proposals, so every object has at least one
    perfect positive RoI even when the young RPN proposes nothing near it.
    """
    matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
    sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
    coder = BoxCoder(bbox_reg_weights)
    all_props, all_matched, all_labels = [], [], []
    for props, gt, gl in zip(proposals, gt_boxes, gt_labels):
        props = np.concatenate([props, gt.astype(props.dtype)], 0)  # [P+G, 4]
        if len(gt) == 0:  # an image with no objects: every RoI is background
            matched = np.zeros(len(props), np.int64)
            labels = np.zeros(len(props), np.int64)
        else:
            iou = box_iou(gt, props, backend=backend)  # [G, P+G]
            idx = matcher(iou)  # [P+G], >= 0 matched, negatives are sentinels
            matched = np.maximum(idx, 0)
            labels = gl[matched].astype(np.int64)
            labels[idx == Matcher.BELOW_LOW_THRESHOLD] = 0
            labels[idx == Matcher.BETWEEN_THRESHOLDS] = -1  # ignored by the sampler
        all_props.append(props)
        all_matched.append(matched)
        all_labels.append(labels)
    pos_masks, neg_masks = sampler(all_labels, rng)
    out_props, out_matched, out_labels, out_targets = [], [], [], []
    for props, matched, labels, gt, pos, neg in zip(all_props, all_matched, all_labels, gt_boxes,
                                                    pos_masks, neg_masks):
        keep = np.flatnonzero(pos | neg)  # in proposal order, as torchvision's torch.where
        props, matched, labels = props[keep], matched[keep], labels[keep]
        gt_or_dummy = gt if len(gt) else np.zeros((1, 4), props.dtype)
        out_props.append(props)
        out_matched.append(matched)
        out_labels.append(labels)
        out_targets.append(coder.encode(gt_or_dummy[matched].astype(props.dtype), props))
    return out_props, out_matched, out_labels, out_targets


def project_masks_on_boxes(gt_masks, boxes, matched_idxs, M, backend=DEFAULT_BACKEND):
    """The 28x28 mask target of each positive RoI: its matched ground-truth mask, cut out by
    the RoI and resampled with RoIAlign (torchvision: aligned=False, adaptive sampling).

    gt_masks [G, H, W] (0/1), boxes [P, 4], matched_idxs [P] -> targets [P, M, M] in 0..1
    """
    if len(boxes) == 0:
        return np.zeros((0, M, M), np.float32)
    rois = np.concatenate([matched_idxs[:, None].astype(boxes.dtype), boxes], 1)  # [P, 5]
    masks = gt_masks[:, None].astype(boxes.dtype)  # [G, 1, H, W]
    return roi_align(masks, rois, (M, M), 1.0, sampling_ratio=-1, aligned=False,
                     backend=backend)[:, 0]


# ---------------------------------------------------------------------------------------
# Heads (chapter 09)
# ---------------------------------------------------------------------------------------
class TwoMLPHead(Module):
    """flatten -> fc6 -> ReLU -> fc7 -> ReLU: [R, C, 7, 7] -> [R, representation_size]."""

    def __init__(self, in_features, representation_size, rng):
        super().__init__()
        self.fc6 = Linear(in_features, representation_size, rng=rng)
        self.fc7 = Linear(representation_size, representation_size, rng=rng)

    def forward(self, x):
        f, c0 = flatten_forward(x)  # [R, C*7*7]
        h, c1 = self.fc6.forward(f)
        h, c2 = relu_forward(h, self.keep_cache)
        h, c3 = self.fc7.forward(h)
        h, c4 = relu_forward(h, self.keep_cache)  # [R, rep]
        return h, (c0, c1, c2, c3, c4)

    def backward(self, dout, cache):
        c0, c1, c2, c3, c4 = cache
        d = self.fc7.backward(relu_backward(dout, c4), c3)
        d = self.fc6.backward(relu_backward(d, c2), c1)
        return flatten_backward(d, c0)


class FastRCNNPredictor(Module):
    """cls_score: [R, rep] -> [R, K] logits; bbox_pred: [R, rep] -> [R, 4K] class-specific deltas.
    Initialised as detectron2 does (normal 0.01 / 0.001, zero bias) so training from scratch
    starts from near-uniform class scores and near-zero box changes."""

    def __init__(self, in_features, num_classes, rng):
        super().__init__()
        self.cls_score = Linear(in_features, num_classes, rng=rng,
                                init_fn=lambda s, r: init.normal(s, r, std=0.01))
        self.bbox_pred = Linear(in_features, num_classes * 4, rng=rng,
                                init_fn=lambda s, r: init.normal(s, r, std=0.001))

    def forward(self, x):
        logits, c1 = self.cls_score.forward(x)  # [R, K]
        deltas, c2 = self.bbox_pred.forward(x)  # [R, 4K]
        return logits, deltas, (c1, c2)

    def backward(self, dlogits, ddeltas, cache):
        c1, c2 = cache
        return self.cls_score.backward(dlogits, c1) + self.bbox_pred.backward(ddeltas, c2)


def _kaiming_fan_out(shape, rng):
    return init.kaiming_normal(shape, rng, mode="fan_out", nonlinearity="relu")


class MaskRCNNHeads(Sequential):
    """The mask FCN: n x (3x3 conv + ReLU) on [R, C, 14, 14]; names ``{i}.0.weight`` as torchvision."""

    def __init__(self, in_channels, layers, rng):
        blocks, c = [], in_channels
        for f in layers:
            blocks.append(Sequential(Conv2d(c, f, 3, 1, 1, rng=rng, init_fn=_kaiming_fan_out), ReLU()))
            c = f
        super().__init__(*blocks)


class MaskRCNNPredictor(Module):
    """2x2 stride-2 deconvolution + ReLU, then a 1x1 conv to one 28x28 logit map per class
    ([R, C, 14, 14] -> [R, K, 28, 28]); K = 1 for class-agnostic masks."""

    def __init__(self, in_channels, dim_reduced, num_mask_classes, rng):
        super().__init__()
        self.conv5_mask = ConvTranspose2d(in_channels, dim_reduced, 2, 2, 0, rng=rng,
                                          init_fn=_kaiming_fan_out)
        self.relu = ReLU()
        self.mask_fcn_logits = Conv2d(dim_reduced, num_mask_classes, 1, rng=rng,
                                      init_fn=_kaiming_fan_out)

    def forward(self, x):
        h, c1 = self.conv5_mask.forward(x)  # [R, D, 28, 28]
        h, c2 = self.relu.forward(h)
        out, c3 = self.mask_fcn_logits.forward(h)  # [R, K, 28, 28]
        return out, (c1, c2, c3)

    def backward(self, dout, cache):
        c1, c2, c3 = cache
        d = self.mask_fcn_logits.backward(dout, c3)
        d = self.relu.backward(d, c2)
        return self.conv5_mask.backward(d, c1)


class MaskMLPPredictor(Module):
    """The MLP mask head's last layer (the paper's Table 2e, "fc: 1024 -> 1024 -> 80 x 28^2"):
    one fully connected layer from the hidden features to every mask pixel of every class,
    [R, D] -> [R, K * M * M] -> reshaped [R, K, M, M]; K = 1 for class-agnostic masks.

    With ``TwoMLPHead`` before it (flatten + fc + ReLU + fc + ReLU on the [R, C, 14, 14] RoI
    features) it is the paper's MLP. Unlike the FCN, every output pixel has its own weights
    for every input position: it must learn the spatial layout that convolutions keep for
    free, which is the paper's explanation of the MLP's 2.1 AP deficit."""

    def __init__(self, in_features, num_mask_classes, mask_size, rng):
        super().__init__()
        object.__setattr__(self, "out_shape", (num_mask_classes, mask_size, mask_size))
        self.mask_fc_logits = Linear(in_features, int(np.prod(self.out_shape)), rng=rng)

    def forward(self, x):
        out, c = self.mask_fc_logits.forward(x)  # [R, K*M*M]
        return out.reshape(len(x), *self.out_shape), c  # [R, K, M, M]

    def backward(self, dout, cache):
        return self.mask_fc_logits.backward(dout.reshape(len(dout), -1), cache)  # [R, D]


class RoIHeads(Module):
    """Holds the four trainable parts under torchvision's names.

    ``cfg.mask_head`` "fcn" (torchvision's): ``MaskRCNNHeads`` + ``MaskRCNNPredictor``; "mlp"
    (the ablation): ``TwoMLPHead`` on the flattened 14x14 features, of width
    ``cfg.mask_mlp_dim``, + ``MaskMLPPredictor``. Either way the mask branch is
    ``mask_predictor(mask_head(x))``: [R, C, 14, 14] -> [R, K, 28, 28]."""

    def __init__(self, cfg, rng):
        super().__init__()
        C, S = cfg.fpn_channels, cfg.box_roi_output_size
        self.box_head = TwoMLPHead(C * S * S, cfg.representation_size, rng)
        self.box_predictor = FastRCNNPredictor(cfg.representation_size, cfg.num_classes, rng)
        k_mask = 1 if cfg.class_agnostic_masks else cfg.num_classes
        if cfg.mask_head == "fcn":
            self.mask_head = MaskRCNNHeads(C, cfg.mask_layers, rng)
            self.mask_predictor = MaskRCNNPredictor(cfg.mask_layers[-1], cfg.mask_dim_reduced,
                                                    k_mask, rng)
        elif cfg.mask_head == "mlp":
            S_m = cfg.mask_roi_output_size
            self.mask_head = TwoMLPHead(C * S_m * S_m, cfg.mask_mlp_dim, rng)
            self.mask_predictor = MaskMLPPredictor(cfg.mask_mlp_dim, k_mask, cfg.mask_size, rng)
        else:
            raise ValueError(f"unknown mask_head {cfg.mask_head!r} (use 'fcn' or 'mlp')")


# ---------------------------------------------------------------------------------------
# Losses (chapter 09)
# ---------------------------------------------------------------------------------------
def fastrcnn_loss_forward(class_logits, box_regression, labels, regression_targets):
    """Box-head losses, as torchvision's ``fastrcnn_loss``.

    class_logits [R, K], box_regression [R, 4K], labels [R] (0 = background),
    regression_targets [R, 4].
    loss_classifier = mean softmax cross-entropy over all R sampled RoIs
    loss_box_reg    = sum over positives of smooth-L1(beta=1/9) on the deltas of the
                      ground-truth class only, divided by R (not by the positives)
    With R = 0 both losses are 0 (torchvision would give nan).
    """
    R, K = class_logits.shape
    if R == 0:
        return (class_logits.dtype.type(0), class_logits.dtype.type(0),
                (R, K, None, None, None, class_logits.dtype))
    loss_cls, c_cls = cross_entropy_forward(class_logits, labels)
    pos = np.flatnonzero(labels > 0)  # [P]
    picked = box_regression.reshape(R, K, 4)[pos, labels[pos]]  # [P, 4]
    loss_box, c_box = smooth_l1_forward(picked, regression_targets[pos], beta=BOX_BETA,
                                        reduction="sum")
    return loss_cls, loss_box / R, (R, K, c_cls, c_box, (pos, labels[pos]), class_logits.dtype)


def fastrcnn_loss_backward(dloss_cls, dloss_box, cache):
    """Returns (dclass_logits [R, K], dbox_regression [R, 4K]); deltas of other classes get 0."""
    R, K, c_cls, c_box, sel, dtype = cache
    dlogits = np.zeros((R, K), dtype)
    dbox = np.zeros((R, K, 4), dtype)
    if R == 0:
        return dlogits, dbox.reshape(R, 4 * K)
    dlogits = cross_entropy_backward(dloss_cls, c_cls).astype(dtype)
    pos, lab = sel
    if len(pos):
        dbox[pos, lab] = smooth_l1_backward(dloss_box / R, c_box)
    return dlogits, dbox.reshape(R, 4 * K)


def maskrcnn_loss_forward(mask_logits, labels, mask_targets, mode="sigmoid"):
    """Mask loss on the positive RoIs.

    mask_logits [P, Km, M, M] (Km = K, or 1 for class-agnostic masks), labels [P] (>= 1),
    mask_targets [P, M, M] in 0..1.

    mode="sigmoid" (the paper's choice): binary cross-entropy with logits on ONE channel per
    RoI -- its ground-truth class's (channel 0 when class-agnostic) -- averaged over P*M*M
    pixels. Classes do not compete: the box head already decided which class it is.
    mode="softmax": a K-way softmax per pixel, target = the RoI's class where the target mask
    is >= 0.5 and background (0) elsewhere; classes compete for every pixel (the ablation in
    the paper's Table 2b, which loses 5.5 AP).
    With P = 0 the loss is 0 and so is its gradient.
    """
    P, Km, M, _ = mask_logits.shape
    if P == 0:
        return mask_logits.dtype.type(0), (mode, mask_logits.shape, mask_logits.dtype, None, None)
    if mode == "sigmoid":
        channel = labels if Km > 1 else np.zeros(P, np.int64)
        x = mask_logits[np.arange(P), channel]  # [P, M, M]
        loss, c = bce_with_logits_forward(x, mask_targets.astype(x.dtype))
        return loss, (mode, mask_logits.shape, mask_logits.dtype, c, channel)
    if mode == "softmax":
        if Km == 1:
            raise ValueError("softmax mask loss needs one channel per class (not class-agnostic)")
        target = np.where(mask_targets >= 0.5, labels[:, None, None], 0).astype(np.int64)
        flat = mask_logits.transpose(0, 2, 3, 1).reshape(-1, Km)  # [P*M*M, K]
        loss, c = cross_entropy_forward(flat, target.reshape(-1))
        return loss, (mode, mask_logits.shape, mask_logits.dtype, c, None)
    raise ValueError(f"mask loss mode must be 'sigmoid' or 'softmax', got {mode!r}")


def maskrcnn_loss_backward(dloss, cache):
    """Returns dmask_logits [P, Km, M, M]. Sigmoid mode: (sigmoid(x) - y) / (P*M*M) on the
    ground-truth channel, exactly zero on every other channel."""
    mode, shape, dtype, c, channel = cache
    P, Km, M, _ = shape
    dlogits = np.zeros(shape, dtype)
    if P == 0:
        return dlogits
    if mode == "sigmoid":
        dlogits[np.arange(P), channel] = bce_with_logits_backward(dloss, c)
    else:
        dflat = cross_entropy_backward(dloss, c)  # [P*M*M, K]
        dlogits[...] = dflat.reshape(P, M, M, Km).transpose(0, 3, 1, 2)
    return dlogits
