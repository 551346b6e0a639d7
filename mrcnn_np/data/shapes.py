"""A synthetic "shapes" data set, written to disk as a real COCO data set.

Each image is a textured background (smooth noise, a linear gradient or stripes) with a few
solid shapes painted on it, one after the other. A shape painted later covers the shapes
under it, so every instance mask is the VISIBLE part of its shape. Shapes that would end up
mostly hidden are taken out of the scene before anything is painted, so every pixel of a
shape that you can see belongs to an annotated instance.

Layout on disk (what ``make_shapes_dataset`` writes)::

    out_dir/train/000001.png ...            RGB, uint8
    out_dir/val/000001.png ...
    out_dir/annotations/instances_train.json
    out_dir/annotations/instances_val.json

The JSON is ordinary COCO: ``images`` (id, file_name, height, width), ``categories``
(ids 1..K-1, in the order of ``shapes``), ``annotations`` with ``bbox`` = (x, y, w, h) of the
visible pixels, ``area`` = number of visible pixels, ``iscrowd`` = 0 and ``segmentation``:

* a polygon (the exact vertices, rounded to 1/100 pixel) for a polygon shape (square,
  triangle, star) that nothing covers; its mask is pycocotools' rasterisation of that polygon,
  and the image is painted with the same mask, so pixels and annotation agree exactly;
* a compressed RLE (``counts`` as a str) for round shapes (circle, ellipse; pixel (i, j) is
  inside when its centre (j + 0.5, i + 0.5) is) and for every shape that is partly covered.

Everything is drawn from ``seed``: image ``i`` of a split has its own generator,
``SeedSequence(seed, spawn_key=(split, i))``, so the same seed gives byte-identical files and
the first images do not change when you ask for more of them.
"""
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

SHAPES = ("circle", "square", "triangle", "ellipse", "star")  # every shape this module can draw
DEFAULT_SHAPES = ("circle", "square", "triangle")  # the classes of the default data set

MIN_SIZE = 12            # px, smallest shape extent (diameter / side); issue 6: "~12 px ..."
MAX_SIZE_FRACTION = 0.5  # largest extent / shorter image side; issue 6: "... to ~half the image"
MIN_VISIBLE = 0.5        # a shape must keep at least half of its pixels visible ...
MIN_PIXELS = 30          # ... and at least this many, or it is taken out of the scene
MIN_CONTRAST = 0.35      # least RGB distance (0..1 scale) between a shape and the background
NOISE_SIGMA = 0.02       # per-pixel Gaussian noise added to the finished image (0..1 scale)
EMPTY_FRACTION = 0.05    # share of images with no objects (at least one per split of >= 4)
SPLITS = ("train", "val")


# ------------------------------------------------------------------------------------------
# Geometry: one boolean mask per shape
# ------------------------------------------------------------------------------------------
def _polygon_vertices(kind, cx, cy, size, angle):
    """Vertices of a polygon shape, rounded to 1/100 px.  Returns [V, 2] = (x, y)."""
    if kind == "square":                        # side = size
        r = size / np.sqrt(2.0)                 # centre-to-corner distance
        t = angle + np.pi / 4 + np.arange(4) * np.pi / 2
    elif kind == "triangle":                    # equilateral, inscribed in a circle of diameter size
        r = size / 2.0
        t = angle + np.arange(3) * 2 * np.pi / 3
    elif kind == "star":                        # five points, inner radius 0.45 of the outer
        t = angle + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, size / 2.0, 0.45 * size / 2.0)
    else:
        raise ValueError(f"{kind!r} is not a polygon shape")
    xy = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)  # [V, 2]
    return np.round(xy, 2)


def _polygon_mask(poly, height, width):
    """pycocotools' rasterisation of one flat polygon [x0, y0, x1, y1, ...].  [H, W] bool."""
    rle = mask_utils.merge(mask_utils.frPyObjects([list(poly)], height, width))
    return mask_utils.decode(rle).astype(bool)


