"""The COCO loader: agreement with pycocotools, label mapping, flips, image modes, errors."""
import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mrcnn_np.data import CocoDataset, DataError, load_image, make_shapes_dataset

H, W = 20, 30


def _rgb(seed, h=H, w=W):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _uncompressed_rle(mask):
    """COCO's uncompressed RLE of a [H, W] mask: run lengths in column-major order, 0s first."""
    flat = mask.ravel(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v == cur:
            run += 1
        else:
            counts.append(run)
            cur, run = v, 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def _write(tmp_path, data, images):
    img_dir = tmp_path / "images"
    img_dir.mkdir(exist_ok=True)
    for name, arr in images.items():
        Image.fromarray(arr).save(img_dir / name)
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(data))
    return img_dir, ann


def _every_kind(tmp_path):
    """Three images; categories 12, 3, 7 (unsorted, with gaps); every annotation type."""
    m_rle = np.zeros((H, W), np.uint8)
    m_rle[5:15, 10:22] = 1                                  # a 10 x 12 block
    m_unc = np.zeros((H, W), np.uint8)
    m_unc[2:6, 1:4] = 1
    m_unc[8:9, 1:9] = 1                                     # two parts
    crowd = np.zeros((H, W), np.uint8)
    crowd[10:20, 0:10] = 1
    rle = mask_utils.encode(np.asfortranarray(m_rle))
    rle["counts"] = rle["counts"].decode("ascii")
    data = {
        "images": [{"id": 5, "file_name": "a.png", "height": H, "width": W},
                   {"id": 9, "file_name": "b.png", "height": H, "width": W},
                   {"id": 2, "file_name": "empty.png", "height": H, "width": W}],
        "categories": [{"id": 12, "name": "twelve"}, {"id": 3, "name": "three"},
                       {"id": 7, "name": "seven"}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 3, "iscrowd": 0, "area": 24.0,
             "bbox": [2.0, 3.0, 6.0, 4.0], "segmentation": [[2, 3, 8, 3, 8, 7, 2, 7]]},
            {"id": 2, "image_id": 5, "category_id": 12, "iscrowd": 0, "area": 120.0,
             "bbox": [10.0, 5.0, 12.0, 10.0], "segmentation": rle},
            {"id": 3, "image_id": 9, "category_id": 7, "iscrowd": 0, "area": 20.0,
             "bbox": [1.0, 2.0, 8.0, 7.0], "segmentation": _uncompressed_rle(m_unc)},
            {"id": 4, "image_id": 9, "category_id": 3, "iscrowd": 1, "area": 100.0,
             "bbox": [0.0, 10.0, 10.0, 10.0], "segmentation": _uncompressed_rle(crowd)},
            # Two polygons in one annotation, one triangle partly outside the image (right edge).
            {"id": 5, "image_id": 9, "category_id": 12, "iscrowd": 0, "area": 40.0,
             "bbox": [14.0, 1.0, 20.0, 8.0],
             "segmentation": [[14, 1, 18, 1, 18, 4, 14, 4], [24, 2, 34, 5, 24, 9]]},
        ],
    }
    images = {"a.png": _rgb(0), "b.png": _rgb(1), "empty.png": _rgb(2)}
    return _write(tmp_path, data, images)


