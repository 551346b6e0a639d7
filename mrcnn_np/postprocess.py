"""Inference post-processing: from head outputs to final detections and full-size masks.

Three steps, as torchvision's ``RoIHeads`` and ``GeneralizedRCNNTransform`` do them:

1. ``postprocess_detections``: turn the box head's class logits and box deltas for each
   proposal into at most ``detections_per_img`` detections per image -- softmax, one decoded box
   per (proposal, class), clip, drop background, score threshold, drop tiny boxes, NMS per class,
   keep the best.
2. ``masks_from_logits``: for each detection, the mask head's ``M x M`` logits of the
   detection's own class, through a sigmoid (``maskrcnn_inference``).
3. ``paste_masks_in_image``: each ``M x M`` mask probability map is resized to its box and
   written into an empty image (``roi_heads.paste_masks_in_image``), or, with
   ``method="subpixel"``, sampled at each pixel's centre inside the box's exact position
   (detectron2's ``paste_masks_in_image``; the ``tiny`` preset's choice, see below).

None of this has a backward: it runs only at inference, after the losses.
"""
import numpy as np

from .nn.layers import sigmoid
from .nn.resample import interpolate_bilinear
from .ops._backend import DEFAULT_BACKEND
from .ops.box_coder import BOX_HEAD_WEIGHTS, BoxCoder
from .ops.boxes import clip_boxes_to_image, remove_small_boxes
from .ops.nms import batched_nms

MIN_BOX_SIZE = 1e-2  # torchvision RoIHeads.postprocess_detections: remove_small_boxes(.., 1e-2)
TO_REMOVE = 1  # torchvision paste_mask_in_image: integer box [x0, x1] covers x1 - x0 + 1 pixels
PASTE_METHODS = ("torchvision", "subpixel")  # Config.mask_paste


# ------------------------------------------------------------------------------------------------
# pasting masks
# ------------------------------------------------------------------------------------------------
def expand_masks(masks, padding=1):
    """Pad each mask with ``padding`` zero pixels on every side.

    Args:
        masks: [D, 1, M, M].
    Returns:
        padded: [D, 1, M + 2p, M + 2p] (masks' dtype);
        scale: ``(M + 2p) / M``, the factor by which the box must grow so that the padded mask
            still covers the box with the same pixel size (a Python float).
    """
    M = masks.shape[-1]
    scale = float(M + 2 * padding) / M
    p = padding
    padded = np.pad(masks, ((0, 0), (0, 0), (p, p), (p, p)))  # [D, 1, M+2p, M+2p]
    return padded, scale


def expand_boxes(boxes, scale):
    """Grow boxes about their centres by ``scale`` (torchvision's ``expand_boxes``).

    Args:
        boxes: [D, 4] = (x1, y1, x2, y2), float.
        scale: float; applied in the boxes' dtype, as torch multiplies a float32 tensor by a
            Python float in float32.
    Returns:
        [D, 4] = (x1, y1, x2, y2), boxes' dtype.
    """
    boxes = np.asarray(boxes)
    s = boxes.dtype.type(scale)
    w_half = (boxes[:, 2] - boxes[:, 0]) * boxes.dtype.type(0.5) * s  # [D]
    h_half = (boxes[:, 3] - boxes[:, 1]) * boxes.dtype.type(0.5) * s  # [D]
    x_c = (boxes[:, 2] + boxes[:, 0]) * boxes.dtype.type(0.5)  # [D]
    y_c = (boxes[:, 3] + boxes[:, 1]) * boxes.dtype.type(0.5)  # [D]
    return np.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], axis=1)  # [D, 4]


def paste_mask_in_image(mask, box, im_h, im_w):
    """Paste one mask into an ``im_h x im_w`` image of zeros.

    Args:
        mask: [m, m] float (already padded by ``expand_masks``).
        box: 4 ints (x1, y1, x2, y2), the expanded box truncated to integers. Pixel columns
            ``x1 .. x2`` *inclusive* are covered, so its width is ``x2 - x1 + 1`` (torchvision's
            ``TO_REMOVE = 1``, a leftover of the old ``+1`` box convention), at least 1.
        im_h, im_w: the image size.
    Returns:
        [im_h, im_w] of mask's dtype: the mask resized bilinearly to the box's size and written
        at the box's place; the parts of the box outside the image are cut off. A box entirely
        outside the image pastes nothing (torchvision's slicing is not defined for that case,
        which never happens for boxes clipped to the image).
    """
    x1, y1, x2, y2 = (int(v) for v in box)
    w = max(x2 - x1 + TO_REMOVE, 1)
    h = max(y2 - y1 + TO_REMOVE, 1)
    resized = interpolate_bilinear(mask[None, None], size=(h, w))[0, 0]  # [h, w]
    im_mask = np.zeros((im_h, im_w), dtype=mask.dtype)  # [im_h, im_w]
    x_0, x_1 = max(x1, 0), min(x2 + 1, im_w)  # the image columns the box covers
    y_0, y_1 = max(y1, 0), min(y2 + 1, im_h)  # the image rows the box covers
    if x_1 > x_0 and y_1 > y_0:
        im_mask[y_0:y_1, x_0:x_1] = resized[y_0 - y1:y_1 - y1, x_0 - x1:x_1 - x1]
    return im_mask


