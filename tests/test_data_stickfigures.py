"""The stick-figure keypoints data set and its loading: deterministic, real COCO keypoints,
visibility right under occlusion, and the flip convention (left and right swap)."""
import contextlib
import io
import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from pycocotools.coco import COCO

from mrcnn_np.data import CocoDataset, DataError
from mrcnn_np.data import stickfigures as F
from mrcnn_np.data.coco import flip_indices_of, flip_keypoints
from mrcnn_np.data.shapes import make_shapes_dataset

ROOT = Path(__file__).resolve().parents[1]
K = len(F.KEYPOINT_NAMES)


def _all_files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    root = tmp_path_factory.mktemp("figures")
    paths = F.make_figures_dataset(root, num_train=16, num_val=4, image_size=(96, 112), seed=3)
    return root, paths


def _quiet_coco(path):
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


# ------------------------------------------------------------------------------------------
# Determinism and the COCO files
# ------------------------------------------------------------------------------------------
def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = F.make_figures_dataset(tmp_path / "a", num_train=5, num_val=2, image_size=64, seed=7)
    b = F.make_figures_dataset(tmp_path / "b", num_train=5, num_val=2, image_size=64, seed=7)
    c = F.make_figures_dataset(tmp_path / "c", num_train=5, num_val=2, image_size=64, seed=8)
    fa, fb, fc = _all_files(a["root"]), _all_files(b["root"]), _all_files(c["root"])
    assert sorted(fa) == ["annotations/instances_train.json", "annotations/instances_val.json"] + \
        [f"train/{i:06d}.png" for i in range(1, 6)] + [f"val/{i:06d}.png" for i in (1, 2)]
    assert fa == fb                                           # byte-identical JSON and PNGs
    assert fa.keys() == fc.keys()
    assert fa["annotations/instances_train.json"] != fc["annotations/instances_train.json"]
    assert sum(fa[k] != fc[k] for k in fa if k.endswith(".png")) >= 5


def test_more_images_keep_the_first_ones_and_fewer_remove_stale_ones(tmp_path):
    a = F.make_figures_dataset(tmp_path / "a", num_train=3, num_val=1, image_size=48, seed=1)
    b = F.make_figures_dataset(tmp_path / "b", num_train=6, num_val=1, image_size=48, seed=1)
    jb = json.loads(b["train_annotations"].read_text())
    empty_in_b = {im["id"] for im in jb["images"]} - {x["image_id"] for x in jb["annotations"]}
    same = [i for i in (1, 2, 3) if i not in empty_in_b]     # (the larger run's empty image)
    assert len(same) >= 2
    for i in same:
        name = f"{i:06d}.png"
        assert (a["train_images"] / name).read_bytes() == (b["train_images"] / name).read_bytes()
    F.make_figures_dataset(tmp_path / "b", num_train=2, num_val=1, image_size=48, seed=1)
    assert sorted(p.name for p in (tmp_path / "b" / "train").glob("*.png")) == ["000001.png", "000002.png"]


def test_bad_arguments():
    for kwargs in (dict(num_train=-1), dict(max_figures=0), dict(min_size=0),
                   dict(max_size_fraction=-0.5), dict(image_size=0)):
        with pytest.raises(ValueError):
            F.make_figures_dataset("/nonexistent/never/written", **kwargs)


def test_loads_in_pycocotools_with_its_keypoint_fields(figures):
    root, paths = figures
    seen_v = set()
    for split in ("train", "val"):
        coco = _quiet_coco(paths[f"{split}_annotations"])      # pycocotools reads the file
        (cat,) = coco.loadCats(coco.getCatIds())
        assert (cat["id"], cat["name"]) == (1, "person")
        assert cat["keypoints"] == list(F.KEYPOINT_NAMES)
        assert cat["skeleton"] == [list(e) for e in F.SKELETON]
        assert all(1 <= i <= K for e in cat["skeleton"] for i in e)
        masks_of = {}
        for ann in coco.loadAnns(coco.getAnnIds()):
            img = coco.imgs[ann["image_id"]]
            assert (root / split / img["file_name"]).is_file()
            m = coco.annToMask(ann)                                     # [H, W]
            ys, xs = np.nonzero(m)
            x, y, w, h = ann["bbox"]
            assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert ann["area"] == m.sum() >= F.MIN_PIXELS and ann["iscrowd"] == 0
            kp = np.array(ann["keypoints"], np.float64).reshape(K, 3)   # [K, 3]
            assert ann["num_keypoints"] == (kp[:, 2] > 0).sum()
            assert set(kp[:, 2]) <= {0, 1, 2}
            assert (kp[kp[:, 2] == 0] == 0).all()                       # COCO: v = 0 -> x = y = 0
            lab = kp[kp[:, 2] > 0]
            assert (lab[:, :2] % 1 == 0.5).all()                        # pixel centres
            assert ((lab[:, 0] > 0) & (lab[:, 0] < img["width"])
                    & (lab[:, 1] > 0) & (lab[:, 1] < img["height"])).all()
            masks_of.setdefault(ann["image_id"], []).append((ann, m, kp))
            seen_v |= set(kp[:, 2].astype(int).tolist())
        # v = 2: the keypoint's pixel is its own figure's visible pixel; v = 1: it is not, and a
        # figure painted later (a later annotation of the image) shows there.
        for anns in masks_of.values():
            for n, (ann, m, kp) in enumerate(anns):
                for x, y, v in kp[kp[:, 2] > 0]:
                    i, j = int(y), int(x)
                    assert m[i, j] == (v == 2)
                    if v == 1:
                        assert any(later[1][i, j] for later in anns[n + 1:])
    assert seen_v == {0, 1, 2}                                  # all three occur in 20 images


