"""A synthetic pose data set: stick figures, written to disk as a real COCO keypoints data set.

Each image is one of the shapes data set's textured backgrounds (``shapes._background``) with
a few thick-limbed stick figures painted on it, one after the other. A figure is a head (a
disc) and five limbs (capsules: a torso, two arms, two two-segment legs), in one colour. A
figure painted later covers the figures under it, so each instance mask is the VISIBLE part of
its figure, and figures that would end up mostly hidden are taken out before anything is
painted (the rule of ``shapes.make_shapes_image``).

The keypoints (K = 9), named as COCO names body parts, left and right as seen FROM THE
FIGURE (it faces us, so its left hand is on the image's right, as in COCO)::

    1 head        the centre of the head disc          8 skeleton edges (1-based, as COCO):
    2 neck        top of the torso; the arms start here      head-neck, neck-left_hand,
    3 left_hand   4 right_hand   ends of the arms            neck-right_hand, neck-pelvis,
    5 pelvis      bottom of the torso; the legs start here   pelvis-left_knee, pelvis-right_knee,
    6 left_knee   7 right_knee                               left_knee-left_foot,
    8 left_foot   9 right_foot   ends of the legs            right_knee-right_foot

A left limb always points to the figure's left (its direction has a positive component along
the figure's left), so left and right can be told apart in the picture, and a horizontal flip
must swap them (``FLIP_INDICES``; ``CocoDataset.get(flip=True)`` does).

Coordinates
-----------
COCO's keypoints are continuous pixel coordinates: pixel (i, j) (row i, column j) covers
x in [j, j + 1), y in [i, i + 1), and its centre is (j + 0.5, i + 0.5). Every joint here is
snapped to the centre of its pixel, x = floor(x) + 0.5, BEFORE the figure is drawn from the
joints, so drawing and annotation agree exactly: a keypoint is the centre of a pixel that its
own figure paints, and a horizontal flip x -> W - x sends it to the centre of the mirrored
pixel. Masks use the pixel-centre test (pixel (i, j) is in a limb when (j + 0.5, i + 0.5) is).

Visibility, COCO's v: 2 the keypoint's pixel shows its own figure; 1 labelled but occluded
(a figure painted later covers that pixel); 0 outside the image (then x = y = 0, as COCO).
``num_keypoints`` counts v > 0.

OKS sigmas (``OKS_SIGMAS``): COCO's per-keypoint sigmas are the spread of human annotators'
clicks around each body part, relative to the object's scale (pycocotools' cocoeval, Params;
Ronchi & Perona 2017). Ours reuse COCO's value of the nearest body part: head ~ nose 0.026,
neck ~ shoulders 0.079 (the arms start at the neck), hands ~ wrists 0.062, pelvis ~ hips 0.107,
knees ~ knees 0.087, feet ~ ankles 0.089. The OKS scale s^2 is the annotation's ``area`` (its
visible pixels), as for COCO. A stick figure fills about a third of its box (median 0.31 over
120 uncovered figures), a solid silhouette more, so the same pixel error costs more OKS here
than on a person of the same height: with the true keypoints moved by Gaussian noise of 0.5 /
1 / 2 px per axis, 50 validation images at 128 px score keypoint AP 0.99 / 0.84 / 0.52.

Layout on disk (what ``make_figures_dataset`` writes; the shapes data set's layout)::

    out_dir/train/000001.png ...            RGB, uint8
    out_dir/val/000001.png ...
    out_dir/annotations/instances_train.json
    out_dir/annotations/instances_val.json

with one category, ``person`` (id 1) with ``keypoints`` (the names) and ``skeleton``, and
annotations with ``keypoints`` (flat [x1, y1, v1, ...]), ``num_keypoints``, ``bbox`` (x, y, w, h)
and ``area`` of the visible pixels, ``segmentation`` (compressed RLE, ``counts`` a str) and
``iscrowd`` = 0.

Everything is drawn from ``seed``, as in the shapes data set: image ``i`` of a split has its own
generator ``SeedSequence(seed, spawn_key=(split, i))``, so the same seed gives byte-identical
files and asking for more images leaves the first ones alone.
"""
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from .shapes import (MIN_PIXELS, MIN_VISIBLE, SPLITS, _background,  # noqa: F401
                     _shape_colour, drop_hidden, paint, write_split)