def paste_mask_subpixel(mask, box, im_h, im_w):
    """Paste one mask where its box really is: each pixel's centre is looked up in the mask.

    Args:
        mask: [M, M] float probabilities (not padded).
        box: (x1, y1, x2, y2) floats, in the target image's pixels; pixel ``i`` covers
            ``[i, i + 1)``, so its centre is ``i + 0.5``.
        im_h, im_w: the image size.
    Returns:
        [im_h, im_w] of mask's dtype.

    The mask's ``M`` cells tile the box evenly: cell ``k`` covers ``x1 + k w / M`` to
    ``x1 + (k + 1) w / M`` (``w = x2 - x1``) and its value sits at that span's centre. A pixel
    whose centre is at ``x`` is at ``u = (x - x1) / w * M - 1/2`` in cell units (``u = 0``: the
    first cell's centre) and takes the bilinear interpolation of the cells around ``u``, with 0
    outside the mask. This is ``grid_sample(mask, grid, align_corners=False)`` with zeros outside,
    which is how detectron2 pastes.

    Why not torchvision's way (``paste_mask_in_image``): it truncates the grown box to whole
    pixels and resizes the mask to ``x2 - x1 + 1`` columns, so a pasted mask can be up to about
    a pixel too wide and shifted by up to a pixel. On a 30-px shape that alone costs a few
    points of IoU: with perfect boxes and perfect 28x28 masks, torchvision's paste scores mask
    AP 0.904 on the shapes validation set, this one 1.000 (chapter 11 measures it). Along each
    axis, a mask of ones pasted this way is > 0.5 exactly at the pixels whose centre is inside
    the box (it ramps from 0 to 1 over the half cell either side of the edge).
    """
    M_h, M_w = mask.shape
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = max(x2 - x1, 1e-6), max(y2 - y1, 1e-6)
    u = (np.arange(im_w) + 0.5 - x1) / w * M_w - 0.5  # [im_w] each column's centre, in cells
    v = (np.arange(im_h) + 0.5 - y1) / h * M_h - 0.5  # [im_h] each row's centre, in cells
    cols = np.flatnonzero((u > -1) & (u < M_w))  # the columns that see some cell
    rows = np.flatnonzero((v > -1) & (v < M_h))
    out = np.zeros((im_h, im_w), dtype=mask.dtype)
    if len(cols) == 0 or len(rows) == 0:
        return out
    padded = np.pad(mask, 1)  # [M_h + 2, M_w + 2]: a ring of zeros, cell k is padded[k + 1]
    u0 = np.floor(u[cols]).astype(np.int64)  # [c] the cell left of each centre, -1 .. M_w - 1
    v0 = np.floor(v[rows]).astype(np.int64)  # [r]
    fu = (u[cols] - u0).astype(mask.dtype)[None, :]  # [1, c] the weight of the right cell
    fv = (v[rows] - v0).astype(mask.dtype)[:, None]  # [r, 1] the weight of the lower cell
    a = padded[v0 + 1][:, u0 + 1]  # [r, c] upper left
    b = padded[v0 + 1][:, u0 + 2]  # upper right
    c = padded[v0 + 2][:, u0 + 1]  # lower left
    d = padded[v0 + 2][:, u0 + 2]  # lower right
    one = mask.dtype.type(1)
    out[np.ix_(rows, cols)] = ((one - fv) * ((one - fu) * a + fu * b)
                               + fv * ((one - fu) * c + fu * d))
    return out