def test_some_images_are_empty_and_figures_vary_in_size(figures):
    _, paths = figures
    data = json.loads(paths["train_annotations"].read_text())
    assert {im["id"] for im in data["images"]} - {a["image_id"] for a in data["annotations"]}
    heights = [a["bbox"][3] for a in data["annotations"]]
    assert min(heights) < 50 and max(heights) > 70              # 40 px .. 0.9 * 96 px figures


# ------------------------------------------------------------------------------------------
# Geometry and visibility, by hand
# ------------------------------------------------------------------------------------------
# A figure of size 50 standing straight with its arms out (90 degrees), thighs and shins at
# 20 degrees, pelvis at (12.2, 60.2). By the proportions of stickfigures.py:
#   neck  = pelvis + (0, -0.30 * 50)               = (12.2, 45.2)   -> snapped (12.5, 45.5)
#   head  = neck + (0, -(0.02 + 0.11) * 50)        = (12.2, 38.7)   -> (12.5, 38.5)
#   hands = neck +- (0.32 * 50, 0) = (28.2, 45.2) and (-3.8, 45.2)  -> (28.5, 45.5), (-3.5, 45.5)
#   knees = pelvis + 11.5 (+-sin 20, cos 20) = pelvis + (+-3.9332, 10.8064)
#         = (16.1332, 71.0064) and (8.2668, 71.0064)                -> (16.5, 71.5), (8.5, 71.5)
#   feet  = knees + the same = (20.0664, 81.8128) and (4.3336, 81.8128) -> (20.5, 81.5), (4.5, 81.5)
FIGURE_A = [(12.5, 38.5), (12.5, 45.5), (28.5, 45.5), (-3.5, 45.5), (12.5, 60.5),
            (16.5, 71.5), (8.5, 71.5), (20.5, 81.5), (4.5, 81.5)]


def test_pose_keypoints_by_hand():
    kp = F.pose_keypoints(12.2, 60.2, 50, arms=(90, 90), thighs=(20, 20), shins=(20, 20))
    np.testing.assert_array_equal(kp, FIGURE_A)
    # A turn by 90 degrees, clockwise on screen (y down), sends the neck, 15 px above the
    # pelvis (12 o'clock), to 15 px right of it (3 o'clock): (25.2, 40.2) -> (25.5, 40.5); the
    # left hand, 16 px right of the neck, goes 16 px below it: (25.2, 56.2) -> (25.5, 56.5).
    kp = F.pose_keypoints(10.2, 40.2, 50, tilt=90)
    np.testing.assert_array_equal(kp[[F.NECK, F.LEFT_HAND]], [(25.5, 40.5), (25.5, 56.5)])