KEYPOINT_NAMES = ("head", "neck", "left_hand", "right_hand", "pelvis",
                  "left_knee", "right_knee", "left_foot", "right_foot")
SKELETON = ((1, 2), (2, 3), (2, 4), (2, 5), (5, 6), (5, 7), (6, 8), (7, 9))  # 1-based, as COCO
# Horizontal flip: keypoint k of the flipped figure is keypoint FLIP_INDICES[k] of the original
# (each left_* swaps with its right_*), as torchvision's reference scripts' flip_inds.
FLIP_INDICES = (0, 1, 3, 2, 4, 6, 5, 8, 7)
# COCO's sigma of the nearest body part (pycocotools Params.setKpParams; see the docstring).
OKS_SIGMAS = (0.026, 0.079, 0.062, 0.062, 0.107, 0.087, 0.087, 0.089, 0.089)
HEAD, NECK, LEFT_HAND, RIGHT_HAND, PELVIS, LEFT_KNEE, RIGHT_KNEE, LEFT_FOOT, RIGHT_FOOT = range(9)
CATEGORY = {"id": 1, "name": "person", "supercategory": "person",
            "keypoints": list(KEYPOINT_NAMES), "skeleton": [list(e) for e in SKELETON]}

# Body proportions, as fractions of the figure's nominal height ``size`` (head top to feet,
# standing straight): 0.11 + 0.11 (head) + 0.02 (gap) + 0.30 (torso) + 0.46 (legs) = 1.0.
HEAD_RADIUS = 0.11
HEAD_GAP = 0.02        # neck to the head disc's lowest point
TORSO = 0.30           # neck to pelvis
ARM = 0.32             # neck to hand
THIGH = SHIN = 0.23    # pelvis to knee, knee to foot
LIMB_WIDTH = 0.09      # thickness of arms and legs; the torso is TORSO_WIDTH times thicker
TORSO_WIDTH = 1.5
MIN_LIMB_WIDTH = 3.0   # px: keeps a 1.5 px radius around every joint, so its pixel is painted

# Pose ranges, degrees. A limb's angle is measured from straight down (0) towards the figure's
# own side (left limbs towards its left, right limbs towards its right), 180 = straight up.
ARM_ANGLES = (20.0, 160.0)
THIGH_ANGLES = (5.0, 40.0)
KNEE_BEND = (-20.0, 30.0)    # shin angle = thigh angle + bend, kept >= SHIN_MIN
SHIN_MIN = -10.0
MAX_TILT = 20.0              # the whole figure turns by up to this, either way

MIN_SIZE = 40                # px, smallest figure height (task: "~40 px tall ...")
MAX_SIZE_FRACTION = 0.9      # largest height / shorter image side ("... to most of the image")
OVERHANG = 0.2               # a figure may reach this share of its extent past an image edge,
                             # so some keypoints fall outside (v = 0)


# ------------------------------------------------------------------------------------------
# Geometry: joints from a pose, a mask from joints
# ------------------------------------------------------------------------------------------
def _limb_direction(angle_deg, side):
    """Unit vector (x, y), y down, of a limb at ``angle_deg`` from straight down towards the
    figure's left (side = +1: the image's +x, since the figure faces us) or right (side = -1)."""
    t = np.deg2rad(angle_deg)
    return np.array([side * np.sin(t), np.cos(t)])


def limb_width(size):
    """Thickness of arms and legs (px) of a figure of height ``size``; the torso's is
    TORSO_WIDTH times this, the head's diameter 2 * HEAD_RADIUS * size."""
    return max(MIN_LIMB_WIDTH, LIMB_WIDTH * size)


