"""Anchors over the FPN levels (chapter 03).

An anchor is a fixed reference box. At every location of every FPN level the RPN scores a
few anchors of different shapes and regresses deltas from them (``box_coder.py``). Two
presets, because the two reference implementations differ in four conventions:

==========================  ===================================  ===================================
convention                  torchvision (``AnchorGenerator``)    matterport (``matterport_anchors``)
==========================  ===================================  ===================================
aspect ratio                ``h / w``                            ``w / h``
anchor centre               ``(i * stride, j * stride)``         ``(i * stride, j * stride)`` too
base anchor corners         rounded to integers (half to even)   not rounded
order inside a location     ratio-major, then size               scale-major, then ratio
image size                  the padded batch (any h, w)          1024 x 1024 squares
==========================  ===================================  ===================================

(Some code puts centres at ``(i + 0.5) * stride``, the centre of the feature cell; neither of
these does. Chapter 03's "Rosetta stone" table tests each convention.)

Order of the anchors (torchvision's, so that a torchvision RPN head's outputs line up anchor
for anchor): level-major; within a level location-major, y (row) then x (column); within a
location, the ``num_anchors_per_location()`` base anchors. That is anchor ``a`` at row ``y`` and
column ``x`` of level ``l`` is row ``offset_l + (y * W_l + x) * A_l + a``. The RPN head's
outputs ``[N, A_l, H_l, W_l]`` must be flattened as ``(y, x, a)`` to match.

Anchors are constants: no gradient flows into them.
"""
import math

import numpy as np

TORCHVISION_SIZES = ((32,), (64,), (128,), (256,), (512,))   # maskrcnn_resnet50_fpn, P2..P6
TORCHVISION_ASPECT_RATIOS = ((0.5, 1.0, 2.0),) * 5          # h / w, maskrcnn_resnet50_fpn

# matterport Mask_RCNN mrcnn/config.py
MATTERPORT_SCALES = (32, 64, 128, 256, 512)                  # RPN_ANCHOR_SCALES, one per level
MATTERPORT_RATIOS = (0.5, 1.0, 2.0)                          # RPN_ANCHOR_RATIOS, w / h
MATTERPORT_STRIDES = (4, 8, 16, 32, 64)                      # BACKBONE_STRIDES, P2..P6
MATTERPORT_ANCHOR_STRIDE = 1                                 # RPN_ANCHOR_STRIDE
MATTERPORT_IMAGE_SIZE = (1024, 1024)                         # IMAGE_MAX_DIM, square mode


def base_anchors(sizes, aspect_ratios):
    """Zero-centred anchors for one level, as torchvision's ``generate_anchors``.

    For ratio ``r = h / w`` and size ``s``: ``h = s * sqrt(r)``, ``w = s / sqrt(r)``, so the
    area stays ``s**2``. Corners are ``(-w/2, -h/2, w/2, h/2)``, rounded half to even.
    Computed in float32, as torchvision does.

    Args:
        sizes: ``(s, ...)`` anchor sizes (square roots of areas) in pixels.
        aspect_ratios: ``(r, ...)`` ratios ``h / w``.
    Returns:
        ``[len(aspect_ratios) * len(sizes), 4] = (x1, y1, x2, y2)`` float32, ratio-major
        (all sizes of the first ratio, then the next ratio, ...).
    """
    scales = np.asarray(sizes, dtype=np.float32)               # [S]
    ratios = np.asarray(aspect_ratios, dtype=np.float32)       # [Rr]
    h_ratios = np.sqrt(ratios)                                 # [Rr]
    w_ratios = 1 / h_ratios                                    # [Rr]
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)     # [Rr*S]
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)     # [Rr*S]
    return np.round(np.stack([-ws, -hs, ws, hs], axis=1) / 2)  # [Rr*S, 4]


def grid_anchors(cell_anchors, grid_size, stride):
    """Every base anchor at every location of one feature map.

    Args:
        cell_anchors: ``[A_l, 4]`` zero-centred anchors.
        grid_size: ``(H_l, W_l)`` of the feature map.
        stride: ``(stride_h, stride_w)`` in pixels; location ``(y, x)`` is centred at
            ``(x * stride_w, y * stride_h)``.
    Returns:
        ``[H_l * W_l * A_l, 4]``, ordered ``(y, x, a)``.
    """
    grid_height, grid_width = grid_size
    stride_height, stride_width = stride
    shifts_x = np.arange(grid_width, dtype=np.int64) * stride_width   # [W_l]
    shifts_y = np.arange(grid_height, dtype=np.int64) * stride_height  # [H_l]
    shift_y, shift_x = np.meshgrid(shifts_y, shifts_x, indexing="ij")  # [H_l, W_l] each
    shift_x = shift_x.reshape(-1)                                      # [H_l*W_l]
    shift_y = shift_y.reshape(-1)
    shifts = np.stack((shift_x, shift_y, shift_x, shift_y), axis=1)    # [H_l*W_l, 4]
    out = shifts[:, None, :].astype(cell_anchors.dtype) + cell_anchors[None, :, :]  # [HW, A_l, 4]
    return out.reshape(-1, 4)                                          # [H_l*W_l*A_l, 4]


