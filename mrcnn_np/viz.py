"""Pictures of instances: translucent masks, boxes, "label score" captions and keypoint
skeletons (PIL, no display), and keypoints on a matplotlib Axes for the chapters.

    canvas = draw_instances(image, boxes, labels, scores, masks, class_names)  # [H, W, 3] uint8
    canvas = draw_instances(image, boxes, labels, keypoints=kp, skeleton=SKELETON,
                            keypoint_names=KEYPOINT_NAMES)                     # + skeletons
    save_gallery([(image, prediction), ...], "gallery.png", class_names=names)
    draw_keypoints(ax, kp, SKELETON, KEYPOINT_NAMES)                           # matplotlib

Keypoints follow COCO: ``(x, y, v)`` in continuous pixel coordinates (pixel column j covers
[j, j + 1), its centre is j + 0.5), v = 2 visible, 1 labelled but occluded, 0 not labelled.
Both drawings share one convention: a keypoint with v = 0 is not drawn, nor is any skeleton
edge that touches it; v = 2 is a dot of its colour outlined in black, v = 1 a ring of its
colour round a black centre (a model's predictions, which carry torchvision's placeholder
v = 1, are drawn as dots: a model does not predict occlusion). Colours tell the sides apart,
from the names: the figure's ``left_*`` parts in KEYPOINT_LEFT, ``right_*`` in
KEYPOINT_RIGHT, the others in KEYPOINT_CENTRE; an edge takes the colour of its side (an edge
from a centre part to a side part is that side's).
"""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MASK_ALPHA = 0.45   # opacity of a mask's colour over the image
OBJECT_IOU = 0.5    # detections overlapping more than this are taken as one object (pictures)
GALLERY_TILE = 256  # least side of a gallery tile in pixels: 128-px images are drawn at 2x

# Keypoints: colours of the figure's left parts, right parts and the rest (RGB 0..255), chosen
# apart from PALETTE[1] (orange, the "person" label's masks and boxes); black outlines keep
# them readable on any background.
KEYPOINT_LEFT = (0, 200, 255)      # light blue
KEYPOINT_RIGHT = (255, 60, 200)    # magenta
KEYPOINT_CENTRE = (255, 230, 0)    # yellow
KEYPOINT_RADIUS = 2.0              # dot radius in pixels at scale 1 (grows with ``scale``)

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


def keypoint_colours(keypoint_names=None, num_keypoints=None):
    """Colour of each keypoint from its name: [K, 3] uint8 RGB.

    ``left_*`` (or any name with the word left: ``left_hand``, ``Left-eye``) is KEYPOINT_LEFT,
    a name with right KEYPOINT_RIGHT, any other (``head``, ``pelvis``) KEYPOINT_CENTRE.
    Without names every one of the ``num_keypoints`` keypoints is KEYPOINT_CENTRE."""
    import re
    if keypoint_names is None:
        if num_keypoints is None:
            raise ValueError("give keypoint_names or num_keypoints")
        return np.tile(np.array(KEYPOINT_CENTRE, np.uint8), (int(num_keypoints), 1))
    out = []
    for name in keypoint_names:
        words = set(re.split(r"[^a-z]+", str(name).lower()))
        out.append(KEYPOINT_LEFT if "left" in words else
                   KEYPOINT_RIGHT if "right" in words else KEYPOINT_CENTRE)
    return np.array(out, np.uint8).reshape(-1, 3)


def _check_keypoints(keypoints, skeleton, keypoint_names):
    """keypoints as [G, K, 3] float64 (a [K, 3] array is one instance), skeleton as [E, 2]
    0-based int64, after checking both; raises ValueError on a bad shape or edge."""
    kp = np.asarray(keypoints, np.float64)
    if kp.ndim == 2:
        kp = kp[None]                                                    # [1, K, 3]
    if kp.ndim != 3 or kp.shape[2] != 3:
        raise ValueError(f"keypoints must be [G, K, 3] or [K, 3] = (x, y, v), got shape "
                         f"{np.shape(keypoints)}")
    K = kp.shape[1]
    if keypoint_names is not None and len(keypoint_names) != K:
        raise ValueError(f"{len(keypoint_names)} keypoint names for {K} keypoints")
    edges = np.asarray(skeleton if skeleton is not None else np.zeros((0, 2)), np.int64)
    edges = edges.reshape(-1, 2) - 1                                     # [E, 2], 0-based
    if edges.size and (edges.min() < 0 or edges.max() >= K):
        raise ValueError(f"skeleton edges are 1-based keypoint numbers (COCO) in 1..{K}, got "
                         f"{(edges + 1).tolist()}")
    return kp, edges


