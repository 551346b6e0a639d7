"""The synthetic shapes data set: deterministic, real COCO, masks = visible pixels."""
import json
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mrcnn_np.data import shapes as S
from mrcnn_np.data import make_shapes_dataset, make_shapes_image


def _all_files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _decode(seg, h, w):
    """pycocotools' decoding of a polygon list or an RLE dict.  [H, W] uint8."""
    if isinstance(seg, list):
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(seg, h, w)))
    return mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode("ascii")})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    paths = make_shapes_dataset(root, num_train=12, num_val=4, image_size=(64, 80), seed=3,
                                shapes=S.SHAPES)
    return root, paths


def test_layout_and_returned_paths(dataset):
    root, paths = dataset
    assert paths["train_images"] == root / "train" and paths["val_images"] == root / "val"
    assert paths["train_annotations"] == root / "annotations" / "instances_train.json"
    assert sorted(p.name for p in (root / "train").glob("*.png")) == [f"{i:06d}.png" for i in range(1, 13)]
    assert len(list((root / "val").glob("*.png"))) == 4
    assert paths["val_annotations"].is_file()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = make_shapes_dataset(tmp_path / "a", num_train=5, num_val=2, image_size=48, seed=7)
    b = make_shapes_dataset(tmp_path / "b", num_train=5, num_val=2, image_size=48, seed=7)
    c = make_shapes_dataset(tmp_path / "c", num_train=5, num_val=2, image_size=48, seed=8)
    fa, fb, fc = _all_files(a["root"]), _all_files(b["root"]), _all_files(c["root"])
    assert fa == fb                                           # byte-identical JSON and PNGs
    assert fa.keys() == fc.keys()
    assert fa["annotations/instances_train.json"] != fc["annotations/instances_train.json"]
    assert sum(fa[k] != fc[k] for k in fa if k.endswith(".png")) >= 5


def test_more_images_keep_the_first_ones(tmp_path):
    # Image i has its own generator, so asking for more images leaves the first ones alone
    # (except an image that the larger run picks as one of its empty images).
    a = make_shapes_dataset(tmp_path / "a", num_train=3, num_val=1, image_size=40, seed=1)
    b = make_shapes_dataset(tmp_path / "b", num_train=6, num_val=1, image_size=40, seed=1)
    jb = json.loads(b["train_annotations"].read_text())
    empty_in_b = {im["id"] for im in jb["images"]} - {x["image_id"] for x in jb["annotations"]}
    same = [i for i in (1, 2, 3) if i not in empty_in_b]
    assert len(same) >= 2
    for i in same:
        name = f"{i:06d}.png"
        assert (a["train_images"] / name).read_bytes() == (b["train_images"] / name).read_bytes()


def test_rerun_with_fewer_images_removes_stale_ones(tmp_path):
    make_shapes_dataset(tmp_path, num_train=5, num_val=1, image_size=32, seed=0)
    make_shapes_dataset(tmp_path, num_train=2, num_val=1, image_size=32, seed=0)
    assert sorted(p.name for p in (tmp_path / "train").glob("*.png")) == ["000001.png", "000002.png"]


def test_json_is_coco_and_annotations_agree_with_their_masks(dataset):
    root, paths = dataset
    for split in ("train", "val"):
        data = json.loads(paths[f"{split}_annotations"].read_text())
        assert [c["id"] for c in data["categories"]] == list(range(1, len(S.SHAPES) + 1))
        assert [c["name"] for c in data["categories"]] == list(S.SHAPES)
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
        assert set(coco.getImgIds()) == {im["id"] for im in data["images"]}
        for ann in data["annotations"]:
            img = coco.imgs[ann["image_id"]]
            assert (root / split / img["file_name"]).is_file()
            m = coco.annToMask(ann)                                    # [H, W]
            ys, xs = np.nonzero(m)
            x, y, w, h = ann["bbox"]
            assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert ann["area"] == m.sum() >= S.MIN_PIXELS
            assert ann["iscrowd"] == 0
            assert 1 <= ann["category_id"] <= len(S.SHAPES)


def test_some_images_have_no_objects(dataset):
    _, paths = dataset
    data = json.loads(paths["train_annotations"].read_text())
    with_objects = {a["image_id"] for a in data["annotations"]}
    empty = [im["id"] for im in data["images"] if im["id"] not in with_objects]
    assert len(empty) >= 1                                     # max(1, round(5% of 12))


