"""Keypoint targets, loss and inference of Keypoint R-CNN (Mask R-CNN paper, Sec. 5; chapter 15),
with torchvision's names and exact semantics (``torchvision/models/detection/roi_heads.py``).

Letters: R RoIs (positive RoIs when training), K keypoints per instance (17 for COCO people),
S the heatmap side (56), G ground-truth instances of one image.

The keypoint head predicts, for each RoI, K maps of S x S logits. Training turns each
ground-truth keypoint into ONE index of the S x S grid of its RoI (``keypoints_to_heatmap``),
and the loss is a softmax cross-entropy over the S*S positions of each map
(``keypointrcnn_loss_forward``). At inference each map is resized to its box, and its argmax is
the keypoint (``heatmaps_to_keypoints``).

Keypoints are ``(x, y, v)`` in image pixels with COCO's visibility flag v: 0 not labelled,
1 labelled but occluded, 2 visible. Both v = 1 and v = 2 are trained on (``v > 0``).
"""
import numpy as np

from ..nn.bicubic import interpolate_bicubic
from ..nn.losses import cross_entropy_backward, cross_entropy_forward

HEATMAP_SIZE = 56  # torchvision's keypoint head: 14x14 RoIAlign, deconv to 28, 2x upsampling


def _as_float(a, name):
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{name} must be a float array, got {a.dtype}")
    return a


# -- targets ---------------------------------------------------------------------------------
def keypoints_to_heatmap(keypoints, rois, heatmap_size):
    """Each keypoint as one index into its RoI's ``heatmap_size`` x ``heatmap_size`` grid.

    Args:
        keypoints: [R, K, 3] float, ``(x, y, v)`` in image pixels; row r belongs to RoI r.
        rois: [R, 4] float, ``(x1, y1, x2, y2)``.
        heatmap_size: int S.
    Returns:
        heatmaps: [R, K] int64, ``y_index * S + x_index`` where valid, 0 elsewhere.
        valid: [R, K] bool, the keypoint is labelled (v > 0) and falls in the RoI.
        (torchvision returns ``valid`` as int64 0/1; the values are the same.)

    The discretization. The RoI's width is cut into S bins of ``(x2 - x1) / S`` pixels, and a
    keypoint at continuous ``x`` lies in bin ``floor((x - x1) * S / (x2 - x1))``: bin 0 covers
    ``[x1, x1 + w/S)``, and x1 itself is in bin 0. The right edge ``x == x2`` would fall in bin
    S, one past the grid; torchvision counts it in the last bin, S - 1, so a keypoint exactly on
    the right or bottom edge is kept (a closed box). Anything else with an index outside
    ``[0, S)`` -- left of x1, above y1, right of x2 -- is not valid. The same rule holds for y.
    (Heckbert's convention: bin d covers the continuous span [d, d + 1), centre d + 0.5;
    ``heatmaps_to_keypoints`` maps back with that +0.5.)

    The arithmetic is torchvision's, in the inputs' dtype: ``scale = (1 / (x2 - x1)) * S``
    (torch evaluates ``S / tensor`` as a reciprocal times S), then
    ``floor((x - x1) * scale)``. A bin edge can land either side of a float rounding, so we do
    exactly the same operations. A zero-width RoI has scale inf: its keypoints are invalid
    except one exactly at x1 == x2 (the edge rule).
    """
    keypoints = _as_float(keypoints, "keypoints")
    rois = _as_float(rois, "rois")
    if keypoints.ndim != 3 or keypoints.shape[2] != 3:
        raise ValueError(f"keypoints must be [R, K, 3], got shape {keypoints.shape}")
    if rois.ndim != 2 or rois.shape[1] != 4 or rois.shape[0] != keypoints.shape[0]:
        raise ValueError(f"rois must be [R, 4] with R = {keypoints.shape[0]}, got {rois.shape}")
    S = int(heatmap_size)
    if S <= 0:
        raise ValueError(f"heatmap_size must be positive, got {heatmap_size}")
    dtype = np.result_type(keypoints.dtype, rois.dtype)
    keypoints, rois = keypoints.astype(dtype, copy=False), rois.astype(dtype, copy=False)
    s = dtype.type(S)
    x1, y1 = rois[:, 0:1], rois[:, 1:2]  # [R, 1] each
    x2, y2 = rois[:, 2:3], rois[:, 3:4]  # [R, 1] each
    with np.errstate(divide="ignore", invalid="ignore"):  # zero-size RoIs: inf and nan, on purpose
        scale_x = np.reciprocal(x2 - x1) * s  # [R, 1] bins per pixel
        scale_y = np.reciprocal(y2 - y1) * s  # [R, 1]
        x = keypoints[..., 0]  # [R, K]
        y = keypoints[..., 1]  # [R, K]
        bx = np.floor((x - x1) * scale_x)  # [R, K] bin index, still float (may be inf/nan)
        by = np.floor((y - y1) * scale_y)  # [R, K]
    bx[x == x2] = S - 1  # the right edge belongs to the last bin
    by[y == y2] = S - 1  # the bottom edge too
    # Compare as floats: a nan or an index beyond int64 is simply out of range.
    inside = (bx >= 0) & (by >= 0) & (bx < S) & (by < S)  # [R, K]
    valid = inside & (keypoints[..., 2] > 0)  # [R, K]
    ix = np.where(valid, bx, 0).astype(np.int64)  # [R, K]
    iy = np.where(valid, by, 0).astype(np.int64)  # [R, K]
    heatmaps = iy * S + ix  # [R, K] 0 where not valid, as torchvision's lin_ind * valid
    return heatmaps, valid


