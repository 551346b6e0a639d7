"""Mask R-CNN, assembled: the forward pass and the whole backward, stage by stage.

    images -> transform -> backbone (ResNet + FPN) -> P2..P6
           -> RPN head -> objectness, deltas -> proposals (no gradient)        L_rpn_cls, L_rpn_box
           -> sample RoIs -> MultiScaleRoIAlign 7x7 -> box head -> classes, boxes  L_cls, L_box
           -> positive RoIs -> MultiScaleRoIAlign 14x14 -> mask head -> 28x28      L_mask
           -> positive RoIs -> MultiScaleRoIAlign 14x14 -> keypoint head -> K x 56x56  L_keypoint

    L = L_rpn_cls + L_rpn_box + L_cls + L_box + L_mask (+ L_keypoint)

The mask branch can be switched off (``cfg.masks = False``: Faster R-CNN, or torchvision's
Keypoint R-CNN, which has none) and the keypoint branch on (``cfg.keypoints = K > 0``, Mask
R-CNN paper Sec. 5); ``loss_names(cfg)`` says which losses a configuration has.

``forward_train`` is the pipeline, one call per stage: ``features_forward`` (backbone and RPN
head, the differentiable first stage), ``propose`` (the proposal layer), ``sample_targets``
(what the losses are measured against) and ``loss_forward`` (the losses, keeping every
intermediate in a ``TrainCache``). ``backward_train`` walks the same stages in reverse, so the
gradient path of Mask R-CNN reads top to bottom in one function. Parameter names equal
torchvision's ``maskrcnn_resnet50_fpn`` (and ``keypointrcnn_resnet50_fpn``) state_dict keys,
so their weights load by name.
"""
from typing import NamedTuple

import numpy as np

from .backbone import RESNET_BLOCKS, resnet_fpn, resnet_fpn_tiny
from .config import Config, tiny
from .keypoint_heads import KeypointRCNNHeads, KeypointRCNNPredictor, KeypointTransform
from .nn.modules import Module
from .ops.anchors import AnchorGenerator
from .ops.keypoints import (heatmaps_to_keypoints, keypoint_targets, keypointrcnn_loss_backward,
                            keypointrcnn_loss_forward)
from .ops.poolers import pooler_backward, pooler_forward
from .ops.proposals import RPN_MIN_SIZE, generate_proposals
from .ops.rpn_targets import build_rpn_targets
from .postprocess import masks_from_logits, postprocess_detections
from .roi_heads import (RoIHeads, fastrcnn_loss_backward, fastrcnn_loss_forward,
                        maskrcnn_loss_backward, maskrcnn_loss_forward, project_masks_on_boxes,
                        select_training_samples)
from .rpn import (RPNHead, flatten_predictions, objectness_logit, rpn_loss_backward,
                  rpn_loss_forward, unflatten_predictions)

LOSS_NAMES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask")
# ^ the losses of the default model (mask branch on, no keypoints); ``loss_names(cfg)`` in general


def loss_names(cfg):
    """The losses of a model with configuration ``cfg``, in the order ``loss_forward`` returns
    them, under torchvision's names: the four of Faster R-CNN, then ``loss_mask`` if
    ``cfg.masks`` and ``loss_keypoint`` if ``cfg.keypoints``."""
    return (LOSS_NAMES[:4] + (("loss_mask",) if cfg.masks else ())
            + (("loss_keypoint",) if cfg.keypoints else ()))


class Features(NamedTuple):
    """The first stage (backbone and RPN head) for one batch; everything later reads it."""
    maps: list              # P2..P6, each [N, C, H_l, W_l]
    objectness: np.ndarray  # [N, A, c] RPN logits in anchor order (c = 1 sigmoid, 2 softmax)
    deltas: np.ndarray      # [N, A, 4] RPN box deltas (dx, dy, dw, dh), same order
    anchors: np.ndarray     # [A, 4] (x1, y1, x2, y2), the same for every image
    anchors_per_level: list  # [L] A_l * H_l * W_l
    head_shapes: list       # [L] (N, A_l, c, H_l, W_l), to undo the flattening in backward
    backbone_cache: dict    # for backbone.backward
    head_cache: list        # for rpn.head.backward


