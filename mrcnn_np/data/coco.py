"""A COCO data set as NumPy arrays, built on pycocotools.

    ds = CocoDataset("data/shapes/train", "data/shapes/annotations/instances_train.json")
    sample = ds[0]      # dict: image [3, H, W] float32, boxes [G, 4], labels [G], masks [G, H, W]
                        # (+ keypoints [G, K, 3] in a COCO keypoints data set)

Labels are contiguous: 0 is background and the categories get 1..K-1 in sorted category-id
order (COCO's own ids have gaps; the model's class axis must not).

What is checked, and what happens
---------------------------------
* A problem that stops loading raises ``DataError`` (a ``ValueError``) with a one-line message
  naming the file: a missing or empty image folder, an annotation file that is missing, not
  JSON, or not COCO (no ``images`` / ``annotations`` / ``categories`` list), an image that is
  missing, unreadable or corrupt, or whose size differs from its ``images`` entry.
* A bad annotation is SKIPPED, and all skips are reported in ONE warning per data set that
  counts them by reason (also kept in ``skipped``): an unknown category id, an unknown image
  id, a number that is not finite (a NaN or Inf in the bbox, the area or a polygon), a
  zero-area / degenerate box (w <= 0 or h <= 0 after clipping to the image), a polygon wholly
  outside the image, a missing or empty segmentation, an RLE whose size is not the image's, a
  malformed entry (e.g. a bbox of strings). The warning names the first few annotation ids of
  each reason. A polygon partly outside the image is kept: pycocotools rasterises only its
  part inside, and the box is clipped.
* Keypoints (a COCO keypoints data set: a category with ``keypoints`` names): an annotation
  of such a category whose ``keypoints`` are not 3 x K numbers, hold a NaN or Inf, or have a
  visibility other than 0 / 1 / 2 is skipped and counted as above. One without ``keypoints``
  is kept with all K keypoints unlabelled (v = 0): its box and mask still train.
* An annotation without ``area`` gets the area of its mask, one without ``iscrowd`` gets 0
  (many exporters leave both out; COCOeval needs them), with one warning that counts them.
* ``iscrowd`` annotations are not training targets (as in torchvision's references); they
  stay in ``coco`` where COCOeval uses them as "ignore" regions.
* ``check_images`` reads every image's header and checks its integrity (fast: see its
  docstring), so that a training run finds a bad file before its first iteration.
"""
import contextlib
import io
import json
import math
import os
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

REQUIRED_KEYS = ("images", "annotations", "categories")
IDS_NAMED = 5  # a warning names at most this many annotation ids per reason


class DataError(ValueError):
    """A user-facing data problem; the message is one line and names the file."""


# ------------------------------------------------------------------------------------------
# Images
# ------------------------------------------------------------------------------------------
def load_image(path):
    """Read an image file as RGB float32 in 0..1.

    Grayscale is repeated to three channels; an alpha channel is dropped (as PIL's
    ``convert("RGB")`` does); palette images are expanded; 16-bit images are divided by
    65535, 8-bit ones by 255.

    Returns [3, H, W] float32.  Raises DataError when the file is missing or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):   # 16-bit grayscale PNG
                arr = np.asarray(im, dtype=np.float64) / 65535.0           # [H, W]
                arr = np.repeat(np.clip(arr, 0.0, 1.0)[..., None], 3, axis=2)
            elif mode == "F":                                          # float grayscale
                arr = np.repeat(np.clip(np.asarray(im, np.float64), 0, 1)[..., None], 3, axis=2)
            else:                                                      # L, LA, P, RGBA, CMYK, 1
                arr = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0  # [H, W, 3]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: unreadable or corrupt image ({type(e).__name__})") from None
    return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)  # [3, H, W]


# ------------------------------------------------------------------------------------------
# Annotations
# ------------------------------------------------------------------------------------------
def read_coco_json(ann_file):
    """Read and check the top level of a COCO annotation file.  Returns the dict."""
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise DataError(f"{ann_file}: annotation file not found")
    try:
        data = json.loads(ann_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{ann_file}: not a JSON file ({e.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise DataError(f"{ann_file}: not a COCO file (top level is {type(data).__name__}, not an object)")
    missing = [k for k in REQUIRED_KEYS if not isinstance(data.get(k), list)]
    if missing:
        raise DataError(f"{ann_file}: not a COCO file (no list {', '.join(repr(k) for k in missing)})")
    for img in data["images"]:
        if not (isinstance(img, dict) and all(k in img for k in ("id", "file_name", "height", "width"))):
            raise DataError(f"{ann_file}: an 'images' entry lacks id/file_name/height/width: {str(img)[:80]}")
    for cat in data["categories"]:
        if not (isinstance(cat, dict) and "id" in cat):
            raise DataError(f"{ann_file}: a 'categories' entry lacks an id: {str(cat)[:80]}")
    for ann in data["annotations"]:
        if not (isinstance(ann, dict) and all(k in ann for k in ("id", "image_id", "category_id"))):
            raise DataError(f"{ann_file}: an 'annotations' entry lacks id/image_id/category_id: {str(ann)[:80]}")
    return data


def _bbox_of(ann, height, width):
    """The annotation's box as (x1, y1, x2, y2) clipped to the image, or None if missing."""
    bb = ann.get("bbox")
    if not (isinstance(bb, (list, tuple)) and len(bb) == 4):
        return None
    x, y, w, h = (float(v) for v in bb)
    return (min(max(x, 0.0), width), min(max(y, 0.0), height),
            min(max(x + w, 0.0), width), min(max(y + h, 0.0), height))