def test_visibility_under_occlusion_by_hand():
    # Figure A (FIGURE_A) is painted first. Figure B, painted over it, stands with its pelvis
    # at (28.3, 60.2), arms raised (160 degrees), right thigh at 5 degrees: its torso runs
    # from its neck (28.5, 45.5) to its pelvis (28.5, 60.5), 2 * 1.5 * 0.09 * 50 / 2 = 6.75 px
    # thick, over A's left hand (28.5, 45.5). A's right hand (-3.5, 45.5) is outside the
    # 64 x 96 image. Everything else of A is uncovered.
    a = (F.pose_keypoints(12.2, 60.2, 50), 50)
    b = (F.pose_keypoints(28.3, 60.2, 50, arms=(160, 160), thighs=(20, 5), shins=(20, 5)), 50)
    s = F.compose_figures(np.random.default_rng(0), 96, 64, [a, b])
    assert s["kept"].tolist() == [0, 1]
    kp_a, kp_b = s["keypoints"]                                     # [K, 3] each
    v_a = [2, 2, 1, 0, 2, 2, 2, 2, 2]       # head neck l_hand r_hand pelvis l_knee r_knee l_foot r_foot
    assert kp_a[:, 2].tolist() == v_a
    assert kp_a[F.RIGHT_HAND].tolist() == [0, 0, 0]                 # outside: x = y = 0
    labelled = np.array(v_a) > 0
    np.testing.assert_array_equal(kp_a[labelled, :2], np.array(FIGURE_A)[labelled])
    assert kp_b[:, 2].tolist() == [2] * K                           # nothing covers B
    # The covered hand's pixel (row 45, column 28) shows B, not A.
    assert not s["masks"][0, 45, 28] and s["masks"][1, 45, 28]
    # Painted the other way round, A covers nothing of B's keypoints... except B's neck
    # and A's left hand share the pixel, which is now A's: B's neck becomes v = 1.
    s2 = F.compose_figures(np.random.default_rng(0), 96, 64, [b, a])
    kp_b2, kp_a2 = s2["keypoints"]
    assert kp_a2[:, 2].tolist() == [2, 2, 2, 0, 2, 2, 2, 2, 2]
    assert kp_b2[F.NECK, 2] == 1 and (np.delete(kp_b2[:, 2], F.NECK) == 2).all()


def test_mostly_hidden_figure_is_taken_out():
    # The same figure twice, the second exactly on top of the first: the first shows nothing.
    a = (F.pose_keypoints(30.2, 60.2, 50), 50)
    s = F.compose_figures(np.random.default_rng(0), 96, 64, [a, a])
    assert s["kept"].tolist() == [1] and s["keypoints"][0, :, 2].tolist() == [2] * K


@settings(max_examples=10)
@given(seed=st.integers(0, 2**32 - 1), h=st.integers(48, 128), w=st.integers(48, 128))
def test_scene_properties(seed, h, w):
    s = F.make_figures_image(np.random.default_rng(seed), h, w, max_figures=4)
    G = len(s["masks"])
    assert s["image"].shape == (h, w, 3) and s["keypoints"].shape == (G, K, 3)
    assert (s["masks"].sum(0) <= 1).all()                          # visible masks never overlap
    for g in range(G):
        for x, y, v in s["keypoints"][g]:
            if v == 2:
                assert s["masks"][g, int(y), int(x)]
            elif v == 1:
                assert s["masks"][g + 1:, int(y), int(x)].any()
            else:
                assert x == y == 0
        # Left limbs point to the figure's left, which faces us: the image's +x side. (Hands
        # and knees, whose angles keep them apart whatever the tilt; +-1 px each of snapping.
        # Feet may cross a little, as real feet do.)
        kp = s["keypoints"][g]
        for left, right in ((F.LEFT_HAND, F.RIGHT_HAND), (F.LEFT_KNEE, F.RIGHT_KNEE)):
            if kp[left, 2] and kp[right, 2]:
                assert kp[left, 0] >= kp[right, 0] - 2


# ------------------------------------------------------------------------------------------
# Loading and flipping (CocoDataset)
# ------------------------------------------------------------------------------------------
def test_dataset_exposes_keypoints(figures):
    root, paths = figures
    ds = CocoDataset(paths["train_images"], paths["train_annotations"])
    assert ds.keypoint_names == F.KEYPOINT_NAMES
    assert ds.skeleton.tolist() == [list(e) for e in F.SKELETON] and ds.skeleton.dtype == np.int64
    assert ds.flip_indices.tolist() == list(F.FLIP_INDICES)
    data = json.loads(paths["train_annotations"].read_text())
    for i in range(len(ds)):
        s = ds.get(i)
        anns = [a for a in data["annotations"] if a["image_id"] == s["image_id"]]
        assert s["keypoints"].shape == (len(anns), K, 3) and s["keypoints"].dtype == np.float32
        for g, a in enumerate(anns):
            np.testing.assert_array_equal(s["keypoints"][g].ravel(), a["keypoints"])


