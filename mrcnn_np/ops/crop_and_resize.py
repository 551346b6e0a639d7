"""crop_and_resize: TensorFlow's ``tf.image.crop_and_resize``, the RoI extractor of matterport's
Mask R-CNN (its ``PyramidROIAlign`` layer).

It samples the box's *corners*: an ``S_h x S_w`` crop puts its first and last samples exactly
on the box edges and spaces the others evenly, one bilinear sample per output cell, no
averaging. (RoIAlign instead puts samples at bin *centres* and averages several per bin.)

Boxes: we keep the repo's convention, ``(x1, y1, x2, y2)`` in pixels, here *pixel-centre*
coordinates -- pixel ``i`` of the map sits at coordinate ``i`` -- after multiplying by
``spatial_scale``. TensorFlow takes normalized ``(y1, x1, y2, x2)`` with ``0 -> pixel 0`` and
``1 -> pixel H - 1``; to convert, ``x_ours = x_tf * (W - 1)``, ``y_ours = y_tf * (H - 1)``
(and ``spatial_scale=1``). With these conventions the formulas are TensorFlow's:

    y_p = y1 + p * (y2 - y1) / (S_h - 1)        p = 0 .. S_h - 1      (S_h > 1)
    y_0 = (y1 + y2) / 2                                               (S_h = 1)

A sample with ``y < 0`` or ``y > H - 1`` (or the same for x) takes ``extrapolation_value``;
otherwise it blends rows ``floor(y)`` and ``ceil(y)`` with weights ``1 - (y - floor(y))`` and
``y - floor(y)``.

As in RoIAlign the weights are separable, so one box and one channel is two matrix products,
``out[c] = Ay @ image[b, c] @ Ax.T`` (plus the extrapolation value where a sample is off the
map), and the backward is the transpose, ``dimage[b, c] += Ay.T @ dout[r, c] @ Ax``.

Gradient: to ``image`` only. (TensorFlow also differentiates the box coordinates; Mask R-CNN
does not use that gradient -- proposals are constants -- so we leave it out.)
"""
import numpy as np

from ._backend import DEFAULT_BACKEND, resolve_backend
from .roi_align import axis_matrix, pair, window


def corner_positions(lo, hi, crop):
    """Where crop_and_resize samples along one axis: lo, hi [R] box edges (feature pixels,
    pixel-centre coordinates); crop: S. Returns [R, S]: ``lo + p * (hi - lo) / (S - 1)``, or
    the centre ``(lo + hi) / 2`` when S = 1."""
    T = lo.dtype.type
    p = np.arange(crop).astype(T)[None, :]                                # [1, S]
    if crop > 1:
        return lo[:, None] + p * (hi - lo)[:, None] / T(crop - 1)         # [R, S]
    return T(0.5) * (lo + hi)[:, None]                                    # [R, 1]


def corner_axis(lo, hi, crop, size):
    """Corner-aligned sample positions along one axis, for every box.

    lo, hi: [R] box edges in feature pixels (pixel-centre coordinates); crop: S; size: H or W.
    Returns ``low, high`` [R, S, 1] int64, ``w_low, w_high`` [R, S, 1] (0 off the map) and
    ``inside`` [R, S] bool.
    """
    T = lo.dtype.type
    pos = corner_positions(lo, hi, crop)                                  # [R, S]
    with np.errstate(invalid="ignore"):
        inside = (pos >= 0) & (pos <= size - 1)                           # [R, S]
    pos = np.where(inside, pos, T(0))
    low = np.floor(pos).astype(np.int64)                                  # top / left
    high = np.ceil(pos).astype(np.int64)                                  # bottom / right
    frac = pos - low.astype(T)                                            # [R, S]
    w_low = np.where(inside, T(1) - frac, T(0))
    w_high = np.where(inside, frac, T(0))
    return low[..., None], high[..., None], w_low[..., None], w_high[..., None], inside