def _finite(values):
    return all(math.isfinite(float(v)) for v in values)


def _check_annotation(ann, img, cat_ids):
    """Why an annotation is unusable, or None when it is fine."""
    if img is None:
        return "unknown image id"
    if ann["category_id"] not in cat_ids:
        return "unknown category id"
    seg = ann.get("segmentation")
    numbers = list(ann.get("bbox") or []) + ([ann["area"]] if "area" in ann else [])
    if isinstance(seg, list):
        numbers += [v for poly in seg for v in poly]
    if not _finite(numbers):
        return "number not finite (NaN or Inf)"
    h, w = img["height"], img["width"]
    box = _bbox_of(ann, h, w)
    if box is None or box[2] - box[0] <= 0 or box[3] - box[1] <= 0 or ann.get("area", 1) <= 0:
        return "zero area / degenerate bbox"
    if isinstance(seg, list):                     # polygons [[x0, y0, x1, y1, ...], ...]
        polys = [np.asarray(p, np.float64) for p in seg if len(p) >= 6]
        if not polys:
            return "missing or empty segmentation"
        xs = np.concatenate([p[0::2] for p in polys])
        ys = np.concatenate([p[1::2] for p in polys])
        if xs.max() <= 0 or ys.max() <= 0 or xs.min() >= w or ys.min() >= h:
            return "polygon wholly outside the image"
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:   # RLE
        if list(seg["size"]) != [h, w]:
            return "RLE size differs from the image"
    else:
        return "missing or empty segmentation"
    return None


