"""Greedy non-maximum suppression, plain and per class (chapter 06).

Greedy NMS: visit the boxes from the highest score down; keep a box unless an already-kept
box overlaps it with IoU ``> iou_threshold``, in which case it is suppressed. The result is
the kept indices, in the order they were kept, that is by decreasing score.

The tie rule (stated once, shared by every backend)
---------------------------------------------------
Boxes are visited in a *stable* sort by descending score, so among equal scores the lower
index comes first (is kept first, and suppresses the others). torchvision's CPU kernel sorts
with ``scores.sort(descending=True)``, which is not stable in general: we measured that it
keeps index order for up to 16 boxes (the insertion-sort range) and scrambles equal scores
above that. So our results equal torchvision's whenever the scores are distinct, and also
for ties among at most 16 boxes; for larger tied sets torchvision's choice is unspecified
and ours is the stable one. The CUDA kernel (``kernels/nms_cuda.py``) uses the same rule.

Arithmetic, as torchvision's CPU kernel: the IoU is computed in the boxes' dtype as
``inter / (area_i + area_j - inter)`` and compared with the threshold in float64 (C++
promotes ``float`` to ``double``). The IoU of two zero-area boxes is ``nan``, and ``nan >
t`` is false, so zero-area boxes never suppress one another.

No gradient flows through NMS: it returns indices, which are constants for the model.
"""
import numpy as np

from ._backend import DEFAULT_BACKEND, BackendUnavailable, resolve_backend

# torchvision ops/boxes.py, batched_nms: on the CPU it runs one NMS per class when
# boxes.numel() > 4000 (that is, more than 1,000 boxes) and the coordinate trick otherwise.
BATCHED_NMS_PER_CLASS_ABOVE_NUMEL = 4000


def score_order(scores):
    """``[N]`` int64 indices sorting ``scores [N]`` by descending score, ties by lower index."""
    return np.argsort(-np.asarray(scores), kind="stable").astype(np.int64)  # [N]


def box_iou_pairs(box, others):
    """IoU of one box ``[4]`` with each of ``others [M, 4]`` -> ``[M]``, with the arithmetic of
    torchvision's CPU NMS kernel: ``inter / (area + areas - inter)`` in the boxes' dtype."""
    others = np.asarray(others)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])  # [M]
    w = np.maximum(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0)
    h = np.maximum(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0)
    inter = w * h                                                           # [M]
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area + areas - inter)                               # [M]; 0/0 = nan


def nms_numpy(boxes, scores, iou_threshold):
    """The readable definition of :func:`nms`: one Python step per kept box."""
    order = score_order(scores)                                 # [N] visiting order
    b = np.asarray(boxes)[order]                                # [N, 4] in score order
    thresh = np.float64(iou_threshold)                          # compare in float64
    n = len(order)
    suppressed = np.zeros(n, dtype=bool)                        # [N]
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)                                          # box i survives: keep it
        ovr = box_iou_pairs(b[i], b[i + 1:])                    # [N - i - 1] with later boxes
        suppressed[i + 1:] |= ovr > thresh                      # suppress the overlapping ones
    return order[np.asarray(keep, dtype=np.int64)]              # [K] original indices


def _nms_numba(boxes, scores, iou_threshold):
    from kernels.nms_numba import nms_sorted_xsweep
    order = score_order(scores)                                 # [N]
    b = np.asarray(boxes)[order]                                # [N, 4] in score order
    cols = [np.ascontiguousarray(b[:, k]) for k in range(4)]    # x1, y1, x2, y2: [N] each
    pos = nms_sorted_xsweep(*cols, np.float64(iou_threshold), b.dtype.type(0))  # [K] positions
    return order[pos]                                           # [K] original indices


def _nms_cuda(boxes, scores, iou_threshold):
    try:
        from kernels.nms_cuda import nms_cuda
    except ImportError as e:
        raise BackendUnavailable(
            "backend='cuda' needs kernels/nms_cuda.py (nms_cuda(boxes, scores, iou_threshold)); "
            f"importing it failed: {e}") from e
    return np.asarray(nms_cuda(boxes, scores, iou_threshold), dtype=np.int64)


def nms(boxes, scores, iou_threshold, backend=DEFAULT_BACKEND):
    """Greedy non-maximum suppression (torchvision's ``nms``).

    Args:
        boxes: ``[N, 4] = (x1, y1, x2, y2)``, float32 or float64.
        scores: ``[N]`` scores; higher is better.
        iou_threshold: a box is suppressed by a kept box when their IoU is ``> iou_threshold``.
        backend: ``"numpy"``, ``"numba"``, ``"cuda"`` or ``"auto"`` (see ``_backend.py``).
    Returns:
        keep: ``[K]`` int64 indices into ``boxes``, by decreasing score (ties: lower index
        first; see the module docstring).
    """
    backend = resolve_backend(backend, "nms")
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    if boxes.dtype not in (np.float32, np.float64):
        boxes = boxes.astype(np.float32)
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    if backend == "numpy":
        return nms_numpy(boxes, scores, iou_threshold)
    if backend == "numba":
        return _nms_numba(boxes, scores, iou_threshold)
    return _nms_cuda(boxes, scores, iou_threshold)