def paste_masks_in_image(masks, boxes, img_shape, padding=1, method="torchvision"):
    """Paste ``M x M`` mask probabilities into full images, as torchvision does
    (``method="subpixel"``: as detectron2 does, ``paste_mask_subpixel``).

    Args:
        masks: [D, 1, M, M] float probabilities (the mask head's output for each detection).
        boxes: [D, 4] = (x1, y1, x2, y2) detection boxes in the pixels of the target image.
        img_shape: (h, w) of the target image.
        padding: zero border added around each mask before resizing (torchvision: 1).
        method: "torchvision" (below) or "subpixel" (``paste_mask_subpixel``, no padding).
    Returns:
        [D, 1, h, w] of masks' dtype; zeros outside each box. D = 0 gives [0, 1, h, w].

    Why the 1-pixel zero border: the mask head predicts the inside of the box only. Resizing
    the bare ``M x M`` map bilinearly would stretch its edge values up to the box's border and
    then cut them off sharply. With a ring of zeros around it (and the box grown by
    ``(M + 2) / M`` so the original ``M x M`` part still covers the box), the bilinear resize sees
    a zero border: the mask fades to 0 across the box boundary instead of being cut.

    Steps, per detection: pad the mask (``expand_masks``), grow the box about its centre by the
    same factor (``expand_boxes``), truncate the box to integers (towards zero, as torch's
    ``.to(int64)``), resize the padded mask bilinearly to ``(y2 - y1 + 1) x (x2 - x1 + 1)``, and
    copy the part that lies inside the image (``paste_mask_in_image``).
    """
    masks = np.asarray(masks)
    boxes = np.asarray(boxes)
    im_h, im_w = int(img_shape[0]), int(img_shape[1])
    D = masks.shape[0]
    if method not in PASTE_METHODS:
        raise ValueError(f"unknown paste method {method!r}; choose one of {PASTE_METHODS}")
    if D == 0:
        return np.zeros((0, 1, im_h, im_w), dtype=masks.dtype)
    if method == "subpixel":
        out = np.empty((D, 1, im_h, im_w), dtype=masks.dtype)  # [D, 1, h, w]
        for d in range(D):
            out[d, 0] = paste_mask_subpixel(masks[d, 0], boxes[d], im_h, im_w)
        return out
    padded, scale = expand_masks(masks, padding=padding)  # [D, 1, M+2p, M+2p]
    int_boxes = np.trunc(expand_boxes(boxes, scale)).astype(np.int64)  # [D, 4] towards zero
    out = np.empty((D, 1, im_h, im_w), dtype=masks.dtype)  # [D, 1, h, w]
    for d in range(D):
        out[d, 0] = paste_mask_in_image(padded[d, 0], int_boxes[d], im_h, im_w)
    return out


PASTE_CHUNK_PIXELS = 2 ** 25  # 32 Mpx: a float32 chunk of pasted masks holds at most 128 MiB