def test_agrees_with_pycocotools_on_every_annotation_type(tmp_path):
    img_dir, ann = _every_kind(tmp_path)
    ds = CocoDataset(img_dir, ann)
    ref = COCO(str(ann))
    assert ds.ids == [2, 5, 9] and len(ds) == 3
    by_id = {ds.ids[i]: ds.get(i) for i in range(len(ds))}
    for image_id, s in by_id.items():
        anns = [a for a in ref.imgToAnns[image_id] if not a["iscrowd"]]   # crowd: not a target
        assert len(s["labels"]) == len(anns)
        for g, a in enumerate(anns):
            assert np.array_equal(s["masks"][g], ref.annToMask(a))
            assert s["masks"][g].dtype == np.uint8
            x, y, w, h = a["bbox"]
            want = [x, y, min(x + w, W), min(y + h, H)]          # clipped to the image
            np.testing.assert_array_equal(s["boxes"][g], np.array(want, np.float32))
        assert s["image_id"] == image_id and s["orig_size"] == (H, W)
    # The crowd region decodes as pycocotools does too, when asked for.
    s = ds.get(ds.ids.index(9), include_crowd=True)
    assert s["iscrowd"].tolist() == [0, 0, 1] and s["labels"].tolist() == [2, 3, 1]
    assert np.array_equal(s["masks"][2], ref.annToMask(ref.anns[4]))
    assert s["masks"][2].sum() == 100
    assert by_id[9]["iscrowd"].tolist() == [0, 0]
    # The uncompressed RLE really decoded to its two parts, the partial triangle was clipped.
    assert by_id[9]["masks"][0].sum() == 4 * 3 + 8
    assert by_id[9]["masks"][1][:, 25:].any() and by_id[9]["boxes"][1][2] == W


def test_contiguous_labels_in_sorted_category_order(tmp_path):
    img_dir, ann = _every_kind(tmp_path)
    ds = CocoDataset(img_dir, ann)
    assert ds.num_classes == 4
    assert ds.class_names == ["background", "three", "seven", "twelve"]
    assert ds.label_to_cat_id == {1: 3, 2: 7, 3: 12}
    assert ds.cat_id_to_label == {3: 1, 7: 2, 12: 3}
    s = ds.get(ds.ids.index(5))
    assert s["labels"].tolist() == [1, 3] and s["labels"].dtype == np.int64
    assert isinstance(ds.coco, COCO) and len(ds.coco.anns) == 5   # crowd kept for evaluation


def test_image_without_annotations_is_kept(tmp_path):
    img_dir, ann = _every_kind(tmp_path)
    s = CocoDataset(img_dir, ann).get(0)                    # image id 2 has no annotations
    assert s["image_id"] == 2
    assert s["boxes"].shape == (0, 4) and s["boxes"].dtype == np.float32
    assert s["labels"].shape == (0,) and s["labels"].dtype == np.int64
    assert s["masks"].shape == (0, H, W) and s["masks"].dtype == np.uint8
    assert s["image"].shape == (3, H, W) and s["image"].dtype == np.float32
    np.testing.assert_allclose(s["image"], _rgb(2).transpose(2, 0, 1) / 255.0, atol=1e-7)
    flipped = CocoDataset(img_dir, ann).get(0, flip=True)
    assert flipped["boxes"].shape == (0, 4)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    p = make_shapes_dataset(tmp_path_factory.mktemp("shp"), num_train=8, num_val=1,
                            image_size=(48, 64), seed=11)
    return CocoDataset(p["train_images"], p["train_annotations"])


def _tight_boxes(masks):
    out = []
    for m in masks:
        ys, xs = np.nonzero(m)
        out.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    return np.array(out, np.float32).reshape(-1, 4)


def test_flip(shapes):
    for i in range(len(shapes)):
        a, f = shapes.get(i), shapes.get(i, flip=True)
        np.testing.assert_array_equal(f["image"], a["image"][:, :, ::-1])
        np.testing.assert_array_equal(f["masks"], a["masks"][:, :, ::-1])
        # Boxes still match masks after the flip (the shapes' boxes are tight).
        np.testing.assert_array_equal(a["boxes"], _tight_boxes(a["masks"]))
        np.testing.assert_array_equal(f["boxes"], _tight_boxes(f["masks"]))
        # Flip twice = identity.
        twice = f["boxes"].copy()
        twice[:, [0, 2]] = 64 - f["boxes"][:, [2, 0]]
        np.testing.assert_array_equal(twice, a["boxes"])
        np.testing.assert_array_equal(f["image"][:, :, ::-1], a["image"])
        assert f["labels"].tolist() == a["labels"].tolist()