def _pose(size, tilt=0.0, arms=(90.0, 90.0), thighs=(20.0, 20.0), shins=(20.0, 20.0)):
    """The joints of a figure whose pelvis is at (0, 0), not yet snapped.  [K, 2] = (x, y)."""
    j = np.zeros((len(KEYPOINT_NAMES), 2))
    j[NECK] = (0.0, -TORSO * size)
    j[HEAD] = j[NECK] + (0.0, -(HEAD_GAP + HEAD_RADIUS) * size)
    for side, hand, knee, foot, arm, thigh, shin in (
            (+1, LEFT_HAND, LEFT_KNEE, LEFT_FOOT, arms[0], thighs[0], shins[0]),
            (-1, RIGHT_HAND, RIGHT_KNEE, RIGHT_FOOT, arms[1], thighs[1], shins[1])):
        j[hand] = j[NECK] + ARM * size * _limb_direction(arm, side)
        j[knee] = THIGH * size * _limb_direction(thigh, side)
        j[foot] = j[knee] + SHIN * size * _limb_direction(shin, side)
    t = np.deg2rad(tilt)                                   # turn about the pelvis
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return j @ rot.T                                       # [K, 2]


def snap(xy):
    """Snap continuous coordinates to the centre of their pixel: floor(x) + 0.5."""
    return np.floor(xy) + 0.5


def pose_keypoints(x, y, size, tilt=0.0, arms=(90.0, 90.0), thighs=(20.0, 20.0),
                   shins=(20.0, 20.0)):
    """The keypoints of one figure, snapped to pixel centres.

    Inputs:
      x, y: where the pelvis is, in pixels
      size: the figure's nominal height (head top to feet, standing straight), pixels
      tilt: turn of the whole figure about its pelvis, degrees (positive: clockwise on screen)
      arms, thighs, shins: (left, right) limb angles in degrees, from straight down towards
        the figure's own side (see ARM_ANGLES)

    Returns [K, 2] = (x, y), K = 9 in KEYPOINT_NAMES order; points may lie outside the image.
    """
    return snap(_pose(size, tilt, arms, thighs, shins) + (x, y))


def _capsule(mask, px, py, a, b, radius):
    """OR into ``mask`` [H, W] the pixels whose centres lie within ``radius`` of segment a-b."""
    ab = np.subtract(b, a, dtype=np.float64)
    denom = max(float(ab @ ab), 1e-12)
    t = np.clip(((px - a[0]) * ab[0] + (py - a[1]) * ab[1]) / denom, 0.0, 1.0)   # [H, W]
    dx, dy = px - (a[0] + t * ab[0]), py - (a[1] + t * ab[1])
    mask |= dx * dx + dy * dy <= radius * radius


def figure_mask(keypoints, size, height, width):
    """The pixels of one figure drawn from its keypoints, by the pixel-centre test.

    Inputs:
      keypoints: [K, 2] = (x, y) joints (``pose_keypoints``); the limbs join them
      size: the figure's height, which sets its thickness (``limb_width``) and head radius
      height, width: the image size

    Returns [H, W] bool: the head disc, the torso (neck-pelvis), the arms (neck-hand) and the
    legs (pelvis-knee-foot) as capsules. Only the part inside the image exists.
    """
    kp = np.asarray(keypoints, np.float64)
    py, px = np.mgrid[0:height, 0:width] + 0.5                  # pixel centres, [H, W] each
    mask = np.zeros((height, width), bool)
    r = limb_width(size) / 2.0
    _capsule(mask, px, py, kp[NECK], kp[PELVIS], TORSO_WIDTH * r)
    for a, b in ((NECK, LEFT_HAND), (NECK, RIGHT_HAND), (PELVIS, LEFT_KNEE),
                 (PELVIS, RIGHT_KNEE), (LEFT_KNEE, LEFT_FOOT), (RIGHT_KNEE, RIGHT_FOOT)):
        _capsule(mask, px, py, kp[a], kp[b], r)
    _capsule(mask, px, py, kp[HEAD], kp[HEAD], HEAD_RADIUS * size)   # a disc
    return mask


def _extent(keypoints, size):
    """(x_min, y_min, x_max, y_max) of a figure's drawing, from its joints and thicknesses."""
    r = limb_width(size) / 2.0 * TORSO_WIDTH
    head = HEAD_RADIUS * size
    lo = np.minimum(keypoints.min(0) - r, keypoints[HEAD] - head)
    hi = np.maximum(keypoints.max(0) + r, keypoints[HEAD] + head)
    return lo[0], lo[1], hi[0], hi[1]


