"""Pairwise IoU as one fused ``@numba.njit`` loop (reference: ``mrcnn_np/ops/boxes.py``).

What each version bought
------------------------
1. NumPy broadcasting (``box_iou_numpy``): five temporaries of ``[N, M, 2]`` or ``[N, M]``
   each pass through memory; for 261,888 anchors x 50 boxes that is ~300 MB of traffic.
2. This kernel: one pass, each IoU computed in registers from the two boxes and written
   once. The inner loop runs over the (few) boxes of ``boxes2`` with contiguous reads, so
   LLVM vectorises it. No ``fastmath``: the arithmetic is the reference's, operation for
   operation and in the same dtype, so the results are bit-identical (tested).

Single-threaded on purpose: the benchmark compares one core with one core.
"""
import numba
import numpy as np


@numba.njit(cache=True, error_model="numpy")  # 0/0 gives nan, as NumPy
def _box_iou_kernel(boxes1, boxes2, out, zero):
    n = boxes1.shape[0]
    m = boxes2.shape[0]
    area2 = np.empty(m, dtype=boxes2.dtype)                   # [M]
    for j in range(m):
        area2[j] = (boxes2[j, 2] - boxes2[j, 0]) * (boxes2[j, 3] - boxes2[j, 1])
    for i in range(n):
        x1 = boxes1[i, 0]
        y1 = boxes1[i, 1]
        x2 = boxes1[i, 2]
        y2 = boxes1[i, 3]
        area1 = (x2 - x1) * (y2 - y1)
        for j in range(m):
            w = max(min(x2, boxes2[j, 2]) - max(x1, boxes2[j, 0]), zero)  # right - left, >= 0
            h = max(min(y2, boxes2[j, 3]) - max(y1, boxes2[j, 1]), zero)  # bottom - top, >= 0
            inter = w * h
            out[i, j] = inter / (area1 + area2[j] - inter)


def box_iou_numba(boxes1, boxes2):
    """IoU of every pair: ``boxes1 [N, 4]``, ``boxes2 [M, 4]`` (same float dtype, C-contiguous)
    -> ``[N, M]``. Same numbers as ``mrcnn_np.ops.boxes.box_iou_numpy``."""
    out = np.empty((boxes1.shape[0], boxes2.shape[0]), dtype=boxes1.dtype)  # [N, M]
    if out.size == 0:
        return out
    _box_iou_kernel(boxes1, boxes2, out, boxes1.dtype.type(0))  # zero in the boxes' dtype
    return out