class AnchorGenerator:
    """torchvision's ``AnchorGenerator`` (the ``torchvision`` preset by default).

    Args:
        sizes: one tuple of sizes per level (default ``(32,), (64,), ..., (512,)`` on P2..P6).
        aspect_ratios: one tuple of ``h / w`` ratios per level (default ``(0.5, 1, 2)``).
    """

    def __init__(self, sizes=TORCHVISION_SIZES, aspect_ratios=TORCHVISION_ASPECT_RATIOS):
        if not isinstance(sizes[0], (list, tuple)):
            sizes = tuple((s,) for s in sizes)
        if not isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = (tuple(aspect_ratios),) * len(sizes)
        if len(sizes) != len(aspect_ratios):
            raise ValueError("sizes and aspect_ratios need one entry per level")
        self.sizes = tuple(tuple(s) for s in sizes)
        self.aspect_ratios = tuple(tuple(r) for r in aspect_ratios)
        self.cell_anchors = [base_anchors(s, r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def num_anchors_per_location(self):
        """``[L]`` anchors per feature-map location of each level."""
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def strides(self, image_size, feature_sizes):
        """``[(stride_h, stride_w)] * L``: ``image_size // feature_size`` (integer division,
        as torchvision; e.g. 800 // 25 = 32 but 800 // 13 = 61 for a rounded-up P6)."""
        h, w = image_size
        return [(h // g[0], w // g[1]) for g in feature_sizes]

    def anchors_per_level(self, image_size, feature_sizes, dtype=np.float32):
        """List of ``[H_l * W_l * A_l, 4]`` anchors, one per level (see :meth:`__call__`)."""
        if len(feature_sizes) != len(self.cell_anchors):
            raise ValueError(f"expected {len(self.cell_anchors)} feature sizes, got {len(feature_sizes)}")
        return [grid_anchors(cell.astype(dtype), g, s) for cell, g, s in
                zip(self.cell_anchors, feature_sizes, self.strides(image_size, feature_sizes))]

    def __call__(self, image_size, feature_sizes, dtype=np.float32):
        """All anchors of one image, in torchvision's order.

        Args:
            image_size: ``(h, w)`` of the padded batch tensor (the same for every image of
                a batch, so one array serves them all).
            feature_sizes: ``[(H_l, W_l)] * L``, the FPN feature-map sizes.
            dtype: float dtype of the result (the features' dtype in torchvision).
        Returns:
            ``[A, 4] = (x1, y1, x2, y2)``, ``A = sum_l H_l * W_l * A_l``, level-major, then
            ``(y, x, a)``.
        """
        return np.concatenate(self.anchors_per_level(image_size, feature_sizes, dtype), axis=0)

    def num_anchors_per_level(self, feature_sizes):
        """``[L]`` anchor counts ``H_l * W_l * A_l`` (for splitting ``[A]`` arrays by level)."""
        return [g[0] * g[1] * a for g, a in zip(feature_sizes, self.num_anchors_per_location())]


def matterport_feature_sizes(image_size=MATTERPORT_IMAGE_SIZE, strides=MATTERPORT_STRIDES):
    """``[(H_l, W_l)]``: ``ceil(image / stride)`` per level (matterport's backbone shapes)."""
    return [(int(math.ceil(image_size[0] / s)), int(math.ceil(image_size[1] / s))) for s in strides]


def matterport_anchors(image_size=MATTERPORT_IMAGE_SIZE, scales=MATTERPORT_SCALES,
                       ratios=MATTERPORT_RATIOS, feature_strides=MATTERPORT_STRIDES,
                       anchor_stride=MATTERPORT_ANCHOR_STRIDE):
    """matterport's pyramid anchors (``generate_pyramid_anchors``), as ``(x1, y1, x2, y2)``.

    One scale per level and three ratios ``r = w / h``: ``h = s / sqrt(r)``, ``w = s * sqrt(r)``,
    centred at ``(x * stride, y * stride)`` for every ``anchor_stride``-th location, not rounded.
    matterport itself returns ``(y1, x1, y2, x2)``; we keep the repo's ``(x1, y1, x2, y2)``.
    For a 1024 x 1024 image: ``3 * (256**2 + 128**2 + 64**2 + 32**2 + 16**2) = 261,888``.

    Returns:
        ``[A, 4] = (x1, y1, x2, y2)`` float32, level-major, then ``(y, x)``, then
        ``(scale, ratio)`` (matterport's order).
    """
    levels = []
    for scale, stride, (fh, fw) in zip(scales, feature_strides,
                                       matterport_feature_sizes(image_size, feature_strides)):
        r = np.asarray(ratios, dtype=np.float64)                              # [3] w / h
        heights = scale / np.sqrt(r)                                          # [3]
        widths = scale * np.sqrt(r)                                           # [3]
        cy = np.arange(0, fh, anchor_stride) * stride                         # [H_l]
        cx = np.arange(0, fw, anchor_stride) * stride                         # [W_l]
        cy, cx = np.meshgrid(cy, cx, indexing="ij")                           # [H_l, W_l]
        ctr = np.stack([cx.reshape(-1), cy.reshape(-1)], axis=1)              # [H_l*W_l, 2]
        half = np.stack([widths, heights], axis=1) / 2                        # [3, 2]
        boxes = np.concatenate([ctr[:, None] - half[None], ctr[:, None] + half[None]], axis=2)
        levels.append(boxes.reshape(-1, 4))                                   # [H_l*W_l*3, 4]
    return np.concatenate(levels, axis=0).astype(np.float32)                  # [A, 4]
