"""Box geometry: area, IoU, clipping, removing small boxes (chapter 03).

Boxes are ``(x1, y1, x2, y2)`` in pixels, continuous coordinates, and the area of a box is
``(x2 - x1) * (y2 - y1)`` with no ``+1`` (see ``mrcnn_np/__init__.py``). Each function keeps
torchvision's name, arguments and arithmetic (``torchvision/ops/boxes.py``), operation for
operation, so that float32 results agree bit for bit.

No function here has a backward: boxes that come out of them (anchors, proposals, matched
targets) are treated as constants by the model, as in torchvision.

Edge cases, chosen on purpose and tested:

- Zero-area boxes are allowed. Their IoU with a box of positive area is 0. The IoU of two
  zero-area boxes is ``0 / 0 = nan``, exactly as torchvision returns it.
- Empty inputs give empty outputs of the right shape: ``box_iou`` of ``[0, 4]`` and ``[M, 4]``
  is ``[0, M]``.
- Integer boxes are converted to float32 first (torchvision would keep integers for the area).
"""
import numpy as np

from ._backend import DEFAULT_BACKEND, resolve_backend


def _as_float_boxes(boxes):
    """``boxes`` as a float array (float32 and float64 kept, anything else -> float32)."""
    boxes = np.asarray(boxes)
    if boxes.dtype not in (np.float32, np.float64):
        boxes = boxes.astype(np.float32)
    return boxes


def box_area(boxes):
    """Area of each box, with no ``+1``.

    Args:
        boxes: ``[..., 4] = (x1, y1, x2, y2)``.
    Returns:
        ``[...]`` areas ``(x2 - x1) * (y2 - y1)``, in the boxes' dtype.
    """
    boxes = _as_float_boxes(boxes)
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])  # [...]


def box_inter_union(boxes1, boxes2):
    """Pairwise intersection and union areas.

    Args:
        boxes1: ``[N, 4] = (x1, y1, x2, y2)``.
        boxes2: ``[M, 4] = (x1, y1, x2, y2)``.
    Returns:
        inter: ``[N, M]`` intersection areas.
        union: ``[N, M]`` union areas, ``area1 + area2 - inter`` (in that order, as torchvision).
    """
    boxes1 = _as_float_boxes(boxes1)
    boxes2 = _as_float_boxes(boxes2)
    area1 = box_area(boxes1)                                    # [N]
    area2 = box_area(boxes2)                                    # [M]
    lt = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])   # [N, M, 2] = (left, top)
    rb = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])   # [N, M, 2] = (right, bottom)
    wh = np.maximum(rb - lt, 0)                                 # [N, M, 2] = (w, h), 0 if apart
    inter = wh[..., 0] * wh[..., 1]                             # [N, M]
    union = area1[:, None] + area2[None, :] - inter             # [N, M]
    return inter, union


def box_iou_numpy(boxes1, boxes2):
    """The readable definition of :func:`box_iou` (NumPy broadcasting)."""
    inter, union = box_inter_union(boxes1, boxes2)              # [N, M], [N, M]
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union                                    # [N, M]; 0/0 = nan


def box_iou(boxes1, boxes2, backend=DEFAULT_BACKEND):
    """Intersection over union of every pair of boxes (torchvision's ``box_iou``).

    Args:
        boxes1: ``[N, 4] = (x1, y1, x2, y2)``.
        boxes2: ``[M, 4] = (x1, y1, x2, y2)``.
        backend: ``"numpy"`` (broadcasting, the definition), ``"numba"`` (one fused loop in
            ``kernels/boxes_numba.py``, the same arithmetic, so the same bits), or ``"auto"``.
            There is no CUDA kernel for IoU; ``"cuda"`` raises ``BackendUnavailable``.
    Returns:
        ``[N, M]`` IoU in ``[0, 1]`` (``nan`` for two zero-area boxes), dtype of the boxes.
    """
    backend = resolve_backend(backend, "box_iou", kernels=("numba",))
    boxes1 = _as_float_boxes(boxes1)
    boxes2 = _as_float_boxes(boxes2)
    if boxes1.dtype != boxes2.dtype:
        dtype = np.result_type(boxes1, boxes2)
        boxes1, boxes2 = boxes1.astype(dtype), boxes2.astype(dtype)
    if backend == "numpy":
        return box_iou_numpy(boxes1, boxes2)
    from kernels.boxes_numba import box_iou_numba
    return box_iou_numba(np.ascontiguousarray(boxes1), np.ascontiguousarray(boxes2))


def clip_boxes_to_image(boxes, size):
    """Clamp box corners into the image (torchvision's ``clip_boxes_to_image``).

    Args:
        boxes: ``[..., 4] = (x1, y1, x2, y2)``.
        size: ``(h, w)`` of the image; x is clamped to ``[0, w]`` and y to ``[0, h]``.
    Returns:
        ``[..., 4]`` clipped boxes, a new array of the same dtype. A box wholly outside the
        image becomes a zero-width or zero-height box on the border.
    """
    boxes = _as_float_boxes(boxes)
    height, width = size
    out = np.empty_like(boxes)                                  # [..., 4]
    out[..., 0::2] = np.clip(boxes[..., 0::2], 0, width)        # x1, x2 in [0, w]
    out[..., 1::2] = np.clip(boxes[..., 1::2], 0, height)       # y1, y2 in [0, h]
    return out


def remove_small_boxes(boxes, min_size):
    """Indices of the boxes whose width and height are both ``>= min_size``.

    Args:
        boxes: ``[K, 4] = (x1, y1, x2, y2)``.
        min_size: a Python float; compared in the boxes' dtype, as torchvision does.
    Returns:
        ``[K']`` int64 indices of the boxes kept, increasing.
    """
    boxes = _as_float_boxes(boxes)
    min_size = float(min_size)    # a Python float compares in the array's dtype (NEP 50)
    ws = boxes[..., 2] - boxes[..., 0]                          # [K]
    hs = boxes[..., 3] - boxes[..., 1]                          # [K]
    keep = (ws >= min_size) & (hs >= min_size)                  # [K] bool
    return np.nonzero(keep)[0].astype(np.int64)                 # [K']
