"""Measure how closely mrcnn-np agrees with torchvision's Mask R-CNN, stage by stage.

Used by tests/test_model_e2e.py, benchmarks/bench_model.py and chapter 13. It imports torch,
so it lives outside the package: torch is the oracle, never a run-time dependency.
"""
import numpy as np


def build_torchvision_maskrcnn(num_classes=91, min_size=800, max_size=1333, seed=0,
                               randomize_bn=True, box_score_thresh=0.05):
    """torchvision's maskrcnn_resnet50_fpn with random weights (no download), in eval mode.

    With ``weights=None`` torchvision uses ordinary BatchNorm2d with identity statistics; we
    draw random running statistics and affine parameters so that batch norm is not the
    identity and its import is really tested.
    """
    import torch
    import torchvision
    torch.manual_seed(seed)
    m = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=num_classes, min_size=min_size,
        max_size=max_size, box_score_thresh=box_score_thresh)
    if randomize_bn:
        randomize_batch_norm(m, seed + 1)
    return m.eval()


def randomize_batch_norm(model, seed):
    """Give every BatchNorm2d of a torchvision model random statistics and affine parameters
    (in place), so that importing them into ours is really tested."""
    import torch
    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            mod.running_var.copy_(0.5 + torch.rand(n, generator=g))
            mod.weight.data.copy_(0.5 + 0.5 * torch.rand(n, generator=g))
            mod.bias.data.copy_(0.1 * torch.randn(n, generator=g))
    return model


def ours_from_torchvision(tv_model, **config_overrides):
    """Our MaskRCNN with the torchvision_r50_fpn preset and tv_model's weights."""
    from mrcnn_np import MaskRCNN
    from mrcnn_np.config import torchvision_r50_fpn
    t = tv_model.transform
    settings = dict(num_classes=tv_model.roi_heads.box_predictor.cls_score.out_features,
                    min_size=tuple(t.min_size), max_size=t.max_size,
                    box_score_thresh=tv_model.roi_heads.score_thresh)
    cfg = torchvision_r50_fpn(**{**settings, **config_overrides})
    model = MaskRCNN(cfg, rng=np.random.default_rng(0))
    model.load_torchvision(tv_model.state_dict())
    return model


def torchvision_resnet_fpn(block_counts=(3, 4, 6, 3), width=64, fpn_channels=256, norm="frozen",
                           trainable_layers=3):
    """torchvision's own classes (ResNet's _make_layer and Bottleneck, BackboneWithFPN via
    _resnet_fpn_extractor, FeaturePyramidNetwork + LastLevelMaxPool), at any width: the twin
    of our ``ResNetFPN(block_counts, width, fpn_channels, norm, trainable_layers)``.

    torchvision's ResNet hard-codes width 64, so for another width we build the stem ourselves
    and let torchvision's ``_make_layer`` build the stages; freezing is torchvision's own code.
    ``norm``: "frozen" (FrozenBatchNorm2d), "batch" (BatchNorm2d), "group" (torch.nn.GroupNorm
    with our ``group_norm_groups`` rule) or "none" (torch.nn.Identity)."""
    import torch
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.models.resnet import Bottleneck, ResNet
    from torchvision.ops import FrozenBatchNorm2d
    from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

    def group_norm(channels):
        from mrcnn_np.backbone import group_norm_groups
        return torch.nn.GroupNorm(group_norm_groups(channels), channels)

    norm_layer = {"frozen": FrozenBatchNorm2d, "batch": torch.nn.BatchNorm2d, "group": group_norm,
                  "none": lambda channels: torch.nn.Identity()}[norm]
    if (tuple(block_counts), width, fpn_channels) == ((3, 4, 6, 3), 64, 256):  # ResNet-50 itself
        from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
        return resnet_fpn_backbone(backbone_name="resnet50", weights=None, norm_layer=norm_layer,
                                   trainable_layers=trainable_layers)

    class SmallResNet(ResNet):
        def __init__(self):
            torch.nn.Module.__init__(self)
            self._norm_layer, self.inplanes, self.dilation = norm_layer, width, 1
            self.groups, self.base_width = 1, 64
            self.conv1 = torch.nn.Conv2d(3, width, 7, 2, 3, bias=False)
            self.bn1 = norm_layer(width)
            self.relu = torch.nn.ReLU(inplace=True)
            self.maxpool = torch.nn.MaxPool2d(3, 2, 1)
            for s in range(4):
                setattr(self, f"layer{s + 1}", self._make_layer(
                    Bottleneck, width * 2 ** s, block_counts[s], stride=1 if s == 0 else 2))

    net = SmallResNet()
    bb = _resnet_fpn_extractor(net, trainable_layers)
    if fpn_channels != 256:
        bb.fpn = FeaturePyramidNetwork([width * 4 * 2 ** s for s in range(4)], fpn_channels,
                                       extra_blocks=LastLevelMaxPool())
        bb.out_channels = fpn_channels
    return bb