def crop_and_resize_forward(image, boxes, box_indices, crop_size, spatial_scale=1.0,
                            extrapolation_value=0.0, backend=DEFAULT_BACKEND):
    """crop_and_resize forward.

    Inputs:
    - image: [N, C, H, W] float32 or float64.
    - boxes: [R, 4] = (x1, y1, x2, y2), pixel-centre coordinates times ``1 / spatial_scale``.
      x2 < x1 is allowed and flips the crop, as in TensorFlow.
    - box_indices: [R] int, the image of each box.
    - crop_size: S or (S_h, S_w); extrapolation_value: the value of samples off the map.
    - backend: accepted as every op accepts it, but crop_and_resize (an ablation, not on the
      model's path) has no kernel: "numpy" and "auto" run this file, "numba" and "cuda" raise
      ``BackendUnavailable``.
    Returns ``(out, cache)``; out [R, C, S_h, S_w].
    """
    resolve_backend(backend, "crop_and_resize", kernels=())
    image = np.asarray(image)
    N, C, H, W = image.shape
    T = image.dtype.type
    boxes = np.asarray(boxes, image.dtype).reshape(-1, 4) * T(spatial_scale)  # [R, 4]
    box_indices = np.asarray(box_indices, np.int64).reshape(-1)               # [R]
    S_h, S_w = pair(crop_size)
    R = len(boxes)
    out = np.zeros((R, C, S_h, S_w), image.dtype)                             # [R, C, S_h, S_w]
    cache = dict(boxes=boxes, box_indices=box_indices, image_shape=image.shape,
                 crop_size=(S_h, S_w))
    if R == 0:
        return out, cache
    *ys, in_y = corner_axis(boxes[:, 1], boxes[:, 3], S_h, H)
    *xs, in_x = corner_axis(boxes[:, 0], boxes[:, 2], S_w, W)
    for r in range(R):
        Ay = axis_matrix(*(a[r] for a in ys), H)                          # [S_h, H]
        Ax = axis_matrix(*(a[r] for a in xs), W)                          # [S_w, W]
        y0, y1 = window(Ay)
        x0, x1 = window(Ax)
        if y1 > y0 and x1 > x0:
            patch = image[box_indices[r], :, y0:y1, x0:x1]                # [C, h, w]
            out[r] = Ay[:, y0:y1] @ patch @ Ax[:, x0:x1].T                # [C, S_h, S_w]
        off_map = ~(in_y[r][:, None] & in_x[r][None, :])                  # [S_h, S_w]
        out[r][:, off_map] = extrapolation_value
    return out, cache


def crop_and_resize_backward(dout, cache):
    """crop_and_resize backward: dimage [N, C, H, W] (fresh). Each output cell's gradient goes
    to the (up to) four pixels of its one sample with their bilinear weights; cells that took
    the extrapolation value pass nothing. The boxes get no gradient."""
    boxes, box_indices = cache["boxes"], cache["box_indices"]
    N, C, H, W = cache["image_shape"]
    S_h, S_w = cache["crop_size"]
    dout = np.asarray(dout, boxes.dtype)
    dimage = np.zeros((N, C, H, W), boxes.dtype)                          # [N, C, H, W]
    if len(boxes) == 0:
        return dimage
    *ys, _ = corner_axis(boxes[:, 1], boxes[:, 3], S_h, H)
    *xs, _ = corner_axis(boxes[:, 0], boxes[:, 2], S_w, W)
    for r in range(len(boxes)):
        Ay = axis_matrix(*(a[r] for a in ys), H)                          # [S_h, H]
        Ax = axis_matrix(*(a[r] for a in xs), W)                          # [S_w, W]
        y0, y1 = window(Ay)
        x0, x1 = window(Ax)
        if y1 > y0 and x1 > x0:
            dimage[box_indices[r], :, y0:y1, x0:x1] += Ay[:, y0:y1].T @ dout[r] @ Ax[:, x0:x1]
    return dimage


def crop_and_resize(image, boxes, box_indices, crop_size, spatial_scale=1.0,
                    extrapolation_value=0.0, backend=DEFAULT_BACKEND):
    """Returns out [R, C, S_h, S_w] only (see ``crop_and_resize_forward``)."""
    return crop_and_resize_forward(image, boxes, box_indices, crop_size, spatial_scale,
                                   extrapolation_value, backend)[0]
