"""The proposal layer: RPN outputs -> a few hundred boxes per image (chapter 06).

It reproduces torchvision's ``RegionProposalNetwork`` from box decoding through
``filter_proposals``, step for step:

1. Per level, the ``pre_nms_top_n`` anchors with the highest objectness *logits* (2000 in
   training, 1000 in testing, per level; torchvision ``rpn_pre_nms_top_n_train/test``).
2. Decode their deltas against their anchors, weights ``(1, 1, 1, 1)``.
3. Scores: ``sigmoid(logit)``.
4. Clip the boxes to the image; drop boxes with a side ``< min_size`` (1e-3).
5. Drop scores ``< score_thresh`` (0.0: none in practice).
6. NMS at ``nms_thresh`` (0.7), separately per level (``batched_nms`` with the level as class).
7. Keep the ``post_nms_top_n`` best (2000 train / 1000 test, per image).

torchvision decodes every anchor before step 1; decoding is per anchor, so decoding only the
selected ones gives the same numbers and skips ~99% of the work at 1024 x 1024.

Tie rule: the top-k takes the larger logit first and, among equal logits, the lower anchor
index (a stable sort; ``torch.topk`` leaves ties unspecified). NMS ties: see ``nms.py``.

Flatten order: ``objectness [N, A]`` and ``deltas [N, A, 4]`` come level by level, each level's
RPN head output ``[N, A_l, H_l, W_l]`` flattened as ``(y, x, a)`` -- row, column, then anchor
at that location -- the order of ``AnchorGenerator`` (``anchors.py``).

No gradient flows through proposals: they are constants for the second stage (as in Faster
R-CNN and torchvision, which detach the deltas here). The RPN learns only from its own loss.
"""
import numpy as np

from ..config import Config
from ..nn.layers import sigmoid
from ._backend import DEFAULT_BACKEND
from .box_coder import RPN_WEIGHTS, decode_boxes
from .boxes import clip_boxes_to_image, remove_small_boxes
from .nms import batched_nms

RPN_MIN_SIZE = 1e-3  # torchvision rpn.py, self.min_size (not a setting: no Config field)


def top_n_idx(objectness, num_anchors_per_level, pre_nms_top_n):
    """Per level, the indices of the ``pre_nms_top_n`` largest logits, by decreasing logit.

    Args:
        objectness: ``[N, A]`` logits, level by level.
        num_anchors_per_level: ``[L]`` anchors per level, summing to ``A``.
        pre_nms_top_n: at most this many per level (all of a smaller level).
    Returns:
        ``[N, T]`` int64 indices into ``A``, ``T = sum_l min(pre_nms_top_n, A_l)``, level by
        level (ties: lower index first).
    """
    r = []
    offset = 0
    for num_anchors in num_anchors_per_level:
        ob = objectness[:, offset:offset + num_anchors]              # [N, A_l]
        k = min(pre_nms_top_n, num_anchors)
        order = np.argsort(-ob, axis=1, kind="stable")[:, :k]        # [N, k] descending
        r.append(order + offset)
        offset += num_anchors
    if not r:
        return np.zeros((objectness.shape[0], 0), dtype=np.int64)
    return np.concatenate(r, axis=1).astype(np.int64)                # [N, T]


def generate_proposals(objectness, deltas, anchors, image_sizes, num_anchors_per_level,
                       pre_nms_top_n, post_nms_top_n, nms_thresh=Config.rpn_nms_thresh,
                       min_size=RPN_MIN_SIZE, score_thresh=Config.rpn_score_thresh,
                       backend=DEFAULT_BACKEND):
    """RPN proposals for a batch (torchvision's decode + ``filter_proposals``).

    Args:
        objectness: ``[N, A]`` objectness logits (flatten order: module docstring).
        deltas: ``[N, A, 4] = (dx, dy, dw, dh)`` box deltas, same order.
        anchors: ``[A, 4] = (x1, y1, x2, y2)``, the same for every image of the batch.
        image_sizes: ``[(h, w)] * N``, each image's size before padding (boxes are clipped
            to it).
        num_anchors_per_level: ``[L]`` anchors per level, summing to ``A``.
        pre_nms_top_n: best anchors kept per level before NMS.
        post_nms_top_n: best boxes kept per image after NMS.
        nms_thresh: IoU threshold of the per-level NMS.
        min_size: boxes with width or height below this are dropped.
        score_thresh: boxes with ``sigmoid(logit) < score_thresh`` are dropped.
        backend: NMS backend (see ``nms.py``).
    Returns:
        boxes: list of N arrays ``[P_i, 4] = (x1, y1, x2, y2)``, by decreasing score.
        scores: list of N arrays ``[P_i]``, the matching ``sigmoid`` scores.
    """
    objectness = np.asarray(objectness)
    deltas = np.asarray(deltas)
    anchors = np.asarray(anchors).astype(deltas.dtype, copy=False)
    num_images = objectness.shape[0]
    objectness = objectness.reshape(num_images, -1)                   # [N, A]
    levels = np.concatenate([np.full(n, idx, dtype=np.int64)
                             for idx, n in enumerate(num_anchors_per_level)] +
                            [np.zeros(0, dtype=np.int64)])            # [A] level of each anchor

    top_idx = top_n_idx(objectness, num_anchors_per_level, pre_nms_top_n)  # [N, T]
    batch_idx = np.arange(num_images)[:, None]                         # [N, 1]
    logits = objectness[batch_idx, top_idx]                            # [N, T]
    lvl_all = levels[top_idx]                                          # [N, T]
    scores_all = sigmoid(logits)                                       # [N, T]

    final_boxes, final_scores = [], []
    for i in range(num_images):
        idx = top_idx[i]                                               # [T]
        boxes = decode_boxes(deltas[i, idx], anchors[idx], RPN_WEIGHTS)  # [T, 4]
        boxes = clip_boxes_to_image(boxes, image_sizes[i])             # [T, 4]
        scores, lvl = scores_all[i], lvl_all[i]                        # [T], [T]

        keep = remove_small_boxes(boxes, min_size)                     # drop tiny boxes
        boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]

        keep = np.nonzero(scores >= float(score_thresh))[0]            # ">=", as torchvision
        boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]

        keep = batched_nms(boxes, scores, lvl, nms_thresh, backend=backend)  # per level
        keep = keep[:post_nms_top_n]                                   # [P_i] best first
        final_boxes.append(boxes[keep])
        final_scores.append(scores[keep])
    return final_boxes, final_scores
