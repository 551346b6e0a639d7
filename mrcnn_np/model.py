"""Mask R-CNN, assembled: the forward pass and the whole backward, stage by stage.

    images -> transform -> backbone (ResNet + FPN) -> P2..P6
           -> RPN head -> objectness, deltas -> proposals (no gradient)        L_rpn_cls, L_rpn_box
           -> sample RoIs -> MultiScaleRoIAlign 7x7 -> box head -> classes, boxes  L_cls, L_box
           -> positive RoIs -> MultiScaleRoIAlign 14x14 -> mask head -> 28x28      L_mask

    L = L_rpn_cls + L_rpn_box + L_cls + L_box + L_mask

``forward_train`` computes the five losses and keeps every intermediate in an explicit
cache; ``backward_train`` walks the same stages in reverse, so the gradient path of Mask
R-CNN reads top to bottom in one function. Parameter names equal torchvision's
``maskrcnn_resnet50_fpn`` state_dict keys, so its weights load by name.
"""
import time

import numpy as np

from .backbone import resnet50_fpn, resnet_fpn_tiny
from .config import Config, tiny
from .nn.modules import Module
from .ops.anchors import AnchorGenerator
from .ops.poolers import multi_scale_roi_align_backward, multi_scale_roi_align_forward
from .ops.proposals import generate_proposals
from .ops.rpn_targets import build_rpn_targets
from .postprocess import masks_from_logits, postprocess_detections
from .roi_heads import (RoIHeads, fastrcnn_loss_backward, fastrcnn_loss_forward,
                        maskrcnn_loss_backward, maskrcnn_loss_forward, project_masks_on_boxes,
                        select_training_samples)
from .rpn import (RPNHead, flatten_predictions, objectness_logit, rpn_loss_backward,
                  rpn_loss_forward, unflatten_predictions)
from .transform import Transform

LOSS_NAMES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask")


class RegionProposalNetwork(Module):
    """Holds the RPN head under torchvision's name (``rpn.head.*``)."""

    def __init__(self, cfg, num_anchors, rng):
        super().__init__()
        self.head = RPNHead(cfg.fpn_channels, num_anchors, cfg.rpn_objectness, rng)


def build_backbone(cfg, rng):
    if cfg.backbone == "tiny":
        return resnet_fpn_tiny(rng, fpn_channels=cfg.fpn_channels, norm=cfg.backbone_norm)
    if cfg.backbone == "resnet50":
        return resnet50_fpn(rng, norm=cfg.backbone_norm, trainable_layers=cfg.trainable_layers,
                            fpn_channels=cfg.fpn_channels)
    raise ValueError(f"unknown backbone {cfg.backbone!r} (use 'tiny' or 'resnet50')")