def keypoint_targets(gt_keypoints_per_image, pos_rois_per_image, matched_idxs_per_image,
                     heatmap_size):
    """The targets of ``keypointrcnn_loss`` for a batch: each positive RoI takes the keypoints of
    the ground-truth instance it was matched to, discretized in that RoI.

    Args:
        gt_keypoints_per_image: list over images of [G_i, K, 3] float (x, y, v).
        pos_rois_per_image: list of [P_i, 4] float, the positive RoIs (x1, y1, x2, y2).
        matched_idxs_per_image: list of [P_i] int, the ground truth each positive RoI matched.
        heatmap_size: int S.
    Returns:
        heatmaps: [R * K] int64 and valid: [R * K] bool, R = sum P_i: each image's [P_i, K]
        result flattened row by row, and the images concatenated -- torchvision's order, which
        is row ``r * K + k`` of the logits viewed as [R * K, S * S].
    The targets are constants: no gradient flows into them.
    """
    if not (len(gt_keypoints_per_image) == len(pos_rois_per_image) == len(matched_idxs_per_image)):
        raise ValueError("give one entry per image in each of the three lists")
    heatmaps, valid = [], []
    for gt_kp, rois, midx in zip(gt_keypoints_per_image, pos_rois_per_image,
                                 matched_idxs_per_image):
        gt_kp = np.asarray(gt_kp)
        midx = np.asarray(midx, np.int64)
        if midx.size and (midx.min() < 0 or midx.max() >= len(gt_kp)):
            raise ValueError("matched_idxs must index the image's ground truth (no sentinels: "
                             "pass the positive RoIs only)")
        kp = gt_kp[midx]  # [P_i, K, 3] the matched instance's keypoints
        h, v = keypoints_to_heatmap(kp, rois, heatmap_size)  # [P_i, K] each
        heatmaps.append(h.reshape(-1))
        valid.append(v.reshape(-1))
    if not heatmaps:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    return np.concatenate(heatmaps), np.concatenate(valid)


