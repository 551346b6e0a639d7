"""End-to-end agreement with torchvision's maskrcnn_resnet50_fpn (random weights, no download).

We build torchvision's model with a fixed torch seed, import its weights into ours
(torchvision_r50_fpn preset), run both on the same two images -- one not square -- and
compare the transform, the FPN features, the RPN proposals and the final detections.

CI runs this at min_size 320 (the 800-px check is in benchmarks/bench_model.py, which
prints the same figures at full size). num_classes=5 so that random weights give class
probabilities near 1/5 (0.19..0.24 measured): the detections are many and varied, which is
what a comparison needs (with 91 classes nearly every score would be ~1/91 < 0.05). The
score threshold is 0.22, not torchvision's 0.05: at 0.05 both models return exactly
box_detections_per_img = 100 detections, so equal counts would prove nothing; at 0.22 each
image keeps ~40 of its ~2,000 candidates, and the count is decided by the scores, the
per-class NMS and the threshold, in both libraries.

Tolerances (float32 in both libraries):
- transform: max |difference| 1e-4; image sizes equal.
- features P2..P6: max |difference| / max |value| below 1e-4 (float32 round-off through 50+
  layers in a different summation order).
- proposals: at least 98% of proposals agree within 0.01 px, position by position.
- detections, both ways: the same number of detections in both libraries (exactly; scores
  differ by ~6e-8, so none lands across the threshold), and at least 98% of torchvision's
  matched to ours and of ours to torchvision's, by label and box (IoU >= 0.9); matched boxes
  within 0.01 px, scores within 1e-4; pasted masks (probabilities in 0..1): the worst pixel
  of any matched pair within 1e-4 (4e-6 measured), the mean absolute difference below 1e-6
  (1.4e-8 measured); 42 and 39 detections.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import oracle

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))


@pytest.fixture(scope="module")
def agreement():
    oracle()
    import tv_agreement
    tv = tv_agreement.build_torchvision_maskrcnn(num_classes=5, min_size=320, max_size=512, seed=0,
                                                 box_score_thresh=0.22)
    ours = tv_agreement.ours_from_torchvision(tv)
    rng = np.random.default_rng(0)
    # Smooth random images (a blurred noise field), so features are not white noise.
    images = []
    for h, w in [(240, 320), (256, 256)]:
        small = rng.random((3, h // 16 + 1, w // 16 + 1)).astype(np.float32)
        images.append(np.ascontiguousarray(
            np.kron(small, np.ones((1, 16, 16), np.float32))[:, :h, :w]))
    return tv_agreement.stagewise(ours, tv, images)


def test_transform_agrees(agreement):
    assert agreement["image_sizes_equal"]
    assert agreement["transform_max_abs"] < 1e-4


@pytest.mark.parametrize("level", ["0", "1", "2", "3", "pool"])
def test_fpn_features_agree(agreement, level):
    assert agreement[f"feature_{level}_max_rel"] < 1e-4


def test_proposals_agree(agreement):
    for n_ours, n_theirs, same in agreement["proposals"]:
        assert abs(n_ours - n_theirs) <= max(2, 0.02 * n_theirs)
        assert same >= 0.98


def test_detections_agree(agreement):
    for d in agreement["detections"]:
        assert d["n_theirs"] > 10, "the comparison needs detections to compare"
        assert d["n_theirs"] < 100, "below box_detections_per_img, or equal counts prove nothing"
        assert d["n_ours"] == d["n_theirs"], d
        assert d["matched_fraction"] >= 0.98, d                     # theirs found in ours
        assert d["matched"] >= 0.98 * d["n_ours"], d                # ours found in theirs
        assert d["max_box_diff"] < 0.01, d
        assert d["max_score_diff"] < 1e-4, d
        assert d["max_mask_diff"] < 1e-4, d
        assert d["mean_mask_diff"] < 1e-6, d
