"""Multi-scale RoIAlign over FPN levels (FPN paper, Sec. 4.2, Eqn. 1), as torchvision's
``MultiScaleRoIAlign`` does it.

Each RoI is pooled from *one* pyramid level, chosen by its size:

    k = floor(k0 + log2(sqrt(w * h) / 224) + eps),   clamped to [k_min, k_max]

A 224 x 224 RoI (an ImageNet-sized object) goes to level k0 = 4 (P4, stride 16); each halving
of the RoI's side moves it one level finer. torchvision adds ``eps = 1e-6`` before the floor
so that a RoI of exactly 112 x 112 lands on level 3, not on level 2 by a rounding error.
(matterport rounds instead of flooring: ``k = round(...)``; we follow torchvision.)

The level's spatial scale is inferred from the shapes, as torchvision does: for each feature
map, ``2 ** round(log2(H_l / H_img))`` with ``H_img`` the largest image height in the batch
(the padded batch height). So P2..P5 of an 800 x 1088 batch get 1/4, 1/8, 1/16, 1/32, and
``k_min, k_max = 2, 5``.

``aligned``: torchvision's ``MultiScaleRoIAlign`` calls RoIAlign with ``aligned=False``. That
samples every RoI half a feature pixel off from where the box really is (at P5, half a pixel
is 16 image pixels), and widens RoIs smaller than one feature pixel. torchvision's pretrained
weights were trained that way, so importing them needs ``aligned=False`` (our default); a
model trained from scratch gets the correct geometry with ``aligned=True`` (detectron2's
choice, "ROIAlignV2").

Backward: each RoI's gradient goes back through RoIAlign to the level it was pooled from;
levels that pooled no RoI get zeros. The RoIs, and the level choice, get no gradient.

The ablations of chapter 14 (the Mask R-CNN paper's Table 2) change two things here, and
nothing else: ``pooler_forward`` takes

- ``extractor``: what pools a RoI on its level -- "align" (RoIAlign, the default and the only
  path above), "pool" (RoIPool), "warp" (RoIWarp) or "crop_and_resize"; ``reduction`` "max"
  makes the bilinear extractors ("align", "warp") keep each bin's largest sample;
- ``stride``: None (each RoI's level by Eqn. 1), or 16 or 32: every RoI from the one level of
  that stride (P4 or P5), our small-scale stand-in for the paper's C4 and C5 backbones.

``multi_scale_roi_align_forward`` is ``pooler_forward`` with the defaults.
"""
import numpy as np

from ._backend import DEFAULT_BACKEND
from .crop_and_resize import crop_and_resize_backward, crop_and_resize_forward
from .roi_align import (convert_boxes_to_roi_format, pair, roi_align_backward, roi_align_forward,
                        roi_align_max_backward, roi_align_max_forward)
from .roi_pool import roi_pool_backward, roi_pool_forward
from .roi_warp import quantize_rois

CANONICAL_SCALE = 224  # FPN paper, Eqn. 1: an ImageNet pre-training size...
CANONICAL_LEVEL = 4    # FPN paper, Eqn. 1: ...maps to k0 = 4 (P4)
LEVEL_EPS = 1e-6       # torchvision poolers.py, LevelMapper: guards exact powers of two


class LevelMapper:
    """Map each RoI to an FPN level by Eqn. 1 of the FPN paper, exactly as torchvision does.

    Calling it with boxes [R, 4] = (x1, y1, x2, y2) in image pixels (or a list of [K_i, 4],
    one per image) returns [R] int64 level *indices*: 0 for level ``k_min``, ...,
    ``k_max - k_min`` for level ``k_max``. Zero-area boxes go to ``k_min``.
    """

    def __init__(self, k_min, k_max, canonical_scale=CANONICAL_SCALE,
                 canonical_level=CANONICAL_LEVEL, eps=LEVEL_EPS):
        self.k_min = k_min
        self.k_max = k_max
        self.s0 = canonical_scale
        self.lvl0 = canonical_level
        self.eps = eps

    def levels(self, boxes):
        """The unclamped-then-clamped level k (not the index) of each box: [R] int64."""
        if isinstance(boxes, (list, tuple)):
            boxes = np.concatenate([np.asarray(b).reshape(-1, 4) for b in boxes], 0)
        boxes = np.asarray(boxes)                                          # [R, 4]
        if not np.issubdtype(boxes.dtype, np.floating):
            boxes = boxes.astype(np.float32)
        T = boxes.dtype.type
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])   # [R], no +1
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.sqrt(area)                                              # [R] RoI "size"
            k = np.floor(self.lvl0 + np.log2(s / self.s0) + T(self.eps))   # [R] float
        k = np.clip(np.nan_to_num(k, nan=self.k_min), self.k_min, self.k_max)
        return k.astype(np.int64)

    def __call__(self, boxes):
        return self.levels(boxes) - self.k_min                             # [R] in 0..L-1


