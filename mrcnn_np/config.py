"""One configuration dataclass, with presets.

- ``tiny`` (the default): a small ResNet-FPN that trains on a 2-core CPU in minutes on
  128-256 px images of the shapes data set.
- ``torchvision_r50_fpn``: every default of torchvision's ``maskrcnn_resnet50_fpn`` (so that
  its weights load and its outputs can be compared number by number).
- ``matterport``: matterport's Mask R-CNN settings (square 1024x1024 images, 261,888 anchors,
  its RoI counts and thresholds).
- ``torchvision_keypoint_r50_fpn``: every default of torchvision's ``keypointrcnn_resnet50_fpn``
  (17 keypoints, 2 classes, no mask branch); ``tiny_keypoints``: ``tiny`` plus a small
  keypoint branch for the stick-figure data set (chapter 15).

A preset is a plain function returning a ``Config``; change any field with keyword
arguments: ``get_config("tiny", num_classes=4)``. No registry, no YAML.
"""
from dataclasses import asdict, dataclass, replace


# The switches that take one of a few names (checked when a Config is made or loaded).
CHOICES = dict(
    mask_loss=("sigmoid", "softmax"),
    roi_extractor=("align", "pool", "warp", "crop_and_resize"),
    roi_align_reduction=("avg", "max"),
    pool_level=("fpn", "stride16", "stride32"),
    mask_head=("fcn", "mlp"),
    mask_paste=("torchvision", "subpixel"),
)


