"""Held-out AP: a short training run learns something that carries over to images it never saw.

The run is the demo's, made short: the ``tiny`` preset as the demo builds it (``tiny()``, no
overrides), the demo's data set (``DEMO``'s image size, seed and number of images; the 50
validation images are never trained on), and the demo's optimiser settings (optimiser, batch
size, lr, gradient clipping, seed; one process, the reference path), for ``ITERS`` iterations with ``train``'s own schedule for that
length (warm-up, then lr steps at 75% and 90%). It is then scored by pycocotools on the
validation split, the images it did not train on, and so is the same model before training.

The floor is on mask AP50 (segm, IoU 0.5), with margin on both sides; measured on this
project's 2-core machines, 50 validation images:

    untrained model (the run's initial weights)   mask AP50 0.0000, bbox AP50 0.0001
    300 iterations, seed 0, AMD EPYC machine       mask AP50 0.159 with the demo's AdamW
    the same on the Intel Xeon (AVX-512) machine   0.047 at 300, 0.171 at 400, 0.340 at
      of 2026-12-02 (the same code and seed)       500 iterations (each its own schedule)

The two machines train different runs from the same code and seed (OpenBLAS adds in another
order per CPU: README), and at 300 iterations AP is still so small and rising so fast that
one run was 3x above the floor and the other just below it. So ITERS is 500: the floor,
0.05, is then 7x below what the run reaches here, and out of reach of a model that did not
learn (untrained: no mask reaches IoU 0.5) or learned the wrong thing (a broken mask branch).
500 iterations is still early in training (the demo's 3,600 reach 0.97, README), so the test
says "it learns, and what it learns transfers", not "it is good". It pins no
hyper-parameter: a demo that trains faster only moves the run further above the floor.

Time: 500 iterations at ~0.2 s on a quiet core plus two evaluations of 50 images, about 2
minutes (98 s measured on the Xeon machine, one thread).
"""
from dataclasses import replace

import numpy as np
import pytest

from mrcnn_np.config import tiny
from mrcnn_np.data.shapes import make_shapes_dataset
from mrcnn_np.demo import DEMO
from mrcnn_np.model import MaskRCNN
from mrcnn_np.train import evaluate_model, load_split, train

ITERS = 500
FLOOR = 0.05  # validation mask AP50; see the module docstring for the measurements


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("heldout") / "data"
    make_shapes_dataset(root, num_train=DEMO["num_train"], num_val=DEMO["num_val"],
                        image_size=(DEMO["image_size"], DEMO["image_size"]), seed=DEMO["data_seed"])
    return root


def test_validation_images_are_not_training_images(demo_data):
    train_ds, val_ds = load_split(demo_data, "train"), load_split(demo_data, "val")
    seen = {train_ds.get(i)["image"].tobytes() for i in range(len(train_ds))}
    assert len(val_ds) == DEMO["num_val"]
    assert not any(val_ds.get(i)["image"].tobytes() in seen for i in range(len(val_ds)))


@pytest.mark.slow
def test_short_demo_run_beats_the_floor_on_validation_images(demo_data, tmp_path):
    val_ds = load_split(demo_data, "val")
    summary = train(tiny(), demo_data, tmp_path / "run", iters=ITERS,
                    batch_size=DEMO["batch_size"], optimizer=DEMO["optimizer"], lr=DEMO["lr"],
                    clip_grad_norm=DEMO["clip_grad_norm"], seed=DEMO["seed"],
                    checkpoint_every=ITERS, eval_every=0, progress=False, log=lambda m: None)
    trained = summary["eval"]                                # pycocotools on the val split
    assert summary["iterations"] == ITERS

    # The same model before its first step: train() draws the initial weights from the first
    # child of SeedSequence(seed) (its docstring), so this is the run's own starting point.
    init_seq, _ = np.random.SeedSequence(DEMO["seed"]).spawn(2)
    untrained = MaskRCNN(replace(tiny(), num_classes=val_ds.num_classes),
                         rng=np.random.default_rng(init_seq))
    before, _ = evaluate_model(untrained, val_ds)

    ap50, ap50_before = trained["segm"]["AP50"], before["segm"]["AP50"]
    report = f"mask AP50 on {len(val_ds)} validation images: {ap50_before:.4f} -> {ap50:.4f}"
    print(report)
    assert ap50_before < FLOOR, report                       # the floor is out of reach untrained
    assert ap50 >= FLOOR, report
    assert trained["bbox"]["AP50"] > before["bbox"]["AP50"], (trained["bbox"], before["bbox"])
