"""RoIWarp: the middle row of the Mask R-CNN paper's Table 2c (from MNC, Dai et al. 2016).

RoIWarp quantizes the RoI exactly as RoIPool does, then resamples it bilinearly, as RoIAlign
does. So it isolates the one thing the paper blames: with RoIWarp, masks are about as bad as
with RoIPool, because the *quantization*, not the max, is what misaligns them.

Our definition (the paper gives no formula; we choose the one that changes a single thing):

    roi_warp(input, rois, ...) == roi_align(input, rois_q, ..., spatial_scale=1, aligned=False)
    rois_q = (batch_index, round(x1 * s), round(y1 * s), round(x2 * s), round(y2 * s))

with RoIPool's rounding (C's ``round``: halves away from zero) and RoIAlign's default
``aligned=False`` sampling. Everything else -- sample grid, out-of-map rules, averaging -- is
RoIAlign's, so comparing ``roi_warp`` with ``roi_align`` shows the cost of rounding alone.

Gradient: to ``input`` only, through RoIAlign's backward on the rounded RoIs; the rounded
coordinates have zero gradient almost everywhere, and proposals are constants anyway.
"""
import numpy as np

from ._backend import DEFAULT_BACKEND
from .roi_align import (convert_boxes_to_roi_format, roi_align_backward, roi_align_forward,
                        round_half_away)


def quantize_rois(rois, spatial_scale):
    """RoIPool's quantization: rois [R, 5] in image coordinates -> [R, 5] in whole feature
    pixels, ``(batch_index, round(x1 * s), round(y1 * s), round(x2 * s), round(y2 * s))``."""
    T = rois.dtype.type
    rois_q = rois.copy()                                                  # [R, 5]
    rois_q[:, 1:] = round_half_away(rois[:, 1:] * T(spatial_scale))
    return rois_q


def roi_warp_forward(input, rois, output_size, spatial_scale=1.0, sampling_ratio=2,
                     backend=DEFAULT_BACKEND):
    """RoIWarp forward.

    Inputs: input [N, C, H, W]; rois [R, 5] = (batch_index, x1, y1, x2, y2) in image
    coordinates (or a list of [K_i, 4] boxes per image); output_size S or (S_h, S_w);
    spatial_scale; sampling_ratio (samples per bin per axis, <= 0 adaptive; default 2, as the
    FPN box head's RoIAlign); backend as for ``roi_align``, whose kernels run it (RoIWarp
    has no kernel of its own: after the rounding it *is* RoIAlign).
    Returns ``(out, cache)``; out [R, C, S_h, S_w].
    """
    input = np.asarray(input)
    rois = convert_boxes_to_roi_format(rois, input.dtype)                 # [R, 5]
    rois_q = quantize_rois(rois, spatial_scale)                           # [R, 5] feature pixels
    return roi_align_forward(input, rois_q, output_size, 1.0, sampling_ratio, False, backend)


def roi_warp_backward(dout, cache):
    """RoIWarp backward: dinput [N, C, H, W], RoIAlign's scatter on the quantized RoIs."""
    return roi_align_backward(dout, cache)


def roi_warp(input, rois, output_size, spatial_scale=1.0, sampling_ratio=2,
             backend=DEFAULT_BACKEND):
    """Like ``roi_align``'s signature; returns out [R, C, S_h, S_w] only."""
    return roi_warp_forward(input, rois, output_size, spatial_scale, sampling_ratio, backend)[0]