# ------------------------------------------------------------------------------------------
# One image
# ------------------------------------------------------------------------------------------
def compose_figures(rng, height, width, figures):
    """Paint figures on a textured background, bottom to top, and annotate them.

    Inputs:
      rng: numpy.random.Generator (background, colours, noise)
      height, width: image size
      figures: list of (keypoints [K, 2], size), in painting order (``pose_keypoints``);
        figures that keep less than MIN_VISIBLE of their pixels in the image (or fewer than
        MIN_PIXELS) visible are taken out, as in the shapes data set

    Returns a dict:
      image:     [H, W, 3] uint8 RGB
      masks:     [G, H, W] bool, the VISIBLE pixels of each figure kept, in painting order
      keypoints: [G, K, 3] float64 = (x, y, v), v = 2 visible, 1 covered by a later figure,
                 0 outside the image (then x = y = 0)
      boxes:     [G, 4] float64 = (x1, y1, x2, y2) of the visible pixels
      segmentations: G compressed RLEs (``counts`` a str)
      kept:      [G] int64, the index in ``figures`` of each figure kept
    """
    img, bg_mean = _background(rng, height, width)              # [H, W, 3]
    objs = []
    for n, (kp, size) in enumerate(figures):
        kp = np.asarray(kp, np.float64).reshape(len(KEYPOINT_NAMES), 2)
        objs.append(dict(index=n, kp=kp, full=figure_mask(kp, size, height, width),
                         colour=_shape_colour(rng, bg_mean, [o["colour"] for o in objs])))

    # Occlusion: later figures cover earlier ones; take out those that keep too little of
    # themselves visible, and repeat (taking one out uncovers the others) until stable.
    objs, above = drop_hidden(objs, height, width)             # (shapes.py's rule)
    visible = [o["full"] & ~above[k] for k, o in enumerate(objs)]
    image = paint(rng, img, objs)                                # [H, W, 3]

    G, K = len(objs), len(KEYPOINT_NAMES)
    masks = np.zeros((G, height, width), bool)                  # [G, H, W]
    keypoints = np.zeros((G, K, 3))                              # [G, K, 3] = (x, y, v)
    boxes = np.zeros((G, 4))                                     # [G, 4] = (x1, y1, x2, y2)
    segs = []
    for k, o in enumerate(objs):
        masks[k] = visible[k]
        ys, xs = np.nonzero(visible[k])
        boxes[k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        col = np.floor(o["kp"][:, 0]).astype(int)                # [K] the keypoint's pixel
        row = np.floor(o["kp"][:, 1]).astype(int)
        inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
        for j in np.flatnonzero(inside):
            v = 1 if above[k][row[j], col[j]] else 2
            keypoints[k, j] = (o["kp"][j, 0], o["kp"][j, 1], v)   # (outside: stays 0, 0, 0)
        rle = mask_utils.encode(np.asfortranarray(visible[k].astype(np.uint8)))
        segs.append({"size": [int(height), int(width)], "counts": rle["counts"].decode("ascii")})
    return dict(image=image, masks=masks, keypoints=keypoints, boxes=boxes, segmentations=segs,
                kept=np.array([o["index"] for o in objs], np.int64))


def random_pose(rng):
    """A pose drawn from the ranges above: dict(tilt, arms, thighs, shins) for
    ``pose_keypoints``."""
    thighs = rng.uniform(*THIGH_ANGLES, size=2)
    shins = np.maximum(thighs + rng.uniform(*KNEE_BEND, size=2), SHIN_MIN)
    return dict(tilt=float(rng.uniform(-MAX_TILT, MAX_TILT)),
                arms=tuple(float(a) for a in rng.uniform(*ARM_ANGLES, size=2)),
                thighs=tuple(float(a) for a in thighs), shins=tuple(float(a) for a in shins))


def make_figures_image(rng, height, width, max_figures=3, empty=False, min_size=MIN_SIZE,
                       max_size_fraction=MAX_SIZE_FRACTION):
    """Draw one image of 1..max_figures random stick figures (``compose_figures``).

    Each figure's height is log-uniform in [min_size, max_size_fraction * min(H, W)], its pose
    from ``random_pose``; it is placed at random, reaching at most OVERHANG of its extent past
    an image edge (so that some keypoints fall outside, v = 0). ``empty=True`` gives a
    background alone. Returns ``compose_figures``' dict.
    """
    n_try = 0 if empty else int(rng.integers(1, max_figures + 1))
    lo, hi = min_size, max(min_size, max_size_fraction * min(height, width))
    figures = []
    for _ in range(n_try):
        size = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))   # log-uniform height
        pose = random_pose(rng)
        x0, y0, x1, y1 = _extent(_pose(size, **pose), size)         # pelvis at (0, 0)
        ox, oy = OVERHANG * (x1 - x0), OVERHANG * (y1 - y0)
        xs = (-x0 - ox, width - x1 + ox)                            # pelvis x range
        ys = (-y0 - oy, height - y1 + oy)
        x = rng.uniform(*xs) if xs[0] < xs[1] else (width - x0 - x1) / 2
        y = rng.uniform(*ys) if ys[0] < ys[1] else (height - y0 - y1) / 2
        figures.append((pose_keypoints(x, y, size, **pose), size))
    return compose_figures(rng, height, width, figures)


