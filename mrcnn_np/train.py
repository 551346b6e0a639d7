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

All randomness (which images, which flips, scale jitter, anchor and RoI sampling) is drawn
from ONE ``numpy.random.Generator``. A checkpoint stores its state together with the weights,
the BatchNorm statistics and the optimiser's momentum buffers, so ``resume=True`` continues
exactly: the resumed run draws the same numbers and computes the same losses, bit for bit,
as a run that was never interrupted.

Files in ``out_dir`` (every one is written to a temporary file first and then renamed over
the old one, so a crash never leaves a half-written file where a good one was)::

    checkpoint.npz     weights, optimiser state, iteration, RNG state, config, hyper-parameters
    weights.npz        the weights only (what ``predict`` and ``evaluate`` load), at the end
    config.json        the config and the class names (``predict`` reads it next to weights.npz)
    log.jsonl          one line per iteration: {"iter", "lr", every loss, "grad_norm", "time"}
    loss_curve.png     the losses against the iteration
    eval_iter{N}.json  COCO bbox and segm AP on the validation split after iteration N

Checkpoints are written only between iterations. Ctrl-C (or a crash) loses the iterations
since the last checkpoint, never the checkpoint itself.
"""
import json
import math
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .checkpoint import load_npz, save_npz_atomic
from .config import config_from_dict
from .data.coco import CocoDataset, DataError
from .nn.optim import SGD, warmup_multistep_lr

LOSS_KEYS = ("loss", "loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg",
             "loss_mask")

# Defaults of the optimiser, as torchvision's detection reference script
# (references/detection/train.py: --momentum 0.9, --wd 1e-4, warm-up factor 1/1000).
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4
WARMUP_FACTOR = 1e-3


class TrainingDiverged(RuntimeError):
    """A loss or a gradient became NaN or Inf; the message is one line and says what to do."""


# ------------------------------------------------------------------------------------------
# Files, written atomically
# ------------------------------------------------------------------------------------------
def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path, obj):
    return atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def atomic_save_png(path, image_or_figure):
    """Save a matplotlib Figure, or a uint8 [H, W, 3] array, as a PNG, atomically."""
    import io
    buf = io.BytesIO()
    if hasattr(image_or_figure, "savefig"):
        image_or_figure.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    else:
        from PIL import Image
        Image.fromarray(np.asarray(image_or_figure, np.uint8)).save(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


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


def load_split(data_dir, split):
    """``CocoDataset`` of one split (see :func:`find_split`)."""
    image_dir, ann_file = find_split(data_dir, split)
    return CocoDataset(image_dir, ann_file, train=False)


# ------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------
def save_checkpoint(path, model, optimizer, iteration, rng, hparams, class_names):
    """Everything needed to continue exactly, in one ``.npz`` (no pickle):

    ``model.<name>``   every parameter and buffer (BatchNorm running statistics included)
    ``optim.<name>``   the optimiser's momentum buffers and step count
    ``iteration``      iterations completed, 0-d int64
    ``rng_state``      the Generator's ``bit_generator.state`` as JSON text in a uint8 array
    ``config``         ``cfg.to_dict()`` as JSON text;  ``hparams``, ``class_names`` likewise
    """
    arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optim.{k}": v for k, v in optimizer.state_dict().items()})
    arrays["iteration"] = np.asarray(iteration, np.int64)
    arrays["rng_state"] = _text_array(rng.bit_generator.state)
    arrays["config"] = _text_array(model.cfg.to_dict())
    arrays["hparams"] = _text_array(hparams)
    arrays["class_names"] = _text_array(list(class_names))
    save_npz_atomic(path, arrays)


def read_checkpoint(path):
    """The parts of a checkpoint: dict with model_state, optim_state, iteration, rng (a
    Generator in the saved state), config (a Config), hparams and class_names."""
    z = load_npz(path)
    if "iteration" not in z or "rng_state" not in z:
        raise DataError(f"{path}: not a training checkpoint (no iteration / rng_state)")
    state = _from_text_array(z["rng_state"])
    rng = np.random.Generator(getattr(np.random, state["bit_generator"])())
    rng.bit_generator.state = state
    return dict(
        model_state={k[len("model."):]: v for k, v in z.items() if k.startswith("model.")},
        optim_state={k[len("optim."):]: v for k, v in z.items() if k.startswith("optim.")},
        iteration=int(z["iteration"]), rng=rng, config=config_from_dict(_from_text_array(z["config"])),
        hparams=_from_text_array(z["hparams"]), class_names=_from_text_array(z["class_names"]))


def extract_weights(arrays):
    """Model weights from what an ``.npz`` holds: a checkpoint's ``model.*`` entries with the
    prefix taken off, or the arrays themselves for a weights file."""
    if "iteration" in arrays and any(k.startswith("model.") for k in arrays):
        return {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}
    return arrays


# ------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------
def predict_dataset(model, ds, max_images=None, progress=False):
    """Run ``model.predict`` on each image of ``ds`` (one at a time; sizes may differ).
    Returns (predictions, image_ids)."""
    from tqdm import tqdm
    n = len(ds) if max_images is None else min(len(ds), max_images)
    preds, ids = [], []
    for i in tqdm(range(n), desc="predict", disable=not progress, leave=False):
        sample = ds.get(i)
        preds.append(model.predict([sample["image"]])[0])
        ids.append(sample["image_id"])
    return preds, ids


def evaluate_model(model, ds, max_images=None, progress=False):
    """COCO bbox and segm AP of ``model`` on ``ds`` (pycocotools' COCOeval).
    Returns (stats, results): stats {iou_type: {"AP", "AP50", ...}}, results the COCO list."""
    from .eval.coco_eval import coco_evaluate, predictions_to_coco_results
    preds, ids = predict_dataset(model, ds, max_images, progress)
    results = predictions_to_coco_results(preds, ids, ds.label_to_cat_id)
    coco_gt = ds.coco
    if max_images is not None and max_images < len(ds):  # score only the images we predicted
        coco_gt = _subset_coco(ds.coco, ids)
    return coco_evaluate(coco_gt, results), results


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
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    it = np.array([r["iter"] for r in records])  # [T]
    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(8, 6), sharex=True,
                                    gridspec_kw=dict(height_ratios=(3, 1)))
    for key in LOSS_KEYS:
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
    plt.close(fig)


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
    there are enough), each flipped left-right with probability 1/2. Both choices come from
    ``rng``. Returns (images: list of [3, H, W], targets: list of dicts boxes/labels/masks)."""
    picks = rng.choice(len(indices), size=batch_size, replace=batch_size > len(indices))  # [B]
    flips = rng.random(batch_size) < 0.5 if flip else np.zeros(batch_size, bool)  # [B]
    images, targets = [], []
    for p, f in zip(picks, flips):
        s = ds.get(int(indices[p]), flip=bool(f))
        images.append(s["image"])  # [3, H, W]
        targets.append(dict(boxes=s["boxes"], labels=s["labels"], masks=s["masks"]))
    return images, targets


def _check_finite(losses, model):
    """What is not finite (a loss, or else a gradient), as a phrase; None when all is well.
    Also returns the global gradient norm sqrt(sum of squares), logged to watch for blow-ups."""
    bad = [k for k, v in losses.items() if not math.isfinite(v)]
    if bad:
        return ", ".join(f"{k} = {losses[k]}" for k in bad), math.nan
    sq = 0.0
    for name, _, g in model.named_parameters():
        s = float(np.sum(np.square(g, dtype=np.float64)))
        if not math.isfinite(s):
            return f"the gradient of {name} is not finite", math.nan
        sq += s
    return None, math.sqrt(sq)


def train(cfg, data_dir, out_dir, iters=300, batch_size=2, lr=0.02, momentum=MOMENTUM,
          weight_decay=WEIGHT_DECAY, warmup_iters=None, warmup_factor=WARMUP_FACTOR,
          milestones=None, gamma=0.1, clip_grad_norm=None, eval_every=0, eval_images=None,
          checkpoint_every=50, resume=False, seed=0, flip=True, progress=True,
          train_split="train", val_split="val", log=print):
    """Train a Mask R-CNN on the COCO data set in ``data_dir``; write ``out_dir`` (see the
    module docstring).

    Inputs:
      cfg: a Config (its ``num_classes`` is set from the data set)
      data_dir: folder with ``train/``, ``val/`` and ``annotations/instances_{train,val}.json``
      iters: total iterations (a resumed run continues up to this number)
      batch_size, lr, momentum, weight_decay: SGD's settings
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
      flip: horizontal-flip augmentation (off to over-fit one image exactly)
      log: where one-line messages go (print by default)

    Returns a summary dict: iterations, wall_s, final (mean losses over the last 20
    iterations), eval (the last COCO stats, or None), paths of the files written.
    Raises DataError for bad data, TrainingDiverged when a loss becomes NaN or Inf (the last
    checkpoint is then left untouched).
    """
    from tqdm import tqdm

    from .model import MaskRCNN
    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoint.npz"
    log_path = out_dir / "log.jsonl"

    # -- data -------------------------------------------------------------------------------
    train_ds = load_split(data_dir, train_split)
    # Images without objects are left out of training, as torchvision's reference script
    # does; they stay in the validation split, where they count false positives.
    indices = np.array([i for i, image_id in enumerate(train_ds.ids) if train_ds._targets[image_id]])
    if len(indices) == 0:
        raise DataError(f"{train_ds.ann_file}: no image has a usable annotation")
    val_ds = None
    if eval_every >= 0:
        try:
            val_ds = load_split(data_dir, val_split)
        except DataError as e:
            log(f"note: no evaluation ({e})")

    # -- model, optimiser, RNG: fresh or from the checkpoint --------------------------------
    if resume:
        if not ckpt_path.is_file():
            raise DataError(f"{ckpt_path}: no checkpoint to resume from")
        ck = read_checkpoint(ckpt_path)
        cfg, hp, rng, start = ck["config"], ck["hparams"], ck["rng"], ck["iteration"]
        model = MaskRCNN(cfg)
        model.load_state_dict(ck["model_state"])
        log(f"resuming from {ckpt_path} at iteration {start}")
    else:
        if (ckpt_path.is_file() or log_path.is_file()):
            raise DataError(f"{out_dir}: holds an earlier run; use --resume to continue it, or "
                            f"another --out")
        cfg = replace(cfg, num_classes=train_ds.num_classes)
        warmup = min(100, iters // 5) if warmup_iters is None else warmup_iters
        hp = dict(batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
                  warmup_iters=warmup, warmup_factor=warmup_factor, gamma=gamma,
                  milestones=sorted(int(m) for m in (
                      milestones if milestones is not None
                      else (max(1, int(0.75 * iters)), max(1, int(0.9 * iters))))),
                  clip_grad_norm=clip_grad_norm, seed=seed, flip=bool(flip))
        init_seq, train_seq = np.random.SeedSequence(seed).spawn(2)
        model = MaskRCNN(cfg, rng=np.random.default_rng(init_seq))
        rng = np.random.default_rng(train_seq)
        start = 0
    if train_ds.num_classes != cfg.num_classes:
        raise DataError(f"{train_ds.ann_file}: {train_ds.num_classes - 1} categories, but the "
                        f"checkpoint's model has {cfg.num_classes - 1}")
    optimizer = SGD(model, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    if resume:
        optimizer.load_state_dict(ck["optim_state"])
    class_names = train_ds.class_names
    atomic_write_json(out_dir / "config.json", dict(config=cfg.to_dict(), class_names=class_names,
                                                    label_to_cat_id=train_ds.label_to_cat_id,
                                                    hparams=hp))

    def lr_at(i):
        return warmup_multistep_lr(i, hp["lr"], hp["warmup_iters"], hp["warmup_factor"],
                                   hp["milestones"], hp["gamma"])

    def checkpoint(i):
        save_checkpoint(ckpt_path, model, optimizer, i, rng, hp, class_names)
        if records:
            plot_loss_curve(records, out_dir / "loss_curve.png")

    def evaluate(i):
        stats, _ = evaluate_model(model, val_ds, max_images=eval_images)
        atomic_write_json(out_dir / f"eval_iter{i}.json", dict(iteration=i, **stats))
        log(f"iteration {i}: bbox AP {stats['bbox']['AP']:.3f} AP50 {stats['bbox']['AP50']:.3f}"
            f" | mask AP {stats['segm']['AP']:.3f} AP50 {stats['segm']['AP50']:.3f}")
        return stats

    # -- the log: keep what the checkpoint covers, drop what will be redone ------------------
    records = _read_log(log_path, upto=start)
    atomic_write_bytes(log_path, "".join(json.dumps(r) + "\n" for r in records).encode())
    if not resume:
        checkpoint(0)  # a good checkpoint exists from the start

    # -- the loop ---------------------------------------------------------------------------
    stats = None
    t_start = time.perf_counter()
    bar = tqdm(range(start, iters), initial=start, total=iters, disable=not progress,
               dynamic_ncols=True, desc="train")
    with open(log_path, "a") as log_file:
        for i in bar:  # i: 0-based index of this iteration; after it, i + 1 are done
            t0 = time.perf_counter()
            images, targets = sample_batch(train_ds, indices, rng, hp["batch_size"],
                                           flip=hp.get("flip", True))
            losses = model.forward_backward(images, targets, rng)
            problem, grad_norm = _check_finite(losses, model)
            if problem is not None:
                raise TrainingDiverged(
                    f"iteration {i + 1}: {problem}; stopped before the optimiser step. The last "
                    f"good checkpoint is {ckpt_path} (iteration "
                    f"{read_checkpoint(ckpt_path)['iteration']}); try a lower --lr")
            clip = hp.get("clip_grad_norm")
            if clip is not None and grad_norm > clip:  # one scale for all: the direction is kept
                for _, _, g in model.named_parameters():
                    g *= g.dtype.type(clip / (grad_norm + 1e-6))
            optimizer.lr = lr_at(i)
            optimizer.step()

            record = dict(iter=i + 1, lr=optimizer.lr, **{k: losses[k] for k in LOSS_KEYS},
                          grad_norm=grad_norm, time=time.perf_counter() - t0)
            records.append(record)
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            recent = records[-20:]
            bar.set_postfix({k.replace("loss_", ""): f"{np.mean([r[k] for r in recent]):.3f}"
                             for k in LOSS_KEYS}, refresh=False)

            done = i + 1
            if done % checkpoint_every == 0 or done == iters:
                checkpoint(done)
            if val_ds is not None and eval_every > 0 and done % eval_every == 0 and done != iters:
                stats = evaluate(done)
    bar.close()

    if val_ds is not None:
        stats = evaluate(max(iters, start))
    model.save(out_dir / "weights.npz")
    if records:
        plot_loss_curve(records, out_dir / "loss_curve.png")
    recent = records[-20:]
    return dict(
        iterations=max(iters, start), wall_s=time.perf_counter() - t_start,
        final={k: float(np.mean([r[k] for r in recent])) for k in LOSS_KEYS} if recent else {},
        first={k: records[0][k] for k in LOSS_KEYS} if records else {},
        eval=stats, class_names=class_names,
        paths=dict(out_dir=str(out_dir), checkpoint=str(ckpt_path),
                   weights=str(out_dir / "weights.npz"), log=str(log_path),
                   loss_curve=str(out_dir / "loss_curve.png"), config=str(out_dir / "config.json")))
