"""The keypoint branch (Mask R-CNN paper, Sec. 5; chapter 15): head and predictor.

    RoI -> MultiScaleRoIAlign 14x14 -> KeypointRCNNHeads (n x conv3x3 + ReLU)    [R, C_k, 14, 14]
        -> KeypointRCNNPredictor: ConvTranspose2d 4x4 stride 2 to K maps          [R, K, 28, 28]
                                  then 2x bilinear upsampling                     [R, K, 56, 56]

Each of the K output maps is one keypoint's logits over the 56x56 positions of its RoI: the
loss is a softmax over those 3,136 positions (``ops/keypoints.py``), and at inference the
arg-max position becomes the keypoint. The paper's head is "a stack of eight 3x3 512-d conv
layers, followed by a deconv layer and 2x bilinear upscaling, producing an output resolution
of 56x56"; a high resolution matters for keypoint-level localization accuracy (its Sec. 5).

Parameter names equal torchvision's ``keypointrcnn_resnet50_fpn`` state_dict keys
(``roi_heads.keypoint_head.{0,2,...,14}.*``: the conv layers of a flat Sequential whose odd
entries are the ReLUs; ``roi_heads.keypoint_predictor.kps_score_lowres.*``), and they are
initialised as torchvision does: Kaiming normal (fan_out, ReLU gain), zero biases.

Where the gradient stops: nowhere inside the branch; the RoI boxes that the pooler reads are
constants (proposals or detections), as in the box and mask branches.
"""
import numpy as np

from .nn import init
from .nn.modules import Conv2d, ConvTranspose2d, Module, ReLU, Sequential
from .nn.resample import upsample_bilinear_backward, upsample_bilinear_forward
from .transform import Transform

KEYPOINT_DECONV_KERNEL = 4  # torchvision keypoint_rcnn.py: kernel 4, stride 2, padding 4 // 2 - 1
KEYPOINT_UP_SCALE = 2  # then F.interpolate(scale_factor=2, bilinear, align_corners=False)


def _kaiming_fan_out(shape, rng):
    """torchvision's init of every keypoint conv and of the deconvolution."""
    return init.kaiming_normal(shape, rng, mode="fan_out", nonlinearity="relu")


class KeypointRCNNHeads(Sequential):
    """``len(layers)`` x (3x3 conv, padding 1, + ReLU): [R, C, 14, 14] -> [R, layers[-1], 14, 14].

    torchvision: 8 layers of 512 channels (``cfg.keypoint_layers``). A flat Sequential, as
    torchvision's: conv ``i`` is child ``2 * i`` and its ReLU child ``2 * i + 1``, so the keys
    are ``0.weight, 0.bias, 2.weight, ...`` exactly as torchvision's.
    """

    def __init__(self, in_channels, layers, rng):
        if len(layers) == 0:
            raise ValueError("the keypoint head needs at least one conv layer")
        blocks, c = [], in_channels
        for f in layers:
            blocks += [Conv2d(c, f, 3, 1, 1, rng=rng, init_fn=_kaiming_fan_out), ReLU()]
            c = f
        super().__init__(*blocks)


class KeypointRCNNPredictor(Module):
    """``kps_score_lowres``: ConvTranspose2d(C_k -> K, kernel 4, stride 2, padding 1), then a
    2x bilinear upsampling: [R, C_k, 14, 14] -> [R, K, 28, 28] -> [R, K, 56, 56].

    The deconvolution's output size is ``(14 - 1) * 2 - 2 * 1 + 4 = 28``; the upsampling has no
    weights (``F.interpolate(scale_factor=2.0, mode="bilinear", align_corners=False,
    recompute_scale_factor=False)`` in torchvision)."""

    def __init__(self, in_channels, num_keypoints, rng):
        super().__init__()
        k = KEYPOINT_DECONV_KERNEL
        self.kps_score_lowres = ConvTranspose2d(in_channels, num_keypoints, k, 2, k // 2 - 1,
                                                rng=rng, init_fn=_kaiming_fan_out)
        object.__setattr__(self, "up_scale", KEYPOINT_UP_SCALE)
        object.__setattr__(self, "out_channels", num_keypoints)

    def forward(self, x):
        """x [R, C_k, 14, 14] -> (logits [R, K, 56, 56], cache)."""
        low, c1 = self.kps_score_lowres.forward(x)  # [R, K, 28, 28]
        out, c2 = upsample_bilinear_forward(low, scale_factor=float(self.up_scale),
                                            recompute_scale_factor=False)  # [R, K, 56, 56]
        return out, (c1, c2)

    def backward(self, dout, cache):
        """dout [R, K, 56, 56] -> dx [R, C_k, 14, 14]; accumulates the deconvolution's grads."""
        c1, c2 = cache
        dlow = upsample_bilinear_backward(dout, c2)  # [R, K, 28, 28]
        return self.kps_score_lowres.backward(dlow, c1)  # [R, C_k, 14, 14]


def resize_keypoints(keypoints, original_size, new_size):
    """Scale keypoints from an image of ``original_size`` to one of ``new_size`` (torchvision's
    ``transform.resize_keypoints``): x by ``new_w / old_w``, y by ``new_h / old_h`` (ratios in
    float32, as there); the third column (visibility, or 1 for predictions) is kept.

    keypoints: [G, K, 3] = (x, y, v); original_size, new_size: (h, w). Returns a new [G, K, 3].
    """
    keypoints = np.asarray(keypoints)
    if not np.issubdtype(keypoints.dtype, np.floating):
        keypoints = keypoints.astype(np.float32)  # pixel coordinates: integers become floats
    if keypoints.ndim != 3 or keypoints.shape[-1] != 3:
        raise ValueError(f"keypoints must be [G, K, 3] = (x, y, v), got shape {keypoints.shape}")
    ratio_h, ratio_w = (np.float32(n) / np.float32(o) for n, o in zip(new_size, original_size))
    out = keypoints.copy()
    out[..., 0] *= keypoints.dtype.type(ratio_w)
    out[..., 1] *= keypoints.dtype.type(ratio_h)
    return out


class KeypointTransform(Transform):
    """``transform.Transform`` that also carries keypoints through the resize, as torchvision's
    ``GeneralizedRCNNTransform`` does: a target's ``keypoints`` [G, K, 3] are scaled to the
    resized image with the boxes (``resize_keypoints``), and a detection's ``keypoints``
    [D, K, 3] back to the original image in ``postprocess``. Without a ``keypoints`` entry it
    is the plain transform. (Visibility is unchanged: a resize moves no keypoint in or out.)
    """

    def __call__(self, images, targets=None, training=False, rng=None):
        batch, image_sizes, out_targets = super().__call__(images, targets, training, rng)
        if out_targets is not None:
            for t, image, new_hw in zip(out_targets, images, image_sizes):
                if "keypoints" in t:
                    t["keypoints"] = resize_keypoints(t["keypoints"], np.shape(image)[-2:],
                                                      new_hw)  # [G, K, 3]
        return batch, image_sizes, out_targets

    def postprocess(self, detections, image_sizes, original_sizes, paste_masks=True):
        results = super().postprocess(detections, image_sizes, original_sizes, paste_masks)
        for r, im_s, o_im_s in zip(results, image_sizes, original_sizes):
            if "keypoints" in r:
                r["keypoints"] = resize_keypoints(r["keypoints"], im_s, o_im_s)  # [D, K, 3]
        return results