# -- loss ------------------------------------------------------------------------------------
def keypointrcnn_loss_forward(keypoint_logits, heatmaps, valid):
    """Keypoint loss: softmax cross-entropy over the S*S positions, one term per valid
    (RoI, keypoint), averaged over the valid ones.

    Args:
        keypoint_logits: [R, K, S, S] float, the head's logits (never probabilities).
        heatmaps: [R * K] (or [R, K]) int, target index ``y * S + x`` of each keypoint.
        valid: [R * K] (or [R, K]) bool (or 0/1), which targets count.
    Returns:
        loss: 0-d array of the logits' dtype;  cache for ``keypointrcnn_loss_backward``.
    With R = 0 or no valid keypoint the loss is 0 and its gradient is 0 (torchvision returns
    ``keypoint_logits.sum() * 0``).

    Why a softmax over positions. A keypoint (say, the left wrist) is at exactly one place in
    its RoI. The S*S logits of its map are therefore scores of S*S mutually exclusive answers,
    and the softmax turns them into one distribution over where the wrist is; the target is
    one-hot (the paper's "one-hot m x m binary mask where only a single pixel is labelled as
    foreground"). Raising the right position's score lowers every other one's probability.
    A mask is different: each pixel is in the object or not, independently of its neighbours,
    so the mask loss is a sigmoid per pixel, a separate yes/no question at each of the M*M
    positions, and many pixels can be "yes" at once.

    The log-softmax is the stable one of ``nn.losses.cross_entropy_forward`` (the row maximum
    subtracted before ``exp``), applied to the valid rows only.
    """
    keypoint_logits = _as_float(keypoint_logits, "keypoint_logits")
    if keypoint_logits.ndim != 4:
        raise ValueError(f"keypoint_logits must be [R, K, S, S], got shape {keypoint_logits.shape}")
    R, K, H, W = keypoint_logits.shape
    if H != W:
        raise ValueError(f"keypoint heatmaps must be square, got H = {H} and W = {W}")
    heatmaps = np.asarray(heatmaps).reshape(-1)
    valid = np.asarray(valid).reshape(-1).astype(bool)
    if heatmaps.size != R * K or valid.size != R * K:
        raise ValueError(f"heatmaps and valid need R * K = {R * K} entries, got "
                         f"{heatmaps.size} and {valid.size}")
    rows = np.flatnonzero(valid)  # [V] rows of the [R * K, S * S] view that count
    if rows.size == 0:
        return keypoint_logits.dtype.type(0), (keypoint_logits.shape, keypoint_logits.dtype,
                                               rows, None)
    flat = keypoint_logits.reshape(R * K, H * W)  # [R * K, S * S]
    target = heatmaps[rows].astype(np.int64)  # [V]
    if target.min() < 0 or target.max() >= H * W:
        raise ValueError(f"valid heatmap targets must lie in [0, {H * W})")
    loss, c = cross_entropy_forward(flat[rows], target)  # mean over the V valid rows
    return loss, (keypoint_logits.shape, keypoint_logits.dtype, rows, c)


def keypointrcnn_loss_backward(dloss, cache):
    """Returns dkeypoint_logits [R, K, S, S]: ``(softmax(row) - onehot(target)) * dloss / V``
    on each of the V valid rows, exactly 0 on the rows that did not count (invalid keypoints,
    and everything when V = 0). The targets, built from the ground truth and the RoIs, get no
    gradient."""
    shape, dtype, rows, c = cache
    R, K, H, W = shape
    dflat = np.zeros((R * K, H * W), dtype)  # [R * K, S * S]
    if rows.size:
        dflat[rows] = cross_entropy_backward(dloss, c)  # [V, S * S]
    return dflat.reshape(shape)


def keypointrcnn_loss(keypoint_logits, proposals, gt_keypoints, keypoint_matched_idxs):
    """torchvision's signature: the loss value only (lists over images, as
    ``keypoint_targets``)."""
    logits = _as_float(keypoint_logits, "keypoint_logits")
    heatmaps, valid = keypoint_targets(gt_keypoints, proposals, keypoint_matched_idxs,
                                       logits.shape[-1])
    return keypointrcnn_loss_forward(logits, heatmaps, valid)[0]


