"""The transform: normalize, resize and pad a list of images into one batch, and map results back.

This is torchvision's ``GeneralizedRCNNTransform`` (``models/detection/transform.py``) written
out in NumPy, number for number. Its three steps, for each image of a list of ``[3, H, W]``
images with values in 0..1:

1. **normalize**: ``(x - mean) / std`` per channel (ImageNet statistics by default).
2. **resize**: one scale for both axes, ``s = min(min_size / short_side, max_size / long_side)``,
   so the short side becomes ``min_size`` unless the long side would pass ``max_size``. The new
   size is ``floor(H * s), floor(W * s)``; the bilinear resampling then uses the ratio of the
   old to the new *integer* size (``recompute_scale_factor=True``), not ``s`` itself.
   Ground-truth boxes are scaled per axis by ``new / old``; masks are resized with
   nearest-neighbour sampling so they stay 0/1.
3. **pad**: every image is copied into the top-left corner of a zero canvas whose height and
   width are the batch maxima rounded up to a multiple of ``size_divisible`` (32 = the stride
   of the coarsest FPN level, so every level has an integer size).

``Transform.postprocess`` goes back: it scales detected boxes to the original image and pastes
each ``M x M`` mask into an image of the original size (``paste_masks_in_image``).

The two resamplers, ``interpolate_bilinear`` and ``interpolate_nearest``, reproduce
``torch.nn.functional.interpolate`` (``align_corners=False``) including its float32 arithmetic,
because a one-pixel difference in a resized size or a source index would make every later
number differ from torchvision.
"""
import math

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's maskrcnn_resnet50_fpn defaults
IMAGENET_STD = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------------------------
# resampling, as torch.nn.functional.interpolate(..., align_corners=False)
# ------------------------------------------------------------------------------------------------
def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def _output_size_and_scales(in_hw, size, scale_factor, recompute_scale_factor):
    """Output size and the per-axis scale torch hands to its kernel.

    Returns ``((out_h, out_w), (scale_h, scale_w))`` where a scale is ``None`` when the kernel
    must derive it from the sizes (``in / out``), or the user's factor ``s`` (the kernel then
    uses ``1 / s``). With a ``scale_factor`` the output size is ``floor(in * s)``, computed in
    float64 as torch does (``int(in * s)``).
    """
    if (size is None) == (scale_factor is None):
        raise ValueError("give exactly one of size and scale_factor")
    if size is not None:
        if recompute_scale_factor:
            raise ValueError("recompute_scale_factor is not meaningful with an explicit size")
        return tuple(int(s) for s in _pair(size)), (None, None)
    factors = tuple(float(f) for f in _pair(scale_factor))
    out = tuple(int(n * f) for n, f in zip(in_hw, factors))  # floor, in float64
    if recompute_scale_factor:
        return out, (None, None)  # the kernel sees only the integer sizes
    return out, factors


def _kernel_scale(in_size, out_size, factor, dtype):
    """torch's ``compute_scales_value``: ``1/factor`` if a factor was kept, else ``in/out``.

    Computed in ``dtype`` (float32 for float32 images), as the C++ kernel does.
    """
    if factor is not None and factor > 0:
        return dtype.type(1.0 / factor)  # 1/s in float64, then rounded to dtype
    return dtype.type(in_size) / dtype.type(out_size)


