"""Training Mask R-CNN, written out plainly (chapter 10).

    summary = train(tiny(), "data/shapes", "runs/r1", iters=300, batch_size=2, lr=0.02)

One iteration of the loop in :func:`train` is

    1. pick ``batch_size`` training images at random, and flip each with probability 1/2
    2. ``losses = model.forward_backward(images, targets, rng)``  (fills every layer's .grads)
    3. check that every loss (and every gradient) is finite -- BEFORE the optimiser step,
       so a NaN can never reach the weights; optionally clip the gradient's global norm
    4. ``optimizer.lr = warmup_multistep_lr(iteration, ...)``; ``optimizer.step()``
    5. log the losses and the learning rate (one JSON line per iteration)

and, every so often, a checkpoint, the loss-curve picture and a COCO evaluation.

The pieces, in the order a run uses them: :func:`setup_run` (read and check the data, every
image of both splits included, BEFORE the first iteration; build or restore the model, the
optimiser and the RNG), :func:`train_step` (one iteration, as above), :func:`save_run_checkpoint`
and :func:`evaluate_run`. :func:`train` is the loop that calls them.

All randomness (which images, which flips, scale jitter, anchor and RoI sampling) is drawn
from ONE ``numpy.random.Generator``. A checkpoint stores its state together with the weights,
the BatchNorm statistics and the optimiser's momentum buffers, so ``resume=True`` continues
exactly: the resumed run draws the same numbers and computes the same losses, bit for bit,
as a run that was never interrupted.

Files in ``out_dir`` (every one is written to a temporary file first and then renamed over
the old one, so a crash never leaves a half-written file where a good one was)::

    checkpoint.npz     weights, optimiser state, iteration, RNG state, config, hyper-parameters
    weights.npz        the weights only (what ``predict`` and ``evaluate`` load), at the end,
                       written BEFORE the final evaluation: a failing evaluation costs no weights
                       (with ``ema_decay``: the weight average, which is also what is evaluated)
    config.json        the config and the class names (``predict`` reads it next to weights.npz)
    log.jsonl          one line per iteration: {"iter", "lr", every loss, "grad_norm", "time"}
    loss_curve.png     the losses against the iteration
    eval_iter{N}.json  COCO bbox and segm AP on the validation split after iteration N

Checkpoints are written only between iterations. Ctrl-C (or a crash) loses the iterations
since the last checkpoint, never the checkpoint itself.
"""
import json
import math
import time
import zipfile
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .checkpoint import (BadNpzFile, atomic_save_png, atomic_write_bytes, atomic_write_json,
                         load_npz, save_npz_atomic)
from .config import config_from_dict
from .data.coco import CocoDataset, DataError, check_images, flip_vertical_transpose
from .nn.optim import SGD, AdamW, WeightEMA, warmup_multistep_lr

# Defaults of the optimiser, as torchvision's detection reference script
# (references/detection/train.py: --momentum 0.9, --wd 1e-4, warm-up factor 1/1000).
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4
WARMUP_FACTOR = 1e-3
OPTIMIZERS = ("sgd", "adamw")


class TrainingDiverged(RuntimeError):
    """A loss or a gradient became NaN or Inf; the message is one line and says what to do."""


# ------------------------------------------------------------------------------------------
# Text in an .npz
# ------------------------------------------------------------------------------------------
def _text_array(obj):
    """A JSON-able object as a uint8 array (how strings travel in an ``.npz`` without pickle)."""
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8).copy()


def _from_text_array(a):
    return json.loads(np.asarray(a, np.uint8).tobytes().decode())


