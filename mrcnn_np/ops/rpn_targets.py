"""RPN training targets: a label and a regression target for every anchor (chapter 04).

For one image, as torchvision's ``RegionProposalNetwork.assign_targets_to_anchors`` followed
by its sampler:

1. IoU of every GT box with every anchor, ``[G, A]``.
2. ``Matcher(0.7, 0.3, allow_low_quality_matches=True)``: each anchor gets its best GT, or
   -1 (IoU < 0.3, background) or -2 (in between, ignored); each GT's best anchors are matched
   even below 0.7 (Faster R-CNN paper, Sec. 3.1.2).
3. Labels: matched -> 1, below -> 0, between -> -1.
4. Regression targets: the deltas (``BoxCoder((1, 1, 1, 1))``) from each anchor to its
   matched GT box. As in torchvision they are computed for every anchor, with unmatched
   anchors pointing at GT 0; only the sampled positives enter the loss.
5. Sampling: 256 anchors, at most half positive (``BalancedPositiveNegativeSampler``);
   every anchor not sampled gets label -1.

An image with no GT: every anchor is background before sampling, matched index -1, and the
regression targets are zeros (torchvision uses zero boxes there too).

No gradient: labels, matches and targets are constants for the RPN loss.
"""
import numpy as np

from ..config import Config
from ._backend import DEFAULT_BACKEND
from .box_coder import RPN_WEIGHTS, BoxCoder
from .boxes import box_iou
from .matcher import BalancedPositiveNegativeSampler, Matcher

# The defaults are the Config's (config.py says where each number comes from), which are also
# torchvision's: IoU 0.7 / 0.3, 256 anchors per image, at most half of them positive.


def match_anchors(anchors, gt_boxes, fg_iou=Config.rpn_fg_iou_thresh,
                  bg_iou=Config.rpn_bg_iou_thresh, backend=DEFAULT_BACKEND):
    """Steps 1-3: labels before sampling, and the matcher's output.

    Args:
        anchors: ``[A, 4] = (x1, y1, x2, y2)``.
        gt_boxes: ``[G, 4] = (x1, y1, x2, y2)``; ``G`` may be 0.
        backend: for :func:`box_iou`.
    Returns:
        labels: ``[A]`` int64 in ``{1, 0, -1}`` (positive, negative, ignored).
        matched_idxs: ``[A]`` int64, GT index or ``Matcher.BELOW_LOW_THRESHOLD`` /
        ``Matcher.BETWEEN_THRESHOLDS``.
    """
    anchors = np.asarray(anchors)
    gt_boxes = np.asarray(gt_boxes).reshape(-1, 4)
    num_anchors = anchors.shape[0]
    if gt_boxes.shape[0] == 0:  # background image: all negative
        return (np.zeros(num_anchors, dtype=np.int64),
                np.full(num_anchors, Matcher.BELOW_LOW_THRESHOLD, dtype=np.int64))
    matcher = Matcher(fg_iou, bg_iou, allow_low_quality_matches=True)
    match_quality_matrix = box_iou(gt_boxes, anchors, backend=backend)  # [G, A]
    matched_idxs = matcher(match_quality_matrix)                          # [A]
    labels = (matched_idxs >= 0).astype(np.int64)                         # [A] 1 / 0
    labels[matched_idxs == Matcher.BELOW_LOW_THRESHOLD] = 0               # background
    labels[matched_idxs == Matcher.BETWEEN_THRESHOLDS] = -1               # ignored
    return labels, matched_idxs


def build_rpn_targets(anchors, gt_boxes, rng, fg_iou=Config.rpn_fg_iou_thresh,
                      bg_iou=Config.rpn_bg_iou_thresh,
                      batch_size_per_image=Config.rpn_batch_size_per_image,
                      positive_fraction=Config.rpn_positive_fraction, box_coder=None,
                      backend=DEFAULT_BACKEND):
    """Labels and regression targets for every anchor of one image.

    Args:
        anchors: ``[A, 4] = (x1, y1, x2, y2)``.
        gt_boxes: ``[G, 4] = (x1, y1, x2, y2)``; ``G = 0`` is an image with no objects.
        rng: ``numpy.random.Generator`` for the sampler.
        fg_iou, bg_iou: the matcher's high and low thresholds.
        batch_size_per_image, positive_fraction: the sampler's settings.
        box_coder: a :class:`BoxCoder`; default ``BoxCoder((1, 1, 1, 1))``.
        backend: for :func:`box_iou`.
    Returns:
        labels: ``[A]`` int64 after sampling: 1 sampled positive, 0 sampled negative,
            -1 not sampled (or ignored).
        reg_targets: ``[A, 4] = (dx, dy, dw, dh)`` from each anchor to its matched GT box,
            in the anchors' float dtype (zeros when ``G = 0``).
        matched_idxs: ``[A]`` int64, the matcher's output (before sampling).
    """
    anchors = np.asarray(anchors)
    gt_boxes = np.asarray(gt_boxes).reshape(-1, 4).astype(anchors.dtype, copy=False)
    box_coder = box_coder or BoxCoder(RPN_WEIGHTS)
    labels, matched_idxs = match_anchors(anchors, gt_boxes, fg_iou, bg_iou, backend)  # [A], [A]
    if gt_boxes.shape[0] == 0:
        reg_targets = np.zeros(anchors.shape, dtype=anchors.dtype)                    # [A, 4]
    else:
        matched_gt_boxes = gt_boxes[np.maximum(matched_idxs, 0)]                      # [A, 4]
        reg_targets = box_coder.encode(matched_gt_boxes, anchors)                     # [A, 4]
    sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
    (pos_mask,), (neg_mask,) = sampler([labels], rng)                                 # [A], [A]
    sampled = np.full(labels.shape, -1, dtype=np.int64)                               # [A]
    sampled[pos_mask] = 1
    sampled[neg_mask] = 0
    return sampled, reg_targets, matched_idxs