def _edge_colours(colours, edges):
    """[E, 3] uint8: each edge takes the colour of its side end (a centre-centre edge stays
    KEYPOINT_CENTRE; of two side ends, the first's)."""
    centre = np.array(KEYPOINT_CENTRE, np.uint8)
    a, b = colours[edges[:, 0]], colours[edges[:, 1]]                     # [E, 3] each
    a_is_centre = (a == centre).all(1, keepdims=True)                     # [E, 1]
    return np.where(a_is_centre, b, a)


def draw_keypoints(ax, keypoints, skeleton, keypoint_names=None, offset=-0.5, radius=None,
                   linewidth=2.0, show_names=False, fontsize=7, predicted=False):
    """Draw keypoints and their skeleton on a matplotlib Axes (the chapters' pictures).

    Inputs:
      ax: a matplotlib Axes, usually holding ``ax.imshow(image)``
      keypoints: [G, K, 3] (or [K, 3]) = (x, y, v) in image pixels (COCO coordinates)
      skeleton: [E, 2] 1-based keypoint numbers, as COCO's category ``skeleton`` (or None)
      keypoint_names: K names, for the colours (``keypoint_colours``) and ``show_names``
      offset: added to x and y before plotting. imshow's default extent puts pixel j's centre
        at j, while COCO puts it at j + 0.5, hence -0.5; use 0 for an image shown with
        ``extent=(0, W, H, 0)``
      radius: the dot's radius in points (default 2.5 * linewidth)
      linewidth: of the skeleton's edges and the rings, in points
      show_names: write each drawn keypoint's name beside it
      predicted: the v of predictions is a placeholder: draw every v > 0 as a dot

    Returns the Axes. v = 0 keypoints, and the edges touching them, are not drawn; v = 2 is a
    dot, v = 1 a ring (module docstring); edges are drawn first, under the dots. Nothing else
    of the Axes (limits, title) is changed.
    """
    kp, edges = _check_keypoints(keypoints, skeleton, keypoint_names)
    colours = keypoint_colours(keypoint_names, kp.shape[1]) / 255.0       # [K, 3] in 0..1
    edge_colours = _edge_colours(keypoint_colours(keypoint_names, kp.shape[1]), edges) / 255.0
    size = 2.5 * linewidth if radius is None else radius
    limits = ax.get_xlim(), ax.get_ylim(), ax.get_autoscale_on()
    for inst in kp:                                                       # [K, 3]
        x, y, v = inst[:, 0] + offset, inst[:, 1] + offset, inst[:, 2]
        for (i, j), c in zip(edges, edge_colours):
            if v[i] > 0 and v[j] > 0:
                ax.plot([x[i], x[j]], [y[i], y[j]], "-", color=c, lw=linewidth,
                        solid_capstyle="round", zorder=3)
        for k in np.flatnonzero(v > 0):
            if predicted or v[k] >= 2:                                   # a dot
                ax.plot(x[k], y[k], "o", ms=2 * size, mew=1.0, mec="k", mfc=colours[k],
                        zorder=4)
            else:                                      # v = 1: a ring, coloured round black
                ax.plot(x[k], y[k], "o", ms=2 * size, mew=linewidth, mec=colours[k], mfc="k",
                        zorder=4)
            if show_names and keypoint_names is not None:
                ax.annotate(keypoint_names[k], (x[k], y[k]), xytext=(4, 3),
                            textcoords="offset points", fontsize=fontsize, color="w",
                            bbox=dict(boxstyle="round,pad=0.15", fc="k", ec="none", alpha=0.6),
                            zorder=5)
    ax.set_xlim(limits[0])
    ax.set_ylim(limits[1])
    ax.set_autoscale_on(limits[2])
    return ax