def _check_scene(s, quiet, h, w, n_classes):
    G = len(s["labels"])
    assert s["image"].shape == (h, w, 3) and s["image"].dtype == np.uint8
    assert s["masks"].shape == (G, h, w) and s["boxes"].shape == (G, 4)
    assert ((s["labels"] >= 1) & (s["labels"] <= n_classes)).all()
    # Visible masks never share a pixel.
    assert (s["masks"].sum(0) <= 1).all()
    for k in range(G):
        m = s["masks"][k]
        assert m.sum() >= S.MIN_PIXELS
        # The annotation decodes to exactly the rendered visible mask.
        assert np.array_equal(_decode(s["segmentations"][k], h, w), m)
        ys, xs = np.nonzero(m)
        assert tuple(s["boxes"][k]) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        # Occlusion is right: rendered without the noise (the same draws), the visible
        # pixels of a shape show ONE colour, its own, and two shapes never share one.
        colours = quiet["image"][m]                           # [n, 3]
        assert (colours == colours[0]).all(), k
        assert all(not (colours[0] == quiet["image"][s["masks"][j]][0]).all()
                   for j in range(k)), k
    # The noise is the only difference, Gaussian of sigma 0.02 * 255 = 5.1 grey levels (a
    # little less where clipping at 0 or 255 cuts its tail)
    noise = s["image"].astype(float) - quiet["image"]          # [H, W, 3]
    assert np.array_equal(s["masks"], quiet["masks"]) and np.array_equal(s["boxes"], quiet["boxes"])
    assert 0.9 * S.NOISE_SIGMA * 255 < noise.std() < 1.1 * S.NOISE_SIGMA * 255  # 0.98-1.03 x
    # over 400 scenes
    assert abs(noise.mean()) < 0.5


def _scene(seed, h, w, shapes=S.SHAPES, **kw):
    """make_shapes_image twice from the same seed: as drawn, and with the per-pixel noise off
    (``rng.normal`` with sigma 0 takes the same draws, so the scene is the same)."""
    s = make_shapes_image(np.random.default_rng(seed), h, w, shapes, **kw)
    with mock.patch.object(S, "NOISE_SIGMA", 0.0):
        quiet = make_shapes_image(np.random.default_rng(seed), h, w, shapes, **kw)
    return s, quiet


@settings(max_examples=12)
@given(seed=st.integers(0, 2**32 - 1), h=st.integers(40, 96), w=st.integers(40, 96),
       max_objects=st.integers(1, 6))
def test_scene_properties(seed, h, w, max_objects):
    s, quiet = _scene(seed, h, w, max_objects=max_objects)
    _check_scene(s, quiet, h, w, len(S.SHAPES))


def test_polygons_and_rles_both_used_and_decode_exactly():
    kinds = set()
    for seed in range(20):
        s, quiet = _scene(seed, 64, 64, max_objects=5)
        _check_scene(s, quiet, 64, 64, len(S.SHAPES))
        kinds |= {"polygon" if isinstance(g, list) else "rle" for g in s["segmentations"]}
    assert kinds == {"polygon", "rle"}


def test_empty_scene_and_sizes():
    s = make_shapes_image(np.random.default_rng(0), 50, 70, empty=True)
    assert s["masks"].shape == (0, 50, 70) and s["boxes"].shape == (0, 4)
    assert s["labels"].shape == (0,) and s["segmentations"] == []
    # Shape extents run from MIN_SIZE to half the shorter side: the box of a circle that
    # nothing covers (one object per image) is its diameter.
    diameters = []
    for seed in range(30):
        s = make_shapes_image(np.random.default_rng(seed), 96, 96, ("circle",), max_objects=1)
        for k in range(len(s["labels"])):
            b = s["boxes"][k]
            diameters.append(max(b[2] - b[0], b[3] - b[1]))
    assert min(diameters) >= S.MIN_SIZE - 1 and max(diameters) <= 96 / 2 + 1
    assert max(diameters) - min(diameters) > 20                 # sizes really vary


def test_size_range_and_bad_shape(tmp_path):
    p = make_shapes_dataset(tmp_path, num_train=6, num_val=1, size_range=(40, 60), seed=0)
    data = json.loads(p["train_annotations"].read_text())
    hs = {im["height"] for im in data["images"]} | {im["width"] for im in data["images"]}
    assert all(40 <= v <= 60 for v in hs) and len(hs) > 1
    with pytest.raises(ValueError, match="hexagon"):
        make_shapes_dataset(tmp_path, shapes=("circle", "hexagon"))
    with pytest.raises(ValueError):
        make_shapes_dataset(tmp_path, max_objects=0)


def test_min_size_makes_objects_bigger():
    # One circle (nothing covers it), min_size 30 in a 96 x 96 image: its diameter is in
    # [30, 48] (+-1 px of pixel-centre rasterisation).
    for seed in range(10):
        s = make_shapes_image(np.random.default_rng(seed), 96, 96, ("circle",), 1, min_size=30)
        for b in s["boxes"]:
            assert 29 <= max(b[2] - b[0], b[3] - b[1]) <= 49