def linear_indices_weights(in_size, out_size, scale, dtype=np.float32):
    """Source indices and weights of 1-D linear resampling with ``align_corners=False``.

    Output pixel ``d`` has its centre at ``d + 0.5``; mapped back into the input that is
    ``(d + 0.5) * scale``, a pixel index of ``src = (d + 0.5) * scale - 0.5``. ``src`` is clamped
    at 0 (the first half pixel repeats the border value), and the output mixes its two
    neighbours: ``(1 - l) * x[i0] + l * x[i1]`` with ``i0 = floor(src)``, ``i1 = i0 + 1`` (or
    ``i0`` at the last pixel) and ``l = src - i0``. When ``out_size == in_size`` torch copies
    (``l = 0``) whatever the scale; so do we.

    Args:
        in_size, out_size: int.
        scale: the kernel's scale, ``in/out`` or ``1/scale_factor`` (see ``_kernel_scale``).
        dtype: arithmetic precision (the image dtype).
    Returns:
        i0, i1: int64 [out_size]; l0, l1: dtype [out_size], ``l0 + l1 = 1``.
    """
    dtype = np.dtype(dtype)
    if out_size == in_size:
        i0 = np.arange(out_size, dtype=np.int64)  # [out]
        return i0, i0.copy(), np.ones(out_size, dtype), np.zeros(out_size, dtype)
    # torch's compiled kernel evaluates scale * (d + 0.5) - 0.5 as one fused multiply-add: a
    # single rounding at the end. The product of two float32 numbers is exact in float64, so
    # computing in float64 and rounding once to float32 gives the same bits. (Rounding twice,
    # in plain float32, moves src by up to one float32 step, ~6e-5 px at src ~ 1000.) For
    # float64 images this is plain float64 arithmetic, within 1e-13 px of torch's.
    d = np.arange(out_size, dtype=np.float64)  # [out]
    scale64 = np.float64(dtype.type(scale))  # the kernel's scale, in dtype, widened exactly
    src = (scale64 * (d + 0.5) - 0.5).astype(dtype)  # [out] source pixel index, one rounding
    src = np.maximum(src, dtype.type(0))  # clamp at 0 (linear modes only)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)  # [out]
    l1 = np.clip(src - i0.astype(dtype), 0, 1).astype(dtype)  # [out] weight of i1
    i1 = i0 + (i0 < in_size - 1)  # [out]
    l0 = (dtype.type(1) - l1).astype(dtype)  # [out] weight of i0
    return i0, i1, l0, l1


def interpolate_bilinear(x, size=None, scale_factor=None, recompute_scale_factor=None):
    """Bilinear resize, as ``F.interpolate(x, ..., mode="bilinear", align_corners=False)``.

    Args:
        x: [N, C, H, W] float array (float32 or float64; the dtype is kept).
        size: int or (out_h, out_w); or else
        scale_factor: float or (s_h, s_w). The output size is ``floor(H * s_h), floor(W * s_w)``.
        recompute_scale_factor: with ``scale_factor``: ``True`` resamples with ``H / out_h``
            (the ratio of the integer sizes); ``False``/``None`` resamples with ``1 / s_h``.
            The two differ whenever ``H * s_h`` is not an integer.
    Returns:
        [N, C, out_h, out_w] array of x's dtype.

    Each output pixel is a weighted mean of the 2x2 input pixels around its source point (see
    ``linear_indices_weights``); the weights factor into a row part and a column part, so we
    resample the width first and then the height.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"bilinear interpolation needs a float array, got {x.dtype}")
    dtype = x.dtype
    H, W = x.shape[-2:]
    (out_h, out_w), (f_h, f_w) = _output_size_and_scales((H, W), size, scale_factor,
                                                         recompute_scale_factor)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"output size must be positive, got {(out_h, out_w)}")
    scale_h = _kernel_scale(H, out_h, f_h, dtype)
    scale_w = _kernel_scale(W, out_w, f_w, dtype)
    ih0, ih1, lh0, lh1 = linear_indices_weights(H, out_h, scale_h, dtype)  # [out_h] each
    iw0, iw1, lw0, lw1 = linear_indices_weights(W, out_w, scale_w, dtype)  # [out_w] each
    cols = lw0 * x[..., iw0] + lw1 * x[..., iw1]  # [N, C, H, out_w]
    out = lh0[:, None] * cols[..., ih0, :] + lh1[:, None] * cols[..., ih1, :]  # [N, C, oh, ow]
    return out.astype(dtype, copy=False)


def nearest_indices(in_size, out_size, factor=None):
    """Source index of each output pixel for torch's ``mode="nearest"`` (not "nearest-exact").

    ``src = min(floor(d * scale), in_size - 1)`` in float32 with ``scale = in/out`` (or
    ``1/factor`` when a scale factor was kept). This is OpenCV's INTER_NEAREST rule: it samples
    the *left/top edge* of each output pixel, not its centre, so the picture shifts by up to
    half an input pixel towards the top-left. torch keeps it for backward compatibility, with
    two shortcuts: equal sizes copy, and exact doubling uses ``d // 2``.

    Returns:
        int64 [out_size].
    """
    d = np.arange(out_size, dtype=np.int64)  # [out]
    if out_size == in_size:
        return d
    if out_size == 2 * in_size:
        return d >> 1
    scale = _kernel_scale(in_size, out_size, factor, np.dtype(np.float32))  # always float32
    src = np.floor(d.astype(np.float32) * scale).astype(np.int64)  # [out]
    return np.minimum(src, in_size - 1)


def interpolate_nearest(x, size=None, scale_factor=None, recompute_scale_factor=None):
    """Nearest-neighbour resize, as ``F.interpolate(x, ..., mode="nearest")``.

    Used for instance masks: it only copies values, so 0/1 masks stay 0/1 and any dtype works.

    Args:
        x: [N, C, H, W] array of any dtype.
        size, scale_factor, recompute_scale_factor: as ``interpolate_bilinear``.
    Returns:
        [N, C, out_h, out_w] array of x's dtype.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be [N, C, H, W], got shape {x.shape}")
    H, W = x.shape[-2:]
    (out_h, out_w), (f_h, f_w) = _output_size_and_scales((H, W), size, scale_factor,
                                                         recompute_scale_factor)
    ih = nearest_indices(H, out_h, f_h)  # [out_h]
    iw = nearest_indices(W, out_w, f_w)  # [out_w]
    return x[:, :, ih[:, None], iw[None, :]]  # [N, C, out_h, out_w]