def test_flip_by_hand(tmp_path):
    # Width 30: the box x in [2, 8) becomes x in [30 - 8, 30 - 2) = [22, 28).
    img_dir, ann = _every_kind(tmp_path)
    s = CocoDataset(img_dir, ann).get(1, flip=True)
    np.testing.assert_array_equal(s["boxes"][0], [22, 3, 28, 7])
    assert s["masks"][0][3:7, 22:28].all() and s["masks"][0].sum() == 24


def test_train_mode_flips_with_its_generator(shapes):
    p = shapes
    a = CocoDataset(p.image_dir, p.ann_file, train=True, rng=np.random.default_rng(4))
    b = CocoDataset(p.image_dir, p.ann_file, train=True, rng=np.random.default_rng(4))
    flips = []
    for i in range(len(a)):
        sa, sb = a[i], b[i]
        np.testing.assert_array_equal(sa["image"], sb["image"])   # same seed, same flips
        flips.append(bool((sa["image"] != p.get(i)["image"]).any()))
    assert 0 < sum(flips) < len(flips)                              # some flipped, some not
    np.testing.assert_array_equal(p[0]["image"], p.get(0)["image"])  # train=False: never


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16", "1"])
def test_image_modes_are_converted(tmp_path, mode):
    rng = np.random.default_rng(0)
    path = tmp_path / "x.png"
    if mode == "I;16":
        v = rng.integers(0, 65536, size=(6, 7), dtype=np.uint16)
        Image.fromarray(v).save(path)                      # a 16-bit grayscale PNG
        want = np.repeat((v / 65535.0)[None], 3, axis=0)
    elif mode in ("L", "1"):
        v = rng.integers(0, 256, size=(6, 7), dtype=np.uint8)
        if mode == "1":
            v = np.where(v > 127, 255, 0).astype(np.uint8)
        Image.fromarray(v).convert(mode).save(path)
        want = np.repeat((v / 255.0)[None], 3, axis=0)
    elif mode == "LA":
        v = rng.integers(0, 256, size=(6, 7, 2), dtype=np.uint8)
        Image.fromarray(v, "LA").save(path)
        want = np.repeat((v[..., 0] / 255.0)[None], 3, axis=0)   # alpha dropped
    elif mode == "RGBA":
        v = rng.integers(0, 256, size=(6, 7, 4), dtype=np.uint8)
        Image.fromarray(v, "RGBA").save(path)
        want = v[..., :3].transpose(2, 0, 1) / 255.0             # alpha dropped
    else:                                                         # palette
        v = rng.integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
        im = Image.fromarray(v).quantize(8)
        im.save(path)
        want = np.asarray(im.convert("RGB")).transpose(2, 0, 1) / 255.0
    with Image.open(path) as im:
        assert im.mode == mode
    got = load_image(path)
    assert got.shape == (3, 6, 7) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-7)


