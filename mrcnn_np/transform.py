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

The two resamplers, ``interpolate_bilinear`` and ``interpolate_nearest`` (``nn/resample.py``),
reproduce ``torch.nn.functional.interpolate`` (``align_corners=False``) including its float32
arithmetic, because a one-pixel difference in a resized size or a source index would make
every later number differ from torchvision.
"""
import math

import numpy as np

from .nn.resample import interpolate_bilinear, interpolate_nearest
from .postprocess import paste_masks_in_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's maskrcnn_resnet50_fpn defaults
IMAGENET_STD = (0.229, 0.224, 0.225)


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
        mask_paste: how ``postprocess`` pastes masks: "torchvision" or "subpixel" (see
            ``postprocess.paste_masks_in_image``).
    """

    def __init__(self, min_size=800, max_size=1333, image_mean=IMAGENET_MEAN,
                 image_std=IMAGENET_STD, size_divisible=32, fixed_size=None, square=0,
                 mask_paste="torchvision"):
        self.min_size = tuple(min_size) if isinstance(min_size, (list, tuple)) else (min_size,)
        self.max_size = max_size
        self.image_mean = tuple(image_mean)
        self.image_std = tuple(image_std)
        self.size_divisible = size_divisible
        self.fixed_size = fixed_size
        self.square = int(square)
        self.mask_paste = mask_paste

    def __repr__(self):
        return (f"Transform(min_size={self.min_size}, max_size={self.max_size}, "
                f"mean={self.image_mean}, std={self.image_std}, "
                f"size_divisible={self.size_divisible}, fixed_size={self.fixed_size}, "
                f"square={self.square}, mask_paste={self.mask_paste!r})")

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
    def postprocess(self, detections, image_sizes, original_sizes, paste_masks=True):
        """Map detections from the resized images back to the original images.

        Args:
            detections: list of N dicts with ``"boxes"`` [D_i, 4] in resized-image pixels and
                optionally ``"masks"`` [D_i, 1, M, M] probabilities; other keys pass through.
            image_sizes: list of N (h_i, w_i), as returned by ``__call__``.
            original_sizes: list of N (H_i, W_i), the sizes of the images given to ``__call__``.
        Returns:
            list of N new dicts: ``"boxes"`` [D_i, 4] in original pixels and ``"masks"``
            [D_i, 1, H_i, W_i], each mask pasted into its (rescaled) box (``paste_masks=False``:
            the masks stay [D_i, 1, M, M], for ``paste_masks_in_chunks``).
        """
        results = []
        for pred, im_s, o_im_s in zip(detections, image_sizes, original_sizes):
            r = dict(pred)
            r["boxes"] = resize_boxes(pred["boxes"], im_s, o_im_s)  # [D, 4]
            if "masks" in pred and paste_masks:
                r["masks"] = paste_masks_in_image(pred["masks"], r["boxes"], o_im_s,
                                                  method=self.mask_paste)  # [D, 1, H, W]
            results.append(r)
        return results