def _draw_keypoints_pil(draw, kp, edges, colours, scale, predicted, shown=None):
    """Skeletons and dots of ``kp`` [G, K, 3] onto a PIL ImageDraw of a picture drawn
    ``scale`` times larger; ``shown`` [G, K] bool, or None for every keypoint with v > 0."""
    r = KEYPOINT_RADIUS * scale
    lw = max(1, int(round(scale)))
    edge_colours = _edge_colours(colours, edges)
    for g, inst in enumerate(kp):
        # continuous COCO coordinates -> PIL's (pixel j is the unit square about j): x s - 0.5
        x, y = inst[:, 0] * scale - 0.5, inst[:, 1] * scale - 0.5         # [K] each
        on = inst[:, 2] > 0 if shown is None else shown[g] & (inst[:, 2] > 0)  # [K]
        for (i, j), c in zip(edges, edge_colours):
            if on[i] and on[j]:
                draw.line([(x[i], y[i]), (x[j], y[j])], fill=(0, 0, 0), width=lw + 2)
                draw.line([(x[i], y[i]), (x[j], y[j])], fill=tuple(int(t) for t in c), width=lw)
        for k in np.flatnonzero(on):
            c = tuple(int(t) for t in colours[k])
            box = [x[k] - r, y[k] - r, x[k] + r, y[k] + r]
            if predicted or inst[k, 2] >= 2:                              # a dot
                draw.ellipse(box, fill=c, outline=(0, 0, 0))
            else:                                      # v = 1: a ring, coloured round black
                draw.ellipse(box, fill=(0, 0, 0), outline=c, width=lw)


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
                   score_threshold=0.5, mask_threshold=0.5, scale=1, one_label_per_object=True,
                   keypoints=None, skeleton=None, keypoint_names=None, keypoints_scores=None,
                   keypoint_score_threshold=None):
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
      keypoints: [D, K, 3] = (x, y, v) in image pixels, or None: each drawn instance's
        skeleton, over its box (module docstring: v = 0 hidden, v = 2 dot, v = 1 ring; with
        scores, the keypoints are predictions and every v > 0 is a dot)
      skeleton: [E, 2] 1-based keypoint numbers (COCO's ``skeleton``), or None (dots only)
      keypoint_names: K names, which colour the sides (``keypoint_colours``)
      keypoints_scores: [D, K], or None; with keypoint_score_threshold, a keypoint scoring
        below it is not drawn (nor its edges). torchvision's keypoint scores are heatmap logits

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
    for d in np.flatnonzero(keep):
        x1, y1, x2, y2 = boxes[d]
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=label_colour(labels[d]),
                       width=scale)
    if keypoints is not None:  # over the boxes, under the captions
        kp, edges = _check_keypoints(keypoints, skeleton, keypoint_names)
        if len(kp) != len(labels):
            raise ValueError(f"{len(kp)} keypoint instances for {len(labels)} boxes")
        shown = None
        if keypoints_scores is not None and keypoint_score_threshold is not None:
            shown = np.asarray(keypoints_scores, np.float64).reshape(kp.shape[:2])[keep] \
                >= keypoint_score_threshold                               # [D', K]
        _draw_keypoints_pil(draw, kp[keep], edges, keypoint_colours(keypoint_names, kp.shape[1]),
                            scale, predicted=scores is not None, shown=shown)
    placed = []  # (l, t, r, b) of the captions drawn so far
    for d in np.flatnonzero(keep):
        colour = label_colour(labels[d])
        x1, y1, x2, y2 = boxes[d]
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
                 min_side=GALLERY_TILE, skeleton=None, keypoint_names=None,
                 keypoint_score_threshold=None):
    """Save a grid of pictures as one PNG.

    Inputs:
      images_with_preds: list whose items are either an already drawn [H, W, 3] uint8 image
        or a pair (image, prediction) with prediction a dict of boxes, labels and optionally
        scores and masks (torchvision's output, or a data set sample for ground truth), and
        optionally keypoints [D, K, 3] and keypoints_scores [D, K] (a keypoint model's output)
      path: the PNG to write
      skeleton, keypoint_names, keypoint_score_threshold: how keypoints are drawn
        (``draw_instances``)
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
                                        scale=scale, keypoints=pred.get("keypoints"),
                                        skeleton=skeleton, keypoint_names=keypoint_names,
                                        keypoints_scores=pred.get("keypoints_scores"),
                                        keypoint_score_threshold=keypoint_score_threshold))
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