def batched_nms_coordinate_trick(boxes, scores, idxs, iou_threshold, backend=DEFAULT_BACKEND):
    """Per-class NMS by shifting each class's boxes far apart, then one :func:`nms`.

    Each box is moved by ``idxs * (max_coordinate + 1)`` in x and y, so boxes of different
    classes can no longer overlap. The shift is done in the boxes' dtype, exactly as
    torchvision does; with float32 and large offsets it rounds the coordinates slightly.
    """
    if boxes.shape[0] == 0:
        resolve_backend(backend, "nms")
        return np.zeros(0, dtype=np.int64)
    max_coordinate = boxes.max()
    offsets = idxs.astype(boxes.dtype) * (max_coordinate + boxes.dtype.type(1))  # [N]
    boxes_for_nms = boxes + offsets[:, None]                                    # [N, 4]
    return nms(boxes_for_nms, scores, iou_threshold, backend=backend)


def batched_nms_per_class(boxes, scores, idxs, iou_threshold, backend=DEFAULT_BACKEND):
    """Per-class NMS as one NMS per class (torchvision's "vanilla" path), merged by score."""
    backend = resolve_backend(backend, "nms")
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    if backend == "numba":  # one pass: a box only suppresses its own class (same result)
        from kernels.nms_numba import nms_classwise_sorted
        order = score_order(scores)                                    # [N]
        b = boxes[order]                                               # [N, 4]
        cols = [np.ascontiguousarray(b[:, k]) for k in range(4)]       # [N] each
        classes = np.ascontiguousarray(idxs[order], dtype=np.int64)    # [N]
        pos = nms_classwise_sorted(*cols, classes, np.float64(iou_threshold), b.dtype.type(0))
        return order[pos]                                              # [K]
    keep_mask = np.zeros(len(scores), dtype=bool)                      # [N]
    for class_id in np.unique(idxs):
        curr = np.nonzero(idxs == class_id)[0]                         # [N_c]
        curr_keep = nms(boxes[curr], scores[curr], iou_threshold, backend=backend)
        keep_mask[curr[curr_keep]] = True
    keep = np.nonzero(keep_mask)[0]                                    # [K] increasing
    return keep[score_order(scores[keep])]                             # [K] by score


def batched_nms(boxes, scores, idxs, iou_threshold, backend=DEFAULT_BACKEND):
    """NMS done independently per category (torchvision's ``batched_nms``).

    Boxes of different categories never suppress each other. As torchvision on the CPU, this
    uses the coordinate trick for ``boxes.size <= 4000`` and one NMS per class above that;
    the two differ only where the trick's float32 shift rounds an IoU across the threshold.

    Args:
        boxes: ``[N, 4] = (x1, y1, x2, y2)``.
        scores: ``[N]``.
        idxs: ``[N]`` integer category of each box (any integers, e.g. FPN levels).
        iou_threshold: suppress when IoU ``> iou_threshold``.
        backend: as in :func:`nms`.
    Returns:
        keep: ``[K]`` int64 indices, by decreasing score (ties: lower index first).
    """
    boxes = np.asarray(boxes)
    if boxes.dtype not in (np.float32, np.float64):
        boxes = boxes.astype(np.float32)
    scores = np.asarray(scores)
    idxs = np.asarray(idxs)
    if boxes.shape[0] == 0:
        resolve_backend(backend, "nms")
        return np.zeros(0, dtype=np.int64)
    if boxes.size > BATCHED_NMS_PER_CLASS_ABOVE_NUMEL:
        return batched_nms_per_class(boxes, scores, idxs, iou_threshold, backend=backend)
    return batched_nms_coordinate_trick(boxes, scores, idxs, iou_threshold, backend=backend)


def nms_steps(boxes, scores, iou_threshold):
    """Greedy NMS, one record per pass, for teaching (chapter 06). Same result as :func:`nms`.

    Args:
        boxes: ``[N, 4] = (x1, y1, x2, y2)``.
        scores: ``[N]``.
        iou_threshold: suppress when IoU ``> iou_threshold``.
    Returns:
        A list with one dict per kept box, in the order kept: ``{"keep": i, "suppressed":
        [j, ...], "ious": [IoU(i, j), ...], "remaining": [k, ...]}``, all original indices;
        ``remaining`` are the boxes still in play after the pass, by decreasing score.
    """
    boxes = np.asarray(boxes)
    order = list(score_order(scores))                           # [N] still in play
    steps = []
    while order:
        i, rest = order[0], order[1:]
        ious = box_iou_pairs(boxes[i], boxes[rest]) if rest else np.zeros(0)  # [len(rest)]
        gone = [j for j, v in zip(rest, ious) if v > np.float64(iou_threshold)]
        order = [j for j, v in zip(rest, ious) if not v > np.float64(iou_threshold)]
        steps.append({"keep": int(i), "suppressed": [int(j) for j in gone],
                      "ious": [float(v) for j, v in zip(rest, ious) if j in gone],
                      "remaining": [int(j) for j in order]})
    return steps