# ------------------------------------------------------------------------------------------
# The data set
# ------------------------------------------------------------------------------------------
def _keypoint_fields(s, k):
    """COCO's keypoint fields of figure k: flat [x1, y1, v1, ...] and the labelled count."""
    kp = s["keypoints"][k]                                       # [K, 3]
    return {"keypoints": [float(v) if c < 2 else int(v) for row in kp for c, v in enumerate(row)],
            "num_keypoints": int((kp[:, 2] > 0).sum())}


def _write_split(out_dir, split, split_index, num, seed, image_size, size_range, max_figures,
                 min_size, max_size_fraction):
    # The layout, the seeding and the empty images are the shapes data set's (write_split).
    def draw(rng, h, w, empty):
        return make_figures_image(rng, h, w, max_figures, empty=empty, min_size=min_size,
                                  max_size_fraction=max_size_fraction)
    return write_split(out_dir, split, split_index, num, seed, image_size, size_range, draw,
                       [CATEGORY], "mrcnn-np synthetic stick figures", _keypoint_fields)


def make_figures_dataset(out_dir, num_train=200, num_val=50, image_size=(128, 128),
                         size_range=None, seed=0, max_figures=3, min_size=MIN_SIZE,
                         max_size_fraction=MAX_SIZE_FRACTION):
    """Write the stick-figure data set as a COCO keypoints data set under ``out_dir``.

    Inputs:
      out_dir: folder to write (created; files of an earlier run are overwritten)
      num_train, num_val: number of images per split
      image_size: (H, W), or one int for square images
      size_range: optional (min, max): then each image's H and W are drawn in [min, max]
      seed: int; the same seed gives byte-identical files
      max_figures: figures tried per image (those mostly hidden are taken out)
      min_size, max_size_fraction: figure heights are log-uniform from min_size px to
        max_size_fraction * the shorter image side

    Returns a dict of paths: root, train_images, train_annotations, val_images,
    val_annotations.
    """
    if min(num_train, num_val) < 0 or max_figures < 1 or min_size <= 0 or max_size_fraction <= 0:
        raise ValueError("num_train, num_val must be >= 0; max_figures >= 1; min_size and"
                         " max_size_fraction > 0")
    sides = [size_range] if size_range is not None else [image_size]
    if any(min(np.atleast_1d(s)) < 1 for s in sides):
        raise ValueError(f"image sizes must be >= 1 px, not {sides[0]}")
    out_dir = Path(out_dir)
    paths = {"root": out_dir}
    for split_index, (split, num) in enumerate(zip(SPLITS, (num_train, num_val))):
        img_dir, ann_file = _write_split(out_dir, split, split_index, int(num), seed, image_size,
                                         size_range, int(max_figures), min_size,
                                         max_size_fraction)
        paths[f"{split}_images"] = img_dir
        paths[f"{split}_annotations"] = ann_file
    return paths