# ------------------------------------------------------------------------------------------
# Data on disk
# ------------------------------------------------------------------------------------------
def find_split(data_dir, split):
    """Where a split of a COCO data set lies: ``data_dir/<split>/`` for the images and
    ``data_dir/annotations/instances_<split>.json`` (the layout ``make-shapes`` writes; COCO's
    own ``train2017`` / ``instances_train2017.json`` names are found too).

    Returns (image_dir, ann_file). Raises DataError for a missing or empty data folder or a
    missing split."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data folder not found")
    if not any(data_dir.iterdir()):
        raise DataError(f"{data_dir}: data folder is empty")
    for name in (split, f"{split}2017"):
        image_dir, ann_file = data_dir / name, data_dir / "annotations" / f"instances_{name}.json"
        if image_dir.is_dir() or ann_file.is_file():
            if not ann_file.is_file():
                raise DataError(f"{ann_file}: annotation file not found")
            return image_dir, ann_file
    raise DataError(f"{data_dir}: no '{split}' split (expected {data_dir / split}/ and "
                    f"{data_dir / 'annotations' / f'instances_{split}.json'})")


def load_split(data_dir, split, check_files=True):
    """``CocoDataset`` of one split (see :func:`find_split`); ``check_files=False`` leaves
    missing image files to ``check_images``, which names every bad file at once."""
    image_dir, ann_file = find_split(data_dir, split)
    return CocoDataset(image_dir, ann_file, train=False, check_files=check_files)


# ------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------
def save_checkpoint(path, model, optimizer, iteration, rng, hparams, class_names, ema=None):
    """Everything needed to continue exactly, in one ``.npz`` (no pickle):

    ``model.<name>``   every parameter and buffer (BatchNorm running statistics included)
    ``optim.<name>``   the optimiser's momentum buffers and step count
    ``ema.<name>``     the weight average and its update count (a run with ``ema_decay``)
    ``iteration``      iterations completed, 0-d int64
    ``rng_state``      the Generator's ``bit_generator.state`` as JSON text in a uint8 array
    ``config``         ``cfg.to_dict()`` as JSON text;  ``hparams``, ``class_names`` likewise
    """
    arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optim.{k}": v for k, v in optimizer.state_dict().items()})
    if ema is not None:
        arrays.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    arrays["iteration"] = np.asarray(iteration, np.int64)
    arrays["rng_state"] = _text_array(rng.bit_generator.state)
    arrays["config"] = _text_array(model.cfg.to_dict())
    arrays["hparams"] = _text_array(hparams)
    arrays["class_names"] = _text_array(list(class_names))
    save_npz_atomic(path, arrays)


def read_checkpoint(path):
    """The parts of a checkpoint: dict with model_state, optim_state, ema_state (empty for a
    run without a weight average), iteration, rng (a Generator in the saved state), config (a
    Config), hparams and class_names.
    Raises DataError, one line naming the file, for a file that is not a readable checkpoint
    (truncated, not an .npz, an object array, a missing or garbled entry)."""
    try:
        z = load_npz(path)
    except BadNpzFile as e:  # "<path>: <what>" -> "<path>: not a readable checkpoint: <what>"
        raise DataError(str(e).replace(": ", ": not a readable checkpoint: ", 1)) from None
    missing = [k for k in ("iteration", "rng_state", "config", "hparams", "class_names")
               if k not in z]
    if missing:
        raise DataError(f"{path}: not a training checkpoint (no {', '.join(missing)})")
    try:
        state = _from_text_array(z["rng_state"])
        rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
        rng.bit_generator.state = state
        return dict(
            model_state={k[len("model."):]: v for k, v in z.items() if k.startswith("model.")},
            optim_state={k[len("optim."):]: v for k, v in z.items() if k.startswith("optim.")},
            ema_state={k[len("ema."):]: v for k, v in z.items() if k.startswith("ema.")},
            iteration=int(z["iteration"]), rng=rng,
            config=config_from_dict(_from_text_array(z["config"])),
            hparams=_from_text_array(z["hparams"]), class_names=_from_text_array(z["class_names"]))
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: a damaged training checkpoint ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:120]})") from None


def extract_weights(arrays):
    """Model weights from what an ``.npz`` holds: a checkpoint's ``model.*`` entries with the
    prefix taken off (its weight average ``ema.*`` in place of the parameters, when the run
    keeps one: those are the weights it evaluates and saves), or the arrays themselves for a
    weights file."""
    if "iteration" in arrays and any(k.startswith("model.") for k in arrays):
        weights = {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}
        weights.update({k[len("ema."):]: v for k, v in arrays.items()
                        if k.startswith("ema.") and k != "ema.updates"})
        return weights
    return arrays


# ------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------
def predict_dataset(model, ds, max_images=None, progress=False):
    """Run ``model.predict`` on each image of ``ds`` (one at a time; sizes may differ) and
    turn its detections into COCO results at once, pasting the masks a few at a time, so that
    memory holds one image's detections, never the data set's full-size masks.
    Returns (results: the COCO list, image_ids: the images predicted)."""
    from tqdm import tqdm

    from .eval.coco_eval import detection_to_coco_results
    n = len(ds) if max_images is None else min(len(ds), max_images)
    results, ids = [], []
    for i in tqdm(range(n), desc="predict", disable=not progress, leave=False):
        sample = ds.get(i)
        pred = model.predict([sample["image"]], paste_masks=False)[0]  # masks [D, 1, M, M]
        results += detection_to_coco_results(pred, sample["image_id"], sample["orig_size"],
                                              ds.label_to_cat_id, paste=model.transform.mask_paste)
        ids.append(sample["image_id"])
    return results, ids


def iou_types(cfg):
    """What COCOeval scores for a model of configuration ``cfg``: boxes always, masks when it
    has a mask branch, keypoints (OKS) when it has a keypoint branch."""
    return ("bbox",) + (("segm",) if cfg.masks else ()) + (("keypoints",) if cfg.keypoints else ())


def evaluate_model(model, ds, max_images=None, progress=False):
    """COCO AP of ``model`` on ``ds`` (pycocotools' COCOeval) for each of ``iou_types``.
    Returns (stats, results): stats {iou_type: {"AP", "AP50", ...}}, results the COCO list."""
    from .eval.coco_eval import coco_evaluate
    results, ids = predict_dataset(model, ds, max_images, progress)
    coco_gt = ds.coco
    if max_images is not None and max_images < len(ds):  # score only the images we predicted
        coco_gt = _subset_coco(ds.coco, ids)
    return coco_evaluate(coco_gt, results, iou_types=iou_types(model.cfg)), results


def _subset_coco(coco, image_ids):
    import contextlib
    import io

    from pycocotools.coco import COCO
    keep = set(image_ids)
    sub = COCO()
    sub.dataset = dict(coco.dataset, images=[i for i in coco.dataset["images"] if i["id"] in keep],
                       annotations=[a for a in coco.dataset["annotations"] if a["image_id"] in keep])
    with contextlib.redirect_stdout(io.StringIO()):
        sub.createIndex()
    return sub


# ------------------------------------------------------------------------------------------
# Pictures
# ------------------------------------------------------------------------------------------
def plot_loss_curve(records, path, smooth=10):
    """Each loss against the iteration (log scale, thin: raw; thick: the mean of the last
    ``smooth`` iterations) and the learning rate below it. Written atomically to ``path``."""
    # A Figure of its own, not pyplot: no backend is switched, so a notebook that trains
    # keeps drawing its own figures inline afterwards.
    from matplotlib.figure import Figure
    it = np.array([r["iter"] for r in records])  # [T]
    fig = Figure(figsize=(8, 6))
    ax, ax_lr = fig.subplots(2, 1, sharex=True, gridspec_kw=dict(height_ratios=(3, 1)))
    for key in [k for k in records[0] if k.startswith("loss")]:  # the total, then each loss
        y = np.array([r[key] for r in records], np.float64)  # [T]
        c = np.concatenate([[0.0], np.cumsum(y)])  # [T + 1]
        lo = np.maximum(np.arange(1, len(y) + 1) - smooth, 0)  # [T] window start
        mean = (c[1:] - c[lo]) / (np.arange(1, len(y) + 1) - lo)  # [T] trailing mean
        line, = ax.plot(it, mean, lw=2.5 if key == "loss" else 1.5, label=key)
        ax.plot(it, y, lw=0.5, alpha=0.3, color=line.get_color())
    ax.set_yscale("log")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    ax_lr.plot(it, [r["lr"] for r in records], color="k")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("iteration")
    ax_lr.grid(alpha=0.3)
    atomic_save_png(path, fig)


def _read_log(path, upto):
    """The log records of iterations 1..upto (a resumed run drops the lines it will redo)."""
    if not Path(path).is_file():
        return []
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a crash
            continue
        if r.get("iter", math.inf) <= upto:
            records.append(r)
    return records


# ------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------
def sample_batch(ds, indices, rng, batch_size, flip=True):
    """``batch_size`` samples drawn from ``indices`` (without replacement inside a batch, when
    there are enough), each flipped left-right with probability 1/2. ``flip="dihedral"`` also
    turns each upside down with probability 1/2 and transposes it with probability 1/2 (one of
    the square's 8 symmetries, uniformly; for data whose objects have no up). Every choice
    comes from ``rng``. Returns (images: list of [3, H, W], targets: list of dicts
    boxes/labels/masks, and keypoints when the data set has them)."""
    picks = rng.choice(len(indices), size=batch_size, replace=batch_size > len(indices))  # [B]
    flips = rng.random(batch_size) < 0.5 if flip else np.zeros(batch_size, bool)  # [B]
    turns = (rng.random((batch_size, 2)) < 0.5 if flip == "dihedral"
             else np.zeros((batch_size, 2), bool))                   # [B, 2] = (vflip, transpose)
    images, targets = [], []
    for p, f, (v, tr) in zip(picks, flips, turns):
        s = ds.get(int(indices[p]), flip=bool(f))
        if v or tr:
            s = flip_vertical_transpose(s, v, tr)
        images.append(s["image"])  # [3, H, W]
        t = dict(boxes=s["boxes"], labels=s["labels"], masks=s["masks"])
        if "keypoints" in s:  # [G, K, 3], flipped with its left/right swap by ds.get
            t["keypoints"] = s["keypoints"]
        targets.append(t)
    return images, targets


def _check_finite(losses, model):
    """What is not finite (a loss, or else a gradient), as a phrase; None when all is well.
    Also returns the global gradient norm sqrt(sum of squares), logged to watch for blow-ups."""
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    if bad:
        return ", ".join(f"{k} = {losses[k]}" for k in bad), math.nan
    from .ops._backend import resolve_backend
    if resolve_backend(getattr(model.cfg, "backend", "numpy"), "the gradient norm",
                       ("numba",)) == "numba":
        from kernels.optim_numba import sum_of_squares  # the line below, the same bits
    else:
        def sum_of_squares(g):
            return float(np.sum(np.square(g, dtype=np.float64)))
    sq = 0.0
    for name, _, g in model.named_parameters():
        s = sum_of_squares(np.ascontiguousarray(g))
        if not math.isfinite(s):
            return f"the gradient of {name} is not finite", math.nan
        sq += s
    return None, math.sqrt(sq)


@dataclass
class Run:
    """What a training run holds between iterations (built by :func:`setup_run`)."""
    out_dir: Path
    model: object                  # MaskRCNN
    optimizer: SGD                 # or AdamW (hp["optimizer"])
    rng: np.random.Generator       # every random draw of the run
    hp: dict                       # the hyper-parameters (saved in every checkpoint)
    start: int                     # iterations done before this call of train()
    train_ds: CocoDataset
    indices: np.ndarray            # [T] the training images that have at least one target
    val_ds: CocoDataset = None     # None: no evaluation
    records: list = field(default_factory=list)  # the log, one dict per iteration done
    parallel: object = None        # a parallel.DataParallel while training on several workers
    ahead: tuple = None            # (rng state before it, images, targets): the next batch,
    # drawn while the DataParallel workers ran this step's backward (train_step)
    ema: object = None             # a WeightEMA when hp["ema_decay"]: what is evaluated, saved

    @property
    def ckpt_path(self):
        return self.out_dir / "checkpoint.npz"

    @property
    def log_path(self):
        return self.out_dir / "log.jsonl"

    @property
    def class_names(self):
        return self.train_ds.class_names


def hyper_parameters(iters, batch_size, lr, momentum, weight_decay, warmup_iters, warmup_factor,
                     milestones, gamma, clip_grad_norm, seed, flip, optimizer="sgd",
                     ema_decay=None):
    """The run's hyper-parameters as a JSON-able dict, with the defaults filled in: warm-up
    min(100, iters // 5), lr steps at 75% and 90% of ``iters``."""
    if ema_decay is not None and not 0.0 < ema_decay < 1.0:
        raise ValueError(f"ema_decay must be between 0 and 1, got {ema_decay}")
    warmup = min(100, iters // 5) if warmup_iters is None else warmup_iters
    if milestones is None:
        milestones = (max(1, int(0.75 * iters)), max(1, int(0.9 * iters)))
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    return dict(optimizer=optimizer, batch_size=batch_size, lr=lr, momentum=momentum,
                weight_decay=weight_decay,
                warmup_iters=warmup, warmup_factor=warmup_factor, gamma=gamma,
                milestones=sorted(int(m) for m in milestones), clip_grad_norm=clip_grad_norm,
                seed=seed, flip="dihedral" if flip == "dihedral" else bool(flip),
                ema_decay=None if ema_decay is None else float(ema_decay))


def make_optimizer(model, hp):
    """The run's optimiser: ``hp["optimizer"]`` is "sgd" (momentum ``hp["momentum"]``, L2
    weight decay folded into the gradient) or "adamw" (decoupled weight decay; ``momentum``
    unused). Checkpoints written before the choice existed are SGD runs."""
    kind = hp.get("optimizer", "sgd")
    if kind == "adamw":
        return AdamW(model, lr=hp["lr"], weight_decay=hp["weight_decay"],
                     backend=model.cfg.backend)
    return SGD(model, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])


def _earlier_run(out_dir):
    """Why ``out_dir`` must not be started afresh, or None. A run that stopped before its
    first checkpoint after iteration 0 (a failed start) blocks nothing: starting again loses
    nothing that ``--resume`` would keep."""
    ckpt, log_file = out_dir / "checkpoint.npz", out_dir / "log.jsonl"
    if ckpt.is_file():
        try:
            with np.load(ckpt, allow_pickle=False) as z:
                done = int(z["iteration"])
        except (zipfile.BadZipFile, ValueError, OSError, KeyError, EOFError):  # damaged: keep it
            return f"{ckpt}: holds an earlier run's checkpoint, which cannot be read; move it " \
                   f"away, or use another --out"
        return None if done == 0 else f"{out_dir}: holds an earlier run (iteration {done}); " \
                                      f"use --resume to continue it, or another --out"
    if log_file.is_file():
        return f"{out_dir}: holds an earlier run; use --resume to continue it, or another --out"
    return None


INIT_PREFIXES = ("backbone.", "rpn.")  # what init_from copies


def init_from(model, path, prefixes=INIT_PREFIXES):
    """Start a fresh model from another run's weights (``.npz``): every parameter whose name
    starts with one of ``prefixes`` and whose shape matches is copied (by default the backbone
    and the RPN, the part that does not depend on the classes: as the paper starts from
    ImageNet weights). Returns the number of tensors copied; DataError when none fits."""
    from .checkpoint import BadNpzFile, load_npz
    try:
        weights = extract_weights(load_npz(path))
    except (BadNpzFile, OSError) as e:
        raise DataError(f"{path}: cannot read weights to start from ({e})") from None
    n = 0
    for name, p, _ in model.named_parameters():
        w = weights.get(name)
        if name.startswith(tuple(prefixes)) and w is not None and w.shape == p.shape:
            p[...] = w
            n += 1
    if n == 0:
        raise DataError(f"{path}: no {' / '.join(prefixes)} weights of this model's shapes")
    return n


def setup_run(cfg, data_dir, out_dir, hp, resume, train_split="train", val_split="val",
              evaluate=True, log=print, init_weights=None):
    """Everything before the first iteration, in the order that loses nothing:

    1. the data: both splits read, every annotation checked (bad ones skipped with a counted
       warning) and EVERY image of both splits checked (``check_images``: one error naming all
       bad files), so that a data problem shows before training, not after it;
    2. the model, the optimiser and the RNG, fresh (``hp``, seeded by ``hp["seed"]``) or from
       ``out_dir/checkpoint.npz`` (``resume``; then ``hp`` is the checkpoint's);
    3. ``config.json``, the log trimmed to the checkpoint, and a checkpoint at iteration 0.

    Returns a :class:`Run`. Raises DataError for bad data, a missing or damaged checkpoint, or
    an ``out_dir`` that holds an earlier run (without ``resume``).
    """
    from .model import MaskRCNN
    out_dir = Path(out_dir)
    train_ds = load_split(data_dir, train_split, check_files=False)
    val_ds = None
    if evaluate:
        try:
            val_ds = load_split(data_dir, val_split, check_files=False)
        except DataError as e:
            log(f"note: no evaluation ({e})")
    check_images([train_ds] + ([val_ds] if val_ds is not None else []))
    # Images without objects are left out of training, as torchvision's reference script
    # does; they stay in the validation split, where they count false positives.
    indices = np.flatnonzero(train_ds.instances_per_image > 0)  # [T]
    if len(indices) == 0:
        raise DataError(f"{train_ds.ann_file}: no image has a usable annotation")

    ckpt_path = out_dir / "checkpoint.npz"
    if resume:
        if not ckpt_path.is_file():
            raise DataError(f"{ckpt_path}: no checkpoint to resume from")
        ck = read_checkpoint(ckpt_path)
        cfg, hp, rng, start = ck["config"], ck["hparams"], ck["rng"], ck["iteration"]
        model = MaskRCNN(cfg)
        try:
            model.load_state_dict(ck["model_state"])
        except ValueError as e:
            raise DataError(f"{ckpt_path}: its weights do not fit its own config "
                            f"({' '.join(str(e).split())[:200]})") from None
        log(f"resuming from {ckpt_path} at iteration {start}")
    else:
        why = _earlier_run(out_dir)
        if why is not None:
            raise DataError(why)
        cfg = replace(cfg, num_classes=train_ds.num_classes)
        if cfg.keypoints:  # a keypoint model takes K from the data, which must have keypoints
            if train_ds.keypoint_names is None:
                raise DataError(f"{train_ds.ann_file}: no category lists keypoints, but the "
                                f"{cfg.name} config trains a keypoint head")
            cfg = replace(cfg, keypoints=len(train_ds.keypoint_names))
        init_seq, train_seq = np.random.SeedSequence(hp["seed"]).spawn(2)
        model = MaskRCNN(cfg, rng=np.random.default_rng(init_seq))
        rng = np.random.default_rng(train_seq)
        start = 0
    if hp["flip"] == "dihedral" and train_ds.keypoint_names is not None:
        raise DataError(f"{train_ds.ann_file}: has keypoints, and people have an up: the "
                        f"dihedral flips (upside down, transposed) would teach upside-down "
                        f"figures; train with the left-right flip only")
    if train_ds.num_classes != cfg.num_classes:
        raise DataError(f"{train_ds.ann_file}: {train_ds.num_classes - 1} categories, but the "
                        f"checkpoint's model has {cfg.num_classes - 1}")
    optimizer = make_optimizer(model, hp)
    if resume:
        try:
            optimizer.load_state_dict(ck["optim_state"])
        except ValueError as e:
            raise DataError(f"{ckpt_path}: damaged optimiser state ({e})") from None

    ema = None
    if hp.get("ema_decay") is not None:
        ema = WeightEMA(model, hp["ema_decay"])
        if resume:
            if "updates" not in ck["ema_state"]:
                raise DataError(f"{ckpt_path}: the run keeps a weight average (ema_decay "
                                f"{hp['ema_decay']}), but the checkpoint has none")
            try:
                ema.load_state_dict(ck["ema_state"])
            except ValueError as e:
                raise DataError(f"{ckpt_path}: damaged weight average ({e})") from None

    run = Run(out_dir=out_dir, model=model, optimizer=optimizer, rng=rng, hp=hp, start=start,
              train_ds=train_ds, indices=indices, val_ds=val_ds, ema=ema)
    keypoint_meta = {} if train_ds.keypoint_names is None else dict(  # what predict draws
        keypoint_names=list(train_ds.keypoint_names),
        skeleton=np.asarray(train_ds.skeleton).tolist())
    atomic_write_json(out_dir / "config.json", dict(
        config=cfg.to_dict(), class_names=run.class_names,
        label_to_cat_id=train_ds.label_to_cat_id, hparams=hp, **keypoint_meta))
    # the log: keep what the checkpoint covers, drop what will be redone
    run.records = _read_log(run.log_path, upto=start) if resume else []
    atomic_write_bytes(run.log_path, "".join(json.dumps(r) + "\n" for r in run.records).encode())
    if not resume:
        if init_weights is not None:  # before checkpoint 0, so that a resume starts from them
            n = init_from(model, init_weights)
            log(f"started {n} backbone and RPN tensors from {init_weights}")
        save_run_checkpoint(run, 0)  # a good checkpoint exists from the start
    return run


def _draw_batch(run):
    return sample_batch(run.train_ds, run.indices, run.rng, run.hp["batch_size"],
                        flip=run.hp.get("flip", True))


def _draw_ahead(run):
    """Draw the next iteration's batch now (``run.ahead``), keeping the rng state from before
    the draw: a checkpoint saves that state, so a resumed run draws the same batch again."""
    state = run.rng.bit_generator.state
    images, targets = _draw_batch(run)
    run.ahead = (state, images, targets)
    return images, targets


def train_step(run, i, more=False):
    """Iteration ``i`` (0-based): sample a batch, forward and backward, the finite check
    BEFORE the step, optional clipping, the scheduled lr, the SGD step. ``more``: another
    iteration follows (on DataParallel workers its batch is then drawn during this one).
    Returns the log record {"iter": i + 1, "lr", every loss, "grad_norm", "time"}.
    Raises TrainingDiverged (the weights untouched) when a loss or gradient is not finite."""
    t0 = time.perf_counter()
    model, hp = run.model, run.hp
    if run.ahead is not None:  # drawn during the last step, from the same rng in the same order
        _, images, targets = run.ahead
        run.ahead = None
    else:
        images, targets = _draw_batch(run)
    if run.parallel is None:
        losses = model.forward_backward(images, targets, run.rng)
    else:
        # While the workers run this batch's losses and backward, the master draws (and
        # transforms) the next batch: those draws come after this step's anchor and RoI
        # draws either way, so the sequence of random numbers is the one of a step at a time
        losses = run.parallel.forward_backward(
            images, targets, run.rng, draw_next=(lambda: _draw_ahead(run)) if more else None)
    problem, grad_norm = _check_finite(losses, model)
    if problem is not None:
        raise TrainingDiverged(
            f"iteration {i + 1}: {problem}; stopped before the optimiser step. The last good "
            f"checkpoint is {run.ckpt_path} (iteration "
            f"{read_checkpoint(run.ckpt_path)['iteration']}); try a lower --lr")
    clip = hp.get("clip_grad_norm")
    if clip is not None and grad_norm > clip:  # one scale for all: the direction is kept
        for _, _, g in model.named_parameters():
            g *= g.dtype.type(clip / (grad_norm + 1e-6))
    run.optimizer.lr = warmup_multistep_lr(i, hp["lr"], hp["warmup_iters"], hp["warmup_factor"],
                                           hp["milestones"], hp["gamma"])
    run.optimizer.step()
    if run.ema is not None:
        run.ema.update()
    return dict(iter=i + 1, lr=run.optimizer.lr,
                **{k: losses[k] for k in ("loss",) + model.loss_names},
                grad_norm=grad_norm, time=time.perf_counter() - t0)


LOSS_CURVE_EVERY_S = 60.0  # loss_curve.png is redrawn with a checkpoint at most once a
# minute, and at the end: a plot of 2,400 iterations takes about a second, 2.7% of make demo
# when it was drawn at each of its 12 checkpoints


def save_run_checkpoint(run, done, plot=True):
    """``checkpoint.npz`` after ``done`` iterations, and (``plot``) the loss curve so far."""
    rng = run.rng
    if run.ahead is not None:  # the next batch is drawn already: save the state from before
        rng = np.random.Generator(type(run.rng.bit_generator)())
        rng.bit_generator.state = run.ahead[0]
    save_checkpoint(run.ckpt_path, run.model, run.optimizer, done, rng, run.hp,
                    run.class_names, ema=run.ema)
    if plot and run.records:
        plot_loss_curve(run.records, run.out_dir / "loss_curve.png")


def _averaged(run):
    """``with _averaged(run) as model:`` the run's model with the weights it evaluates and
    saves: its weight average when it keeps one (``ema_decay``), else the training weights."""
    return nullcontext(run.model) if run.ema is None else run.ema.applied()


def evaluate_run(run, done, max_images=None, log=print):
    """COCO AP on the validation split after ``done`` iterations: ``eval_iter{done}.json`` and
    one log line. Returns (stats, results: the COCO results list that was scored)."""
    with _averaged(run):
        stats, results = evaluate_model(run.model, run.val_ds, max_images=max_images)
    atomic_write_json(run.out_dir / f"eval_iter{done}.json", dict(iteration=done, **stats))
    names = dict(bbox="bbox", segm="mask", keypoints="keypoint")
    log(f"iteration {done}: " + " | ".join(
        f"{names[t]} AP {stats[t]['AP']:.3f} AP50 {stats[t]['AP50']:.3f}" for t in stats))
    return stats, results


def _mean_losses(records):
    return {k: float(np.mean([r[k] for r in records])) for k in records[0] if k.startswith("loss")}


def train(cfg, data_dir, out_dir, iters=300, batch_size=2, lr=0.02, momentum=MOMENTUM,
          weight_decay=WEIGHT_DECAY, warmup_iters=None, warmup_factor=WARMUP_FACTOR,
          milestones=None, gamma=0.1, clip_grad_norm=None, eval_every=0, eval_images=None,
          checkpoint_every=50, resume=False, seed=0, flip=True, progress=True,
          train_split="train", val_split="val", optimizer="sgd", workers=1, log=print,
          init_weights=None, ema_decay=None):
    """Train a Mask R-CNN on the COCO data set in ``data_dir``; write ``out_dir`` (see the
    module docstring).

    Inputs:
      cfg: a Config (its ``num_classes`` is set from the data set)
      data_dir: folder with ``train/``, ``val/`` and ``annotations/instances_{train,val}.json``
      iters: total iterations (a resumed run continues up to this number)
      batch_size, lr, momentum, weight_decay: the optimiser's settings
      optimizer: "sgd" (torchvision's reference recipe) or "adamw" (``momentum`` unused)
      warmup_iters: linear warm-up length (default: min(100, iters // 5)); warmup_factor: the
        lr factor at iteration 0
      milestones: iterations where lr is multiplied by gamma (default: 0.75 * iters, 0.9 * iters)
      clip_grad_norm: when set, a gradient whose global norm exceeds it is scaled down to that
        norm before the step (as ``torch.nn.utils.clip_grad_norm_``); None: no clipping
      eval_every: evaluate on the val split every N iterations and at the end (0: at the end
        only; -1: never); eval_images: evaluate on the first N val images only
      checkpoint_every: write checkpoint.npz every N iterations (and at the end)
      resume: continue from ``out_dir/checkpoint.npz``; model, optimiser, RNG state and the
        hyper-parameters come from it, only ``iters`` is taken from the arguments
      seed: seeds the weights (one child of ``SeedSequence(seed)``) and the training RNG
        (another child)
      flip: horizontal-flip augmentation (False: off, to over-fit one image exactly;
        "dihedral": all 8 symmetries of the square, for objects without an up)
      init_weights: a ``.npz`` of another run whose backbone and RPN start this one
        (:func:`init_from`; a fresh run only)
      ema_decay: keep an exponential moving average of the weights with this decay
        (``nn.optim.WeightEMA``; 0.998 remembers about 500 steps): it is what the run
        evaluates and saves in ``weights.npz``; the checkpoint holds both. None: no average
      workers: >= 2 trains on that many worker processes, one share of each batch on each
        (``parallel.DataParallel``: the same losses up to rounding, W cores in use); 1: this
        process alone (the reference path)
      log: where one-line messages go (print by default)

    Returns a summary dict: iterations, wall_s, final (mean losses over the last 20
    iterations), eval (the last COCO stats, or None), eval_results (the COCO results they
    scored, or None), paths of the files written.
    Raises DataError for bad data (found before the first iteration), TrainingDiverged when a
    loss becomes NaN or Inf (the last checkpoint is then left untouched).
    """
    from tqdm import tqdm
    hp = hyper_parameters(iters, batch_size, lr, momentum, weight_decay, warmup_iters,
                          warmup_factor, milestones, gamma, clip_grad_norm, seed, flip, optimizer,
                          ema_decay)
    run = setup_run(cfg, data_dir, out_dir, hp, resume, train_split, val_split,
                    evaluate=eval_every >= 0, log=log, init_weights=init_weights)
    stats, results = None, None
    t_start = time.perf_counter()
    if workers > 1 and run.start < iters:
        from .parallel import DataParallel
        run.parallel = DataParallel(run.model, workers)
    else:  # this process does the steps: its malloc keeps the freed memory, as a worker's
        from .parallel import keep_freed_memory
        keep_freed_memory()
    bar = tqdm(range(run.start, iters), initial=run.start, total=iters, disable=not progress,
               dynamic_ncols=True, desc="train")
    plotted = -math.inf  # when loss_curve.png was last drawn
    try:
        with open(run.log_path, "a") as log_file:
            for i in bar:  # i: 0-based index of this iteration; after it, i + 1 are done
                record = train_step(run, i, more=i + 1 < iters)
                run.records.append(record)
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                bar.set_postfix({k.replace("loss_", ""): f"{v:.3f}"
                                 for k, v in _mean_losses(run.records[-20:]).items()},
                                refresh=False)
                done = i + 1
                if done % checkpoint_every == 0 or done == iters:
                    now = time.perf_counter()  # the last curve is drawn after the loop
                    plot = done != iters and now - plotted >= LOSS_CURVE_EVERY_S
                    save_run_checkpoint(run, done, plot=plot)
                    plotted = now if plot else plotted
                if (run.val_ds is not None and eval_every > 0 and done % eval_every == 0
                        and done != iters):
                    stats, results = evaluate_run(run, done, eval_images, log)
    finally:
        bar.close()
        if run.parallel is not None:
            run.parallel.close()
            run.parallel = None

    # The weights first: whatever the final evaluation does, the run's work is on disk.
    done = max(iters, run.start)
    weights_path = run.out_dir / "weights.npz"
    with _averaged(run) as model:
        model.save(weights_path)
    if run.records:
        plot_loss_curve(run.records, run.out_dir / "loss_curve.png")
    if run.val_ds is not None:
        stats, results = evaluate_run(run, done, eval_images, log)
    recent = run.records[-20:]
    return dict(
        iterations=done, wall_s=time.perf_counter() - t_start,
        final=_mean_losses(recent) if recent else {},
        first={k: v for k, v in run.records[0].items() if k.startswith("loss")}
        if run.records else {},
        eval=stats, eval_results=results, class_names=run.class_names,
        paths=dict(out_dir=str(run.out_dir), checkpoint=str(run.ckpt_path),
                   weights=str(weights_path), log=str(run.log_path),
                   loss_curve=str(run.out_dir / "loss_curve.png"),
                   config=str(run.out_dir / "config.json")))
