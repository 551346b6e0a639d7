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
        g = torch.Generator().manual_seed(seed + 1)
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                n = mod.num_features
                mod.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(n, generator=g))
                mod.weight.data.copy_(0.5 + 0.5 * torch.rand(n, generator=g))
                mod.bias.data.copy_(0.1 * torch.randn(n, generator=g))
    return m.eval()


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


def match_detections(ours, theirs, iou_min=0.9):
    """Greedy match of torchvision's detections to ours, same label, by box IoU.

    Returns a dict: counts, matched fraction (of torchvision's detections), and the worst box
    coordinate difference, score difference and mean absolute mask difference over matches.
    """
    from mrcnn_np.ops.boxes import box_iou
    tb, tl, ts = theirs["boxes"], theirs["labels"], theirs["scores"]
    ob, ol, os_ = ours["boxes"], ours["labels"], ours["scores"]
    used = np.zeros(len(ob), bool)
    box_err, score_err, mask_err, matched = 0.0, 0.0, [], 0
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
    n = len(tb)
    return dict(n_theirs=n, n_ours=len(ob), matched=matched,
                matched_fraction=matched / n if n else 1.0,
                max_box_diff=box_err, max_score_diff=score_err,
                mean_mask_diff=float(np.mean(mask_err)) if mask_err else 0.0)


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