# ------------------------------------------------------------------------------------------
# The data set
# ------------------------------------------------------------------------------------------
class CocoDataset:
    """Images and instance targets of a COCO data set, as NumPy arrays.

    Inputs:
      image_dir: folder holding the images named by ``file_name``
      ann_file: COCO instances JSON
      train: when True, ``ds[i]`` flips horizontally with probability 1/2, drawn from ``rng``
      rng: numpy.random.Generator for that flip (default: ``default_rng(0)``)
      check_files: raise DataError at once when a listed image file is missing (False: leave
        that to ``check_images``, which reports every bad file of several data sets at once)

    Attributes:
      coco: the pycocotools COCO object (all annotations, crowd and skipped ones included)
      ids: image ids, sorted; ``ds[i]`` is image ``ids[i]``
      num_classes: K, background included
      class_names: [K] names, index = label, [0] = "background"
      label_to_cat_id: {label: COCO category id};  cat_id_to_label: the inverse
      skipped: {reason: count} of annotations left out (see the module docstring)
      instances_per_image: [N] int, the number of training targets of image ``ids[i]``

    In a COCO keypoints data set (some category lists ``keypoints`` names; all such categories
    must list the same names), also:
      keypoint_names: [K] names, as the category lists them (None without keypoints)
      skeleton: [S, 2] int64, pairs of 1-based keypoint indices, as COCO (None without)
      flip_indices: [K] int64, the keypoint order after a horizontal flip: each left_* swaps
        with its right_* (torchvision's reference scripts' ``flip_inds``; None without)
    """

    def __init__(self, image_dir, ann_file, train=False, rng=None, check_files=True):
        self.image_dir = Path(image_dir)
        self.ann_file = Path(ann_file)
        if not self.image_dir.is_dir():
            raise DataError(f"{self.image_dir}: image folder not found")
        if not any(self.image_dir.iterdir()):
            raise DataError(f"{self.image_dir}: image folder is empty")
        data = read_coco_json(self.ann_file)

        self.coco = _coco_from(data)         # built from the dict we read: no prints, one parse

        cat_ids = sorted(c["id"] for c in data["categories"])
        self.label_to_cat_id = {l + 1: c for l, c in enumerate(cat_ids)}
        self.cat_id_to_label = {c: l for l, c in self.label_to_cat_id.items()}
        self.class_names = ["background"] + [str(self.coco.cats[c].get("name", c)) for c in cat_ids]
        self.num_classes = len(self.class_names)
        self.keypoint_names, self.skeleton, self.flip_indices = _keypoint_metadata(
            data["categories"], self.ann_file)
        self._kp_cats = kp_cats = {c["id"] for c in data["categories"] if c.get("keypoints")}

        self.ids = sorted(self.coco.imgs)
        missing = [self.coco.imgs[i]["file_name"] for i in self.ids
                   if not (self.image_dir / self.coco.imgs[i]["file_name"]).is_file()]
        if missing and check_files:
            raise DataError(f"{self.image_dir / missing[0]}: image file not found"
                            f" ({len(missing)} of {len(self.ids)} listed images are missing)")

        # Sort every annotation into: a target of its image, a crowd region, or skipped.
        self._targets = {i: [] for i in self.ids}     # image id -> usable non-crowd annotations
        self._crowds = {i: [] for i in self.ids}      # image id -> usable crowd annotations
        reasons = Counter()
        named = {}                                    # reason -> the first few annotation ids
        for ann in data["annotations"]:
            try:
                why = _check_annotation(ann, self.coco.imgs.get(ann["image_id"]), self.cat_id_to_label)
                if why is None and ann["category_id"] in kp_cats:
                    why = _check_keypoints(ann, len(self.keypoint_names))
            except (TypeError, ValueError):                 # e.g. a bbox of strings
                why = "malformed annotation"
            if why is not None:
                reasons[why] += 1
                named.setdefault(why, []).append(ann["id"])
            elif ann.get("iscrowd", 0):
                self._crowds[ann["image_id"]].append(ann)
            else:
                self._targets[ann["image_id"]].append(ann)
        self.skipped = dict(reasons)
        if reasons:
            n = sum(reasons.values())
            detail = "; ".join(f"{k} {r}: {_name_ids(named[r])}" for r, k in sorted(reasons.items()))
            warnings.warn(f"{self.ann_file}: skipped {n} bad annotation{'s' * (n != 1)} ({detail})",
                          stacklevel=2)
        fill_area_and_iscrowd(self.coco, self.ann_file)
        self.instances_per_image = np.array([len(self._targets[i]) for i in self.ids], np.int64)

        self.train = bool(train)
        self.rng = rng if rng is not None else np.random.default_rng(0)

    def check_images(self):
        """Every listed image, checked without decoding it in full: the file exists, its
        header reads, its size is the one the annotation file gives, and its data is whole
        (PNG: every chunk's CRC, up to IEND; JPEG: decoded at 1/8 scale, which reads every
        entropy-coded segment; other formats: decoded), on every CPU core (PIL decodes
        without the GIL). Returns a list of (path, problem), in ``ids`` order, empty when all
        is well. Timings for 10,000 images are in the README."""
        from concurrent.futures import ThreadPoolExecutor
        jobs = [(self.image_dir / self.coco.imgs[i]["file_name"], int(self.coco.imgs[i]["height"]),
                 int(self.coco.imgs[i]["width"])) for i in self.ids]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            found = list(pool.map(lambda job: check_image(*job), jobs, chunksize=64))
        return [(job[0], why) for job, why in zip(jobs, found) if why is not None]

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        flip = bool(self.train and self.rng.random() < 0.5)
        return self.get(i, flip=flip)

    def get(self, i, flip=False, include_crowd=False):
        """Image ``ids[i]`` and its targets, flipped left-right when ``flip``.

        Crowd regions are not targets; ``include_crowd=True`` appends them after the
        instances (for pictures and for checking), marked in ``iscrowd``.

        Returns a dict:
          image:     [3, H, W] float32 RGB in 0..1
          boxes:     [G, 4] float32 = (x1, y1, x2, y2), clipped to the image
          labels:    [G] int64 in 1..K-1
          masks:     [G, H, W] uint8 in {0, 1}
          iscrowd:   [G] uint8, 1 for a crowd region (all 0 unless include_crowd=True)
          keypoints: [G, K, 3] float32 = (x, y, v), only in a keypoints data set: COCO pixel
                     coordinates, v = 2 visible, 1 occluded, 0 unlabelled (an instance of a
                     category without keypoints: all v = 0)
          image_id:  int (the COCO id)
          orig_size: (H, W)
          file_name: path of the image
        """
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        image_id = self.ids[i]
        info = self.coco.imgs[image_id]
        h, w = int(info["height"]), int(info["width"])
        path = self.image_dir / info["file_name"]
        image = load_image(path)                                      # [3, H, W]
        if image.shape[1:] != (h, w):
            raise DataError(f"{path}: image is {image.shape[2]}x{image.shape[1]} but the"
                            f" annotation file says {w}x{h}")

        anns = self._targets[image_id] + (self._crowds[image_id] if include_crowd else [])
        iscrowd = np.array([int(bool(a.get("iscrowd", 0))) for a in anns], np.uint8)  # [G]
        boxes = np.array([_bbox_of(a, h, w) for a in anns], np.float32).reshape(-1, 4)  # [G, 4]
        labels = np.array([self.cat_id_to_label[a["category_id"]] for a in anns], np.int64)  # [G]
        masks = np.zeros((len(anns), h, w), np.uint8)                 # [G, H, W]
        for g, a in enumerate(anns):
            masks[g] = self.coco.annToMask(a)

        K = len(self.keypoint_names) if self.keypoint_names is not None else 0
        keypoints = np.zeros((len(anns), K, 3), np.float32)           # [G, K, 3] = (x, y, v)
        for g, a in enumerate(anns):
            if K and a["category_id"] in self._kp_cats and a.get("keypoints"):
                keypoints[g] = np.asarray(a["keypoints"], np.float32).reshape(K, 3)

        if flip:
            image = image[:, :, ::-1].copy()                          # [3, H, W]
            masks = masks[:, :, ::-1].copy()                          # [G, H, W]
            boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
            if K:
                keypoints = flip_keypoints(keypoints, w, self.flip_indices)
        out = dict(image=image, boxes=boxes.astype(np.float32), labels=labels, masks=masks,
                   iscrowd=iscrowd, image_id=int(image_id), orig_size=(h, w), file_name=str(path))
        if K:
            out["keypoints"] = keypoints
        return out

    def __repr__(self):
        return (f"CocoDataset({len(self)} images, {self.num_classes - 1} classes,"
                f" {sum(len(v) for v in self._targets.values())} instances, {self.ann_file})")


