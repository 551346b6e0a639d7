"""mrcnn_np.ops: detection geometry and RoI feature extractors, with torchvision's names.

Each op that torchvision also has keeps torchvision's signature and semantics, so tests and
students can call both libraries the same way. Ops with kernels take ``backend=`` (see
``mrcnn_np/ops/_backend.py``).
"""
from ._backend import BACKENDS, resolve_backend  # noqa: F401

# --- boxes, box coding, anchors, matching, sampling, proposals, NMS (chapters 03, 04, 06) ---

# --- RoI feature extractors and FPN level assignment (chapter 08) ---
