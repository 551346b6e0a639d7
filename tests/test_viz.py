"""Drawing instances and galleries."""
import numpy as np
import pytest
from PIL import Image

from mrcnn_np.viz import MASK_ALPHA, draw_instances, label_colour, save_gallery, to_uint8_hwc

H, W = 60, 80


def _scene():
    image = np.full((3, H, W), 0.5, np.float32)                    # grey, [3, H, W]
    boxes = np.array([[10, 20, 30, 40], [50, 5, 70, 25]], np.float32)
    masks = np.zeros((2, 1, H, W), np.float32)
    masks[0, 0, 25:35, 12:28] = 0.9
    masks[1, 0, 8:20, 55:65] = 0.8
    return image, boxes, np.array([1, 2]), np.array([0.9, 0.3]), masks


def test_masks_boxes_and_threshold():
    image, boxes, labels, scores, masks = _scene()
    out = draw_instances(image, boxes, labels, scores, masks, ["bg", "cat", "dog"])
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    # Inside mask 0 (away from the caption and box): grey 128 blended with the label colour.
    want = np.round((1 - MASK_ALPHA) * 128 + MASK_ALPHA * np.array(label_colour(1)))
    np.testing.assert_allclose(out[30, 20], want, atol=1)
    # The box outline has the label colour (left edge, below the caption).
    assert tuple(out[38, 10]) == label_colour(1)
    # Instance 1 scores 0.3 < 0.5: not drawn at all.
    assert (out[5:26, 50:71] == 128).all()
    # Far from everything: untouched.
    assert (out[50:, :] == 128).all()
    # With a lower threshold it appears.
    out2 = draw_instances(image, boxes, labels, scores, masks, ["bg", "cat", "dog"], score_threshold=0.2)
    assert (out2[12, 60] != 128).any()


def test_layouts_dtypes_and_empty():
    image, boxes, labels, scores, masks = _scene()
    a = draw_instances(image, boxes, labels, scores, masks)
    b = draw_instances(np.full((H, W, 3), 128, np.uint8), boxes, labels, scores, masks[:, 0])
    np.testing.assert_array_equal(a, b)                            # CHW float == HWC uint8
    none = draw_instances(image, np.zeros((0, 4)), np.zeros(0, int), np.zeros(0), np.zeros((0, 1, H, W)))
    assert (none == 128).all() and none.shape == (H, W, 3)
    gt = draw_instances(image, boxes, labels)                      # no scores: all drawn, no masks
    assert tuple(gt[12, 50]) == label_colour(2)
    assert to_uint8_hwc(np.zeros((H, W))).shape == (H, W, 3)
    assert image.dtype == np.float32 and (image == 0.5).all()     # input left alone