def build_torchvision_tiny(cfg=None, weights=None, seed=0):
    """A torchvision twin of our ``tiny`` preset, built from torchvision's own classes, in eval mode.

    ``torchvision.models.detection.MaskRCNN`` with ``torchvision_resnet_fpn`` as backbone (the
    widths of ``mrcnn_np.backbone.TINY`` with the preset's ``fpn_channels`` and
    ``backbone_norm``, as ``mrcnn_np.model.build_backbone`` builds ours), and every other
    argument read from ``cfg`` (default ``tiny()``): anchors, RPN and RoI-head sizes,
    thresholds and sampling, the poolers, TwoMLPHead(``representation_size``),
    MaskRCNNHeads(``mask_layers``) + MaskRCNNPredictor(``mask_dim_reduced``), the transform.

    ``weights``: None (torch's random init under ``torch.manual_seed(seed)``), a dict name ->
    array with our (= torchvision's) names, e.g. ``MaskRCNN(cfg).state_dict()``, or a path to
    such an ``.npz``. The state_dict keys and shapes are checked against ours (a ValueError
    names any difference), so a drift of the preset cannot go unnoticed.
    """
    import torch
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.models.detection.rpn import RPNHead
    from torchvision.ops import MultiScaleRoIAlign

    from mrcnn_np.backbone import TINY
    from mrcnn_np.config import tiny
    cfg = cfg if cfg is not None else tiny()
    unsupported = {"backbone": (cfg.backbone, "tiny"), "square": (cfg.square, 0),
                   "roi_aligned": (cfg.roi_aligned, False),  # MultiScaleRoIAlign: aligned=False
                   "rpn_objectness": (cfg.rpn_objectness, "sigmoid"),
                   "mask_loss": (cfg.mask_loss, "sigmoid"),
                   "class_agnostic_masks": (cfg.class_agnostic_masks, False)}
    bad = {k: v for k, (v, want) in unsupported.items() if v != want}
    if bad:
        raise ValueError(f"torchvision has no twin for these settings: {bad}")
    torch.manual_seed(seed)
    arch = {**TINY, "fpn_channels": cfg.fpn_channels, "norm": cfg.backbone_norm}
    backbone = torchvision_resnet_fpn(arch["block_counts"], arch["width"], arch["fpn_channels"],
                                      arch["norm"], arch["trainable_layers"])
    F = cfg.fpn_channels
    anchors = AnchorGenerator(tuple(tuple(s) for s in cfg.anchor_sizes),
                              tuple(tuple(r) for r in cfg.aspect_ratios))
    r = cfg.box_roi_output_size
    model = MaskRCNN(
        backbone, num_classes=None,  # given by the two predictors below
        min_size=tuple(cfg.min_size), max_size=cfg.max_size, image_mean=list(cfg.image_mean),
        image_std=list(cfg.image_std), size_divisible=cfg.size_divisible,
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(F, anchors.num_anchors_per_location()[0]),
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        rpn_nms_thresh=cfg.rpn_nms_thresh, rpn_fg_iou_thresh=cfg.rpn_fg_iou_thresh,
        rpn_bg_iou_thresh=cfg.rpn_bg_iou_thresh,
        rpn_batch_size_per_image=cfg.rpn_batch_size_per_image,
        rpn_positive_fraction=cfg.rpn_positive_fraction, rpn_score_thresh=cfg.rpn_score_thresh,
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], r, cfg.box_sampling_ratio),
        box_head=TwoMLPHead(F * r * r, cfg.representation_size),
        box_predictor=FastRCNNPredictor(cfg.representation_size, cfg.num_classes),
        box_score_thresh=cfg.box_score_thresh, box_nms_thresh=cfg.box_nms_thresh,
        box_detections_per_img=cfg.box_detections_per_img,
        box_fg_iou_thresh=cfg.box_fg_iou_thresh, box_bg_iou_thresh=cfg.box_bg_iou_thresh,
        box_batch_size_per_image=cfg.box_batch_size_per_image,
        box_positive_fraction=cfg.box_positive_fraction,
        bbox_reg_weights=tuple(cfg.bbox_reg_weights),
        mask_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], cfg.mask_roi_output_size,
                                         cfg.mask_sampling_ratio),
        mask_head=MaskRCNNHeads(F, list(cfg.mask_layers), 1),
        mask_predictor=MaskRCNNPredictor(cfg.mask_layers[-1], cfg.mask_dim_reduced,
                                         cfg.num_classes))

    from mrcnn_np import MaskRCNN as Ours
    ours = {k: tuple(v.shape) for k, v in Ours(cfg, rng=np.random.default_rng(0)).state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in model.state_dict().items()
              if not k.endswith("num_batches_tracked")}
    if ours != theirs:
        diff = sorted(set(ours) ^ set(theirs)) or \
            [(k, ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]]
        raise ValueError(f"twin and ours differ in state_dict keys or shapes: {diff[:10]}")
    if weights is not None:
        from mrcnn_np.convert import torchvision_to_numpy
        arrays = torchvision_to_numpy(weights)  # a path to an .npz, or a dict of arrays
        if set(arrays) != set(ours):
            raise ValueError(f"weights do not fit the preset: {sorted(set(arrays) ^ set(ours))[:10]}")
        sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
            raise ValueError(f"load_state_dict: missing {missing}, unexpected {unexpected}")
    return model.eval()