def _round_mask(kind, cx, cy, size, angle, height, width):
    """Circle / ellipse by the pixel-centre test.  Returns [H, W] bool."""
    y, x = np.mgrid[0:height, 0:width] + 0.5          # pixel centres, [H, W] each
    dx, dy = x - cx, y - cy
    if kind == "circle":
        return dx * dx + dy * dy <= (size / 2.0) ** 2
    a, b = size / 2.0, 0.55 * size / 2.0              # ellipse semi-axes: b = 0.55 a
    u = dx * np.cos(angle) + dy * np.sin(angle)       # coordinates along the axes
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _outer_radius(kind, size):
    """Distance from the centre to the farthest point of the shape."""
    return size / np.sqrt(2.0) if kind == "square" else size / 2.0


# ------------------------------------------------------------------------------------------
# Backgrounds
# ------------------------------------------------------------------------------------------
def _background(rng, height, width):
    """A textured background.  Returns ([H, W, 3] float64 in 0..1, its mean colour [3])."""
    base = rng.uniform(0.15, 0.85, size=3)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)   # [H, W] each, 0..1
    kind = rng.integers(3)
    if kind == 0:    # smooth noise: a coarse random grid, bilinearly enlarged
        g = rng.uniform(-0.15, 0.15, size=(5, 5, 3))
        gy = np.linspace(0, 4, height)
        gx = np.linspace(0, 4, width)
        iy, ix = np.minimum(gy.astype(int), 3), np.minimum(gx.astype(int), 3)
        fy, fx = (gy - iy)[:, None, None], (gx - ix)[None, :, None]
        tex = ((1 - fy) * (1 - fx) * g[iy][:, ix] + (1 - fy) * fx * g[iy][:, ix + 1]
               + fy * (1 - fx) * g[iy + 1][:, ix] + fy * fx * g[iy + 1][:, ix + 1])  # [H, W, 3]
    elif kind == 1:  # linear gradient towards a second colour, at a random angle
        t = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(t) * x + np.sin(t) * y)
        ramp = (ramp - ramp.min()) / max(ramp.max() - ramp.min(), 1e-9) - 0.5   # [H, W]
        tex = ramp[..., None] * rng.uniform(-0.3, 0.3, size=3)
    else:            # stripes: a sine wave at a random angle and period
        t = rng.uniform(0, np.pi)
        period = rng.uniform(0.05, 0.25)
        wave = np.sin(2 * np.pi * (np.cos(t) * x + np.sin(t) * y) / period)    # [H, W]
        tex = wave[..., None] * rng.uniform(0.04, 0.12) * np.ones(3)
    img = np.clip(base + tex, 0.0, 1.0)
    return img, img.reshape(-1, 3).mean(axis=0)


def _shape_colour(rng, background_mean, others=()):
    """A colour (RGB, 0..1) at least MIN_CONTRAST from the background mean and at least
    MIN_CONTRAST / 2 from the colours of the shapes already drawn (so edges stay visible)."""
    for _ in range(100):
        c = rng.uniform(0.0, 1.0, size=3)
        if (np.linalg.norm(c - background_mean) >= MIN_CONTRAST
                and all(np.linalg.norm(c - o) >= MIN_CONTRAST / 2 for o in others)):
            return c
    return 1.0 - np.round(background_mean)   # a corner of the colour cube, far enough


# ------------------------------------------------------------------------------------------
# One image
# ------------------------------------------------------------------------------------------
def drop_hidden(objs, height, width):
    """Occlusion: objects later in ``objs`` (dicts with a boolean ``full`` [H, W]) cover earlier
    ones. Take out every object that keeps too little of itself visible (MIN_VISIBLE, MIN_PIXELS);
    taking objects out only uncovers the others, so repeat until stable.
    Returns (the objects kept, above: per kept object the [H, W] pixels of those over it)."""
    while True:
        covered = np.zeros((height, width), bool)
        above = [None] * len(objs)
        for k in range(len(objs) - 1, -1, -1):                   # top object first
            above[k] = covered.copy()
            covered |= objs[k]["full"]
        keep = [k for k, o in enumerate(objs)
                if (o["full"] & ~above[k]).sum() >= max(MIN_PIXELS, MIN_VISIBLE * o["full"].sum())]
        if len(keep) == len(objs):
            return objs, above
        objs = [objs[k] for k in keep]


def paint(rng, img, objs):
    """Paint the objects' ``colour`` over ``img`` [H, W, 3] (0..1) bottom to top, add the
    per-pixel noise, and return the uint8 image [H, W, 3]."""
    for o in objs:
        img[o["full"]] = o["colour"]
    img = img + rng.normal(0.0, NOISE_SIGMA, size=img.shape)
    return np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)


