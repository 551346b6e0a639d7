"""Box coding: boxes <-> regression deltas ``(dx, dy, dw, dh)`` (chapters 04 and 06).

A detector does not predict box corners; it predicts how to move and stretch a reference box
(an anchor or a proposal) ``(xa, ya, wa, ha)`` (centre, width, height) onto a target box
``(x, y, w, h)``. R-CNN's parameterisation (Girshick et al., Fast R-CNN, Eqn. 6-9)::

    dx = wx * (x - xa) / wa        dw = ww * log(w / wa)
    dy = wy * (y - ya) / ha        dh = wh * log(h / ha)

The weights ``(wx, wy, ww, wh)`` only rescale the deltas so that they have roughly unit
variance: ``(1, 1, 1, 1)`` for the RPN, ``(10, 10, 5, 5)`` for the box head (torchvision
``roi_heads.py``; Detectron's ``BBOX_REG_WEIGHTS``). Decoding inverts this, after clamping
``dw`` and ``dh`` at ``log(1000 / 16)`` so that ``exp`` cannot blow up (a box may grow at most
62.5x; torchvision ``_utils.py``, from Detectron).

Centres are ``x1 + 0.5 * w`` with ``w = x2 - x1`` (no ``+1``). The arithmetic follows
torchvision's ``BoxCoder`` operation for operation, in the input dtype.

Gradient: box coding is used on constants here (anchors, proposals and matched boxes get no
gradient, as in torchvision); the RPN and box-head losses differentiate the *predicted*
deltas, not this function.
"""
import math

import numpy as np

BBOX_XFORM_CLIP = math.log(1000.0 / 16)  # torchvision models/detection/_utils.py (Detectron)
RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)       # torchvision rpn.py: BoxCoder(weights=(1, 1, 1, 1))
BOX_HEAD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # torchvision roi_heads / faster_rcnn.py


def encode_boxes(reference_boxes, proposals, weights=RPN_WEIGHTS):
    """Deltas that move each ``proposals`` box onto its ``reference_boxes`` box.

    Args:
        reference_boxes: ``[R, 4] = (x1, y1, x2, y2)``, the targets (e.g. matched GT boxes).
        proposals: ``[R, 4] = (x1, y1, x2, y2)``, the boxes encoded against (e.g. anchors).
        weights: ``(wx, wy, ww, wh)``.
    Returns:
        ``[R, 4] = (dx, dy, dw, dh)`` in the dtype of ``reference_boxes``.
    """
    reference_boxes = np.asarray(reference_boxes)
    dtype = reference_boxes.dtype if reference_boxes.dtype in (np.float32, np.float64) else np.float32
    reference_boxes = reference_boxes.astype(dtype, copy=False)
    proposals = np.asarray(proposals).astype(dtype, copy=False)
    wx, wy, ww, wh = np.asarray(weights, dtype=dtype)          # 4 scalars in the boxes' dtype

    ex_widths = proposals[:, 2] - proposals[:, 0]                # [R] proposal (anchor) w
    ex_heights = proposals[:, 3] - proposals[:, 1]               # [R]
    ex_ctr_x = proposals[:, 0] + 0.5 * ex_widths                 # [R]
    ex_ctr_y = proposals[:, 1] + 0.5 * ex_heights                # [R]

    gt_widths = reference_boxes[:, 2] - reference_boxes[:, 0]    # [R] target w
    gt_heights = reference_boxes[:, 3] - reference_boxes[:, 1]   # [R]
    gt_ctr_x = reference_boxes[:, 0] + 0.5 * gt_widths           # [R]
    gt_ctr_y = reference_boxes[:, 1] + 0.5 * gt_heights          # [R]

    with np.errstate(divide="ignore", invalid="ignore"):
        targets_dx = wx * (gt_ctr_x - ex_ctr_x) / ex_widths      # [R]
        targets_dy = wy * (gt_ctr_y - ex_ctr_y) / ex_heights     # [R]
        targets_dw = ww * np.log(gt_widths / ex_widths)          # [R]
        targets_dh = wh * np.log(gt_heights / ex_heights)        # [R]
    return np.stack((targets_dx, targets_dy, targets_dw, targets_dh), axis=1)  # [R, 4]