# ------------------------------------------------------------------------------------------
# Errors: one line, naming the file
# ------------------------------------------------------------------------------------------
def _raises(fn, names):
    with pytest.raises(DataError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg and str(names) in msg, msg
    return msg


def test_folder_errors(tmp_path):
    img_dir, ann = _every_kind(tmp_path)
    _raises(lambda: CocoDataset(tmp_path / "nope", ann), tmp_path / "nope")
    (tmp_path / "hollow").mkdir()
    assert "empty" in _raises(lambda: CocoDataset(tmp_path / "hollow", ann), tmp_path / "hollow")


@pytest.mark.parametrize("text, why", [
    (None, "not found"),
    ("{not json", "not a JSON"),
    ("[1, 2]", "not a COCO"),
    ('{"images": [], "annotations": []}', "categories"),
    ('{"annotations": [], "categories": []}', "images"),
    ('{"images": [{"id": 1}], "annotations": [], "categories": []}', "file_name"),
    (b"\xff\xfe\x00garbage", "not a JSON"),
])
def test_annotation_file_errors(tmp_path, text, why):
    img_dir, _ = _every_kind(tmp_path)
    bad = tmp_path / "bad.json"
    if isinstance(text, bytes):
        bad.write_bytes(text)
    elif text is not None:
        bad.write_text(text)
    assert why in _raises(lambda: CocoDataset(img_dir, bad), bad)


def test_image_errors(tmp_path):
    img_dir, ann = _every_kind(tmp_path)
    (img_dir / "b.png").unlink()
    assert "not found" in _raises(lambda: CocoDataset(img_dir, ann), img_dir / "b.png")
    (img_dir / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    ds = CocoDataset(img_dir, ann)                          # found; decoded only when read
    assert "corrupt" in _raises(lambda: ds.get(ds.ids.index(9)), img_dir / "b.png")
    Image.fromarray(_rgb(3, H + 1, W)).save(img_dir / "b.png")
    assert "30x20" in _raises(lambda: ds.get(ds.ids.index(9)), img_dir / "b.png")
    _raises(lambda: load_image(img_dir / "missing.png"), img_dir / "missing.png")


def test_bad_annotations_skipped_with_one_warning(tmp_path):
    img_dir, ann = _every_kind(tmp_path)
    data = json.loads(ann.read_text())
    good = data["annotations"][0]
    bad = [
        dict(good, id=10, bbox=[2.0, 3.0, 0.0, 4.0]),                          # zero width
        dict(good, id=11, bbox=[40.0, 3.0, 5.0, 4.0]),                         # outside -> clipped empty
        dict(good, id=12, area=0.0),                                           # zero area
        dict(good, id=13, segmentation=[[40, 1, 50, 1, 50, 9, 40, 9]]),        # polygon outside
        dict(good, id=14, category_id=99),                                     # unknown category
        dict(good, id=15, category_id=98),
        dict(good, id=16, image_id=77),                                        # unknown image
        dict(good, id=17, segmentation=[]),                                    # no segmentation
        dict(good, id=18, bbox=["a", "b", "c", "d"]),                          # malformed
    ]
    data["annotations"] += bad
    ann.write_text(json.dumps(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CocoDataset(img_dir, ann)
    mine = [w for w in caught if "skipped" in str(w.message)]
    assert len(mine) == 1
    msg = str(mine[0].message)
    assert str(ann) in msg and "skipped 9 bad annotations" in msg
    assert ds.skipped == {"zero area / degenerate bbox": 3, "polygon wholly outside the image": 1,
                          "unknown category id": 2, "unknown image id": 1,
                          "missing or empty segmentation": 1, "malformed annotation": 1}
    assert [len(ds.get(i)["labels"]) for i in range(len(ds))] == [0, 2, 2]   # the good ones stay


def test_clean_data_gives_no_warning(tmp_path):
    img_dir, ann = _every_kind(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        ds = CocoDataset(img_dir, ann)
    assert ds.skipped == {}


@settings(max_examples=10)
@given(seed=st.integers(0, 10_000))
def test_random_polygons_agree_with_pycocotools(tmp_path_factory, seed):
    # Random polygons, some partly outside the image: masks = annToMask, boxes clipped.
    rng = np.random.default_rng(seed)
    tmp = tmp_path_factory.mktemp("poly")
    anns = []
    for k in range(3):
        pts = rng.uniform(-8, [W + 8, H + 8], size=(int(rng.integers(3, 7)), 2))
        x1, y1 = pts.min(0)
        x2, y2 = pts.max(0)
        if min(x2, W) <= max(x1, 0) or min(y2, H) <= max(y1, 0):
            continue
        anns.append({"id": k + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 1.0,
                     "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                     "segmentation": [pts.ravel().tolist()]})
    data = {"images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}],
            "categories": [{"id": 1, "name": "thing"}], "annotations": anns}
    img_dir, ann = _write(tmp, data, {"a.png": _rgb(seed)})
    s = CocoDataset(img_dir, ann).get(0)
    ref = COCO()
    ref.dataset = data
    ref.createIndex()
    assert len(s["labels"]) == len(anns)
    for g, a in enumerate(anns):
        assert np.array_equal(s["masks"][g], ref.annToMask(a))
        b = s["boxes"][g]
        assert 0 <= b[0] < b[2] <= W and 0 <= b[1] < b[3] <= H