def infer_scale(feature_shape, image_size):
    """torchvision's ``_infer_scale``: ``2 ** round(log2(H_l / H_img))`` (from the heights)."""
    approx = float(feature_shape[-2]) / float(image_size[0])
    return float(2.0 ** float(np.round(np.log2(np.float32(approx)))))


def setup_scales(feature_shapes, image_sizes, canonical_scale=CANONICAL_SCALE,
                 canonical_level=CANONICAL_LEVEL):
    """Scales of each level and the LevelMapper, from the feature shapes and image sizes.

    image_sizes: a list of ``(h, w)`` (one per image) or one ``(h, w)`` (the padded batch).
    """
    if len(image_sizes) == 0:
        raise ValueError("image_sizes should not be empty")
    if np.ndim(image_sizes) == 1:
        image_sizes = [tuple(image_sizes)]
    max_h = max(int(s[0]) for s in image_sizes)
    max_w = max(int(s[1]) for s in image_sizes)
    scales = [infer_scale(shape, (max_h, max_w)) for shape in feature_shapes]
    k_min = int(-np.log2(np.float32(scales[0])))
    k_max = int(-np.log2(np.float32(scales[-1])))
    return scales, LevelMapper(k_min, k_max, canonical_scale, canonical_level)


# ------------------------------------------------------------------ one level's extractor ---
EXTRACTORS = ("align", "pool", "warp", "crop_and_resize")
REDUCTIONS = ("avg", "max")


def _cpu_backend(backend, kernels):
    """The backend for an extractor with ``kernels``: the asked one where it has it, else
    "auto" (its fastest CPU path); "numpy" stays "numpy" (no kernel anywhere)."""
    return backend if backend in ("numpy", "auto") or backend in kernels else "auto"


def extract_forward(feature, rois, output_size, spatial_scale, sampling_ratio=2, aligned=False,
                    extractor="align", reduction="avg", backend=DEFAULT_BACKEND):
    """Pool RoIs from ONE feature map with the chosen extractor.

    feature [N, C, H, W]; rois [R, 5] = (batch_index, x1, y1, x2, y2) in image pixels;
    output_size (S_h, S_w); spatial_scale: the map's feature pixels per image pixel.

    - "align": ``roi_align`` (``reduction`` "avg") or ``roi_align_max`` ("max");
    - "warp": the same after RoIPool's rounding of the RoI (``roi_warp``: spatial scale 1,
      ``aligned=False`` on the rounded RoI, whatever ``aligned`` says);
    - "pool": ``roi_pool`` (a max over whole pixels; sampling_ratio, aligned, reduction unused);
    - "crop_and_resize": one bilinear sample per cell, the first and last on the box's edges,
      the box scaled with no half-pixel shift, as matterport calls it (``aligned`` and
      ``reduction`` unused).

    Ops without the backend's kernel run their fastest CPU path (see ``_cpu_backend``).
    Returns ``(out [R, C, S_h, S_w], cache)``, the cache tagged with its extractor.
    """
    if extractor not in EXTRACTORS or reduction not in REDUCTIONS:
        raise ValueError(f"extractor must be one of {EXTRACTORS} and reduction one of "
                         f"{REDUCTIONS}, got {extractor!r}, {reduction!r}")
    if extractor == "warp":  # RoIWarp = RoIAlign on RoIPool's rounded RoI (ops/roi_warp.py)
        rois, spatial_scale, aligned = quantize_rois(rois, spatial_scale), 1.0, False
    if extractor in ("align", "warp") and reduction == "avg":
        out, cache = roi_align_forward(feature, rois, output_size, spatial_scale,
                                       sampling_ratio, aligned, backend)
        return out, (roi_align_backward, cache)
    if extractor in ("align", "warp"):  # the max reduction
        out, cache = roi_align_max_forward(feature, rois, output_size, spatial_scale,
                                           sampling_ratio, aligned, _cpu_backend(backend, ()))
        return out, (roi_align_max_backward, cache)
    if extractor == "pool":
        out, cache = roi_pool_forward(feature, rois, output_size, spatial_scale,
                                      _cpu_backend(backend, ("numba",)))
        return out, (roi_pool_backward, cache)
    out, cache = crop_and_resize_forward(feature, rois[:, 1:], rois[:, 0].astype(np.int64),
                                         output_size, spatial_scale, 0.0,
                                         _cpu_backend(backend, ()))
    return out, (crop_and_resize_backward, cache)


def extract_backward(dout, cache):
    """dout [R, C, S_h, S_w] -> dfeature [N, C, H, W] (fresh), by the extractor's backward."""
    backward, inner = cache
    return backward(dout, inner)


