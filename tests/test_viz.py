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