def test_flip_indices_are_torchvisions_for_coco_names():
    from mrcnn_np.eval.coco_eval import COCO_PERSON_KEYPOINTS
    # torchvision references/detection/transforms.py, _flip_coco_person_keypoints:
    flip_inds = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    assert flip_indices_of(COCO_PERSON_KEYPOINTS).tolist() == flip_inds
    assert flip_indices_of(F.KEYPOINT_NAMES).tolist() == list(F.FLIP_INDICES)
    assert flip_indices_of(["Nose", "Left Eye", "Right Eye", "LEFT_EAR", "RIGHT_EAR"]).tolist() == \
        [0, 2, 1, 4, 3]
    with pytest.raises(ValueError, match="right_hand"):
        flip_indices_of(["head", "left_hand"])


def _write_keypoint_set(root, keypoints_of, names=("nose", "left_eye", "right_eye"), w=10, h=6,
                        extra_categories=()):
    """A hand-made COCO keypoints data set: one w x h image, one box annotation per entry of
    ``keypoints_of`` (a list of the ``keypoints`` values; None leaves the field out)."""
    from PIL import Image
    (root / "img").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(root / "img" / "a.png")
    anns = []
    for n, kp in enumerate(keypoints_of):
        a = {"id": n + 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 6, 4], "area": 24,
             "iscrowd": 0, "segmentation": [[1, 1, 7, 1, 7, 5, 1, 5]]}
        if kp is not None:
            a["keypoints"] = kp
            a["num_keypoints"] = sum(v > 0 for v in kp[2::3] if isinstance(v, (int, float)))
        anns.append(a)
    cats = [{"id": 1, "name": "person", "keypoints": list(names),
             "skeleton": [[1, k] for k in range(2, len(names) + 1)]}]
    data = {"images": [{"id": 1, "file_name": "a.png", "height": h, "width": w}],
            "annotations": anns, "categories": cats + list(extra_categories)}
    (root / "ann.json").write_text(json.dumps(data))
    return root / "img", root / "ann.json"


def test_flip_by_hand(tmp_path):
    # A 10 px wide image; the nose at the centre of column 2, the left eye at the centre of
    # column 7, the right eye unlabelled. Mirrored (x -> 10 - x): the nose goes to 7.5 (the
    # centre of column 10 - 1 - 2 = 7); the left eye becomes the RIGHT eye at 10 - 7.5 = 2.5;
    # the new left eye is the old right eye, still unlabelled (0, 0, 0).
    img, ann = _write_keypoint_set(tmp_path, [[2.5, 1.5, 2, 7.5, 2.5, 1, 0, 0, 0]])
    ds = CocoDataset(img, ann)
    assert ds.flip_indices.tolist() == [0, 2, 1]
    np.testing.assert_array_equal(ds.get(0)["keypoints"][0], [[2.5, 1.5, 2], [7.5, 2.5, 1], [0, 0, 0]])
    np.testing.assert_array_equal(ds.get(0, flip=True)["keypoints"][0],
                                  [[7.5, 1.5, 2], [0, 0, 0], [2.5, 2.5, 1]])
    # The same as the box flip: the box x in [1, 7) goes to [3, 9).
    np.testing.assert_array_equal(ds.get(0, flip=True)["boxes"][0], [3, 1, 9, 5])


def test_flip_twice_is_identity_and_keypoints_stay_on_their_figure(figures):
    _, paths = figures
    ds = CocoDataset(paths["train_images"], paths["train_annotations"])
    checked = 0
    for i in range(len(ds)):
        s, f = ds.get(i), ds.get(i, flip=True)
        w = s["image"].shape[2]
        np.testing.assert_array_equal(f["keypoints"], flip_keypoints(s["keypoints"], w, ds.flip_indices))
        np.testing.assert_array_equal(flip_keypoints(f["keypoints"], w, ds.flip_indices), s["keypoints"])
        np.testing.assert_array_equal(f["image"][:, :, ::-1], s["image"])
        for g in range(len(f["keypoints"])):
            for x, y, v in f["keypoints"][g]:
                if v == 2:                          # on the flipped figure's visible pixels
                    assert f["masks"][g, int(y), int(x)] == 1
                    checked += 1
            # Flipped, the figure's left limbs are still on the image's +x side: the flip
            # mirrored the picture AND swapped the names.
            kp = f["keypoints"][g]
            for left, right in ((F.LEFT_HAND, F.RIGHT_HAND), (F.LEFT_KNEE, F.RIGHT_KNEE)):
                if kp[left, 2] and kp[right, 2]:
                    assert kp[left, 0] >= kp[right, 0] - 2
    assert checked > 100