# -- inference -------------------------------------------------------------------------------
def heatmaps_to_keypoints(maps, rois):
    """Keypoint coordinates and scores from the head's maps, as torchvision computes them.

    Args:
        maps: [R, K, S, S] float, the head's logits.
        rois: [R, 4] float, the detected boxes (x1, y1, x2, y2) in image pixels.
    Returns:
        xy_preds: [R, K, 3] float32, ``(x, y, 1)`` in image pixels (the 1 is torchvision's
            placeholder visibility).
        scores: [R, K] float32, the resized map's logit at the chosen position.

    For each RoI: its width ``w = max(x2 - x1, 1)`` and height ``h = max(y2 - y1, 1)`` (boxes
    under a pixel are treated as one pixel), and the maps are resized bicubically (torch's
    ``F.interpolate(mode="bicubic", align_corners=False)``) to ``ceil(h) x ceil(w)`` -- about
    one map pixel per image pixel. The argmax ``(x_int, y_int)`` of each resized map is a
    discrete pixel whose centre is ``x_int + 0.5`` (Heckbert's ``c = d + 0.5``, as in
    ``keypoints_to_heatmap``); scaled back by ``w / ceil(w)`` (the resized map is a little wider
    than the box when w is not an integer) and shifted by x1:

        x = (x_int + 0.5) * (w / ceil(w)) + x1,   y = (y_int + 0.5) * (h / ceil(h)) + y1

    in float32, as torchvision writes it into its float32 output. Ties go to the first maximum
    in row-major order (torch's argmax, and NumPy's).
    """
    maps = _as_float(maps, "maps")
    rois = _as_float(rois, "rois")
    if maps.ndim != 4:
        raise ValueError(f"maps must be [R, K, S, S], got shape {maps.shape}")
    if rois.ndim != 2 or rois.shape[1] != 4 or rois.shape[0] != maps.shape[0]:
        raise ValueError(f"rois must be [R, 4] with R = {maps.shape[0]}, got {rois.shape}")
    R, K = maps.shape[:2]
    f32 = np.float32
    offset_x, offset_y = rois[:, 0], rois[:, 1]  # [R]
    widths = np.maximum(rois[:, 2] - rois[:, 0], 1)  # [R] in the rois' dtype
    heights = np.maximum(rois[:, 3] - rois[:, 1], 1)  # [R]
    widths_ceil, heights_ceil = np.ceil(widths), np.ceil(heights)  # [R]
    xy_preds = np.zeros((R, K, 3), f32)
    scores = np.zeros((R, K), f32)
    for i in range(R):
        roi_map_width, roi_map_height = int(widths_ceil[i]), int(heights_ceil[i])
        # a 0-d division in the rois' dtype; torch then multiplies it into a float32 vector,
        # which casts it to float32 first
        width_correction = f32(widths[i] / widths.dtype.type(roi_map_width))
        height_correction = f32(heights[i] / heights.dtype.type(roi_map_height))
        roi_map = interpolate_bicubic(maps[i][:, None], size=(roi_map_height, roi_map_width))
        roi_map = roi_map[:, 0]  # [K, ceil(h), ceil(w)]
        pos = roi_map.reshape(K, -1).argmax(axis=1)  # [K] first maximum, row-major
        x_int = pos % roi_map_width  # [K]
        y_int = pos // roi_map_width  # [K]
        x = (x_int.astype(f32) + f32(0.5)) * width_correction  # [K] float32
        y = (y_int.astype(f32) + f32(0.5)) * height_correction  # [K]
        xy_preds[i, :, 0] = x + f32(offset_x[i])
        xy_preds[i, :, 1] = y + f32(offset_y[i])
        xy_preds[i, :, 2] = 1
        scores[i] = roi_map[np.arange(K), y_int, x_int]
    return xy_preds, scores


def keypointrcnn_inference(x, boxes):
    """torchvision's ``keypointrcnn_inference``: ``heatmaps_to_keypoints`` per image.

    Args:
        x: [R, K, S, S] float, the maps of all images' detections, image after image.
        boxes: list over images of [R_i, 4] float, sum R_i = R.
    Returns:
        kp_probs: list of [R_i, K, 3] float32;  kp_scores: list of [R_i, K] float32.
    """
    x = np.asarray(x)
    counts = [len(b) for b in boxes]
    if sum(counts) != len(x):
        raise ValueError(f"boxes hold {sum(counts)} detections but x has {len(x)} maps")
    kp_probs, kp_scores = [], []
    start = 0
    for b, n in zip(boxes, counts):
        p, s = heatmaps_to_keypoints(x[start:start + n], np.asarray(b))
        kp_probs.append(p)
        kp_scores.append(s)
        start += n
    return kp_probs, kp_scores
