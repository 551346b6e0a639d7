"""Anchors: torchvision's AnchorGenerator (same anchors, same order), the matterport preset
(261,888 anchors), and the "Rosetta stone" of conventions taught in chapter 03.

Tolerances: none. Anchors are integers plus rounded half-sizes (torchvision) or exact
float64 geometry cast to float32 (matterport); everything is compared exactly.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import oracle
from mrcnn_np.ops import AnchorGenerator, box_area, matterport_anchors
from mrcnn_np.ops.anchors import base_anchors, matterport_feature_sizes


def test_base_anchors_by_hand():
    # size 32, ratio r = h / w:  h = 32 * sqrt(r), w = 32 / sqrt(r)
    #   r = 0.5: w = 45.25, h = 22.63 -> half (22.63, 11.31) -> rounded (23, 11): a wide box
    #   r = 1:   w = h = 32           -> half 16
    #   r = 2:   w = 22.63, h = 45.25 -> half (11.31, 22.63) -> (11, 23): a tall box
    np.testing.assert_array_equal(base_anchors((32,), (0.5, 1.0, 2.0)),
                                  [[-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23]])
    # two sizes, one ratio: ratio-major, then size
    np.testing.assert_array_equal(base_anchors((16, 32), (1.0,)), [[-8, -8, 8, 8], [-16, -16, 16, 16]])


def test_order_level_then_y_then_x_then_anchor():
    gen = AnchorGenerator(sizes=((8,), (16,)), aspect_ratios=((0.5, 1.0, 2.0),) * 2)
    image_size, feature_sizes = (16, 24), [(4, 6), (2, 3)]     # strides 4 and 8
    anchors = gen(image_size, feature_sizes)
    assert anchors.shape == (4 * 6 * 3 + 2 * 3 * 3, 4) and anchors.dtype == np.float32
    assert gen.num_anchors_per_level(feature_sizes) == [72, 18]
    cell0 = base_anchors((8,), (0.5, 1.0, 2.0))
    cell1 = base_anchors((16,), (0.5, 1.0, 2.0))
    for y in range(4):
        for x in range(6):
            for a in range(3):   # level 0: row (y * W + x) * A + a, centre (4x, 4y)
                np.testing.assert_array_equal(anchors[(y * 6 + x) * 3 + a],
                                              cell0[a] + [4 * x, 4 * y, 4 * x, 4 * y])
    # level 1 starts after level 0's 72 anchors; location (y=1, x=2) centred at (16, 8)
    np.testing.assert_array_equal(anchors[72 + (1 * 3 + 2) * 3 + 1], cell1[1] + [16, 8, 16, 8])


def test_stride_is_integer_division():
    # torchvision: stride = image_size // feature_size, so 100 // 13 = 7 (not 100 / 13)
    gen = AnchorGenerator(sizes=((32,),), aspect_ratios=((1.0,),))
    assert gen.strides((100, 100), [(13, 13)]) == [(7, 7)]
    a = gen((100, 100), [(13, 13)])
    assert a[-1, 0] == 12 * 7 - 16


@pytest.mark.oracle
@given(st.lists(st.tuples(st.integers(1, 9), st.integers(1, 9)), min_size=1, max_size=3),
       st.integers(0, 40), st.integers(0, 40), st.booleans())
def test_vs_torchvision(feature_sizes, extra_h, extra_w, default_preset):
    torch, tv = oracle()
    from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
    from torchvision.models.detection.image_list import ImageList
    L = len(feature_sizes)
    if default_preset:
        feature_sizes = (feature_sizes * 5)[:5]
        sizes, ratios = ((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5
        L = 5
    else:
        sizes = tuple((8 * (l + 1), 12 * (l + 1)) for l in range(L))
        ratios = tuple((0.25, 0.5, 1.0, 2.0, 4.0)[l:l + 3] for l in range(L))
    h = 4 * max(f[0] for f in feature_sizes) + extra_h
    w = 4 * max(f[1] for f in feature_sizes) + extra_w
    ours = AnchorGenerator(sizes, ratios)
    theirs = TVAnchorGenerator(sizes, ratios)
    images = ImageList(torch.zeros(2, 3, h, w), [(h, w), (h - extra_h, w)])
    feats = [torch.zeros(2, 1, fh, fw) for fh, fw in feature_sizes]
    ref = theirs(images, feats)
    assert len(ref) == 2
    got = ours((h, w), feature_sizes)
    np.testing.assert_array_equal(got, ref[0].numpy())
    np.testing.assert_array_equal(got, ref[1].numpy())
    assert ours.num_anchors_per_location() == theirs.num_anchors_per_location()


def test_matterport_261888():
    sizes = matterport_feature_sizes()
    assert sizes == [(256, 256), (128, 128), (64, 64), (32, 32), (16, 16)]
    per_level = [3 * h * w for h, w in sizes]
    assert per_level == [196_608, 49_152, 12_288, 3_072, 768]
    anchors = matterport_anchors()
    assert anchors.shape == (261_888, 4) == (sum(per_level), 4) and anchors.dtype == np.float32
    # the first anchor: level P2, location (0, 0), scale 32, ratio w/h = 0.5 -> a TALL box
    # w = 32 * sqrt(0.5) = 22.627, h = 32 / sqrt(0.5) = 45.255, centred at (0, 0)
    w, h = 32 * math.sqrt(0.5), 32 / math.sqrt(0.5)
    np.testing.assert_allclose(anchors[0], [-w / 2, -h / 2, w / 2, h / 2], rtol=1e-6)
    # the last anchor: P6, location (15, 15) -> centre (15 * 64, 15 * 64), ratio 2 (wide)
    w, h = 512 * math.sqrt(2), 512 / math.sqrt(2)
    np.testing.assert_allclose(anchors[-1], [960 - w / 2, 960 - h / 2, 960 + w / 2, 960 + h / 2],
                               rtol=1e-6)
    # every anchor of a level has area scale**2
    np.testing.assert_allclose(box_area(anchors[:196_608].astype(np.float64)), 32**2, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# The Rosetta stone of chapter 03: one test per convention that trips people up.
# ----------------------------------------------------------------------------------------------
def test_rosetta_aspect_ratio_h_over_w_vs_w_over_h():
    tv_half = AnchorGenerator(((32,),), ((0.5,),)).cell_anchors[0][0]   # torchvision r = h/w
    mp_half = matterport_anchors(ratios=(0.5,))[0]                     # matterport r = w/h
    tv_w, tv_h = tv_half[2] - tv_half[0], tv_half[3] - tv_half[1]
    mp_w, mp_h = mp_half[2] - mp_half[0], mp_half[3] - mp_half[1]
    assert tv_w > tv_h and mp_w < mp_h     # the same number 0.5 means opposite shapes


def test_rosetta_anchor_centres_at_i_times_stride():
    gen = AnchorGenerator(((16,),), ((1.0,),))
    a = gen((32, 32), [(8, 8)])           # stride 4; location (y=1, x=2)
    box = a[1 * 8 + 2]
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    assert centre == (2 * 4, 1 * 4)       # i * stride, not ((2 + 0.5) * 4, (1 + 0.5) * 4)
    mp = matterport_anchors(image_size=(32, 32), scales=(16,), ratios=(1.0,),
                            feature_strides=(4,))
    assert tuple((mp[10, :2] + mp[10, 2:]) / 2) == (8, 4)  # matterport too


def test_rosetta_no_plus_one_in_width():
    box = np.array([[0, 0, 9, 9]], np.float32)
    assert box_area(box)[0] == 81                         # continuous: w = x2 - x1 = 9
    legacy = (box[0, 2] - box[0, 0] + 1) * (box[0, 3] - box[0, 1] + 1)
    assert legacy == 100                                  # Detectron/matterport-era pixels


def test_rosetta_yxyx_vs_xyxy():
    ours = matterport_anchors(ratios=(0.5,))[:1]          # (x1, y1, x2, y2), a tall box
    matterport_layout = ours[:, [1, 0, 3, 2]]             # matterport stores (y1, x1, y2, x2)
    y1, x1, y2, x2 = matterport_layout[0]
    assert y2 - y1 > x2 - x1                              # read as yxyx: still tall
    np.testing.assert_array_equal(matterport_layout[:, [1, 0, 3, 2]], ours)  # swap back


def test_rosetta_background_class_zero_vs_k():
    # here (and in torchvision) label 0 is background and objects are 1..K-1;
    # some code puts background last (index K-1 of K) with objects 0..K-2.
    K = 4                                                 # background + 3 object classes
    ours = np.array([0, 1, 2, 3, 0])
    bg_last = (ours - 1) % K                              # 0 -> 3, 1 -> 0, 2 -> 1, 3 -> 2
    np.testing.assert_array_equal(bg_last, [3, 0, 1, 2, 3])
    np.testing.assert_array_equal((bg_last + 1) % K, ours)
