"""mrcnn-np: Mask R-CNN from scratch in NumPy, checked against torchvision.

Conventions, declared once for the whole repo
---------------------------------------------
Dimension letters (used in every shape comment, ``# [N, C, H, W]``):

    N  images in a batch          C  channels in        F  channels out (filters)
    H, W  height, width           kh, kw  kernel size   S  pooled size (7 or 14)
    A  anchors (all levels)       G  ground-truth boxes P  proposals per image
    R  RoIs (all images)          K  classes, background included (label 0 = background)
    D  detections                 M  mask size (28)     L  FPN levels

Boxes are ``(x1, y1, x2, y2)`` in pixels, continuous coordinates; area is
``(x2 - x1) * (y2 - y1)`` with no ``+1``. RoIs are ``[R, 5] = (batch_index, x1, y1, x2, y2)``.
Arrays are NCHW float32; gradient checks run in float64. Randomness goes through an explicit
``numpy.random.Generator``.

An op is a pair of plain functions: ``x_forward(...) -> (out, cache)`` and
``x_backward(dout, cache) -> grads``. torch/torchvision are never imported at run time,
except by the converter that reads a ``.pth`` file.
"""
__version__ = "0.1.0"


def __getattr__(name):
    # Imported on first use, so that ``import mrcnn_np.nn`` stays light for chapter 01.
    if name == "MaskRCNN":
        from .model import MaskRCNN
        return MaskRCNN
    if name in ("Config", "get_config"):
        from . import config
        return getattr(config, name)
    raise AttributeError(f"module 'mrcnn_np' has no attribute {name!r}")