@dataclass
class Config:
    name: str = "tiny"
    num_classes: int = 4  # K, background included (label 0); the shapes set has 3 classes

    # -- transform: normalize, resize, pad -------------------------------------------------
    min_size: tuple = (192,)  # short side; training picks one at random from the tuple
    max_size: int = 192  # long side cap (tiny: 128-px shapes images are upsampled 1.5x, which
    # lifts mask AP50 from 0.71 to 0.76 at equal iterations: small shapes cover more anchors)
    image_mean: tuple = (0.485, 0.456, 0.406)  # ImageNet statistics, as torchvision
    image_std: tuple = (0.229, 0.224, 0.225)
    size_divisible: int = 32  # pad the batch to a multiple of the coarsest stride (P5: 32)
    square: int = 0  # >0: matterport's square mode (resize long side, pad to square)

    # -- backbone ----------------------------------------------------------------------------
    backbone: str = "tiny"  # "tiny" | "resnet50" | "resnet101" (blocks (3, 4, 23, 3))
    backbone_norm: str = "none"  # "frozen" | "batch" | "group" | "none" (see backbone.TINY)
    trainable_layers: int = 5  # torchvision: 3 when starting from ImageNet weights
    fpn_channels: int = 64

    # -- anchors and RPN ------------------------------------------------------------------------
    anchor_sizes: tuple = ((16,), (32,), (64,), (128,), (256,))  # one size per level P2..P6
    aspect_ratios: tuple = ((0.5, 1.0, 2.0),) * 5  # h/w, torchvision's convention
    rpn_objectness: str = "sigmoid"  # "sigmoid" (torchvision, 1 logit) | "softmax" (matterport, 2)
    rpn_fg_iou_thresh: float = 0.7  # Faster R-CNN paper, Sec. 3.1.2
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_pre_nms_top_n_train: int = 1000  # per level
    rpn_pre_nms_top_n_test: int = 500
    rpn_post_nms_top_n_train: int = 500  # per image
    rpn_post_nms_top_n_test: int = 300
    rpn_nms_thresh: float = 0.7
    rpn_score_thresh: float = 0.0

    # -- RoI heads ---------------------------------------------------------------------------------
    roi_aligned: bool = False  # torchvision's MultiScaleRoIAlign uses aligned=False
    box_roi_output_size: int = 7
    box_sampling_ratio: int = 2
    representation_size: int = 256  # TwoMLPHead width (torchvision: 1024)
    box_fg_iou_thresh: float = 0.5  # Fast R-CNN paper, Sec. 2.3
    box_bg_iou_thresh: float = 0.5
    box_batch_size_per_image: int = 64  # <= 4 objects per shapes image: 16 positives suffice
    box_positive_fraction: float = 0.25
    bbox_reg_weights: tuple = (10.0, 10.0, 5.0, 5.0)
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 50

    masks: bool = True  # the mask branch; False: a Faster R-CNN (+ keypoints), as torchvision's
    # keypointrcnn_resnet50_fpn, which has no mask head (no mask_* weights, no loss_mask)
    mask_roi_output_size: int = 14
    mask_sampling_ratio: int = 2
    mask_layers: tuple = (64, 64, 64, 64)  # 3x3 convs of the mask FCN (torchvision: 4 x 256)
    mask_dim_reduced: int = 64  # channels of the 2x2 deconvolution
    mask_rois_per_image: int = 0  # 0: the mask branch trains on every positive RoI (the paper,
    # torchvision); n > 0: on a random n of each image's positives (a speed lever, chapter 10)
    mask_loss: str = "sigmoid"  # "sigmoid" (per-class BCE, the paper's choice) | "softmax"
    class_agnostic_masks: bool = False
    mask_paste: str = "subpixel"  # how a 28x28 mask goes into the image at inference:
    # "subpixel" (detectron2's: each pixel centre sampled at the box's exact position) |
    # "torchvision" (the box truncated to whole pixels, the mask resized to it; the torchvision
    # presets). On 128-px shapes the whole-pixel paste caps mask AP at 0.904 even with perfect
    # boxes and masks (chapter 11); the demo's weights of 2026-12-02 (evening) score 0.753 with it,
    # 0.816 with the sub-pixel paste

    # -- the keypoint branch (Mask R-CNN paper, Sec. 5; torchvision's keypointrcnn_resnet50_fpn)
    keypoints: int = 0  # K keypoints per instance; 0 = no keypoint branch (torchvision: 17)
    keypoint_roi_output_size: int = 14  # MultiScaleRoIAlign 14x14 (torchvision keypoint_rcnn.py)
    keypoint_sampling_ratio: int = 2
    keypoint_layers: tuple = (64, 64, 64, 64)  # 3x3 convs + ReLU (torchvision: 8 x 512)
    keypoint_rois_per_image: int = 0  # 0: every positive RoI with keypoints (torchvision); n > 0:
    # a random n of them per image (a speed lever, as mask_rois_per_image)

    # -- the ablations of the Mask R-CNN paper's Table 2 (chapter 14); defaults = the model above
    roi_extractor: str = "align"  # both poolers: "align" | "pool" (RoIPool) | "warp" (RoIWarp:
    # RoIPool's rounding, then RoIAlign's sampling) | "crop_and_resize" (matterport's)
    roi_align_reduction: str = "avg"  # a bin of "align"/"warp": mean of its samples | "max"
    # (Table 2c, "RoIAlign (bilinear, max)"); "pool" is a max and "crop_and_resize" has one
    # sample per bin, so they ignore it
    pool_level: str = "fpn"  # "fpn": each RoI's level by FPN Eqn. 1 over P2..P5 | "stride16"
    # (every RoI from P4) | "stride32" (every RoI from P5): the paper's C4 / C5 stand-ins
    mask_head: str = "fcn"  # "fcn": mask_layers convs + deconv | "mlp": fc, fc, fc -> K x 28 x 28
    # on the flattened 14x14 RoI features (Table 2e)
    mask_mlp_dim: int = 256  # the MLP's hidden width. Paper: 1024, the width of its box head;
    # tiny: 256, scaled as the box head's representation_size is (torchvision 1024 -> 256)

    backend: str = "auto"  # kernels for RoIAlign / NMS: "numpy" | "numba" | "cuda" | "auto"
    seed: int = 0

    def __post_init__(self):
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; choose one of "
                                 f"{', '.join(repr(a) for a in allowed)}")

        if self.keypoints < 0:
            raise ValueError(f"keypoints must be >= 0 (0: no keypoint branch), got "
                             f"{self.keypoints}")
        if self.keypoints and not self.keypoint_layers:
            raise ValueError("the keypoint branch needs at least one layer in keypoint_layers")

    def to_dict(self):
        return asdict(self)

    @property
    def mask_size(self):
        return 2 * self.mask_roi_output_size  # the deconvolution doubles 14 -> 28

    @property
    def keypoint_heatmap_size(self):
        return 4 * self.keypoint_roi_output_size  # deconvolution 14 -> 28, bilinear 2x -> 56


def tiny(**overrides):
    """The default: trains from scratch on a 2-core CPU in minutes (see chapter 02 and 10)."""
    return replace(Config(), **overrides)