def match_detections(ours, theirs, iou_min=0.9):
    """Greedy match of torchvision's detections to ours, same label, by box IoU.

    Returns a dict: counts, matched fraction (of torchvision's detections), and the worst box
    coordinate difference, score difference, mean absolute mask difference (averaged over
    matches) and worst single-pixel mask difference over matches.
    """
    from mrcnn_np.ops.boxes import box_iou
    tb, tl, ts = theirs["boxes"], theirs["labels"], theirs["scores"]
    ob, ol, os_ = ours["boxes"], ours["labels"], ours["scores"]
    used = np.zeros(len(ob), bool)
    box_err, score_err, mask_err, mask_max_err, matched = 0.0, 0.0, [], [], 0
    iou = box_iou(tb.astype(np.float64), ob.astype(np.float64)) if len(tb) and len(ob) else None
    for i in np.argsort(-ts, kind="stable"):
        if iou is None:
            break
        cand = np.flatnonzero((ol == tl[i]) & ~used)
        if not len(cand):
            continue
        j = cand[np.argmax(iou[i, cand])]
        if iou[i, j] < iou_min:
            continue
        used[j] = True
        matched += 1
        box_err = max(box_err, float(np.abs(ob[j] - tb[i]).max()))
        score_err = max(score_err, float(abs(os_[j] - ts[i])))
        mask_err.append(float(np.abs(ours["masks"][j] - theirs["masks"][i]).mean()))
        mask_max_err.append(float(np.abs(ours["masks"][j] - theirs["masks"][i]).max()))
    n = len(tb)
    return dict(n_theirs=n, n_ours=len(ob), matched=matched,
                matched_fraction=matched / n if n else 1.0,
                max_box_diff=box_err, max_score_diff=score_err,
                mean_mask_diff=float(np.mean(mask_err)) if mask_err else 0.0,
                max_mask_diff=max(mask_max_err, default=0.0))


def stagewise(model, tv_model, images):
    """Run both models on the same images; return per-stage agreement figures."""
    import torch
    with torch.no_grad():
        timgs = [torch.from_numpy(im) for im in images]
        il, _ = tv_model.transform(timgs)
        tfeats = tv_model.backbone(il.tensors)
        tprops, _ = tv_model.rpn(il, tfeats)
        tdets = tv_model(timgs)

    batch, image_sizes, _ = model.transform(images, None, training=False)
    model.eval()
    features = model.features_forward(batch)
    feats, props = features.maps, model.propose(features, image_sizes, training=False)
    out = {"transform_max_abs": float(np.abs(batch - il.tensors.numpy()).max()),
           "image_sizes_equal": [tuple(s) for s in image_sizes] == [tuple(s) for s in il.image_sizes]}
    for name, f in zip(["0", "1", "2", "3", "pool"], feats):
        t = tfeats[name].numpy()
        out[f"feature_{name}_max_rel"] = float(np.abs(f - t).max() / (np.abs(t).max() + 1e-12))
    prop_stats = []
    for p, tp in zip(props, tprops):
        tp = tp.numpy()
        n = min(len(p), len(tp))
        same = np.abs(p[:n] - tp[:n]).max(1) < 1e-2 if n else np.zeros(0, bool)
        prop_stats.append((len(p), len(tp), float(same.mean()) if n else 1.0))
    out["proposals"] = prop_stats
    dets = model.predict(images)
    out["detections"] = [match_detections(d, {k: v.numpy() for k, v in td.items()})
                         for d, td in zip(dets, tdets)]
    return out