class Samples(NamedTuple):
    """What the losses are measured against, drawn once per step. Constants: no gradient."""
    rpn_labels: np.ndarray    # [N, A] int64: 1 positive, 0 negative, -1 not sampled
    rpn_targets: np.ndarray   # [N, A, 4] deltas from each anchor to its matched GT box
    rois: list                # N arrays [R_i, 4]: sampled proposals (GT boxes included)
    labels: list              # N arrays [R_i] int64: class of each RoI, 0 = background
    reg_targets: list         # N arrays [R_i, 4]: deltas from each RoI to its matched GT box
    pos_rois: list            # N arrays [Rp_i, 4]: the positive RoIs of the mask branch (all
    # positives, or cfg.mask_rois_per_image of them)
    mask_targets: np.ndarray  # [Rp, M, M] in 0..1: each positive RoI's GT mask, cut and resized
    # (None without a mask branch); the keypoint branch's (None without one):
    keypoint_rois: list = None          # N arrays [Rk_i, 4]: positives whose GT has keypoints
    keypoint_heatmaps: np.ndarray = None  # ``ops.keypoints.keypoint_targets``: flat index into
    keypoint_valid: np.ndarray = None     # the 56x56 grid of each (RoI, keypoint), and validity
    mask_labels: list = None  # N arrays [Rp_i] int64: the class of each ``pos_rois`` RoI


class BranchCache(NamedTuple):
    """One RoI branch (box, mask or keypoint): the caches of its pooler, head, predictor and
    loss."""
    pool: dict
    head: tuple
    predictor: tuple
    loss: tuple


class TrainCache(NamedTuple):
    """Everything ``backward_train`` needs, stage by stage."""
    features: Features
    rpn_loss: tuple
    box: BranchCache
    mask: BranchCache  # None without a mask branch
    keypoint: BranchCache = None  # None without a keypoint branch


class RegionProposalNetwork(Module):
    """Holds the RPN head under torchvision's name (``rpn.head.*``)."""

    def __init__(self, cfg, num_anchors, rng):
        super().__init__()
        self.head = RPNHead(cfg.fpn_channels, num_anchors, cfg.rpn_objectness, rng)


def build_backbone(cfg, rng):
    if cfg.backbone == "tiny":
        return resnet_fpn_tiny(rng, fpn_channels=cfg.fpn_channels, norm=cfg.backbone_norm)
    if cfg.backbone in RESNET_BLOCKS:  # "resnet50" | "resnet101": only the block counts differ
        return resnet_fpn(cfg.backbone, rng, norm=cfg.backbone_norm,
                          trainable_layers=cfg.trainable_layers, fpn_channels=cfg.fpn_channels)
    raise ValueError(f"unknown backbone {cfg.backbone!r} (use 'tiny', 'resnet50' or 'resnet101')")


def _drop_mask_branch(roi_heads):
    """Remove ``mask_head`` and ``mask_predictor`` from a built ``RoIHeads`` (``cfg.masks =
    False``), so that its parameters are exactly torchvision's keypoint model's."""
    for name in ("mask_head", "mask_predictor"):
        del roi_heads.children[name]
        delattr(roi_heads, name)


def _gt_keypoints(target, K, dtype):
    """A target's ``keypoints`` [G, K, 3] = (x, y, v) in ``dtype``; all unlabelled (zeros)
    when the target has none (e.g. a shapes image in a keypoint model)."""
    G = len(target["boxes"])
    if "keypoints" not in target:
        return np.zeros((G, K, 3), dtype)
    kp = np.asarray(target["keypoints"], dtype)
    if kp.shape != (G, K, 3):
        raise ValueError(f"target keypoints must be [G, K, 3] = [{G}, {K}, 3] (one row per box, "
                         f"K = cfg.keypoints), got shape {kp.shape}")
    return kp