def torchvision_r50_fpn(**overrides):
    """Every default of torchvision's ``maskrcnn_resnet50_fpn`` (torchvision 0.29)."""
    cfg = Config(
        name="torchvision_r50_fpn", num_classes=91,
        min_size=(800,), max_size=1333, size_divisible=32,
        backbone="resnet50", backbone_norm="frozen", trainable_layers=3, fpn_channels=256,
        anchor_sizes=((32,), (64,), (128,), (256,), (512,)), aspect_ratios=((0.5, 1.0, 2.0),) * 5,
        rpn_pre_nms_top_n_train=2000, rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_train=2000, rpn_post_nms_top_n_test=1000,
        representation_size=1024, box_batch_size_per_image=512, box_detections_per_img=100,
        mask_layers=(256, 256, 256, 256), mask_dim_reduced=256, mask_paste="torchvision",
    )
    return replace(cfg, **overrides)


def matterport(**overrides):
    """matterport/Mask_RCNN's defaults (config.py there): ResNet-101-FPN (its ``BACKBONE =
    "resnet101"``), 1024x1024 squares, 261,888 anchors.

    matterport's anchors are one scale per level (32..512) with ratios (0.5, 1, 2) on P2..P6,
    which is what ``anchor_sizes`` below says; its RPN keeps 6000 boxes before NMS (we apply
    that per level, torchvision style), 2000/1000 after, samples 200 RoIs at 33% positive, and
    uses a 2-class softmax for objectness.
    """
    cfg = torchvision_r50_fpn(
        name="matterport", backbone="resnet101", num_classes=81, min_size=(1024,),
        max_size=1024, square=1024,
        rpn_objectness="softmax", rpn_nms_thresh=0.7,
        rpn_pre_nms_top_n_train=6000, rpn_pre_nms_top_n_test=6000,
        rpn_post_nms_top_n_train=2000, rpn_post_nms_top_n_test=1000,
        box_batch_size_per_image=200, box_positive_fraction=0.33,
        box_score_thresh=0.7, box_nms_thresh=0.3, box_detections_per_img=100,
        bbox_reg_weights=(10.0, 10.0, 5.0, 5.0),
    )
    return replace(cfg, **overrides)


def torchvision_keypoint_r50_fpn(**overrides):
    """Every default of torchvision's ``keypointrcnn_resnet50_fpn`` (torchvision 0.29): the
    ``torchvision_r50_fpn`` model with 2 classes (background, person), 17 COCO keypoints, a
    keypoint head of 8 x 512 convs, training scales (640, 672, ..., 800) (evaluation at the
    last, 800), and no mask branch. Its RPN and box settings (2000/1000 proposals before and
    after NMS, 512 RoIs at 25% positive, 100 detections, score 0.05, NMS 0.5) are the mask
    model's, which the base preset already has."""
    cfg = torchvision_r50_fpn(
        name="torchvision_keypoint_r50_fpn", num_classes=2,
        min_size=(640, 672, 704, 736, 768, 800), max_size=1333,
        masks=False, keypoints=17, keypoint_roi_output_size=14, keypoint_sampling_ratio=2,
        keypoint_layers=(512,) * 8,
    )
    return replace(cfg, **overrides)


def tiny_keypoints(**overrides):
    """``tiny`` plus a keypoint branch that trains on a 2-core CPU: 4 convs of 64 channels
    (half of torchvision's depth, an eighth of its width), K = 9 for the stick-figure data set
    (``data/stickfigures.py``: head, neck, hands, pelvis, knees, feet), 2 classes
    (background, person), masks on (each figure's mask is its pixels)."""
    return replace(tiny(name="tiny_keypoints", num_classes=2, keypoints=9,
                        keypoint_layers=(64, 64, 64, 64)), **overrides)


PRESETS = {"tiny": tiny, "torchvision_r50_fpn": torchvision_r50_fpn, "matterport": matterport,
           "torchvision_keypoint_r50_fpn": torchvision_keypoint_r50_fpn,
           "tiny_keypoints": tiny_keypoints}


def get_config(name="tiny", **overrides):
    if name not in PRESETS:
        raise ValueError(f"unknown config {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name](**overrides)


def config_from_dict(d):
    """Rebuild a Config saved with ``to_dict()`` (tuples come back from JSON as lists)."""
    fields = Config.__dataclass_fields__
    clean = {}
    for k, v in d.items():
        if k not in fields:
            continue
        clean[k] = _tuplify(v) if isinstance(v, list) else v
    return Config(**clean)


def _tuplify(v):
    return tuple(_tuplify(x) if isinstance(x, list) else x for x in v)

