"""mrcnn_np.ops: detection geometry and RoI feature extractors, with torchvision's names.

Each op that torchvision also has keeps torchvision's signature and semantics, so tests and
students can call both libraries the same way. Ops with kernels take ``backend=`` (see
``mrcnn_np/ops/_backend.py``).
"""
from ._backend import BACKENDS, DEFAULT_BACKEND, BackendUnavailable, resolve_backend  # noqa: F401

# --- boxes, box coding, anchors, matching, sampling, proposals, NMS (chapters 03, 04, 06) ---
from .anchors import AnchorGenerator, matterport_anchors  # noqa: F401
from .box_coder import BoxCoder, decode_boxes, encode_boxes  # noqa: F401
from .boxes import box_area, box_iou, clip_boxes_to_image, remove_small_boxes  # noqa: F401
from .matcher import BalancedPositiveNegativeSampler, Matcher  # noqa: F401
from .nms import batched_nms, nms  # noqa: F401
from .proposals import generate_proposals  # noqa: F401
from .rpn_targets import build_rpn_targets  # noqa: F401

# --- RoI feature extractors and FPN level assignment (chapter 08) ---
from .crop_and_resize import (crop_and_resize, crop_and_resize_backward,  # noqa: F401
                              crop_and_resize_forward)
from .poolers import (LevelMapper, multi_scale_roi_align, multi_scale_roi_align_backward,  # noqa: F401
                      multi_scale_roi_align_forward)
from .roi_align import roi_align, roi_align_backward, roi_align_forward  # noqa: F401
from .roi_pool import roi_pool, roi_pool_backward, roi_pool_forward  # noqa: F401
from .roi_warp import roi_warp, roi_warp_backward, roi_warp_forward  # noqa: F401

# --- keypoints: targets, loss, heatmaps back to coordinates (chapter 15) ---
from .keypoints import (heatmaps_to_keypoints, keypoint_targets, keypointrcnn_inference,  # noqa: F401
                        keypointrcnn_loss, keypointrcnn_loss_backward, keypointrcnn_loss_forward,
                        keypoints_to_heatmap)