class MaskRCNN(Module):
    """``MaskRCNN(config)``; ``predict(images)``; ``forward_backward(images, targets, rng)``.

    images: list of float32 [3, H, W] arrays in 0..1 (sizes may differ)
    targets: list of dicts with ``boxes`` [G, 4] (x1, y1, x2, y2 pixels), ``labels`` [G] int
             (1..K-1) and ``masks`` [G, H, W] uint8 (with ``cfg.masks``), one per image; with
             ``cfg.keypoints`` = K also ``keypoints`` [G, K, 3] = (x, y, v), v > 0 labelled (an
             image without the entry has no labelled keypoints)
    ``cfg.backend`` reaches every op that has a kernel ("numpy" runs none at all).
    """

    def __init__(self, config: Config = None, rng=None):
        super().__init__()
        cfg = config if config is not None else tiny()
        rng = rng if rng is not None else np.random.default_rng(cfg.seed)
        object.__setattr__(self, "cfg", cfg)
        object.__setattr__(self, "transform", KeypointTransform(
            min_size=cfg.min_size, max_size=cfg.max_size, image_mean=cfg.image_mean,
            image_std=cfg.image_std, size_divisible=cfg.size_divisible,
            square=cfg.square, mask_paste=cfg.mask_paste))
        object.__setattr__(self, "anchor_generator",
                           AnchorGenerator(cfg.anchor_sizes, cfg.aspect_ratios))
        self.backbone = build_backbone(cfg, rng)
        num_anchors = self.anchor_generator.num_anchors_per_location()[0]
        self.rpn = RegionProposalNetwork(cfg, num_anchors, rng)
        self.roi_heads = RoIHeads(cfg, rng)
        if not cfg.masks:
            _drop_mask_branch(self.roi_heads)
        if cfg.keypoints:  # under torchvision's names: roi_heads.keypoint_head / _predictor
            self.roi_heads.keypoint_head = KeypointRCNNHeads(cfg.fpn_channels, cfg.keypoint_layers,
                                                             rng)
            self.roi_heads.keypoint_predictor = KeypointRCNNPredictor(cfg.keypoint_layers[-1],
                                                                      cfg.keypoints, rng)
        self.set_backend(cfg.backend)  # the convolutions' im2col/col2im kernels too

    @property
    def loss_names(self):
        """The names of this model's losses (``loss_names(self.cfg)``)."""
        return loss_names(self.cfg)

    # -----------------------------------------------------------------------------------
    # Stages shared by training and inference
    # -----------------------------------------------------------------------------------
    def features_forward(self, batch):
        """Backbone and RPN head: batch [N, 3, H, W] -> ``Features``."""
        maps, c_backbone = self.backbone.forward(batch)  # [P2..P6], each [N, C, H_l, W_l]
        objectness, deltas, c_head = self.rpn.head.forward(maps)  # per level [N, A_l*c, H_l, W_l]
        obj, box, shapes = flatten_predictions(objectness, deltas)  # [N, A, c], [N, A, 4]
        anchors = self.anchor_generator(batch.shape[-2:], [m.shape[-2:] for m in maps],
                                        dtype=box.dtype)  # [A, 4]
        per_level = [s[1] * s[3] * s[4] for s in shapes]  # A_l * H_l * W_l
        return Features(maps, obj, box, anchors, per_level, shapes, c_backbone, c_head)

    def propose(self, features, image_sizes, training):
        """The proposal layer: N arrays [P_i, 4]. They are constants from here on (no gradient
        flows through them), as in Faster R-CNN and torchvision."""
        cfg, f = self.cfg, features
        pre, post = ((cfg.rpn_pre_nms_top_n_train, cfg.rpn_post_nms_top_n_train) if training
                     else (cfg.rpn_pre_nms_top_n_test, cfg.rpn_post_nms_top_n_test))
        proposals, _scores = generate_proposals(
            objectness_logit(f.objectness), f.deltas, f.anchors, image_sizes, f.anchors_per_level,
            pre_nms_top_n=pre, post_nms_top_n=post, nms_thresh=cfg.rpn_nms_thresh,
            min_size=RPN_MIN_SIZE, score_thresh=cfg.rpn_score_thresh, backend=cfg.backend)
        return proposals

    def _pool(self, maps, boxes_per_image, output_size, sampling_ratio, image_sizes):
        """MultiScaleRoIAlign over P2..P5 (P6 feeds only the RPN), as torchvision's box and
        mask poolers; the level scales are inferred from the image sizes. The ablations of
        chapter 14 swap the extractor (``cfg.roi_extractor``, ``cfg.roi_align_reduction``)
        or pool every RoI from one level (``cfg.pool_level`` "stride16": P4, "stride32": P5)."""
        cfg = self.cfg
        stride = None if cfg.pool_level == "fpn" else int(cfg.pool_level[len("stride"):])
        return pooler_forward(
            maps[:4], boxes_per_image, image_sizes, output_size=output_size,
            sampling_ratio=sampling_ratio, aligned=cfg.roi_aligned, extractor=cfg.roi_extractor,
            reduction=cfg.roi_align_reduction, stride=stride, backend=cfg.backend)

    # -----------------------------------------------------------------------------------
    # Training: forward to the losses, then backward through every stage
    # -----------------------------------------------------------------------------------
    def forward_train(self, images, targets, rng):
        """Returns (losses: dict name -> float, ``TrainCache``). ``rng`` drives the random
        choices (scale jitter, anchor and RoI sampling)."""
        self.train(True)
        batch, image_sizes, targets = self.transform(images, targets, training=True, rng=rng)
        features = self.features_forward(batch)
        proposals = self.propose(features, image_sizes, training=True)
        samples = self.sample_targets(features.anchors, proposals, targets, rng)
        return self.loss_forward(features, samples, image_sizes)

    def anchor_targets(self, anchors, targets, rng):
        """The RPN's targets (chapter 04): each image's anchors matched to its GT boxes and
        sampled. Returns (labels [N, A]: 1 / 0 / -1 = ignored, regression targets [N, A, 4]).
        The first draws of ``sample_targets``; they need only the anchors and the GT boxes."""
        cfg = self.cfg
        rpn_labels, rpn_targets = [], []
        for tgt in targets:
            lab, reg, _ = build_rpn_targets(
                anchors, tgt["boxes"], rng, fg_iou=cfg.rpn_fg_iou_thresh,
                bg_iou=cfg.rpn_bg_iou_thresh, batch_size_per_image=cfg.rpn_batch_size_per_image,
                positive_fraction=cfg.rpn_positive_fraction, backend=cfg.backend)
            rpn_labels.append(lab)  # [A]
            rpn_targets.append(reg)  # [A, 4]
        return np.stack(rpn_labels), np.stack(rpn_targets).astype(anchors.dtype, copy=False)

    def sample_targets(self, anchors, proposals, targets, rng, anchor_samples=None):
        """Targets of the losses (chapters 04, 07 and 15) -> ``Samples``.

        anchors [A, 4]; proposals: N arrays [P_i, 4]; targets: the transformed target dicts.
        The RPN's anchors are matched and sampled per image (``anchor_targets``; or pass its
        result as ``anchor_samples`` when it was drawn already, as DataParallel does while the
        workers run the backbone); the proposals (plus the GT boxes)
        are matched and sampled into RoIs, and each positive RoI gets its GT mask, cut out and
        resized to M x M. All of it in the anchors' dtype.

        The keypoint branch trains on the positive RoIs whose matched GT instance has at least
        one labelled keypoint (v > 0), as torchvision's does on every positive: a RoI matched
        to an instance without keypoints would have no valid keypoint and add nothing to the
        loss, so it is left out before pooling rather than after.
        """
        cfg, dtype = self.cfg, anchors.dtype
        rpn_labels, rpn_targets = (self.anchor_targets(anchors, targets, rng)
                                   if anchor_samples is None else anchor_samples)
        rois, matched, labels, reg_targets = select_training_samples(
            proposals, [t["boxes"] for t in targets], [t["labels"] for t in targets], rng,
            cfg.box_fg_iou_thresh, cfg.box_bg_iou_thresh, cfg.box_batch_size_per_image,
            cfg.box_positive_fraction, cfg.bbox_reg_weights, backend=cfg.backend)
        pos_rois = [r[l > 0] for r, l in zip(rois, labels)]  # N arrays [Rp_i, 4]
        pos_matched = [m[l > 0] for m, l in zip(matched, labels)]  # N arrays [Rp_i]
        mask_rois, mask_labels, mask_targets = pos_rois, [l[l > 0] for l in labels], None
        if cfg.masks:
            pick = [np.arange(len(p)) for p in pos_rois]  # N arrays: the mask branch's positives
            n_mask = cfg.mask_rois_per_image
            if n_mask > 0:  # a random n_mask of each image's positives (a speed lever)
                pick = [np.sort(rng.choice(len(p), n_mask, replace=False)) if len(p) > n_mask
                        else p for p in pick]
            mask_rois = [pr[p] for pr, p in zip(pos_rois, pick)]  # N arrays [Rm_i, 4]
            mask_labels = [ml[p] for ml, p in zip(mask_labels, pick)]  # N arrays [Rm_i]
            mask_targets = np.concatenate([
                project_masks_on_boxes(t["masks"], pr, m[p], cfg.mask_size, cfg.backend)
                for t, pr, m, p in zip(targets, mask_rois, pos_matched, pick)], 0).astype(
                    dtype, copy=False)  # [Rm, M, M]
        kp_rois = kp_heatmaps = kp_valid = None
        if cfg.keypoints:
            gt_kps = [_gt_keypoints(t, cfg.keypoints, dtype) for t in targets]  # N [G_i, K, 3]
            has = [(g[:, :, 2] > 0).any(1)[m] for g, m in zip(gt_kps, pos_matched)]  # N [Rp_i]
            n_kp = cfg.keypoint_rois_per_image
            if n_kp > 0:  # a random n_kp of each image's keypoint RoIs (a speed lever)
                for h in has:
                    idx = np.flatnonzero(h)
                    if len(idx) > n_kp:
                        h[np.setdiff1d(idx, rng.choice(idx, n_kp, replace=False))] = False
            kp_rois = [pr[h] for pr, h in zip(pos_rois, has)]  # N arrays [Rk_i, 4]
            kp_heatmaps, kp_valid = keypoint_targets(
                gt_kps, kp_rois, [m[h] for m, h in zip(pos_matched, has)],
                cfg.keypoint_heatmap_size)
        return Samples(rpn_labels, rpn_targets, rois, labels,
                       [r.astype(dtype, copy=False) for r in reg_targets],
                       mask_rois, mask_targets, kp_rois, kp_heatmaps, kp_valid, mask_labels)

    def loss_forward(self, features, samples, image_sizes):
        """The losses of ``features`` against fixed ``samples``: (losses, ``TrainCache``).
        A smooth function of the weights (up to ReLU and max-pool kinks), because nothing here
        samples or ranks; the finite-difference check calls it directly."""
        cfg, f, s = self.cfg, features, samples
        heads = self.roi_heads

        # -- RPN losses -------------------------------------------------------------------------
        loss_obj, loss_rpn_box, c_rpn_loss = rpn_loss_forward(
            f.objectness, f.deltas, s.rpn_labels, s.rpn_targets)

        # -- box branch -----------------------------------------------------------------------
        box_feats, c_pool_box = self._pool(f.maps, s.rois, cfg.box_roi_output_size,
                                           cfg.box_sampling_ratio, image_sizes)  # [R, C, 7, 7]
        h, c_box_head = heads.box_head.forward(box_feats)  # [R, rep]
        class_logits, box_regression, c_pred = heads.box_predictor.forward(h)  # [R, K], [R, 4K]
        labels = np.concatenate(s.labels)  # [R]
        loss_cls, loss_box, c_fr_loss = fastrcnn_loss_forward(
            class_logits, box_regression, labels, np.concatenate(s.reg_targets))

        values = [loss_obj, loss_rpn_box, loss_cls, loss_box]
        mask = keypoint = None

        # -- mask branch, on the positive RoIs only --------------------------------------------
        if cfg.masks:
            mask_feats, c_pool_mask = self._pool(
                f.maps, s.pos_rois, cfg.mask_roi_output_size, cfg.mask_sampling_ratio,
                image_sizes)  # [Rp, C, 14, 14]
            m, c_mask_head = heads.mask_head.forward(mask_feats)  # [Rp, C_m, 14, 14] (MLP)
            mask_logits, c_mask_pred = heads.mask_predictor.forward(m)  # [Rp, K, 28, 28]
            loss_mask, c_mask_loss = maskrcnn_loss_forward(mask_logits,
                                                           np.concatenate(s.mask_labels),
                                                           s.mask_targets, cfg.mask_loss)
            values.append(loss_mask)
            mask = BranchCache(c_pool_mask, c_mask_head, c_mask_pred, c_mask_loss)

        # -- keypoint branch, on the positive RoIs whose GT has keypoints ----------------------
        if cfg.keypoints:
            kp_feats, c_pool_kp = self._pool(
                f.maps, s.keypoint_rois, cfg.keypoint_roi_output_size,
                cfg.keypoint_sampling_ratio, image_sizes)  # [Rk, C, 14, 14]
            k, c_kp_head = heads.keypoint_head.forward(kp_feats)  # [Rk, C_k, 14, 14]
            kp_logits, c_kp_pred = heads.keypoint_predictor.forward(k)  # [Rk, K, 56, 56]
            loss_kp, c_kp_loss = keypointrcnn_loss_forward(kp_logits, s.keypoint_heatmaps,
                                                           s.keypoint_valid)
            values.append(loss_kp)
            keypoint = BranchCache(c_pool_kp, c_kp_head, c_kp_pred, c_kp_loss)

        losses = dict(zip(self.loss_names, (float(v) for v in values)))
        cache = TrainCache(f, c_rpn_loss,
                           BranchCache(c_pool_box, c_box_head, c_pred, c_fr_loss), mask, keypoint)
        return losses, cache

    def backward_train(self, cache, loss_weights=None):
        """dL/dθ for every trainable parameter, accumulated into ``.grads``; L is the sum of
        the losses (``self.loss_names``), so each loss starts its backward with gradient 1.
        ``loss_weights`` ({loss name: w}) makes L a weighted sum instead
        (``parallel.DataParallel``: a worker's share of the batch)."""
        f, box, mask, kp = cache.features, cache.box, cache.mask, cache.keypoint  # BranchCache x 3
        heads = self.roi_heads
        one = f.deltas.dtype.type(1.0)  # dL/dL_k = 1 for each loss: a scalar
        w = {k: one if loss_weights is None else f.deltas.dtype.type(loss_weights[k])
             for k in self.loss_names}  # dL/dL_k
        dmaps = [np.zeros_like(p) for p in f.maps]  # P2..P6, each [N, C, H_l, W_l]

        # keypoint branch: L_keypoint -> 56x56 logits -> upsampling, deconvolution -> convs
        # -> RoIAlign -> P2..P5 (the RoIs and the target positions get no gradient)
        if kp is not None:
            dkp_logits = keypointrcnn_loss_backward(w["loss_keypoint"], kp.loss)  # [Rk, K, 56, 56]
            dk = heads.keypoint_predictor.backward(dkp_logits, kp.predictor)  # [Rk, C_k, 14, 14]
            dkp_feats = heads.keypoint_head.backward(dk, kp.head)  # [Rk, C, 14, 14]
            for level, d in enumerate(pooler_backward(dkp_feats, kp.pool)):  # P2..P5
                dmaps[level] += d  # [N, C, H_l, W_l], l = P2..P5

        # mask branch: L_mask -> logits -> predictor -> FCN (or MLP) -> RoIAlign -> P2..P5
        if mask is not None:
            dmask_logits = maskrcnn_loss_backward(w["loss_mask"], mask.loss)  # [Rp, K, 28, 28]
            dm = heads.mask_predictor.backward(dmask_logits, mask.predictor)  # [Rp, C_m, 14, 14]
            dmask_feats = heads.mask_head.backward(dm, mask.head)  # [Rp, C, 14, 14]
            for level, d in enumerate(pooler_backward(dmask_feats, mask.pool)):  # P2..P5
                dmaps[level] += d  # [N, C, H_l, W_l], l = P2..P5

        # box branch: L_cls + L_box -> logits, deltas -> predictor -> MLP -> RoIAlign -> P2..P5
        dlogits, dbox_reg = fastrcnn_loss_backward(
            w["loss_classifier"], w["loss_box_reg"], box.loss)  # [R, K], [R, 4K]
        dh = heads.box_predictor.backward(dlogits, dbox_reg, box.predictor)  # [R, rep]
        dbox_feats = heads.box_head.backward(dh, box.head)  # [R, C, 7, 7]
        for level, d in enumerate(pooler_backward(dbox_feats, box.pool)):  # P2..P5
            dmaps[level] += d  # [N, C, H_l, W_l], l = P2..P5

        # RPN: L_rpn_cls + L_rpn_box -> flattened outputs -> per-level maps -> head -> P2..P6
        dobj, ddeltas = rpn_loss_backward(
            w["loss_objectness"], w["loss_rpn_box_reg"], cache.rpn_loss)  # [N, A, c], [N, A, 4]
        # The RPN's gradient path ends here: proposals, anchors, sampled targets get no gradient.
        dobjectness, dlevel_deltas = unflatten_predictions(
            dobj, ddeltas, f.head_shapes)  # per level [N, A_l*c, H_l, W_l], [N, 4A_l, H_l, W_l]
        for level, d in enumerate(self.rpn.head.backward(dobjectness, dlevel_deltas,
                                                         f.head_cache)):  # P2..P6
            dmaps[level] += d  # [N, C, H_l, W_l], l = P2..P6

        # backbone: FPN then ResNet (the gradient stops at the first frozen stage)
        self.backbone.backward(dmaps, f.backbone_cache)  # into .grads; the image gets none

    def forward_backward(self, images, targets, rng, zero_grad=True):
        """One training step's forward and backward: returns the loss dict (plus ``loss``,
        their sum) and leaves dL/dθ in each layer's ``grads``."""
        if zero_grad:
            self.zero_grad()
        losses, cache = self.forward_train(images, targets, rng)
        self.backward_train(cache)
        losses["loss"] = sum(losses[k] for k in self.loss_names)
        return losses

    # -----------------------------------------------------------------------------------
    # Inference
    # -----------------------------------------------------------------------------------
    def predict(self, images, paste_masks=True):
        """images: list of float32 [3, H, W] in 0..1. Returns one dict per image with
        ``boxes`` [D, 4], ``labels`` [D], ``scores`` [D] and ``masks`` [D, 1, H, W] (soft,
        0..1; with ``cfg.masks``) and ``keypoints`` [D, K, 3] = (x, y, 1) with
        ``keypoints_scores`` [D, K] (heatmap logits at the picked positions; with
        ``cfg.keypoints``), in the original image's pixels, as torchvision returns them.
        ``paste_masks=False`` leaves ``masks`` [D, 1, M, M] (paste them a few at a time with
        ``postprocess.paste_masks_in_chunks``: D full-size masks of a large image fill GBs)."""
        self.train(False)
        with self.no_cache():  # nothing runs backward: let each layer's cache go at once
            images = [np.asarray(im, np.float32) for im in images]
            original_sizes = [im.shape[-2:] for im in images]
            batch, image_sizes, _ = self.transform(images, None, training=False)
            features = self.features_forward(batch)
            proposals = self.propose(features, image_sizes, training=False)
            detections = self.detect(features.maps, proposals, image_sizes)
            return self.transform.postprocess(detections, image_sizes, original_sizes,
                                              paste_masks=paste_masks)

    def detect(self, maps, proposals, image_sizes):
        """The heads at inference: box head, per-class NMS, then the mask head and the
        keypoint head on the detections. Returns one dict per image (``boxes``, ``labels``,
        ``scores``; ``masks`` [D, 1, M, M]; ``keypoints`` [D, K, 3], ``keypoints_scores``
        [D, K]) in the resized image's pixels."""
        cfg, heads = self.cfg, self.roi_heads
        box_feats, _ = self._pool(maps, proposals, cfg.box_roi_output_size,
                                  cfg.box_sampling_ratio, image_sizes)  # [P, C, 7, 7]
        h, _ = heads.box_head.forward(box_feats)  # [P, rep]
        class_logits, box_regression, _ = heads.box_predictor.forward(h)  # [P, K], [P, 4K]
        boxes, scores, labels = postprocess_detections(
            class_logits, box_regression, proposals, image_sizes, cfg.box_score_thresh,
            cfg.box_nms_thresh, cfg.box_detections_per_img, cfg.bbox_reg_weights,
            backend=cfg.backend)  # N arrays [D_i, 4], [D_i], [D_i]
        results = [dict(boxes=b, labels=l, scores=s) for b, l, s in zip(boxes, labels, scores)]
        splits = np.cumsum([len(b) for b in boxes])[:-1]
        if cfg.masks:
            mask_feats, _ = self._pool(maps, boxes, cfg.mask_roi_output_size,
                                       cfg.mask_sampling_ratio, image_sizes)  # [D, C, 14, 14]
            m, _ = heads.mask_head.forward(mask_feats)  # [D, C_m, 14, 14] (MLP: [D, D_m])
            mask_logits, _ = heads.mask_predictor.forward(m)  # [D, K, 28, 28]
            all_labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)  # [D]
            probs = masks_from_logits(mask_logits, all_labels, activation=cfg.mask_loss,
                                      class_agnostic=cfg.class_agnostic_masks)  # [D, 1, 28, 28]
            for r, pm in zip(results, np.split(probs, splits)):
                r["masks"] = pm
        if cfg.keypoints:
            kp_feats, _ = self._pool(maps, boxes, cfg.keypoint_roi_output_size,
                                     cfg.keypoint_sampling_ratio, image_sizes)  # [D, C, 14, 14]
            k, _ = heads.keypoint_head.forward(kp_feats)  # [D, C_k, 14, 14]
            kp_logits, _ = heads.keypoint_predictor.forward(k)  # [D, K, 56, 56]
            for r, b, maps_i in zip(results, boxes, np.split(kp_logits, splits)):
                # each heatmap resized to its box, arg-max -> (x, y) in the resized image
                r["keypoints"], r["keypoints_scores"] = heatmaps_to_keypoints(maps_i, b)
        return results

    # -----------------------------------------------------------------------------------
    # Weights
    # -----------------------------------------------------------------------------------
    def save(self, path):
        """Save weights as ``.npz`` (no pickle), written atomically."""
        from .checkpoint import save_npz_atomic
        save_npz_atomic(path, self.state_dict())

    def load(self, path):
        with np.load(path, allow_pickle=False) as z:
            self.load_state_dict({k: z[k] for k in z.files})
        return self

    def load_torchvision(self, state_dict_or_path):
        """Load torchvision Mask R-CNN (or Keypoint R-CNN, into a model built with
        ``torchvision_keypoint_r50_fpn``) weights: a ``state_dict`` (tensors or arrays), a
        ``.pth`` file (read with ``torch.load(weights_only=True)``) or an exported ``.npz``."""
        from .convert import torchvision_to_numpy
        self.load_state_dict(torchvision_to_numpy(state_dict_or_path))
        return self
