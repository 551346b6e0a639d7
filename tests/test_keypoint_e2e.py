"""The keypoint model end to end: the preset against torchvision's ``keypointrcnn_resnet50_fpn``
defaults, our model against torchvision's (random weights, no download) on two images, the
training keypoint loss against torchvision's roi_heads code, the empty cases, and a short
over-fit whose keypoint loss falls.

Agreement set-up (as tests/test_model_e2e.py for the mask model): torchvision's model with a
fixed torch seed and random batch-norm statistics, its weights loaded into ours by name
(``load_torchvision``), both run on the same two smooth random images, one not square, at
min_size 256 (max 512) to keep CI fast. num_classes=5 and box_score_thresh=0.22: with random
weights and torchvision's 2 classes every score falls on one side of 0.5 (no detection above
0.505 on these images, measured), while with 5 classes the scores spread around 1/5 and
0.22 keeps 29 and 36 of the ~2,000 candidates, decided by the scores, the per-class NMS and
the threshold in both libraries. The keypoint branch does not depend on the class count.

Tolerances (float32 in both libraries): the same number of detections; at least 98% of
torchvision's matched to ours and of ours to theirs (same label, box IoU >= 0.9); matched
boxes within 0.01 px, scores within 1e-4; every keypoint of every matched pair within 0.01 px
(4.6e-5 measured) and its score (the heatmap logit at the chosen position) within 1e-4
(4.8e-6 measured).
"""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import oracle
from mrcnn_np import MaskRCNN
from mrcnn_np.config import get_config, torchvision_keypoint_r50_fpn, tiny_keypoints
from mrcnn_np.model import loss_names
from mrcnn_np.nn.optim import AdamW
from mrcnn_np.ops.boxes import box_iou

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))  # tv_agreement

NUM_CLASSES, MIN_SIZE, MAX_SIZE, SCORE_THRESH = 5, 256, 512, 0.22


def _torchvision_keypointrcnn(torch, torchvision, seed=0, **kwargs):
    """keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None) in eval mode, with random
    batch-norm statistics and affine parameters (so that importing them is really tested)."""
    torch.manual_seed(seed)
    m = torchvision.models.detection.keypointrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, **kwargs)
    from tv_agreement import randomize_batch_norm
    return randomize_batch_norm(m, seed + 1).eval()