def flip_vertical_transpose(sample, vflip, transpose):
    """A sample of ``CocoDataset.get`` turned upside down (``vflip``: y -> H - y) and/or
    mirrored about its diagonal (``transpose``: x <-> y), in that order. With ``get``'s
    left-right flip these give all 8 symmetries of the square (the dihedral augmentation of
    ``train(flip="dihedral")``): right for objects that have no up, such as the shapes, wrong
    for people, so a sample with keypoints is refused. Returns a new dict (image, boxes,
    masks changed; labels and the rest as they were)."""
    if "keypoints" in sample:
        raise ValueError("a vertical flip or transpose has no meaning for keypoints (people"
                         " have an up); use the left-right flip only")
    image, masks, boxes = sample["image"], sample["masks"], sample["boxes"]  # [3,H,W] [G,H,W] [G,4]
    if vflip:
        h = image.shape[1]
        image, masks = image[:, ::-1, :], masks[:, ::-1, :]
        boxes = np.stack([boxes[:, 0], h - boxes[:, 3], boxes[:, 2], h - boxes[:, 1]], axis=1)
    if transpose:
        image, masks = image.transpose(0, 2, 1), masks.transpose(0, 2, 1)
        boxes = boxes[:, [1, 0, 3, 2]]                                # (y1, x1, y2, x2)
    out = dict(sample)
    out.update(image=np.ascontiguousarray(image), masks=np.ascontiguousarray(masks),
               boxes=np.ascontiguousarray(boxes, np.float32).reshape(-1, 4))
    if "orig_size" in out:
        out["orig_size"] = tuple(out["image"].shape[1:])
    return out


