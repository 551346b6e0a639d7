"""Greedy NMS on the GPU (numba.cuda): the tiled bitmask algorithm of torchvision's CUDA NMS.

Greedy NMS (chapter 06) walks the boxes in descending score and drops every later box whose
IoU with a kept box exceeds ``iou_threshold``. That walk is sequential; the IoUs it looks at
are not. So the work is split in two:

1. **On the GPU, every IoU at once, as bits.** The score-sorted boxes are cut into tiles of
   64 (``THREADS_PER_BLOCK``, the width of a 64-bit word). Block ``(col_start, row_start)``
   compares the 64 boxes of row tile ``row_start`` with the 64 boxes of column tile
   ``col_start``: the column boxes are staged in shared memory, each thread takes one row box,
   and sets bit ``i`` of its word when ``IoU(row box, column box i) > iou_threshold``. The
   result is ``mask [N, col_blocks]`` uint64: row ``i``'s word ``j`` says which boxes of tile
   ``j`` box ``i`` would suppress. Only later boxes can be suppressed, so blocks below the
   diagonal (``row_start > col_start``) do nothing and, on the diagonal, a box only looks at
   the boxes after it.
2. **On the host, the sequential keep pass over the bits.** ``remv`` (one word per tile)
   holds the boxes removed so far; box ``i`` is kept if its bit in ``remv`` is clear, and
   then its mask row is OR-ed into ``remv``. That is N steps of ``col_blocks`` word-ORs: tiny.
   (It is an ``@njit`` loop; torchvision runs the same loop in a one-block kernel.)

What each version bought: the NumPy NMS (``mrcnn_np/ops/nms.py``) computes one IoU row per kept
box, O(N * K) work in K sequential NumPy calls; this kernel does all N^2 / 2 IoUs in parallel
and leaves only bit operations to the sequential part.

Order and ties: boxes are sorted by **stable** descending score, so equal scores keep the lower
index first -- the rule of the NumPy ``nms``. ``keep`` lists kept indices into the original
``boxes``, in descending score. IoU is ``inter / (area_a + area_b - inter)`` with area
``(x2 - x1) * (y2 - y1)``; a pair whose union is 0 (two empty boxes) has IoU 0 here and never
suppresses (torchvision gets 0/0 = NaN, which also never compares greater).
"""
import numba
import numpy as np
from numba import cuda

THREADS_PER_BLOCK = 64  # boxes per tile = bits per uint64 mask word

_kernels = {}


def _nms_kernel(dtype):
    """The mask kernel, compiled for float32 or float64 boxes (shared memory needs the type)."""
    key = np.dtype(dtype)
    if key in _kernels:
        return _kernels[key]
    nb_type = numba.float32 if key == np.float32 else numba.float64

    @cuda.jit(device=True)
    def devIoU(a0, a1, a2, a3, b0, b1, b2, b3):
        left = max(a0, b0)
        right = min(a2, b2)
        top = max(a1, b1)
        bottom = min(a3, b3)
        width = max(right - left, 0)
        height = max(bottom - top, 0)
        interS = width * height
        Sa = (a2 - a0) * (a3 - a1)
        Sb = (b2 - b0) * (b3 - b1)
        union = Sa + Sb - interS
        if union <= 0:
            return 0.0
        return interS / union

    @cuda.jit
    def nms_kernel(n_boxes, iou_threshold, dev_boxes, dev_mask):
        row_start = cuda.blockIdx.y                     # tile of boxes that may suppress
        col_start = cuda.blockIdx.x                     # tile of boxes that may be suppressed
        if row_start > col_start:
            return                                      # only later boxes are suppressed
        row_size = min(n_boxes - row_start * THREADS_PER_BLOCK, THREADS_PER_BLOCK)
        col_size = min(n_boxes - col_start * THREADS_PER_BLOCK, THREADS_PER_BLOCK)
        tid = cuda.threadIdx.x

        block_boxes = cuda.shared.array((THREADS_PER_BLOCK, 4), nb_type)
        if tid < col_size:
            for k in range(4):
                block_boxes[tid, k] = dev_boxes[THREADS_PER_BLOCK * col_start + tid, k]
        cuda.syncthreads()

        if tid < row_size:
            cur_box_idx = THREADS_PER_BLOCK * row_start + tid
            a0 = dev_boxes[cur_box_idx, 0]
            a1 = dev_boxes[cur_box_idx, 1]
            a2 = dev_boxes[cur_box_idx, 2]
            a3 = dev_boxes[cur_box_idx, 3]
            t = np.uint64(0)
            start = tid + 1 if row_start == col_start else 0
            for i in range(start, col_size):
                if devIoU(a0, a1, a2, a3, block_boxes[i, 0], block_boxes[i, 1],
                          block_boxes[i, 2], block_boxes[i, 3]) > iou_threshold:
                    t |= np.uint64(1) << np.uint64(i)
            dev_mask[cur_box_idx, col_start] = t

    _kernels[key] = nms_kernel
    return nms_kernel


@numba.njit(cache=True)
def keep_pass(mask, n_boxes):
    """The sequential part: mask [N, col_blocks] uint64 -> keep flags [N] bool (sorted order)."""
    col_blocks = mask.shape[1]
    remv = np.zeros(col_blocks, np.uint64)              # boxes removed so far, as bits
    keep = np.zeros(n_boxes, np.bool_)
    one = np.uint64(1)
    for i in range(n_boxes):
        nblock = i // THREADS_PER_BLOCK
        inblock = np.uint64(i % THREADS_PER_BLOCK)
        if (remv[nblock] >> inblock) & one == 0:        # not suppressed by a kept box
            keep[i] = True
            for j in range(nblock, col_blocks):
                remv[j] |= mask[i, j]
    return keep


def nms_mask_device(d_boxes_sorted, iou_threshold):
    """Launch the mask kernel on score-sorted device boxes [N, 4]; returns device mask."""
    n_boxes = d_boxes_sorted.shape[0]
    col_blocks = (n_boxes + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
    d_mask = cuda.to_device(np.zeros((n_boxes, col_blocks), np.uint64))
    kernel = _nms_kernel(d_boxes_sorted.dtype)
    kernel[(col_blocks, col_blocks), THREADS_PER_BLOCK](
        n_boxes, float(iou_threshold), d_boxes_sorted, d_mask)
    return d_mask


def nms_cuda(boxes, scores, iou_threshold):
    """Greedy NMS with the bitmask kernel.

    Inputs: boxes [N, 4] = (x1, y1, x2, y2) float32/float64 (host); scores [N]; iou_threshold:
    a box is dropped when its IoU with a kept, higher-scoring box is *greater* than this.
    Returns keep [K] int64 (host): indices into ``boxes``, in descending score order.
    """
    boxes = np.asarray(boxes)
    if not np.issubdtype(boxes.dtype, np.floating):
        boxes = boxes.astype(np.float32)
    scores = np.asarray(scores)
    n_boxes = len(boxes)
    if n_boxes == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")                            # [N] stable descending
    d_boxes = cuda.to_device(np.ascontiguousarray(boxes[order]))          # [N, 4]
    mask = nms_mask_device(d_boxes, iou_threshold).copy_to_host()         # [N, col_blocks]
    keep = keep_pass(mask, n_boxes)                                       # [N] bool, sorted order
    return order[keep].astype(np.int64)                                   # [K]