def _images():
    """Smooth random images (16-px blocks of noise), 240 x 320 and 256 x 256."""
    rng = np.random.default_rng(0)
    images = []
    for h, w in [(240, 320), (256, 256)]:
        small = rng.random((3, h // 16 + 1, w // 16 + 1)).astype(np.float32)
        images.append(np.ascontiguousarray(
            np.kron(small, np.ones((1, 16, 16), np.float32))[:, :h, :w]))
    return images


def _match(ours, theirs, iou_min=0.9):
    """Greedy match of torchvision's detections (by falling score) to ours with the same label
    and the highest box IoU >= iou_min. Returns [(i_theirs, j_ours)]."""
    tb, tl, ts = theirs["boxes"], theirs["labels"], theirs["scores"]
    ob, ol = ours["boxes"], ours["labels"]
    if not len(tb) or not len(ob):
        return []
    iou = box_iou(tb.astype(np.float64), ob.astype(np.float64))  # [Dt, Do]
    used, pairs = np.zeros(len(ob), bool), []
    for i in np.argsort(-ts, kind="stable"):
        cand = np.flatnonzero((ol == tl[i]) & ~used)
        if len(cand):
            j = cand[np.argmax(iou[i, cand])]
            if iou[i, j] >= iou_min:
                used[j] = True
                pairs.append((i, j))
    return pairs


@pytest.fixture(scope="module")
def both():
    torch, torchvision = oracle()
    tv = _torchvision_keypointrcnn(torch, torchvision, num_classes=NUM_CLASSES,
                                   min_size=MIN_SIZE, max_size=MAX_SIZE,
                                   box_score_thresh=SCORE_THRESH)
    cfg = torchvision_keypoint_r50_fpn(num_classes=NUM_CLASSES, min_size=(MIN_SIZE,),
                                       max_size=MAX_SIZE, box_score_thresh=SCORE_THRESH)
    ours = MaskRCNN(cfg, rng=np.random.default_rng(0)).load_torchvision(tv.state_dict())
    images = _images()
    with torch.no_grad():
        theirs = [{k: v.numpy() for k, v in d.items()}
                  for d in tv([torch.from_numpy(im) for im in images])]
    return ours.predict(images), theirs


def test_preset_has_every_default_of_keypointrcnn_resnet50_fpn(torch, torchvision):
    """The preset, read against the attributes of torchvision's default model, and the two
    state_dicts: the same keys with the same shapes (num_batches_tracked aside), no mask
    branch."""
    tv = torchvision.models.detection.keypointrcnn_resnet50_fpn(weights=None,
                                                                weights_backbone=None)
    cfg = get_config("torchvision_keypoint_r50_fpn")
    t, rpn, rh = tv.transform, tv.rpn, tv.roi_heads
    assert cfg.min_size == tuple(t.min_size) == (640, 672, 704, 736, 768, 800)
    assert cfg.max_size == t.max_size and cfg.size_divisible == t.size_divisible
    assert cfg.image_mean == tuple(t.image_mean) and cfg.image_std == tuple(t.image_std)
    assert cfg.anchor_sizes == tuple(rpn.anchor_generator.sizes)
    assert cfg.aspect_ratios == tuple(rpn.anchor_generator.aspect_ratios)
    assert (cfg.rpn_pre_nms_top_n_train, cfg.rpn_pre_nms_top_n_test) == (
        rpn._pre_nms_top_n["training"], rpn._pre_nms_top_n["testing"])
    assert (cfg.rpn_post_nms_top_n_train, cfg.rpn_post_nms_top_n_test) == (
        rpn._post_nms_top_n["training"], rpn._post_nms_top_n["testing"])
    assert cfg.rpn_nms_thresh == rpn.nms_thresh and cfg.rpn_score_thresh == rpn.score_thresh
    assert (cfg.rpn_fg_iou_thresh, cfg.rpn_bg_iou_thresh) == (
        rpn.proposal_matcher.high_threshold, rpn.proposal_matcher.low_threshold)
    assert (cfg.rpn_batch_size_per_image, cfg.rpn_positive_fraction) == (
        rpn.fg_bg_sampler.batch_size_per_image, rpn.fg_bg_sampler.positive_fraction)
    assert (cfg.box_fg_iou_thresh, cfg.box_bg_iou_thresh) == (
        rh.proposal_matcher.high_threshold, rh.proposal_matcher.low_threshold)
    assert (cfg.box_batch_size_per_image, cfg.box_positive_fraction) == (
        rh.fg_bg_sampler.batch_size_per_image, rh.fg_bg_sampler.positive_fraction)
    assert cfg.bbox_reg_weights == tuple(rh.box_coder.weights)
    assert (cfg.box_score_thresh, cfg.box_nms_thresh, cfg.box_detections_per_img) == (
        rh.score_thresh, rh.nms_thresh, rh.detections_per_img)
    assert cfg.box_roi_output_size == rh.box_roi_pool.output_size[0]
    assert cfg.box_sampling_ratio == rh.box_roi_pool.sampling_ratio
    assert cfg.representation_size == rh.box_head.fc7.out_features
    assert cfg.num_classes == rh.box_predictor.cls_score.out_features == 2
    assert cfg.keypoint_roi_output_size == rh.keypoint_roi_pool.output_size[0] == 14
    assert cfg.keypoint_sampling_ratio == rh.keypoint_roi_pool.sampling_ratio == 2
    convs = [m for m in rh.keypoint_head if isinstance(m, torch.nn.Conv2d)]
    assert cfg.keypoint_layers == tuple(c.out_channels for c in convs) == (512,) * 8
    assert cfg.keypoints == rh.keypoint_predictor.out_channels == 17
    assert cfg.keypoint_heatmap_size == 56
    assert not cfg.masks and rh.mask_head is None
    assert loss_names(cfg) == ("loss_objectness", "loss_rpn_box_reg", "loss_classifier",
                               "loss_box_reg", "loss_keypoint")
    ours = {k: v.shape for k, v in MaskRCNN(cfg).state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in tv.state_dict().items()
              if not k.endswith("num_batches_tracked")}
    assert ours == theirs


def test_detections_and_keypoints_agree_with_torchvision(both):
    ours_all, theirs_all = both
    for ours, theirs in zip(ours_all, theirs_all):
        n = len(theirs["boxes"])
        assert 10 < n < 100, "the comparison needs detections, below box_detections_per_img"
        assert len(ours["boxes"]) == n
        assert "masks" not in ours and "masks" not in theirs
        assert ours["keypoints"].shape == theirs["keypoints"].shape == (n, 17, 3)
        assert ours["keypoints_scores"].shape == theirs["keypoints_scores"].shape == (n, 17)
        pairs = _match(ours, theirs)
        assert len(pairs) >= 0.98 * n  # theirs found in ours and, as the counts are equal,
        i, j = map(list, zip(*pairs))  # ours found in theirs
        assert np.abs(ours["boxes"][j] - theirs["boxes"][i]).max() < 0.01
        assert np.abs(ours["scores"][j] - theirs["scores"][i]).max() < 1e-4
        assert np.abs(ours["keypoints"][j] - theirs["keypoints"][i]).max() < 0.01
        assert np.abs(ours["keypoints_scores"][j] - theirs["keypoints_scores"][i]).max() < 1e-4
        np.testing.assert_array_equal(ours["keypoints"][..., 2], 1)  # torchvision's placeholder


def test_tiny_keypoints_overfits_one_image():
    """15 AdamW steps (lr 2e-3) on one 64 x 64 image with two objects and 9 labelled
    keypoints each: the keypoint loss starts near log(56 * 56) = 8.04 (uniform over the
    positions) and falls (8.1 -> 5.5 measured); asserted: the mean of the last three steps
    at most 0.8 of the first three's. The other losses are trained too (the total is what
    backward starts from)."""
    rng = np.random.default_rng(0)
    cfg = tiny_keypoints(min_size=(64,), max_size=64, box_batch_size_per_image=16,
                         rpn_batch_size_per_image=64, backend="numpy")
    model = MaskRCNN(cfg, rng=np.random.default_rng(0))
    K = cfg.keypoints
    img = (0.2 + 0.1 * rng.random((3, 64, 64))).astype(np.float32)
    boxes = np.array([[4, 6, 30, 40], [34, 20, 60, 60]], np.float32)
    masks = np.zeros((2, 64, 64), np.uint8)
    kp = np.zeros((2, K, 3), np.float32)
    for g, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        masks[g, y1:y2, x1:x2] = 1
        img[:, y1:y2, x1:x2] = np.array([0.9, 0.5, 0.1], np.float32)[:, None, None]
        u = rng.uniform(0.1, 0.9, (K, 2))
        kp[g, :, 0], kp[g, :, 1] = x1 + u[:, 0] * (x2 - x1), y1 + u[:, 1] * (y2 - y1)
        kp[g, :, 2] = 2
        for k in range(K):  # each keypoint a 3x3 dot of its own colour
            x, y = int(kp[g, k, 0]), int(kp[g, k, 1])
            img[:, y - 1:y + 2, x - 1:x + 2] = np.array([k / K, 0.1, 1 - k / K])[:, None, None]
    target = dict(boxes=boxes, labels=np.array([1, 1]), masks=masks, keypoints=kp)
    opt = AdamW(model, lr=2e-3, weight_decay=0.0)
    step_rng = np.random.default_rng(1)
    history = []
    for _ in range(15):
        losses = model.forward_backward([img], [target], step_rng)
        opt.step()
        assert set(losses) == set(model.loss_names) | {"loss"}
        history.append(losses["loss_keypoint"])
    assert abs(history[0] - np.log(56 * 56)) < 0.5
    assert np.mean(history[-3:]) <= 0.8 * np.mean(history[:3]), history


def _scene_with_keypoints(rng, K):
    """A 64 x 80 image with three boxes; the first two have K keypoints inside (a few
    unlabelled), the third none at all (v = 0 everywhere)."""
    img = (0.2 + 0.1 * rng.random((3, 64, 80))).astype(np.float32)
    boxes = np.array([[8, 10, 40, 44], [30, 20, 70, 60], [50, 4, 76, 30]], np.float32)
    masks = np.zeros((3, 64, 80), np.uint8)
    kp = np.zeros((3, K, 3), np.float32)
    for g, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        masks[g, y1:y2, x1:x2] = 1
        img[:, y1:y2, x1:x2] = np.array([0.9, 0.3 + 0.2 * g, 0.1], np.float32)[:, None, None]
        if g < 2:
            u = rng.uniform(0.05, 0.95, (K, 2))
            kp[g, :, 0], kp[g, :, 1] = x1 + u[:, 0] * (x2 - x1), y1 + u[:, 1] * (y2 - y1)
            kp[g, :, 2] = rng.choice([0, 1, 2], K, p=[0.2, 0.2, 0.6])
    return img, dict(boxes=boxes, labels=np.array([1, 1, 1]), masks=masks, keypoints=kp)


def test_training_keypoint_loss_equals_torchvisions_on_all_positives(torch, torchvision):
    """Our L_keypoint (positives whose GT has labelled keypoints only) against torchvision's
    roi_heads code on ALL positive RoIs of the same step: its MultiScaleRoIAlign(14, 2),
    KeypointRCNNHeads, KeypointRCNNPredictor with our weights, and ``keypointrcnn_loss`` with
    the matched GT keypoints. Equal (within float32 rounding, 1e-5 relative): the RoIs we
    leave out have no valid keypoint, so they add nothing to torchvision's loss either."""
    from torchvision.models.detection.keypoint_rcnn import (KeypointRCNNHeads,
                                                            KeypointRCNNPredictor)
    from torchvision.models.detection.roi_heads import keypointrcnn_loss
    from torchvision.ops import MultiScaleRoIAlign
    from test_model import _fixed_samples
    cfg = tiny_keypoints(min_size=(64,), max_size=96, keypoints=5, keypoint_layers=(16, 16),
                         box_batch_size_per_image=32, backend="numpy")
    model = MaskRCNN(cfg, rng=np.random.default_rng(0))
    img, tgt = _scene_with_keypoints(np.random.default_rng(3), cfg.keypoints)
    batch, image_sizes, samples = _fixed_samples(model, [img], [tgt])
    features = model.features_forward(batch)
    losses, _ = model.loss_forward(features, samples, image_sizes)

    # every positive and its matched GT, re-derived from the sampled RoIs by IoU (the
    # samples keep labels, not matched indices; each positive's best GT is its match)
    _, _, tt = model.transform([img], [tgt], training=True, rng=np.random.default_rng(1))
    pos = samples.pos_rois[0]  # [Rp, 4]
    matched = box_iou(tt[0]["boxes"], pos).argmax(0)  # [Rp]
    assert (matched == 2).any(), "the test needs a positive on the object without keypoints"
    assert len(samples.keypoint_rois[0]) == int((matched != 2).sum())

    def load(module, prefix):
        sd = {k[len(prefix):]: torch.from_numpy(np.ascontiguousarray(v))
              for k, v in model.state_dict().items() if k.startswith(prefix)}
        module.load_state_dict(sd)
        return module.eval()

    head = load(KeypointRCNNHeads(cfg.fpn_channels, list(cfg.keypoint_layers)),
                "roi_heads.keypoint_head.")
    pred = load(KeypointRCNNPredictor(cfg.keypoint_layers[-1], cfg.keypoints),
                "roi_heads.keypoint_predictor.")
    pool = MultiScaleRoIAlign(["0", "1", "2", "3"], 14, 2)
    feats = {str(i): torch.from_numpy(m) for i, m in enumerate(features.maps[:4])}
    with torch.no_grad():
        x = pool(feats, [torch.from_numpy(pos)], [tuple(s) for s in image_sizes])
        logits = pred(head(x))
        theirs = keypointrcnn_loss(logits, [torch.from_numpy(pos)],
                                   [torch.from_numpy(tt[0]["keypoints"])],
                                   [torch.from_numpy(matched)]).item()
    assert abs(losses["loss_keypoint"] - theirs) <= 1e-5 * theirs


def test_empty_cases_of_the_keypoint_branch():
    """No objects, an image without a ``keypoints`` entry, no detections: zero keypoint loss,
    empty [0, K, 3] / [0, K] predictions; keypoints of the wrong shape are a ValueError."""
    cfg = tiny_keypoints(min_size=(64,), max_size=64, box_score_thresh=1.0)  # no detections
    model = MaskRCNN(cfg, rng=np.random.default_rng(0))
    K = cfg.keypoints
    img = np.random.default_rng(0).random((3, 64, 64)).astype(np.float32)
    none = dict(boxes=np.zeros((0, 4), np.float32), labels=np.zeros(0, np.int64),
                masks=np.zeros((0, 64, 64), np.uint8), keypoints=np.zeros((0, K, 3), np.float32))
    no_kp = dict(boxes=np.array([[5, 5, 40, 40]], np.float32), labels=np.array([1]),
                 masks=np.ones((1, 64, 64), np.uint8))
    for target in (none, no_kp):
        losses = model.forward_backward([img], [target], np.random.default_rng(0))
        assert losses["loss_keypoint"] == 0 and np.isfinite(losses["loss"])
    for _, _, g in model.named_parameters():
        assert np.all(np.isfinite(g))
    assert not model.roi_heads.keypoint_head[0].grads["weight"].any()  # no keypoint, no grad
    out = model.predict([img])[0]
    assert out["boxes"].shape == (0, 4)
    assert out["keypoints"].shape == (0, K, 3) and out["keypoints_scores"].shape == (0, K)
    bad = dict(no_kp, keypoints=np.zeros((1, K + 1, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[G, K, 3\]"):
        model.forward_backward([img], [bad], np.random.default_rng(0))