def flip_keypoints(keypoints, width, flip_indices):
    """Keypoints of an image of ``width`` pixels mirrored left-right, as torchvision's
    reference ``RandomHorizontalFlip`` does with ``_flip_coco_person_keypoints``.

    A point at x goes to ``width - x``: the same map as the box flip above (x1' = w - x2), and
    in COCO's continuous pixel coordinates the centre j + 0.5 of column j goes to the centre
    of column w - 1 - j, where ``image[:, :, ::-1]`` puts that pixel. Mirroring turns the
    figure's left hand into a right hand, so keypoint k of the result is keypoint
    ``flip_indices[k]`` of the input. Unlabelled keypoints (v = 0) stay (0, 0, 0).

    Inputs: keypoints [G, K, 3] = (x, y, v); width: int; flip_indices: [K] ints.
    Returns a new [G, K, 3] array (the input is left unmodified).
    """
    out = np.array(keypoints)[:, list(flip_indices)]                 # [G, K, 3], swapped
    out[..., 0] = width - out[..., 0]
    out[out[..., 2] == 0] = 0                                         # COCO: v = 0 -> x = y = 0
    return out


def flip_indices_of(names):
    """The keypoint order after a horizontal flip, from the keypoint names.

    Index k holds the index of the keypoint named as names[k] with the word ``left`` and
    ``right`` swapped (``left_eye`` <-> ``right_eye``; also ``Left`` / ``LEFT``), or k itself
    for a name without either (``nose``). For COCO's 17 person keypoints this is
    torchvision's ``flip_inds`` = [0, 2, 1, 4, 3, ...]. Returns [K] int64; raises ValueError
    when a left name has no right partner (or a right one no left)."""
    names = [str(n) for n in names]
    index = {n: k for k, n in enumerate(names)}
    out = []
    for n in names:
        partner = re.sub(r"left|right", _swap_side, n, flags=re.IGNORECASE)
        if partner not in index:
            raise ValueError(f"keypoint {n!r} has no {partner!r} to swap with on a flip")
        out.append(index[partner])
    return np.array(out, np.int64)


def _swap_side(match):
    """``left`` -> ``right`` and back, keeping the word's case (left, Left, LEFT)."""
    word = match.group(0)
    other = "right" if word.lower() == "left" else "left"
    if word.isupper():
        return other.upper()
    return other.capitalize() if word[0].isupper() else other


def _keypoint_metadata(categories, ann_file):
    """(keypoint_names, skeleton [S, 2], flip_indices [K]) of the categories, or (None, None,
    None) when no category lists keypoints."""
    kp = [c for c in categories if c.get("keypoints")]
    if not kp:
        return None, None, None
    names = tuple(str(n) for n in kp[0]["keypoints"])
    if any(tuple(str(n) for n in c["keypoints"]) != names for c in kp):
        raise DataError(f"{ann_file}: categories list different keypoint names (one model"
                        f" needs one set)")
    skeleton = np.asarray(kp[0].get("skeleton") or [], np.int64).reshape(-1, 2)  # [S, 2]
    if skeleton.size and (skeleton.min() < 1 or skeleton.max() > len(names)):
        raise DataError(f"{ann_file}: the skeleton's keypoint indices are not in 1..{len(names)}")
    try:
        flip = flip_indices_of(names)
    except ValueError as e:
        raise DataError(f"{ann_file}: {e}") from None
    return names, skeleton, flip


def _check_keypoints(ann, num_keypoints):
    """Why an annotation's keypoints are unusable, or None when they are fine (or absent)."""
    kp = ann.get("keypoints")
    if kp is None:
        return None
    if not (isinstance(kp, (list, tuple)) and len(kp) == 3 * num_keypoints):
        return f"keypoints not 3 x {num_keypoints} numbers"
    if not _finite(kp):
        return "number not finite (NaN or Inf)"
    if any(float(v) not in (0.0, 1.0, 2.0) for v in kp[2::3]):
        return "keypoint visibility not 0, 1 or 2"
    return None