# ----------------------------------------------------------------------- over the levels ---
def pooler_forward(features, rois, image_sizes, output_size=7, sampling_ratio=2, aligned=False,
                   extractor="align", reduction="avg", stride=None,
                   canonical_scale=CANONICAL_SCALE, canonical_level=CANONICAL_LEVEL,
                   backend=DEFAULT_BACKEND):
    """Pool each RoI from its FPN level (or from the one level of ``stride``).

    Inputs:
    - features: list of L arrays [N, C, H_l, W_l], finest first (P2, P3, P4, P5).
    - rois: [R, 5] = (batch_index, x1, y1, x2, y2) in image pixels, or a list of [K_i, 4].
    - image_sizes: list of (h, w) per image, or the padded batch's (h, w).
    - output_size, sampling_ratio, aligned: passed to the extractor (torchvision's box head
      uses 7, 2, False; its mask head 14, 2, False).
    - extractor, reduction: see ``extract_forward`` ("align", "avg": torchvision's pooler).
    - stride: None: each RoI's level by Eqn. 1 (one level given: that one); 16 or 32: every
      RoI from the level whose scale is 1/stride (ValueError if there is none).
    - backend: the extractor's (see ``mrcnn_np/ops/_backend.py``).
    Returns ``(out, cache)``; out [R, C, S_h, S_w], RoIs in their input order.
    """
    features = [np.asarray(f) for f in features]
    dtype = features[0].dtype
    N, C = features[0].shape[:2]
    rois = convert_boxes_to_roi_format(rois, dtype)                        # [R, 5]
    S_h, S_w = pair(output_size)
    scales, mapper = setup_scales([f.shape for f in features], image_sizes,
                                  canonical_scale, canonical_level)
    if stride is not None:
        if 1.0 / stride not in scales:
            raise ValueError(f"no feature level of stride {stride} (the levels' strides are "
                             f"{[round(1 / s) for s in scales]})")
        levels = np.full(len(rois), scales.index(1.0 / stride), np.int64)  # [R] all one level
    elif len(features) == 1:
        levels = np.zeros(len(rois), np.int64)                             # one level: no mapping
    else:
        levels = mapper(rois[:, 1:])                                       # [R] in 0..L-1
    out = np.zeros((len(rois), C, S_h, S_w), dtype)                        # [R, C, S_h, S_w]
    per_level = []                                                         # (RoI indices, cache)
    for level, (feature, scale) in enumerate(zip(features, scales)):
        idx = np.flatnonzero(levels == level)                              # [R_l]
        out_l, cache_l = extract_forward(feature, rois[idx], (S_h, S_w), scale, sampling_ratio,
                                         aligned, extractor, reduction, backend)
        out[idx] = out_l                                                   # [R_l, C, S_h, S_w]
        per_level.append((idx, cache_l))
    cache = dict(levels=levels, scales=scales, mapper=mapper, per_level=per_level)
    return out, cache


def pooler_backward(dout, cache):
    """dout [R, C, S_h, S_w] -> list of L arrays dfeatures[l] [N, C, H_l, W_l] (fresh)."""
    return [extract_backward(dout[idx], cache_l) for idx, cache_l in cache["per_level"]]


def multi_scale_roi_align_forward(features, rois, image_sizes, output_size=7, sampling_ratio=2,
                                  aligned=False, canonical_scale=CANONICAL_SCALE,
                                  canonical_level=CANONICAL_LEVEL, backend=DEFAULT_BACKEND):
    """torchvision's ``MultiScaleRoIAlign``: ``pooler_forward`` with RoIAlign (avg) on the
    levels of Eqn. 1. Returns ``(out [R, C, S_h, S_w], cache)``."""
    return pooler_forward(features, rois, image_sizes, output_size, sampling_ratio, aligned,
                          canonical_scale=canonical_scale, canonical_level=canonical_level,
                          backend=backend)


def multi_scale_roi_align_backward(dout, cache):
    """dout [R, C, S_h, S_w] -> list of L arrays dfeatures[l] [N, C, H_l, W_l] (fresh)."""
    return pooler_backward(dout, cache)


def multi_scale_roi_align(features, rois, image_sizes, output_size=7, sampling_ratio=2,
                          aligned=False, canonical_scale=CANONICAL_SCALE,
                          canonical_level=CANONICAL_LEVEL, backend=DEFAULT_BACKEND):
    """Returns out [R, C, S_h, S_w] only (see ``multi_scale_roi_align_forward``)."""
    return multi_scale_roi_align_forward(features, rois, image_sizes, output_size,
                                         sampling_ratio, aligned, canonical_scale,
                                         canonical_level, backend)[0]