def test_save_gallery(tmp_path):
    image, boxes, labels, scores, masks = _scene()
    pred = dict(boxes=boxes, labels=labels, scores=scores, masks=masks)
    drawn = np.zeros((30, 40, 3), np.uint8)
    items = [(image, pred)] * 4 + [drawn]
    p = save_gallery(items, tmp_path / "sub" / "g.png", cols=2, class_names=["bg", "cat", "dog"],
                     min_side=1)
    with Image.open(p) as im:
        assert im.size == (4 + 2 * (W + 4), 4 + 3 * (H + 4))      # 2 columns, 3 rows, pad 4
        arr = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(arr[4:4 + H, 4:4 + W], draw_instances(image, boxes, labels, scores, masks, ["bg", "cat", "dog"]))
    np.testing.assert_array_equal(arr[4 + 2 * (H + 4):][:30, 4:44], drawn)
    with pytest.raises(ValueError):
        save_gallery([], tmp_path / "x.png")
    # by default a tile is drawn at the least integer scale giving a side >= 256 px
    scale = -(-256 // min(H, W))
    p = save_gallery([(image, pred)], tmp_path / "big.png", class_names=["bg", "cat", "dog"])
    with Image.open(p) as im:
        assert im.size == (4 + scale * W + 4, 4 + scale * H + 4)
        arr = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(arr[4:4 + scale * H, 4:4 + scale * W], draw_instances(
        image, boxes, labels, scores, masks, ["bg", "cat", "dog"], scale=scale))


def test_one_label_per_object_and_captions_inside():
    # two detections of one object (IoU 0.82, classes 1 and 2) and one elsewhere: the picture
    # keeps the top-scoring detection of the object and the separate one
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 30, 30]], np.float64)
    scores = np.array([0.6, 0.9, 0.7])
    from mrcnn_np.viz import one_per_object
    np.testing.assert_array_equal(one_per_object(boxes, scores), [1, 2])
    # a box touching the top edge of an 80x80 image: no room above it, so its caption (white
    # text on the label colour, wider than the box) is drawn inside, just below the box's top;
    # only the caption can paint the label colour right of the box's outline (x >= 12)
    image = np.zeros((80, 80, 3), np.uint8)
    colour = np.array(label_colour(1), np.uint8)
    out = draw_instances(image, boxes[:1], np.array([1]), np.array([0.9]), class_names=["bg", "cat"])
    caption = (out[:, 12:] == colour).all(-1)                      # [80, 68]
    assert caption.sum() > 50
    rows = np.flatnonzero(caption.any(1))
    assert rows.min() >= 1 and rows.max() < 20                     # inside the picture, at the top
    # a box at the right edge: the caption is moved left so that it ends inside the picture
    out = draw_instances(image, np.array([[72, 40, 79, 50]]), np.array([1]), np.array([0.9]),
                         class_names=["bg", "cat"])
    cols = np.flatnonzero((out == colour).all(-1).any(0))
    assert cols.min() < 60 and cols.max() <= 79


def test_captions_of_nearby_detections_do_not_cover_each_other():
    # two narrow detections whose boxes share a corner (IoU 0.2: two objects for
    # one_per_object), different classes: the second caption goes below the first, and both
    # stay readable. The captions are wider than the boxes: right of x = 30 is caption only
    image = np.zeros((80, 80, 3), np.uint8)
    boxes = np.array([[20, 30, 30, 70], [20, 30, 28, 40]], np.float64)
    out = draw_instances(image, boxes, np.array([1, 2]), np.array([0.9, 0.8]),
                         class_names=["bg", "cat", "dog"])
    rows = []
    for label in (1, 2):  # the caption's rows
        hit = (out[:, 31:] == np.array(label_colour(label), np.uint8)).all(-1).any(1)
        assert hit.any()
        rows.append(np.flatnonzero(hit))
    assert rows[0].max() < rows[1].min()  # the second caption lies wholly below the first



# ------------------------------------------------------------------------------------------
# Keypoints and skeletons (chapter 15)
# ------------------------------------------------------------------------------------------
from mrcnn_np.viz import (KEYPOINT_CENTRE, KEYPOINT_LEFT, KEYPOINT_RIGHT,  # noqa: E402
                          draw_keypoints, keypoint_colours)

NAMES = ("head", "left_hand", "right_hand")
GREY = (128, 128, 128)


def _figure():
    """One instance on a grey 60 x 60 image, drawn by hand:

        head (30.5, 8.5) v = 0      . (not drawn, nor its edges)
        left_hand (20.5, 20.5) v = 1   o-----------------o   right_hand (40.5, 20.5) v = 2
                                     ring             dot
    COCO coordinates: (20.5, 20.5) is the centre of pixel row 20, column 20. Skeleton (1-based):
    head-left_hand, head-right_hand, left_hand-right_hand; only the last one has both ends
    labelled."""
    image = np.full((60, 60, 3), 128, np.uint8)
    kp = np.array([[[30.5, 8.5, 0], [20.5, 20.5, 1], [40.5, 20.5, 2]]])   # [1, K, 3]
    box = np.array([[2, 44, 58, 58]], np.float64)   # below the hands, and so is its caption
    return image, box, kp, ((1, 2), (1, 3), (2, 3))