def _coco_from(data):
    """A pycocotools COCO object of an annotation dict, indexed quietly."""
    coco = COCO()
    coco.dataset = data
    _quiet(coco.createIndex)                 # (pycocotools prints while indexing)
    return coco


def load_coco(ann_file):
    """The pycocotools COCO object of an annotation file, checked (``read_coco_json``) and
    with ``area`` and ``iscrowd`` filled in where missing (``fill_area_and_iscrowd``): ready
    for COCOeval. Raises DataError naming the file."""
    coco = _coco_from(read_coco_json(ann_file))
    fill_area_and_iscrowd(coco, ann_file)
    return coco


def fill_area_and_iscrowd(coco, ann_file):
    """Give every annotation the ``area`` (of its mask; of its bbox when it has no usable
    mask) and ``iscrowd`` (0) that COCOeval reads, and one with ``keypoints`` its
    ``num_keypoints`` (the count of v > 0, which COCOeval's keypoint evaluation reads); one
    warning counts what was filled."""
    no_area = no_crowd = no_count = 0
    for ann in coco.dataset["annotations"]:
        if isinstance(ann.get("keypoints"), list) and "num_keypoints" not in ann:
            no_count += 1
            try:
                ann["num_keypoints"] = sum(float(v) > 0 for v in ann["keypoints"][2::3])
            except (TypeError, ValueError):                   # a skipped, malformed annotation
                ann["num_keypoints"] = 0
        if "iscrowd" not in ann:
            ann["iscrowd"] = 0
            no_crowd += 1
        if "area" not in ann:
            no_area += 1
            try:
                ann["area"] = float(mask_utils.area(coco.annToRLE(ann)))
            except (KeyError, TypeError, ValueError, IndexError, AttributeError):
                # a skipped annotation (no such image, no usable mask): its bbox's area
                try:
                    ann["area"] = max(float(ann["bbox"][2]) * float(ann["bbox"][3]), 0.0)
                except (TypeError, ValueError, IndexError, KeyError):
                    ann["area"] = 0.0
    if no_area or no_crowd:
        warnings.warn(f"{ann_file}: {no_area} annotations had no 'area' (filled from their "
                      f"masks), {no_crowd} had no 'iscrowd' (filled with 0)", stacklevel=3)
    if no_count:
        warnings.warn(f"{ann_file}: {no_count} annotations had no 'num_keypoints' (filled with"
                      f" their count of keypoints with v > 0)", stacklevel=3)


def _name_ids(ids):
    shown = ", ".join(str(i) for i in ids[:IDS_NAMED])
    more = f" and {len(ids) - IDS_NAMED} more" if len(ids) > IDS_NAMED else ""
    return f"annotation{'s' * (len(ids) != 1)} {shown}{more}"


def check_image(path, height=None, width=None):
    """What is wrong with the image file at ``path`` (expected ``width`` x ``height``; None:
    any size), as a phrase, or None (see ``CocoDataset.check_images``)."""
    path = Path(path)
    if not path.is_file():
        return "image file not found"
    try:
        with Image.open(path) as im:
            if height is not None and im.size != (width, height):
                return (f"image is {im.size[0]}x{im.size[1]} but the annotation file says "
                        f"{width}x{height}")
            if im.format == "PNG":
                im.verify()                      # every chunk's CRC, through IEND
            elif im.format == "JPEG":
                im.draft("RGB", (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))
                im.load()                        # all the scan data, at 1/8 scale
            else:
                im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return f"unreadable or corrupt image ({type(e).__name__})"
    return None


def check_images(datasets):
    """Check every image of the data sets (``CocoDataset.check_images``); raise ONE DataError
    (one line) that names every bad file and what is wrong with it."""
    problems = [p for ds in datasets for p in ds.check_images()]
    if not problems:
        return
    total = sum(len(ds) for ds in datasets)
    raise DataError(f"{len(problems)} bad image{'s' * (len(problems) != 1)} of {total}: "
                    + "; ".join(f"{path}: {why}" for path, why in problems))


def _quiet(fn, *args, **kwargs):
    """Call fn with its prints (pycocotools talks on stdout) swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)
