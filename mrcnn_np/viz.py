"""Pictures of instances: translucent masks, boxes and "label score" captions (PIL, no display).

    canvas = draw_instances(image, boxes, labels, scores, masks, class_names)  # [H, W, 3] uint8
    save_gallery([(image, prediction), ...], "gallery.png", class_names=names)
"""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MASK_ALPHA = 0.45   # opacity of a mask's colour over the image
OBJECT_IOU = 0.5    # detections overlapping more than this are taken as one object (pictures)
GALLERY_TILE = 256  # least side of a gallery tile in pixels: 128-px images are drawn at 2x

# Colour of label l is PALETTE[l % len(PALETTE)] (matplotlib's "tab10", as 0..255 RGB).
PALETTE = np.array([
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)], np.uint8)


def label_colour(label):
    """RGB colour (3 ints, 0..255) of a label."""
    return tuple(int(v) for v in PALETTE[int(label) % len(PALETTE)])


def to_uint8_hwc(image):
    """An image [3, H, W] or [H, W, 3] (float in 0..1, or uint8) as [H, W, 3] uint8 (a copy).

    The layout is read from the shape: channels first when the first axis is 1 or 3 and the
    last is not (so a [3, H, 3] array is taken as [H, W, 3]).  [H, W] grayscale works too.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = image.transpose(1, 2, 0)                                  # [H, W, C]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=2)
    if image.dtype != np.uint8:
        image = np.round(np.clip(image.astype(np.float64), 0.0, 1.0) * 255).astype(np.uint8)
    return np.ascontiguousarray(image)                                    # [H, W, 3]


def blend_masks(canvas, masks, labels, mask_threshold=0.5):
    """Blend masks into ``canvas`` [H, W, 3] float64 (0..255), in place, each with opacity
    MASK_ALPHA in its label's colour, in order. masks: [D, H, W] or [D, 1, H, W], binary or
    soft (a pixel is in when > mask_threshold); labels: [D]. Blending a few masks at a time
    gives the same canvas as all at once (``predict`` does that for large images)."""
    masks = np.asarray(masks)
    masks = masks.reshape(masks.shape[0], *masks.shape[-2:]) > mask_threshold  # [D, H, W]
    for m, label in zip(masks, np.asarray(labels).reshape(-1)):
        colour = np.array(label_colour(label), np.float64)
        canvas[m] = (1 - MASK_ALPHA) * canvas[m] + MASK_ALPHA * colour
    return canvas


def one_per_object(boxes, scores, iou_threshold=OBJECT_IOU):
    """Indices of the detections to draw, one per object: greedy NMS across classes.

    torchvision's post-processing runs NMS per class, so one object can keep a detection of
    each class ("circle 0.67" and "square 0.62" on one circle): right for COCO AP, which scores
    every class separately, but a picture should say one thing per object. This keeps, among
    detections overlapping by IoU > ``iou_threshold``, only the top-scoring one."""
    from .ops.nms import nms
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)                 # [D, 4]
    return np.sort(nms(boxes, np.asarray(scores, np.float64).reshape(-1), iou_threshold,
                       backend="numpy"))


def draw_instances(image, boxes, labels, scores=None, masks=None, class_names=None,
                   score_threshold=0.5, mask_threshold=0.5, scale=1, one_label_per_object=True):
    """Draw detections (or ground truth) on an image.

    Inputs:
      image: [3, H, W] or [H, W, 3], float in 0..1 or uint8
      boxes: [D, 4] = (x1, y1, x2, y2) in pixels
      labels: [D] ints (0 is background)
      scores: [D] or None (ground truth: every instance drawn, no score in the caption)
      masks: [D, H, W] or [D, 1, H, W], binary or soft (a pixel is in when > mask_threshold),
        or None
      class_names: names indexed by label, or None (the caption shows the number)
      score_threshold: instances scoring below it are not drawn
      scale: an integer; the picture is drawn ``scale`` times larger (nearest neighbour), so
        that captions on small images stay readable
      one_label_per_object: with scores, draw only the top-scoring detection of each object
        (:func:`one_per_object`); ground truth (no scores) is always drawn whole

    Returns [scale*H, scale*W, 3] uint8: masks blended with opacity MASK_ALPHA in the label's
    colour, a box outline in that colour, and a "name score" caption above the box, moved
    inside the picture where it would stick out, and moved down below any caption already
    drawn that it would cover (two detections with nearly the same corner get two readable
    captions, not one on top of the other).
    """
    scale = int(scale)
    canvas = to_uint8_hwc(image).astype(np.float64)                      # [H, W, 3]
    canvas = canvas.repeat(scale, 0).repeat(scale, 1)                    # [sH, sW, 3]
    H, W = canvas.shape[:2]
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4) * scale         # [D, 4]
    labels = np.asarray(labels).reshape(-1)                              # [D]
    keep = np.ones(len(labels), bool) if scores is None else \
        np.asarray(scores, np.float64).reshape(-1) >= score_threshold    # [D]
    if scores is not None and one_label_per_object and keep.any():
        shown = np.flatnonzero(keep)[one_per_object(boxes[keep], np.asarray(scores)[keep])]
        keep = np.zeros_like(keep)
        keep[shown] = True
    if masks is not None:
        masks = np.asarray(masks)[keep].repeat(scale, -2).repeat(scale, -1)  # [D', .., sH, sW]
        blend_masks(canvas, masks, labels[keep], mask_threshold)
    out = Image.fromarray(np.round(canvas).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    placed = []  # (l, t, r, b) of the captions drawn so far
    for d in np.flatnonzero(keep):
        colour = label_colour(labels[d])
        x1, y1, x2, y2 = boxes[d]
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=colour, width=scale)
        name = class_names[int(labels[d])] if class_names is not None else str(int(labels[d]))
        text = name if scores is None else f"{name} {float(scores[d]):.2f}"
        l, t, r, b = draw.textbbox((0, 0), text, font=font)             # the caption's size
        tw, th = r - l, b - t
        tx = min(max(1.0, x1), W - tw - 1)                               # inside, left to right
        ty = y1 - th - 3 if y1 - th - 3 >= 1 else min(y1 + 2, H - th - 2)  # above, else inside
        l, t, r, b = draw.textbbox((tx, ty), text, font=font)
        for _ in range(len(placed)):  # below every caption it would cover, while it fits
            covered = [p for p in placed if l - 1 < p[2] and p[0] < r + 1 and t - 1 < p[3]
                       and p[1] < b + 1]
            if not covered or max(p[3] for p in covered) + th + 3 > H:
                break
            ty += max(p[3] for p in covered) + 2 - (t - 1)
            l, t, r, b = draw.textbbox((tx, ty), text, font=font)
        placed.append((l - 1, t - 1, r, b))
        draw.rectangle([l - 1, t - 1, r, b], fill=colour)
        draw.text((tx, ty), text, fill=(255, 255, 255), font=font)
    return np.asarray(out).copy()                                        # [sH, sW, 3]


def save_gallery(images_with_preds, path, cols=4, class_names=None, score_threshold=0.5, pad=4,
                 min_side=GALLERY_TILE):
    """Save a grid of pictures as one PNG.

    Inputs:
      images_with_preds: list whose items are either an already drawn [H, W, 3] uint8 image
        or a pair (image, prediction) with prediction a dict of boxes, labels and optionally
        scores and masks (torchvision's output, or a data set sample for ground truth)
      path: the PNG to write
      cols: pictures per row; pad: white pixels between pictures

    Returns the path.  Pictures of different sizes sit top-left in equal cells. Each picture
    given as (image, prediction) is drawn at the least integer scale that makes its shorter
    side at least ``min_side`` pixels (GALLERY_TILE, 256), with one label per object
    (:func:`one_per_object`).
    """
    tiles = []
    for item in images_with_preds:
        if isinstance(item, (tuple, list)):
            image, pred = item
            side = min(to_uint8_hwc(image).shape[:2])
            scale = max(1, -(-min_side // side))  # the least integer making a tile >= min_side
            tiles.append(draw_instances(image, pred["boxes"], pred["labels"], pred.get("scores"),
                                        pred.get("masks"), class_names, score_threshold,
                                        scale=scale))
        else:
            tiles.append(to_uint8_hwc(item))
    if not tiles:
        raise ValueError("save_gallery needs at least one image")
    cols = max(1, min(cols, len(tiles)))
    rows = -(-len(tiles) // cols)
    ch = max(t.shape[0] for t in tiles) + pad
    cw = max(t.shape[1] for t in tiles) + pad
    grid = np.full((rows * ch + pad, cols * cw + pad, 3), 255, np.uint8)    # white
    for n, t in enumerate(tiles):
        r, c = divmod(n, cols)
        grid[pad + r * ch: pad + r * ch + t.shape[0], pad + c * cw: pad + c * cw + t.shape[1]] = t
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path, format="PNG")
    return path