def make_shapes_image(rng, height, width, shapes=DEFAULT_SHAPES, max_objects=4, empty=False,
                      min_size=MIN_SIZE, max_size_fraction=MAX_SIZE_FRACTION):
    """Draw one image and its instances.

    Inputs:
      rng: numpy.random.Generator, the only source of randomness
      height, width: image size in pixels
      shapes: names of the classes, label l = shapes[l - 1] (label 0 is background)
      max_objects: at most this many shapes are tried (fewer survive the occlusion rule)
      empty: True gives a background with no objects
      min_size, max_size_fraction: shape extents (circle diameter, square side, diameter of
        the triangle's / star's circumscribed circle, ellipse major axis) are drawn
        log-uniformly from min_size to max_size_fraction * min(height, width) pixels

    Returns a dict:
      image:  [H, W, 3] uint8 RGB
      masks:  [G, H, W] bool, the VISIBLE pixels of each instance, in painting order
      labels: [G] int64 in 1..len(shapes)
      segmentations: G COCO segmentations (polygon list or RLE dict with str counts)
      boxes:  [G, 4] float64 = (x1, y1, x2, y2) of the visible pixels
    """
    img, bg_mean = _background(rng, height, width)              # [H, W, 3]
    n_try = 0 if empty else int(rng.integers(1, max_objects + 1))
    lo, hi = min_size, max(min_size, max_size_fraction * min(height, width))
    objs = []
    for _ in range(n_try):
        label = int(rng.integers(len(shapes))) + 1
        kind = shapes[label - 1]
        size = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))   # log-uniform extent
        r = _outer_radius(kind, size)
        cx = float(rng.uniform(r, max(r, width - r)))            # whole shape inside the image
        cy = float(rng.uniform(r, max(r, height - r)))
        angle = float(rng.uniform(0, 2 * np.pi))
        colour = _shape_colour(rng, bg_mean, [o["colour"] for o in objs])
        if kind in ("circle", "ellipse"):
            poly = None
            full = _round_mask(kind, cx, cy, size, angle, height, width)
        else:
            poly = [float(v) for v in _polygon_vertices(kind, cx, cy, size, angle).ravel()]
            full = _polygon_mask(poly, height, width)
        objs.append(dict(label=label, poly=poly, full=full, colour=colour))

    objs, above = drop_hidden(objs, height, width)
    visible = [o["full"] & ~above[k] for k, o in enumerate(objs)]  # each shape's own pixels
    image = paint(rng, img, objs)                                # [H, W, 3]

    masks = np.zeros((len(objs), height, width), bool)          # [G, H, W]
    boxes = np.zeros((len(objs), 4))                             # [G, 4] = (x1, y1, x2, y2)
    segs = []
    for k, o in enumerate(objs):
        m = visible[k]
        masks[k] = m
        ys, xs = np.nonzero(m)
        boxes[k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        if o["poly"] is not None and m.sum() == o["full"].sum():   # nothing covers it
            segs.append([o["poly"]])
        else:
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            segs.append({"size": [int(height), int(width)], "counts": rle["counts"].decode("ascii")})
    labels = np.array([o["label"] for o in objs], np.int64)      # [G]
    return dict(image=image, masks=masks, labels=labels, segmentations=segs, boxes=boxes)


# ------------------------------------------------------------------------------------------
# The data set
# ------------------------------------------------------------------------------------------
def _image_size(rng, image_size, size_range):
    if size_range is not None:
        lo, hi = size_range
        return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
    if np.isscalar(image_size):
        return int(image_size), int(image_size)
    return int(image_size[0]), int(image_size[1])


def write_split(out_dir, split, split_index, num, seed, image_size, size_range, draw,
                categories, description, extra_fields=None):
    """Write one split of a synthetic data set: ``out_dir/split/000001.png ...`` and
    ``out_dir/annotations/instances_<split>.json``. Shared by this module and
    ``stickfigures.py``: only what is drawn differs.

    draw(rng, h, w, empty) -> dict with image [H, W, 3] uint8, boxes [G, 4], masks [G, H, W],
      segmentations (G COCO segmentations) and, for ``categories`` with more than one entry,
      labels [G] (category ids); image ``i`` gets its own generator, and ``EMPTY_FRACTION`` of
      the images (at least one of a split of >= 4) are drawn with ``empty=True``
    extra_fields(s, k) -> dict: more fields of object k's annotation (e.g. keypoints)
    Returns (image folder, annotation file).
    """
    img_dir = out_dir / split
    img_dir.mkdir(parents=True, exist_ok=True)
    for old in img_dir.glob("*.png"):                   # stale images of an earlier, larger run
        if re.fullmatch(r"\d{6}\.png", old.name) and int(old.stem) > num:
            old.unlink()
    n_empty = max(1, int(round(EMPTY_FRACTION * num))) if num >= 4 else 0
    empty_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split_index, 2**31)))
    empty = set(empty_rng.choice(num, size=n_empty, replace=False).tolist()) if n_empty else set()

    images, annotations = [], []
    for i in range(num):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split_index, i)))
        h, w = _image_size(rng, image_size, size_range)
        s = draw(rng, h, w, i in empty)
        name = f"{i + 1:06d}.png"
        Image.fromarray(s["image"]).save(img_dir / name, format="PNG")
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        for k in range(len(s["masks"])):
            x1, y1, x2, y2 = (float(v) for v in s["boxes"][k])
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1,
                "category_id": int(s["labels"][k]) if "labels" in s else categories[0]["id"],
                "segmentation": s["segmentations"][k],
                "area": float(s["masks"][k].sum()),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "iscrowd": 0,
                **(extra_fields(s, k) if extra_fields is not None else {}),
            })
    coco = {
        "info": {"description": description, "version": "1.0", "seed": int(seed)},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    ann_file = out_dir / "annotations" / f"instances_{split}.json"
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    ann_file.write_text(json.dumps(coco, separators=(",", ":")))
    return img_dir, ann_file


def _write_split(out_dir, split, split_index, num, seed, image_size, size_range, shapes,
                 max_objects, min_size, max_size_fraction):
    def draw(rng, h, w, empty):
        return make_shapes_image(rng, h, w, shapes, max_objects, empty=empty,
                                 min_size=min_size, max_size_fraction=max_size_fraction)
    categories = [{"id": l + 1, "name": n, "supercategory": "shape"} for l, n in enumerate(shapes)]
    return write_split(out_dir, split, split_index, num, seed, image_size, size_range, draw,
                       categories, "mrcnn-np synthetic shapes")


def make_shapes_dataset(out_dir, num_train=200, num_val=50, image_size=(128, 128),
                        size_range=None, seed=0, max_objects=4, shapes=DEFAULT_SHAPES,
                        min_size=MIN_SIZE, max_size_fraction=MAX_SIZE_FRACTION):
    """Write the shapes data set as a COCO data set under ``out_dir``.

    Inputs:
      out_dir: folder to write (created; files of an earlier run are overwritten)
      num_train, num_val: number of images per split
      image_size: (H, W), or one int for square images
      size_range: optional (min, max): then each image's H and W are drawn in [min, max]
      seed: int; the same seed gives byte-identical files
      max_objects: shapes tried per image (those mostly hidden are taken out)
      shapes: class names, from SHAPES; category id l + 1 is shapes[l]
      min_size, max_size_fraction: range of shape extents (see ``make_shapes_image``); raise
        min_size to make the set easier for a small model

    Returns a dict of paths: root, train_images, train_annotations, val_images,
    val_annotations.
    """
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown or not shapes:
        raise ValueError(f"unknown shapes {unknown}; choose from {SHAPES}")
    if min(num_train, num_val) < 0 or max_objects < 1 or min_size <= 0 or max_size_fraction <= 0:
        raise ValueError("num_train, num_val must be >= 0; max_objects >= 1; min_size and"
                         " max_size_fraction > 0")
    out_dir = Path(out_dir)
    paths = {"root": out_dir}
    for split_index, (split, num) in enumerate(zip(SPLITS, (num_train, num_val))):
        img_dir, ann_file = _write_split(out_dir, split, split_index, int(num), seed, image_size,
                                         size_range, tuple(shapes), max_objects, min_size,
                                         max_size_fraction)
        paths[f"{split}_images"] = img_dir
        paths[f"{split}_annotations"] = ann_file
    return paths