class MaskRCNN(Module):
    """``MaskRCNN(config)``; ``predict(images)``; ``forward_backward(images, targets, rng)``.

    images: list of float32 [3, H, W] arrays in 0..1 (sizes may differ)
    targets: list of dicts with ``boxes`` [G, 4] (x1, y1, x2, y2 pixels), ``labels`` [G] int
             (1..K-1) and ``masks`` [G, H, W] uint8, one per image
    """

    def __init__(self, config: Config = None, rng=None):
        super().__init__()
        cfg = config if config is not None else tiny()
        rng = rng if rng is not None else np.random.default_rng(cfg.seed)
        object.__setattr__(self, "cfg", cfg)
        object.__setattr__(self, "transform", Transform(
            min_size=cfg.min_size, max_size=cfg.max_size, image_mean=cfg.image_mean,
            image_std=cfg.image_std, size_divisible=cfg.size_divisible,
            square=cfg.square))
        object.__setattr__(self, "anchor_generator",
                           AnchorGenerator(cfg.anchor_sizes, cfg.aspect_ratios))
        object.__setattr__(self, "timings", {})
        self.backbone = build_backbone(cfg, rng)
        num_anchors = self.anchor_generator.num_anchors_per_location()[0]
        self.rpn = RegionProposalNetwork(cfg, num_anchors, rng)
        self.roi_heads = RoIHeads(cfg, rng)

    # -----------------------------------------------------------------------------------
    # Shared stages
    # -----------------------------------------------------------------------------------
    def _features_and_proposals(self, batch, image_sizes, training):
        """Backbone, RPN head and the proposal layer. Returns features, the RPN's flattened
        outputs, anchors and proposals, with the caches needed for backward."""
        cfg, t = self.cfg, self.timings
        t0 = time.perf_counter()
        feats, c_backbone = self.backbone.forward(batch)  # [P2..P6], each [N, C, H_l, W_l]
        t1 = time.perf_counter()
        objectness, deltas, c_head = self.rpn.head.forward(feats)
        obj, box, shapes = flatten_predictions(objectness, deltas)  # [N, A, c], [N, A, 4]
        anchors = self.anchor_generator(batch.shape[-2:], [f.shape[-2:] for f in feats])  # [A, 4]
        per_level = [s[1] * s[3] * s[4] for s in shapes]  # A_l * H_l * W_l
        # The proposals are constants from here on: no gradient flows through them.
        proposals, _scores = generate_proposals(
            objectness_logit(obj), box, anchors, image_sizes, per_level,
            pre_nms_top_n=cfg.rpn_pre_nms_top_n_train if training else cfg.rpn_pre_nms_top_n_test,
            post_nms_top_n=cfg.rpn_post_nms_top_n_train if training else cfg.rpn_post_nms_top_n_test,
            nms_thresh=cfg.rpn_nms_thresh, min_size=1e-3, score_thresh=cfg.rpn_score_thresh,
            backend=cfg.backend)
        t2 = time.perf_counter()
        t["backbone"] = t1 - t0
        t["rpn"] = t2 - t1
        return feats, c_backbone, (obj, box, shapes, c_head), anchors, proposals

    def _pool(self, feats, boxes_per_image, output_size, sampling_ratio, image_sizes):
        """MultiScaleRoIAlign over P2..P5 (P6 feeds only the RPN), as torchvision's box and
        mask poolers; the level scales are inferred from the image sizes."""
        rois = _to_rois(boxes_per_image, feats[0].dtype)  # [R, 5]
        return multi_scale_roi_align_forward(
            feats[:4], rois, image_sizes, output_size=output_size,
            sampling_ratio=sampling_ratio, aligned=self.cfg.roi_aligned, backend=self.cfg.backend)

    # -----------------------------------------------------------------------------------
    # Training: forward to the five losses, then backward through every stage
    # -----------------------------------------------------------------------------------
    def forward_train(self, images, targets, rng, sampling=None):
        """Returns (losses: dict name -> float, cache). ``rng`` drives the random choices
        (scale jitter, anchor and RoI sampling). ``sampling`` may pass back
        ``cache["sampling"]`` of an earlier call to reuse its targets exactly (used by the
        finite-difference check, so a nudged weight cannot change which RoIs are sampled)."""
        cfg = self.cfg
        self.train(True)
        batch, image_sizes, targets = self.transform(images, targets, training=True, rng=rng)
        feats, c_backbone, (obj, box, shapes, c_head), anchors, proposals = \
            self._features_and_proposals(batch, image_sizes, training=True)
        t0 = time.perf_counter()

        # -- RPN targets and losses -------------------------------------------------------
        if sampling is None:
            rpn_labels, rpn_targets = [], []
            for tgt in targets:
                lab, reg, _ = build_rpn_targets(
                    anchors, tgt["boxes"], rng, fg_iou=cfg.rpn_fg_iou_thresh,
                    bg_iou=cfg.rpn_bg_iou_thresh, batch_size_per_image=cfg.rpn_batch_size_per_image,
                    positive_fraction=cfg.rpn_positive_fraction)
                rpn_labels.append(lab)
                rpn_targets.append(reg)
            rpn_labels, rpn_targets = np.stack(rpn_labels), np.stack(rpn_targets)  # [N, A], [N, A, 4]
            rois, matched, labels, reg_targets = select_training_samples(
                proposals, [t["boxes"] for t in targets], [t["labels"] for t in targets], rng,
                cfg.box_fg_iou_thresh, cfg.box_bg_iou_thresh, cfg.box_batch_size_per_image,
                cfg.box_positive_fraction, cfg.bbox_reg_weights)
            pos_rois = [r[l > 0] for r, l in zip(rois, labels)]
            mask_targets = np.concatenate([
                project_masks_on_boxes(t["masks"], pr, m[l > 0], cfg.mask_size, cfg.backend)
                for t, pr, m, l in zip(targets, pos_rois, matched, labels)], 0)  # [Rp, M, M]
            sampling = dict(rpn_labels=rpn_labels, rpn_targets=rpn_targets.astype(box.dtype),
                            rois=rois, labels=labels, reg_targets=reg_targets, pos_rois=pos_rois,
                            mask_targets=mask_targets.astype(box.dtype))
        s = sampling
        loss_obj, loss_rpn_box, c_rpn_loss = rpn_loss_forward(obj, box, s["rpn_labels"], s["rpn_targets"])

        # -- box branch ---------------------------------------------------------------------
        box_feats, c_pool_box = self._pool(feats, s["rois"], cfg.box_roi_output_size,
                                           cfg.box_sampling_ratio, image_sizes)  # [R, C, 7, 7]
        h, c_box_head = self.roi_heads.box_head.forward(box_feats)  # [R, rep]
        class_logits, box_regression, c_pred = self.roi_heads.box_predictor.forward(h)
        labels_all = np.concatenate(s["labels"])  # [R]
        loss_cls, loss_box, c_fr_loss = fastrcnn_loss_forward(
            class_logits, box_regression, labels_all, np.concatenate(s["reg_targets"]).astype(h.dtype))

        # -- mask branch, on the positive RoIs only ------------------------------------------------
        mask_feats, c_pool_mask = self._pool(feats, s["pos_rois"], cfg.mask_roi_output_size,
                                             cfg.mask_sampling_ratio, image_sizes)  # [Rp, C, 14, 14]
        m, c_mask_head = self.roi_heads.mask_head.forward(mask_feats)
        mask_logits, c_mask_pred = self.roi_heads.mask_predictor.forward(m)  # [Rp, K, 28, 28]
        pos_labels = labels_all[labels_all > 0]
        loss_mask, c_mask_loss = maskrcnn_loss_forward(mask_logits, pos_labels, s["mask_targets"],
                                                       cfg.mask_loss)
        self.timings["heads"] = time.perf_counter() - t0

        losses = dict(zip(LOSS_NAMES, (float(loss_obj), float(loss_rpn_box), float(loss_cls),
                                       float(loss_box), float(loss_mask))))
        cache = dict(c_backbone=c_backbone, c_head=c_head, shapes=shapes, c_rpn_loss=c_rpn_loss,
                     c_pool_box=c_pool_box, c_box_head=c_box_head, c_pred=c_pred,
                     c_fr_loss=c_fr_loss, c_pool_mask=c_pool_mask, c_mask_head=c_mask_head,
                     c_mask_pred=c_mask_pred, c_mask_loss=c_mask_loss, sampling=sampling,
                     feat_shapes=[f.shape for f in feats], dtype=feats[0].dtype)
        return losses, cache

    def backward_train(self, cache):
        """dL/dθ for every trainable parameter, accumulated into ``.grads``; L is the sum of
        the five losses, so each loss starts its backward with gradient 1."""
        c = cache
        one = c["dtype"].type(1.0)
        t0 = time.perf_counter()
        dfeats = [np.zeros(s, c["dtype"]) for s in c["feat_shapes"]]  # P2..P6

        # mask branch: L_mask -> logits -> predictor -> FCN -> RoIAlign -> P2..P5
        dmask_logits = maskrcnn_loss_backward(one, c["c_mask_loss"])
        dm = self.roi_heads.mask_predictor.backward(dmask_logits, c["c_mask_pred"])
        dmask_feats = self.roi_heads.mask_head.backward(dm, c["c_mask_head"])
        for level, d in enumerate(multi_scale_roi_align_backward(dmask_feats, c["c_pool_mask"])):
            dfeats[level] += d

        # box branch: L_cls + L_box -> logits, deltas -> predictor -> MLP -> RoIAlign -> P2..P5
        dlogits, dbox_reg = fastrcnn_loss_backward(one, one, c["c_fr_loss"])
        dh = self.roi_heads.box_predictor.backward(dlogits, dbox_reg, c["c_pred"])
        dbox_feats = self.roi_heads.box_head.backward(dh, c["c_box_head"])
        for level, d in enumerate(multi_scale_roi_align_backward(dbox_feats, c["c_pool_box"])):
            dfeats[level] += d

        # RPN: L_rpn_cls + L_rpn_box -> flattened outputs -> per-level maps -> head -> P2..P6
        dobj, dbox = rpn_loss_backward(one, one, c["c_rpn_loss"])
        dobjectness, ddeltas = unflatten_predictions(dobj, dbox, c["shapes"])
        for level, d in enumerate(self.rpn.head.backward(dobjectness, ddeltas, c["c_head"])):
            dfeats[level] += d
        t1 = time.perf_counter()

        # backbone: FPN then ResNet (the gradient stops at the first frozen stage)
        self.backbone.backward(dfeats, c["c_backbone"])
        self.timings["backward_heads"] = t1 - t0
        self.timings["backward_backbone"] = time.perf_counter() - t1

    def forward_backward(self, images, targets, rng, zero_grad=True):
        """One training step's forward and backward: returns the loss dict (plus ``loss``,
        their sum) and leaves dL/dθ in each layer's ``grads``."""
        if zero_grad:
            self.zero_grad()
        losses, cache = self.forward_train(images, targets, rng)
        self.backward_train(cache)
        losses["loss"] = sum(losses[k] for k in LOSS_NAMES)
        return losses

    # -----------------------------------------------------------------------------------
    # Inference
    # -----------------------------------------------------------------------------------
    def predict(self, images):
        """images: list of float32 [3, H, W] in 0..1. Returns one dict per image with
        ``boxes`` [D, 4], ``labels`` [D], ``scores`` [D] and ``masks`` [D, 1, H, W] (soft,
        0..1), in the original image's pixels, as torchvision returns them."""
        cfg = self.cfg
        self.train(False)
        self.set_keep_cache(False)  # nothing runs backward: let each layer's cache go at once
        try:
            return self._predict(images)
        finally:
            self.set_keep_cache(True)

    def _predict(self, images):
        cfg = self.cfg
        images = [np.asarray(im, np.float32) for im in images]
        original_sizes = [im.shape[-2:] for im in images]
        batch, image_sizes, _ = self.transform(images, None, training=False)
        feats, _, _, _, proposals = self._features_and_proposals(batch, image_sizes, training=False)
        t0 = time.perf_counter()
        box_feats, _ = self._pool(feats, proposals, cfg.box_roi_output_size,
                                  cfg.box_sampling_ratio, image_sizes)
        h, _ = self.roi_heads.box_head.forward(box_feats)
        class_logits, box_regression, _ = self.roi_heads.box_predictor.forward(h)
        boxes, scores, labels = postprocess_detections(
            class_logits, box_regression, proposals, image_sizes, cfg.box_score_thresh,
            cfg.box_nms_thresh, cfg.box_detections_per_img, cfg.bbox_reg_weights)
        mask_feats, _ = self._pool(feats, boxes, cfg.mask_roi_output_size,
                                   cfg.mask_sampling_ratio, image_sizes)
        m, _ = self.roi_heads.mask_head.forward(mask_feats)
        mask_logits, _ = self.roi_heads.mask_predictor.forward(m)  # [D_total, K, 28, 28]
        all_labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
        probs = masks_from_logits(mask_logits, all_labels, activation=cfg.mask_loss,
                                  class_agnostic=cfg.class_agnostic_masks)  # [D_total, 1, 28, 28]
        splits = np.cumsum([len(b) for b in boxes])[:-1]
        detections = [dict(boxes=b, labels=l, scores=s, masks=pm)
                      for b, l, s, pm in zip(boxes, labels, scores, np.split(probs, splits))]
        t1 = time.perf_counter()
        out = self.transform.postprocess(detections, image_sizes, original_sizes)
        self.timings["heads"] = t1 - t0
        self.timings["postprocess"] = time.perf_counter() - t1
        return out

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
        """Load torchvision Mask R-CNN weights: a ``state_dict`` (tensors or arrays), a
        ``.pth`` file (read with ``torch.load(weights_only=True)``) or an exported ``.npz``."""
        from .convert import torchvision_to_numpy
        self.load_state_dict(torchvision_to_numpy(state_dict_or_path))
        return self


def _to_rois(boxes_per_image, dtype):
    """list of [R_i, 4] -> [R, 5] = (batch_index, x1, y1, x2, y2)."""
    parts = [np.concatenate([np.full((len(b), 1), i, dtype), np.asarray(b, dtype)], 1)
             for i, b in enumerate(boxes_per_image)]
    return np.concatenate(parts, 0) if parts else np.zeros((0, 5), dtype)