def test_flip_keypoints_leaves_its_input_alone():
    kp = np.array([[[1.5, 2.5, 2], [3.5, 4.5, 1], [0, 0, 0]]], np.float32)
    before = kp.copy()
    flip_keypoints(kp, 8, [0, 2, 1])
    np.testing.assert_array_equal(kp, before)
    assert flip_keypoints(np.zeros((0, 3, 3)), 8, [0, 2, 1]).shape == (0, 3, 3)


def test_bad_keypoint_annotations_skipped_with_one_warning(tmp_path):
    good = [2.5, 1.5, 2, 7.5, 2.5, 1, 0, 0, 0]
    img, ann = _write_keypoint_set(tmp_path, [
        good,
        good[:6],                                   # wrong length
        [2.5, math.nan, 2, 7.5, 2.5, 1, 0, 0, 0],   # not finite (JSON NaN)
        [2.5, 1.5, 3, 7.5, 2.5, 1, 0, 0, 0],        # visibility 3
        "nose",                                     # not a list
        None,                                       # no keypoints: kept, all unlabelled
    ])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CocoDataset(img, ann)
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "skipped 4 bad annotations" in msgs[0], msgs
    assert ds.skipped == {"keypoints not 3 x 3 numbers": 2, "number not finite (NaN or Inf)": 1,
                          "keypoint visibility not 0, 1 or 2": 1}
    kp = ds.get(0)["keypoints"]
    assert kp.shape == (2, 3, 3)
    np.testing.assert_array_equal(kp[0].ravel(), good)
    np.testing.assert_array_equal(kp[1], 0)


def test_metadata_errors(tmp_path):
    img, ann = _write_keypoint_set(tmp_path / "a", [None], names=("nose", "left_eye"))
    with pytest.raises(DataError, match="'left_eye' has no 'right_eye'"):
        CocoDataset(img, ann)
    data = json.loads(ann.read_text())
    data["categories"][0]["skeleton"] = [[1, 3]]
    ann.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"skeleton's keypoint indices are not in 1\.\.2"):
        CocoDataset(img, ann)
    other = {"id": 2, "name": "dog", "keypoints": ["tail"]}
    img, ann = _write_keypoint_set(tmp_path / "b", [None], extra_categories=[other])
    with pytest.raises(DataError, match="different keypoint names"):
        CocoDataset(img, ann)


def test_categories_without_keypoints_and_sets_without_keypoints(tmp_path):
    # A category without keypoints beside one with: its instances get K unlabelled keypoints.
    img, ann = _write_keypoint_set(tmp_path / "a", [None], extra_categories=[{"id": 2, "name": "ball"}])
    data = json.loads(ann.read_text())
    data["annotations"].append(dict(data["annotations"][0], id=2, category_id=2,
                                    keypoints=[1.5, 1.5, 2], num_keypoints=1))  # (not read)
    ann.write_text(json.dumps(data))
    s = CocoDataset(img, ann).get(0, flip=True)
    assert s["keypoints"].shape == (2, 3, 3) and (s["keypoints"] == 0).all()
    # A data set without keypoints: no keypoint fields, as before.
    p = make_shapes_dataset(tmp_path / "shapes", num_train=2, num_val=1, image_size=40, seed=0)
    ds = CocoDataset(p["train_images"], p["train_annotations"])
    assert ds.keypoint_names is None and ds.skeleton is None and ds.flip_indices is None
    for flip in (False, True):
        assert "keypoints" not in ds.get(0, flip=flip)


# ------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------
def _cli(*args):
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    p = subprocess.run([sys.executable, "-m", "mrcnn_np", *map(str, args)], capture_output=True,
                       text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=path), timeout=300)
    return p.returncode, p.stdout, p.stderr


def test_cli_make_figures(tmp_path):
    rc, out, err = _cli("make-figures", "--out", tmp_path / "d", "--train", 2, "--val", 1,
                        "--size", 48, "--seed", 4)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "d" / "train").iterdir()) == ["000001.png", "000002.png"]
    ref = F.make_figures_dataset(tmp_path / "ref", num_train=2, num_val=1, image_size=48, seed=4)
    assert _all_files(tmp_path / "d") == _all_files(ref["root"])     # the same files
    for bad, needle in ((("--train", -1), "num_train"), (("--size", 0), "image sizes")):
        rc, out, err = _cli("make-figures", "--out", tmp_path / "e", *bad)
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc == 1 and len(lines) == 1 and lines[0].startswith("error: "), err
        assert needle in lines[0] and "Traceback" not in err
    assert not (tmp_path / "e" / "annotations").exists()