def paste_masks_in_chunks(masks, boxes, img_shape, max_pixels=PASTE_CHUNK_PIXELS,
                          method="torchvision"):
    """``paste_masks_in_image`` a few detections at a time, so that memory stays bounded
    however many detections and however large the image (100 masks of 4000 x 3000 would be
    4.8 GB at once). Each mask is pasted on its own, so the chunks equal the one-shot result.

    Yields (start, pasted): pasted [c, 1, h, w] holds detections start .. start + c - 1, with
    c * h * w <= max_pixels (at least one detection per chunk).
    """
    h, w = int(img_shape[0]), int(img_shape[1])
    step = max(1, max_pixels // max(1, h * w))
    for start in range(0, len(masks), step):
        yield start, paste_masks_in_image(masks[start:start + step], boxes[start:start + step],
                                          img_shape, method=method)


# ------------------------------------------------------------------------------------------------
# masks from the mask head
# ------------------------------------------------------------------------------------------------
def _softmax(x, axis):
    """``exp(x - max) / sum(exp(x - max))`` along ``axis``, in x's dtype."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def masks_from_logits(mask_logits, labels, activation="sigmoid", class_agnostic=False):
    """Each detection's mask probabilities from the mask head's logits.

    Args:
        mask_logits: [D, K, M, M] (or [D, 1, M, M] for a class-agnostic head).
        labels: [D] int, each detection's class (1..K-1).
        activation: ``"sigmoid"`` -- the paper's choice and torchvision's
            ``maskrcnn_inference``: each class has its own independent binary mask, and we read
            the channel of the detection's class; or ``"softmax"`` -- the multinomial ablation of
            the paper's Table 2b: a softmax across the K channels at each pixel, then the
            detection's class channel.
        class_agnostic: if True the head predicts one mask for all classes; channel 0 is used
            whatever the label (sigmoid only).
    Returns:
        [D, 1, M, M] probabilities in 0..1, mask_logits' dtype.
    """
    mask_logits = np.asarray(mask_logits)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)  # [D]
    D = mask_logits.shape[0]
    if class_agnostic:
        if activation != "sigmoid":
            raise ValueError("a class-agnostic mask has a single channel: use activation='sigmoid'")
        return sigmoid(mask_logits[:, :1])  # [D, 1, M, M]
    if activation == "sigmoid":
        chosen = mask_logits[np.arange(D), labels]  # [D, M, M] the detection's own class
        return sigmoid(chosen)[:, None]  # [D, 1, M, M]
    if activation == "softmax":
        prob = _softmax(mask_logits, axis=1)  # [D, K, M, M] sums to 1 over K at each pixel
        return prob[np.arange(D), labels][:, None]  # [D, 1, M, M]
    raise ValueError(f"activation must be 'sigmoid' or 'softmax', got {activation!r}")


# ------------------------------------------------------------------------------------------------
# boxes and scores from the box head
# ------------------------------------------------------------------------------------------------
def postprocess_detections(class_logits, box_regression, proposals, image_shapes,
                           score_thresh=0.05, nms_thresh=0.5, detections_per_img=100,
                           box_coder_weights=BOX_HEAD_WEIGHTS, backend=DEFAULT_BACKEND):
    """Final detections per image, as torchvision's ``RoIHeads.postprocess_detections``.

    Args:
        class_logits: [R, K] box-head class logits, R = sum of P_i over the batch.
        box_regression: [R, 4K] deltas, class k's (dx, dy, dw, dh) in columns 4k..4k+3.
        proposals: list of N arrays [P_i, 4] = (x1, y1, x2, y2), the boxes the deltas refer to.
        image_shapes: list of N (h, w), the resized image sizes (boxes are clipped to them).
        score_thresh: keep (proposal, class) pairs whose probability is *strictly* above it
            (torchvision 0.05; Faster R-CNN paper's demo used 0.05 too).
        nms_thresh: IoU above which a lower-scoring box of the same class is dropped.
        detections_per_img: keep at most this many per image, best first.
        box_coder_weights: (wx, wy, ww, wh) dividing the deltas (torchvision's (10, 10, 5, 5)).
        backend: of ``batched_nms`` (see ``mrcnn_np/ops/_backend.py``).
    Returns:
        boxes: list of N arrays [D_i, 4] = (x1, y1, x2, y2), clipped to the image;
        scores: list of N arrays [D_i], decreasing;
        labels: list of N int64 arrays [D_i], in 1..K-1 (never background).

    Each proposal yields one candidate per foreground class: its box decoded with that class's
    deltas and the class's softmax probability. A proposal may therefore yield several
    detections of different classes. NMS runs per class (``batched_nms``). Ties in score keep
    the order ``batched_nms`` gives them (it sorts by decreasing score; see ``mrcnn_np.ops.nms``).
    """
    class_logits = np.asarray(class_logits)
    box_regression = np.asarray(box_regression)
    R, K = class_logits.shape
    boxes_per_image = [len(p) for p in proposals]
    if sum(boxes_per_image) != R:
        raise ValueError(f"{R} logits rows for {sum(boxes_per_image)} proposals")

    if R > 0:
        box_coder = BoxCoder(box_coder_weights)
        pred_boxes = box_coder.decode(box_regression, [np.asarray(p) for p in proposals])
        pred_boxes = np.asarray(pred_boxes).reshape(R, K, 4)  # [R, K, 4] one box per class
    else:  # no proposals in the whole batch
        pred_boxes = np.zeros((0, K, 4), dtype=box_regression.dtype)  # [0, K, 4]
    pred_scores = _softmax(class_logits, axis=-1)  # [R, K]

    all_boxes, all_scores, all_labels = [], [], []
    start = 0
    for P, image_shape in zip(boxes_per_image, image_shapes):
        boxes = pred_boxes[start:start + P]  # [P, K, 4]
        scores = pred_scores[start:start + P]  # [P, K]
        start += P
        boxes = clip_boxes_to_image(boxes.reshape(-1, 4), image_shape).reshape(P, K, 4)
        labels = np.broadcast_to(np.arange(K, dtype=np.int64), (P, K))  # [P, K]

        # drop the background column, then treat each (proposal, class) pair as one candidate
        boxes = boxes[:, 1:].reshape(-1, 4)  # [P*(K-1), 4]
        scores = scores[:, 1:].reshape(-1)  # [P*(K-1)]
        labels = labels[:, 1:].reshape(-1)  # [P*(K-1)]

        inds = np.nonzero(scores > score_thresh)[0]  # strict, as torchvision
        boxes, scores, labels = boxes[inds], scores[inds], labels[inds]

        keep = np.asarray(remove_small_boxes(boxes, MIN_BOX_SIZE), dtype=np.int64)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]

        keep = np.asarray(batched_nms(boxes, scores, labels, nms_thresh, backend=backend),
                          dtype=np.int64)
        keep = keep[:detections_per_img]  # batched_nms returns best first
        all_boxes.append(boxes[keep])  # [D_i, 4]
        all_scores.append(scores[keep])  # [D_i]
        all_labels.append(labels[keep])  # [D_i]
    return all_boxes, all_scores, all_labels