# ------------------------------------------------------------------------------------------------
# boxes
# ------------------------------------------------------------------------------------------------
def resize_boxes(boxes, original_size, new_size):
    """Scale boxes from an image of ``original_size`` to one of ``new_size`` (torchvision's).

    Args:
        boxes: [G, 4] = (x1, y1, x2, y2).
        original_size, new_size: (h, w).
    Returns:
        [G, 4] of boxes' dtype: x scaled by ``new_w / old_w``, y by ``new_h / old_h``. The
        ratios are computed in float32, as torchvision does, then applied in boxes' dtype.
    """
    boxes = np.asarray(boxes)
    ratio_h, ratio_w = (np.float32(n) / np.float32(o) for n, o in zip(new_size, original_size))
    ratio = np.array([ratio_w, ratio_h, ratio_w, ratio_h], dtype=np.float32)  # [4] (x1, y1, x2, y2)
    return boxes * ratio.astype(boxes.dtype)  # [G, 4]


# ------------------------------------------------------------------------------------------------
# the transform
# ------------------------------------------------------------------------------------------------
class Transform:
    """Normalize, resize and batch images (and their targets); map detections back.

    Args:
        min_size: int, or a tuple of ints (training picks one per image at random; evaluation
            uses the last one, as torchvision).
        max_size: cap on the long side after resizing.
        image_mean, image_std: per-channel statistics for the normalization.
        size_divisible: the padded batch's height and width are multiples of this.
        fixed_size: (w, h) -- note the order, torchvision's -- to resize every image to exactly
            this size (both axes scaled independently) instead of the min/max rule.
        square: 0 for torchvision's behaviour; ``S > 0`` for the matterport preset's square
            mode (see ``resize_image`` for how it differs from torchvision and from matterport);
            ``min_size`` and ``max_size`` are then unused.
    """

    def __init__(self, min_size=800, max_size=1333, image_mean=IMAGENET_MEAN,
                 image_std=IMAGENET_STD, size_divisible=32, fixed_size=None, square=0):
        self.min_size = tuple(min_size) if isinstance(min_size, (list, tuple)) else (min_size,)
        self.max_size = max_size
        self.image_mean = tuple(image_mean)
        self.image_std = tuple(image_std)
        self.size_divisible = size_divisible
        self.fixed_size = fixed_size
        self.square = int(square)

    def __repr__(self):
        return (f"Transform(min_size={self.min_size}, max_size={self.max_size}, "
                f"mean={self.image_mean}, std={self.image_std}, "
                f"size_divisible={self.size_divisible}, fixed_size={self.fixed_size}, "
                f"square={self.square})")

    # -- step 1 ----------------------------------------------------------------------------------
    def normalize(self, image):
        """``(image - mean) / std`` per channel, in the image's dtype.

        Args: image: [3, H, W] float, values in 0..1.  Returns: [3, H, W] same dtype.
        """
        if not np.issubdtype(image.dtype, np.floating):
            raise TypeError(f"images must be float arrays with values in 0..1, got {image.dtype}")
        mean = np.asarray(self.image_mean, dtype=image.dtype)[:, None, None]  # [3, 1, 1]
        std = np.asarray(self.image_std, dtype=image.dtype)[:, None, None]  # [3, 1, 1]
        return (image - mean) / std  # [3, H, W]

    # -- step 2 ----------------------------------------------------------------------------------
    def resize_image(self, image, min_size):
        """Resize one image; returns ``(resized [3, h, w], (size, scale_factor, recompute))``.

        The second item says how ``F.interpolate`` was called, so masks can be resized the
        same way.

        - torchvision (``square == 0``): ``s = min(min_size / short, max_size / long)``, output
          ``floor(H * s) x floor(W * s)``, resampled with ``recompute_scale_factor=True``.
        - ``fixed_size = (w, h)``: resized to exactly ``h x w``.
        - square mode (``square = S``): the long side becomes exactly ``S`` and the short
          side ``round(short * S / long)`` (at least 1), resampled the same bilinear way with
          the ratio of the integer sizes; the batch is then padded to ``S x S`` at the
          bottom/right. This differs from torchvision, which has no square canvas.
          matterport does it differently: its scale is ``max(1, 800 / short)``, reduced to
          ``1024 / long`` only when the long side would pass 1024 (so a 500x600 image becomes
          800x960, not 853x1024), it resizes with scikit-image and centres the image in the
          square. We keep torchvision's corner padding so that boxes need no offset and every
          other stage is shared.
        """
        H, W = image.shape[-2:]
        if self.fixed_size is not None:
            call = ((self.fixed_size[1], self.fixed_size[0]), None, None)
        elif self.square > 0:
            long = max(H, W)
            h = self.square if H == long else max(1, round(H * self.square / long))
            w = self.square if W == long else max(1, round(W * self.square / long))
            call = ((h, w), None, None)
        else:
            scale = min(min_size / min(H, W), self.max_size / max(H, W))  # Python floats
            call = (None, scale, True)
        size, scale_factor, recompute = call
        out = interpolate_bilinear(image[None], size=size, scale_factor=scale_factor,
                                   recompute_scale_factor=recompute)[0]  # [3, h, w]
        return out, call

    # -- step 3 ----------------------------------------------------------------------------------
    def batch_images(self, images):
        """Pad images with zeros (bottom and right) into one ``[N, 3, Hp, Wp]`` array.

        ``Hp, Wp`` are the largest height and width rounded up to a multiple of
        ``size_divisible``; in square mode they are at least ``square``.
        """
        C = max(img.shape[0] for img in images)
        Hp = max(img.shape[1] for img in images)
        Wp = max(img.shape[2] for img in images)
        if self.square > 0:
            Hp, Wp = max(Hp, self.square), max(Wp, self.square)
        stride = float(self.size_divisible)
        Hp = int(math.ceil(Hp / stride) * stride)
        Wp = int(math.ceil(Wp / stride) * stride)
        batch = np.zeros((len(images), C, Hp, Wp), dtype=images[0].dtype)  # [N, 3, Hp, Wp]
        for i, img in enumerate(images):
            batch[i, :img.shape[0], :img.shape[1], :img.shape[2]] = img
        return batch

    def __call__(self, images, targets=None, training=False, rng=None):
        """Turn a list of images (and targets) into the network's input batch.

        Args:
            images: list of N float arrays [3, H_i, W_i], values in 0..1 (sizes may differ).
            targets: None, or a list of N dicts with ``"boxes"`` [G_i, 4] = (x1, y1, x2, y2)
                and optionally ``"masks"`` [G_i, H_i, W_i] (0/1, any dtype) and any other keys
                (e.g. ``"labels"`` [G_i]), which are passed through. The caller's dicts are not
                modified.
            training: if True, each image draws its ``min_size`` from the tuple with ``rng``.
            rng: ``numpy.random.Generator``; needed only when training with several min sizes.
        Returns:
            batch: [N, 3, Hp, Wp] normalized, resized, zero-padded images (input dtype).
            image_sizes: list of N (h_i, w_i), the resized sizes before padding.
            targets: None, or new dicts with ``"boxes"`` scaled (boxes' dtype) and ``"masks"``
                resized to [G_i, h_i, w_i] uint8 (torchvision's ``.byte()``).
        """
        if len(images) == 0:
            raise ValueError("need at least one image")
        if targets is not None and len(targets) != len(images):
            raise ValueError("need one target dict per image")
        out_images, image_sizes, out_targets = [], [], None if targets is None else []
        for i, image in enumerate(images):
            image = np.asarray(image)
            if image.ndim != 3:
                raise ValueError(f"images must be [C, H, W], got shape {image.shape}")
            if training and len(self.min_size) > 1:
                if rng is None:
                    raise ValueError("training with several min sizes needs rng")
                min_size = self.min_size[int(rng.integers(len(self.min_size)))]
            else:
                min_size = self.min_size[-1]
            old_hw = image.shape[-2:]
            resized, (size, scale_factor, recompute) = self.resize_image(self.normalize(image),
                                                                         min_size)
            new_hw = resized.shape[-2:]
            out_images.append(resized)
            image_sizes.append((int(new_hw[0]), int(new_hw[1])))
            if targets is not None:
                t = dict(targets[i])  # a shallow copy: the caller's dict is left alone
                t["boxes"] = resize_boxes(t["boxes"], old_hw, new_hw)  # [G, 4]
                if "masks" in t:
                    m = np.asarray(t["masks"])  # [G, H, W]
                    m = interpolate_nearest(m[:, None].astype(np.float32), size=size,
                                            scale_factor=scale_factor,
                                            recompute_scale_factor=recompute)[:, 0]  # [G, h, w]
                    t["masks"] = m.astype(np.uint8)
                out_targets.append(t)
        return self.batch_images(out_images), image_sizes, out_targets

    # -- back to the original images -----------------------------------------------------------
    def postprocess(self, detections, image_sizes, original_sizes):
        """Map detections from the resized images back to the original images.

        Args:
            detections: list of N dicts with ``"boxes"`` [D_i, 4] in resized-image pixels and
                optionally ``"masks"`` [D_i, 1, M, M] probabilities; other keys pass through.
            image_sizes: list of N (h_i, w_i), as returned by ``__call__``.
            original_sizes: list of N (H_i, W_i), the sizes of the images given to ``__call__``.
        Returns:
            list of N new dicts: ``"boxes"`` [D_i, 4] in original pixels and ``"masks"``
            [D_i, 1, H_i, W_i], each mask pasted into its (rescaled) box.
        """
        from mrcnn_np.postprocess import paste_masks_in_image  # here: postprocess imports us

        results = []
        for pred, im_s, o_im_s in zip(detections, image_sizes, original_sizes):
            r = dict(pred)
            r["boxes"] = resize_boxes(pred["boxes"], im_s, o_im_s)  # [D, 4]
            if "masks" in pred:
                r["masks"] = paste_masks_in_image(pred["masks"], r["boxes"], o_im_s)  # [D,1,H,W]
            results.append(r)
        return results
