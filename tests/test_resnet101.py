"""ResNet-101-FPN (issue 14): ``backbone="resnet101"``, checked against torchvision.

ResNet-101 is ResNet-50 with 23 bottlenecks in layer3 instead of 6 (ResNet paper, Table 1):
1 stem conv + 3 convs x (3 + 4 + 23 + 3) blocks + 1 classifier = 101 layers. Everything else --
widths, strides, the FPN on top -- is the same, so the only new code is the block counts.

The end-to-end test follows tests/test_model_e2e.py (read its docstring for the reasoning),
on one image, 192 x 256 resized to 160 x 213 (min_size 160), so that it runs in seconds:

- torchvision's ``MaskRCNN(resnet_fpn_backbone("resnet101", weights=None), num_classes=91)``,
  torch seed 0. ``resnet_fpn_backbone`` uses FrozenBatchNorm2d, whose buffers start as the
  identity (weight 1, bias 0, mean 0, var 1); we draw them at random (seed 1) as
  tools/tv_agreement.py does for BatchNorm2d, so that their import is really tested. With them
  random, the best class scores of the 91-class head reach ~0.35 (measured), far above 1/91.
- The score threshold is 0.28, not 0.05, for the reason test_model_e2e.py gives: at 0.05 both
  libraries return exactly box_detections_per_img = 100 detections, and equal counts would prove
  nothing; at 0.28 the count (38) is decided by the scores, the per-class NMS and the threshold.
- Ours: the ``torchvision_r50_fpn`` preset with ``backbone="resnet101"`` and torchvision's
  weights loaded by name.

Tolerances (float32 in both libraries), those of test_model_e2e.py:
- features P2..P6: max |difference| / max |value| below 1e-4 (3.4e-6 measured; R-101 has 51
  more layers than R-50 for round-off to grow through);
- proposals: at least 98% agree within 0.01 px, position by position (all 1,000 measured);
- detections: the same count, at least 98% matched both ways by label and box (IoU >= 0.9),
  boxes within 0.01 px (5.5e-4 measured), scores within 1e-4 (1.3e-6), pasted mask
  probabilities: worst pixel within 1e-4 (3.4e-5), mean absolute difference below 1e-6
  (3.7e-8); 38 of 38 matched.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import oracle
from mrcnn_np import MaskRCNN
from mrcnn_np.backbone import RESNET_BLOCKS, resnet50_fpn, resnet101_fpn, resnet_fpn
from mrcnn_np.config import matterport, torchvision_r50_fpn
from mrcnn_np.model import build_backbone

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

R50_PARAMETERS = 26_852_416  # tests/test_backbone.py, counted against torchvision there


# -- names, shapes and counts ----------------------------------------------------------------


def test_state_dict_matches_torchvision_resnet101_frozen():
    """Keys, shapes and their order equal resnet_fpn_backbone("resnet101", weights=None,
    trainable_layers=3) (FrozenBatchNorm2d, torchvision's default there); the trainable
    parameters too (layer2..layer4 and the FPN)."""
    torch, tv = oracle()
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    theirs = resnet_fpn_backbone(backbone_name="resnet101", weights=None, trainable_layers=3)
    ref = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    model = resnet101_fpn(norm="frozen", trainable_layers=3)
    ours = {k: v.shape for k, v in model.state_dict().items()}
    assert ours == ref
    assert list(ours) == list(ref)  # even the order
    assert "body.layer3.22.conv3.weight" in ours and "body.layer3.23.conv1.weight" not in ours
    assert {k for k, _, _ in model.named_parameters()} == \
        {k for k, p in theirs.named_parameters() if p.requires_grad}
    assert [len(model.body.children[f"layer{s}"]) for s in (1, 2, 3, 4)] == [3, 4, 23, 3]
    assert model.body.out_channels == [256, 512, 1024, 2048]  # as ResNet-50's: same FPN


def test_parameter_count_as_torchvision_and_by_hand():
    """With BatchNorm2d and everything trainable, our parameters are torchvision's, keys up to
    num_batches_tracked (1 stem norm + 3 per block x 33 blocks + 4 downsample norms = 104).

    By hand: ResNet-101 has 17 more layer3 blocks than ResNet-50, each (in 1024, inner 256)
    conv1 1024*256 + conv2 256*256*9 + conv3 256*1024 + its norms 2*(256 + 256 + 1024)
    = 262,144 + 589,824 + 262,144 + 3,072 = 1,117,184; 17 of them are 18,992,128, and
    26,852,416 + 18,992,128 = 45,844,544."""
    torch, tv = oracle()
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    theirs = resnet_fpn_backbone(backbone_name="resnet101", weights=None,
                                 norm_layer=torch.nn.BatchNorm2d, trainable_layers=5)
    sd = theirs.state_dict()
    ours = resnet101_fpn(norm="batch", trainable_layers=5)
    ref = {k: tuple(v.shape) for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert {k: v.shape for k, v in ours.state_dict().items()} == ref
    assert sum(k.endswith("num_batches_tracked") for k in sd) == 1 + 3 * 33 + 4 == 104
    n = sum(p.size for _, p, _ in ours.named_parameters())
    assert n == sum(p.numel() for p in theirs.parameters())
    per_block = 1024 * 256 + 256 * 256 * 9 + 256 * 1024 + 2 * (256 + 256 + 1024)
    assert per_block == 1_117_184
    assert n == R50_PARAMETERS + 17 * per_block == 45_844_544
    assert sum(p.size for _, p, _ in resnet50_fpn(norm="batch", trainable_layers=5)
               .named_parameters()) == R50_PARAMETERS


def test_resnet_fpn_names_and_errors():
    assert RESNET_BLOCKS == {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
    with pytest.raises(ValueError, match="resnet34"):
        resnet_fpn("resnet34")
    cfg = torchvision_r50_fpn(backbone="resnet152")
    with pytest.raises(ValueError, match="'tiny', 'resnet50' or 'resnet101'"):
        build_backbone(cfg, np.random.default_rng(0))


def test_matterport_preset_is_resnet101():
    """matterport's default BACKBONE is "resnet101": layer3 of the built model has 23 blocks
    (weights only, no forward pass at 1024 px)."""
    cfg = matterport()
    assert cfg.backbone == "resnet101"
    body = MaskRCNN(cfg).backbone.body
    assert [len(body.children[f"layer{s}"]) for s in (1, 2, 3, 4)] == [3, 4, 23, 3]


# -- end to end against torchvision's Mask R-CNN on ResNet-101-FPN ---------------------------


SCORE_THRESH = 0.28  # see the module docstring


def torchvision_r101_maskrcnn(seed=0):
    """torchvision's Mask R-CNN on resnet_fpn_backbone("resnet101") with random weights, its
    FrozenBatchNorm2d buffers drawn at random too (they start as the identity), in eval mode."""
    torch, tv = oracle()
    from torchvision.models.detection import MaskRCNN as TVMaskRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops import FrozenBatchNorm2d
    torch.manual_seed(seed)
    backbone = resnet_fpn_backbone(backbone_name="resnet101", weights=None, trainable_layers=3)
    m = TVMaskRCNN(backbone, num_classes=91, min_size=160, max_size=256,
                   box_score_thresh=SCORE_THRESH)
    g = torch.Generator().manual_seed(seed + 1)
    for mod in m.modules():
        if isinstance(mod, FrozenBatchNorm2d):
            n = mod.weight.numel()
            mod.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            mod.running_var.copy_(0.5 + torch.rand(n, generator=g))
            mod.weight.copy_(0.5 + 0.5 * torch.rand(n, generator=g))
            mod.bias.copy_(0.1 * torch.randn(n, generator=g))
    return m.eval()


@pytest.fixture(scope="module")
def agreement():
    oracle()
    import tv_agreement
    tv = torchvision_r101_maskrcnn()
    ours = tv_agreement.ours_from_torchvision(tv, backbone="resnet101")
    assert ours.cfg.backbone == "resnet101" and len(ours.backbone.body.children["layer3"]) == 23
    # a smooth random image (blurred noise), not square, resized 192 -> 160 by both
    rng = np.random.default_rng(0)
    h, w = 192, 256
    small = rng.random((3, h // 16 + 1, w // 16 + 1)).astype(np.float32)
    image = np.ascontiguousarray(np.kron(small, np.ones((1, 16, 16), np.float32))[:, :h, :w])
    return tv_agreement.stagewise(ours, tv, [image])


def test_r101_transform_and_features_agree(agreement):
    assert agreement["image_sizes_equal"]
    assert agreement["transform_max_abs"] < 1e-4
    for level in ("0", "1", "2", "3", "pool"):
        assert agreement[f"feature_{level}_max_rel"] < 1e-4, level


def test_r101_proposals_agree(agreement):
    for n_ours, n_theirs, same in agreement["proposals"]:
        assert abs(n_ours - n_theirs) <= max(2, 0.02 * n_theirs)
        assert same >= 0.98


def test_r101_detections_agree(agreement):
    (d,) = agreement["detections"]
    assert d["n_theirs"] > 10, "the comparison needs detections to compare"
    assert d["n_theirs"] < 100, "below box_detections_per_img, or equal counts prove nothing"
    assert d["n_ours"] == d["n_theirs"], d
    assert d["matched_fraction"] >= 0.98, d                     # theirs found in ours
    assert d["matched"] >= 0.98 * d["n_ours"], d                # ours found in theirs
    assert d["max_box_diff"] < 0.01, d
    assert d["max_score_diff"] < 1e-4, d
    assert d["max_mask_diff"] < 1e-4, d
    assert d["mean_mask_diff"] < 1e-6, d