def test_keypoint_colours_come_from_the_names():
    c = keypoint_colours(("head", "left_hand", "Right-Foot", "pelvis", "leftover"))
    assert c.dtype == np.uint8 and c.shape == (5, 3)
    assert [tuple(v) for v in c] == [KEYPOINT_CENTRE, KEYPOINT_LEFT, KEYPOINT_RIGHT,
                                     KEYPOINT_CENTRE, KEYPOINT_CENTRE]   # a word, not a prefix
    assert (keypoint_colours(num_keypoints=4) == KEYPOINT_CENTRE).all()
    with pytest.raises(ValueError):
        keypoint_colours()


def test_draw_instances_draws_the_skeleton_by_hand():
    image, boxes, kp, skeleton = _figure()
    kp_before = kp.copy()
    out = draw_instances(image, boxes, np.array([1]), keypoints=kp, skeleton=skeleton,
                         keypoint_names=NAMES)
    assert out.shape == (60, 60, 3) and (kp == kp_before).all()        # input left alone
    # the right hand (v = 2): a dot of its colour on its own pixel (row 20, column 40)
    assert tuple(out[20, 40]) == KEYPOINT_RIGHT
    # the left hand (v = 1): a ring, its colour round a black centre on its pixel
    assert tuple(out[20, 20]) == (0, 0, 0)
    assert tuple(out[18, 20]) == KEYPOINT_LEFT and tuple(out[22, 20]) == KEYPOINT_LEFT
    # the edge left_hand-right_hand: halfway (x = 30.5, row 20) in the colour of its first
    # side end (left), with a black outline on the rows above and below
    assert tuple(out[20, 30]) == KEYPOINT_LEFT
    assert tuple(out[19, 30]) == (0, 0, 0) and tuple(out[21, 30]) == (0, 0, 0)
    # the head (v = 0) and its two edges: nothing drawn between rows 6 and 16
    assert (out[6:17, 22:39] == GREY).all()
    # without keypoints the picture is the old one, untouched round the hands
    plain = draw_instances(image, boxes, np.array([1]))
    assert (plain[15:26, 15:46] == GREY).all()
    # ... and the keypoints change nothing but the pixels near them
    changed = (out != plain).any(-1)                                   # [60, 60]
    rows, cols = np.nonzero(changed)
    assert rows.min() >= 17 and rows.max() <= 23 and cols.min() >= 17 and cols.max() <= 43


def test_draw_instances_keypoints_scaled_predicted_and_thresholded():
    image, boxes, kp, skeleton = _figure()
    # scale 2: pixel (20, 40) becomes the 2 x 2 block rows 40..41, columns 80..81
    out = draw_instances(image, boxes, np.array([1]), keypoints=kp, skeleton=skeleton,
                         keypoint_names=NAMES, scale=2)
    assert out.shape == (120, 120, 3)
    assert (out[40:42, 80:82] == KEYPOINT_RIGHT).all()
    assert (out[40:42, 40:42] == 0).all()                              # the ring's centre
    # predictions (scores given): torchvision's v = 1 is a placeholder, so every v > 0 is a dot
    pred = draw_instances(image, boxes, np.array([1]), np.array([0.9]), keypoints=kp,
                          skeleton=skeleton, keypoint_names=NAMES)
    assert tuple(pred[20, 20]) == KEYPOINT_LEFT and tuple(pred[20, 40]) == KEYPOINT_RIGHT
    # a keypoint scoring under the threshold is not drawn, nor is its edge
    low = draw_instances(image, boxes, np.array([1]), np.array([0.9]), keypoints=kp,
                         skeleton=skeleton, keypoint_names=NAMES,
                         keypoints_scores=np.array([[5.0, -1.0, 5.0]]),
                         keypoint_score_threshold=0.0)
    assert tuple(low[20, 40]) == KEYPOINT_RIGHT
    assert (low[17:24, 17:36] == GREY).all()                           # no left hand, no edge
    # a detection under the score threshold takes its keypoints with it
    none = draw_instances(image, boxes, np.array([1]), np.array([0.1]), keypoints=kp,
                          skeleton=skeleton, keypoint_names=NAMES)
    assert (none == GREY).all()
    # a caption is drawn over the keypoints (it stays readable)
    top = draw_instances(image, np.array([[15, 24, 45, 40]]), np.array([1]), np.array([0.9]),
                         keypoints=kp, skeleton=skeleton, keypoint_names=NAMES)
    assert tuple(top[20, 20]) == label_colour(1)
    # no names: every keypoint in the centre colour
    anon = draw_instances(image, boxes, np.array([1]), keypoints=kp, skeleton=skeleton)
    assert tuple(anon[20, 40]) == KEYPOINT_CENTRE