def decode_boxes(rel_codes, boxes, weights=RPN_WEIGHTS, bbox_xform_clip=BBOX_XFORM_CLIP):
    """Apply deltas to reference boxes (torchvision's ``BoxCoder.decode_single``).

    Args:
        rel_codes: ``[R, 4*K]`` deltas, ``(dx, dy, dw, dh)`` for each of K classes in turn.
        boxes: ``[R, 4] = (x1, y1, x2, y2)`` reference boxes (anchors or proposals).
        weights: ``(wx, wy, ww, wh)``, the ones used to encode.
        bbox_xform_clip: ``dw`` and ``dh`` are clamped to at most this before ``exp``.
    Returns:
        ``[R, 4*K]`` boxes, ``(x1, y1, x2, y2)`` for each class in turn, in ``rel_codes``'s
        dtype. (Boxes are not clipped to the image here.)
    """
    rel_codes = np.asarray(rel_codes)
    if rel_codes.dtype not in (np.float32, np.float64):
        rel_codes = rel_codes.astype(np.float32)
    boxes = np.asarray(boxes).astype(rel_codes.dtype, copy=False)
    widths = boxes[:, 2] - boxes[:, 0]                           # [R]
    heights = boxes[:, 3] - boxes[:, 1]                          # [R]
    ctr_x = boxes[:, 0] + 0.5 * widths                           # [R]
    ctr_y = boxes[:, 1] + 0.5 * heights                          # [R]

    wx, wy, ww, wh = (float(v) for v in weights)  # Python floats: arithmetic stays in dtype
    dx = rel_codes[:, 0::4] / wx                                 # [R, K]
    dy = rel_codes[:, 1::4] / wy                                 # [R, K]
    dw = np.minimum(rel_codes[:, 2::4] / ww, float(bbox_xform_clip))  # [R, K] clamp above
    dh = np.minimum(rel_codes[:, 3::4] / wh, float(bbox_xform_clip))  # [R, K]

    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]           # [R, K]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]          # [R, K]
    pred_w = np.exp(dw) * widths[:, None]                        # [R, K]
    pred_h = np.exp(dh) * heights[:, None]                       # [R, K]

    half_w = 0.5 * pred_w                                        # [R, K] centre to corner
    half_h = 0.5 * pred_h                                        # [R, K]
    pred_boxes = np.stack((pred_ctr_x - half_w, pred_ctr_y - half_h,
                           pred_ctr_x + half_w, pred_ctr_y + half_h), axis=2)  # [R, K, 4]
    return pred_boxes.reshape(rel_codes.shape[0], 4 * dx.shape[1])  # [R, 4*K]


class BoxCoder:
    """torchvision's ``BoxCoder`` on NumPy arrays.

    Args:
        weights: ``(wx, wy, ww, wh)``; ``(1, 1, 1, 1)`` for the RPN, ``(10, 10, 5, 5)`` for the
            box head.
        bbox_xform_clip: upper clamp of ``dw``, ``dh`` before ``exp`` (``log(1000 / 16)``).
    """

    def __init__(self, weights=RPN_WEIGHTS, bbox_xform_clip=BBOX_XFORM_CLIP):
        self.weights = tuple(float(w) for w in weights)
        self.bbox_xform_clip = float(bbox_xform_clip)

    def encode(self, reference_boxes, proposals):
        """``reference_boxes [R, 4]``, ``proposals [R, 4]`` -> deltas ``[R, 4]``.

        (torchvision's ``encode`` takes lists per image and splits the result; concatenate
        the images' boxes first. This is its ``encode_single``.)
        """
        return encode_boxes(reference_boxes, proposals, self.weights)

    def encode_single(self, reference_boxes, proposals):
        return self.encode(reference_boxes, proposals)

    def decode_single(self, rel_codes, boxes):
        """``rel_codes [R, 4*K]``, ``boxes [R, 4]`` -> ``[R, 4*K]`` boxes."""
        return decode_boxes(rel_codes, boxes, self.weights, self.bbox_xform_clip)

    def decode(self, rel_codes, boxes):
        """``rel_codes [R, 4*K]`` (or ``[R*K, 4]``), ``boxes [R, 4]`` -> ``[R, K, 4]`` boxes.

        ``boxes`` may also be a list of per-image ``[R_i, 4]`` arrays, as in torchvision.
        With ``R = 0`` the result is ``[0, K, 4]`` (torchvision returns the 2-D array).
        """
        if isinstance(boxes, (list, tuple)):
            boxes = np.concatenate([np.asarray(b).reshape(-1, 4) for b in boxes], axis=0)
        boxes = np.asarray(boxes)
        rel_codes = np.asarray(rel_codes)
        num_boxes = boxes.shape[0]
        if num_boxes > 0:
            rel_codes = rel_codes.reshape(num_boxes, -1)            # [R, 4*K]
        pred = self.decode_single(rel_codes, boxes)                  # [R, 4*K]
        return pred.reshape(num_boxes, pred.shape[1] // 4, 4)        # [R, K, 4]