def test_draw_instances_keypoints_bad_input():
    image, boxes, kp, skeleton = _figure()
    with pytest.raises(ValueError, match="1-based"):
        draw_instances(image, boxes, np.array([1]), keypoints=kp, skeleton=[(0, 1)])
    with pytest.raises(ValueError, match="1-based"):
        draw_instances(image, boxes, np.array([1]), keypoints=kp, skeleton=[(3, 4)])
    with pytest.raises(ValueError, match=r"\[G, K, 3\]"):
        draw_instances(image, boxes, np.array([1]), keypoints=kp[..., :2])
    with pytest.raises(ValueError, match="2 keypoint instances for 1 boxes"):
        draw_instances(image, boxes, np.array([1]), keypoints=np.concatenate([kp, kp]))
    with pytest.raises(ValueError, match="names"):
        draw_instances(image, boxes, np.array([1]), keypoints=kp, keypoint_names=NAMES[:2])


def test_save_gallery_draws_keypoints(tmp_path):
    image, boxes, kp, skeleton = _figure()
    pred = dict(boxes=boxes, labels=np.array([1]), keypoints=kp)
    p = save_gallery([(image, pred)], tmp_path / "k.png", min_side=1, skeleton=skeleton,
                     keypoint_names=NAMES)
    with Image.open(p) as im:
        arr = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(arr[4:64, 4:64], draw_instances(
        image, boxes, np.array([1]), keypoints=kp, skeleton=skeleton, keypoint_names=NAMES))
    assert tuple(arr[4 + 20, 4 + 40]) == KEYPOINT_RIGHT


def test_draw_keypoints_on_matplotlib_axes():
    from matplotlib.figure import Figure
    image, _, kp, skeleton = _figure()
    fig = Figure()
    ax = fig.add_subplot()
    ax.imshow(image)                                 # pixel j's centre at j: offset -0.5
    limits = ax.get_xlim(), ax.get_ylim()
    draw_keypoints(ax, kp[0], skeleton, NAMES, show_names=True)       # [K, 3] is one instance
    assert (ax.get_xlim(), ax.get_ylim()) == limits                   # the view is kept
    lines = ax.get_lines()
    edges = [ln for ln in lines if ln.get_linestyle() == "-"]
    dots = [ln for ln in lines if ln.get_marker() == "o"]
    assert len(edges) == 1 and len(dots) == 2          # the head and its two edges are skipped
    np.testing.assert_array_equal(edges[0].get_xdata(), [20.0, 40.0])
    np.testing.assert_array_equal(edges[0].get_ydata(), [20.0, 20.0])
    ring, dot = dots                                    # left hand (v = 1), right hand (v = 2)
    assert ring.get_markerfacecolor() == "k"
    np.testing.assert_allclose(ring.get_markeredgecolor(), np.array(KEYPOINT_LEFT) / 255)
    np.testing.assert_allclose(dot.get_markerfacecolor(), np.array(KEYPOINT_RIGHT) / 255)
    assert [t.get_text() for t in ax.texts] == ["left_hand", "right_hand"]
    # offset 0 for an image shown with extent (0, W, H, 0); predicted: both hands are dots
    ax2 = Figure().add_subplot()
    draw_keypoints(ax2, kp, skeleton, NAMES, offset=0.0, predicted=True)
    dots2 = [ln for ln in ax2.get_lines() if ln.get_marker() == "o"]
    assert [float(d.get_xdata()[0]) for d in dots2] == [20.5, 40.5]
    for d, c in zip(dots2, (KEYPOINT_LEFT, KEYPOINT_RIGHT)):
        np.testing.assert_allclose(d.get_markerfacecolor(), np.array(c) / 255)
    with pytest.raises(ValueError):
        draw_keypoints(ax2, kp, [(1, 4)], NAMES)
