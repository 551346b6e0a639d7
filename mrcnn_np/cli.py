"""The command line: ``python -m mrcnn_np <command> ...``.

    python -m mrcnn_np make-shapes --out data/shapes
    python -m mrcnn_np train    --config tiny --data data/shapes --out runs/r1 [--iters N ...]
    python -m mrcnn_np train    --out runs/r1 --data data/shapes --resume
    python -m mrcnn_np predict  --weights runs/r1/weights.npz --images a.png b.jpg --out preds/
    python -m mrcnn_np evaluate --weights runs/r1/weights.npz --data data/shapes [--split val]
    python -m mrcnn_np convert  maskrcnn.pth weights.npz
    python -m mrcnn_np demo     --out runs/demo

Errors
------
A mistake in what the user gave us (a missing folder, a corrupt image, a JSON file that is not
COCO, weights of another architecture, ...) ends the command with ONE line on stderr,
``error: <what is wrong, naming the file>``, and exit status 1. A training run whose loss
becomes NaN or Inf ends with exit status 3 (its last good checkpoint is kept), Ctrl-C with 130,
a wrong command line with argparse's status 2.

Any other exception is a bug in mrcnn-np, not in the user's input, so it is NOT hidden: Python
prints its traceback (please report it). ``python -m mrcnn_np --debug <command> ...`` shows the
traceback for user errors too. Warnings (e.g. "skipped 3 bad annotations") print as one line,
``warning: ...``.
"""
import argparse
import json
import pickle
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np

EXIT_USER_ERROR, EXIT_DIVERGED, EXIT_INTERRUPTED = 1, 3, 130
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class UserError(Exception):
    """A problem with the user's input; printed as one line, without a traceback."""


# ------------------------------------------------------------------------------------------
# Weights and configs
# ------------------------------------------------------------------------------------------
def _read_weights(path):
    """name -> array from our ``.npz`` (weights or a training checkpoint) or a torchvision
    ``.pth``. Raises UserError for a missing or unreadable file."""
    from .train import extract_weights
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: weights file not found")
    try:
        if path.suffix in (".pth", ".pt"):
            from .convert import torchvision_to_numpy
            return torchvision_to_numpy(path)
        if not zipfile.is_zipfile(path):
            raise UserError(f"{path}: not an .npz file (weights are our .npz, or a torchvision "
                            f".pth)")
        with np.load(path, allow_pickle=False) as z:
            return extract_weights({k: z[k] for k in z.files})
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, RuntimeError, KeyError,
            pickle.UnpicklingError) as e:
        raise UserError(f"{path}: not a readable weights file ({type(e).__name__}: "
                        f"{_one_line(e, 200)})") from None


def _config_for(weights_path, config_name, weights):
    """The Config to build for these weights, the class names, and {label: category id}.

    ``config.json`` next to the weights (written by ``train``) gives all three; otherwise the
    preset ``config_name`` (default "tiny"), with ``num_classes`` read from the shape of the
    box classifier's bias, names "class 1", "class 2", ... and category id = label.
    """
    from .config import config_from_dict, get_config
    sidecar = Path(weights_path).parent / "config.json"
    if config_name is None and sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
            cat_ids = {int(k): int(v) for k, v in meta["label_to_cat_id"].items()}
            return config_from_dict(meta["config"]), meta["class_names"], cat_ids
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise UserError(f"{sidecar}: not a config written by 'train' ({_one_line(e)})") from None
    try:
        cfg = get_config(config_name or "tiny")
    except ValueError as e:
        raise UserError(str(e)) from None
    bias = weights.get("roi_heads.box_predictor.cls_score.bias")
    if bias is not None and np.ndim(bias) == 1:
        from dataclasses import replace
        cfg = replace(cfg, num_classes=int(bias.shape[0]))
    labels = range(1, cfg.num_classes)
    return cfg, ["background"] + [f"class {k}" for k in labels], {k: k for k in labels}


def load_model(weights_path, config_name=None):
    """Build the model for ``weights_path`` and load it. Returns (model, class_names,
    label_to_cat_id). Weights that do not fit the model raise UserError naming the
    mismatching tensors."""
    from .model import MaskRCNN
    weights = _read_weights(weights_path)
    cfg, class_names, label_to_cat_id = _config_for(weights_path, config_name, weights)
    model = MaskRCNN(cfg)
    try:
        model.load_state_dict(weights)
    except ValueError as e:
        hint = "" if config_name else " (choose the model with --config)"
        raise UserError(f"{weights_path}: these weights are not for the '{cfg.name}' model"
                        f"{hint}: {_one_line(e)}") from None
    return model, class_names, label_to_cat_id


def _one_line(e, limit=None):
    """An exception's message on one line (cut to ``limit`` characters)."""
    text = " ".join(str(e).split())
    return text if limit is None or len(text) <= limit else text[:limit - 3] + "..."


# ------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------
def cmd_make_shapes(args):
    from .data.shapes import make_shapes_dataset
    paths = make_shapes_dataset(args.out, num_train=args.num_train, num_val=args.num_val,
                                image_size=(args.size, args.size), seed=args.seed)
    print(f"wrote {args.num_train} train and {args.num_val} val images to {paths['root']}")
    return 0


def cmd_train(args):
    from .config import get_config
    from .train import train
    try:
        cfg = get_config(args.config)
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.iters <= 0 or args.batch_size <= 0 or not args.lr > 0:
        raise UserError("--iters, --batch-size and --lr must be positive")
    summary = train(cfg, args.data, args.out, iters=args.iters, batch_size=args.batch_size,
                    lr=args.lr, eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
                    clip_grad_norm=args.clip_grad_norm, flip=not args.no_flip,
                    resume=args.resume, seed=args.seed, progress=not args.no_progress,
                    log=lambda m: print(m, file=sys.stderr))
    print(f"trained {summary['iterations']} iterations in {summary['wall_s']:.0f} s; "
          f"weights: {summary['paths']['weights']}")
    if summary["eval"]:
        from .eval.coco_eval import format_table
        print(format_table(summary["eval"]))
    return 0


def _image_paths(items):
    """Files named on the command line; a folder stands for the images in it (sorted)."""
    paths = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UserError(f"{p}: no images in this folder")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise UserError(f"{p}: image file not found")
    return paths


def cmd_predict(args):
    from .data.coco import load_image
    from .eval.coco_eval import encode_mask
    from .train import atomic_save_png, atomic_write_json
    from .viz import draw_instances
    model, class_names, label_to_cat_id = load_model(args.weights, args.config)
    paths = _image_paths(args.images)
    images = [load_image(p) for p in paths]  # each [3, H, W]; read all first: fail before writing
    out = Path(args.out)
    results = []
    for image_id, (path, image) in enumerate(zip(paths, images), start=1):
        pred = model.predict([image])[0]
        keep = pred["scores"] >= args.score_threshold  # [D]
        pred = {k: v[keep] for k, v in pred.items()}
        masks = pred["masks"].reshape(len(pred["scores"]), *image.shape[1:]) > 0.5  # [D, H, W]
        for d in range(len(pred["scores"])):
            x1, y1, x2, y2 = (float(v) for v in pred["boxes"][d])
            label = int(pred["labels"][d])
            name = class_names[label] if label < len(class_names) else str(label)
            # COCO's results format (image_id, category_id, score, bbox = x, y, w, h, RLE
            # segmentation), plus the file and class names for a reader
            results.append(dict(image_id=image_id, category_id=label_to_cat_id.get(label, label),
                                score=float(pred["scores"][d]), bbox=[x1, y1, x2 - x1, y2 - y1],
                                segmentation=encode_mask(masks[d]), file_name=str(path),
                                category_name=name))
        drawn = draw_instances(image, pred["boxes"], pred["labels"], pred["scores"], pred["masks"],
                               class_names, score_threshold=args.score_threshold)  # [H, W, 3]
        atomic_save_png(out / f"{path.stem}_pred.png", drawn)
        print(f"{path}: {len(pred['scores'])} objects -> {out / (path.stem + '_pred.png')}")
    atomic_write_json(out / "predictions.json", results)
    print(f"COCO results: {out / 'predictions.json'}")
    return 0


def cmd_evaluate(args):
    from .eval.coco_eval import format_table
    from .train import atomic_write_json, evaluate_model, load_split
    ds = load_split(args.data, args.split)
    model, _, _ = load_model(args.weights, args.config)
    if model.cfg.num_classes != ds.num_classes:
        raise UserError(f"{args.weights}: the model has {model.cfg.num_classes - 1} classes, the "
                        f"'{args.split}' split of {args.data} has {ds.num_classes - 1}")
    stats, results = evaluate_model(model, ds, max_images=args.max_images, progress=not args.no_progress)
    out = Path(args.out) if args.out else Path(args.weights).parent / f"eval_{args.split}.json"
    atomic_write_json(out, dict(weights=str(args.weights), data=str(args.data), split=args.split,
                                images=len(ds) if args.max_images is None else min(len(ds), args.max_images),
                                **stats))
    print(format_table(stats))
    print(f"saved {out}")
    return 0


def cmd_convert(args):
    from .convert import convert_file
    src = Path(args.src)
    if not src.is_file():
        raise UserError(f"{src}: file not found")
    try:
        n = convert_file(src, args.dst)
    except (zipfile.BadZipFile, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as e:
        raise UserError(f"{src}: not a torchvision state_dict that torch.load(weights_only=True)"
                        f" can read ({type(e).__name__}: {_one_line(e, 120)})") from None
    print(f"wrote {n} tensors to {args.dst}")
    return 0


def cmd_demo(args):
    from .demo import run_demo
    run_demo(args.out, iters=args.iters, progress=not args.no_progress)
    return 0


# ------------------------------------------------------------------------------------------
# The parser and main
# ------------------------------------------------------------------------------------------
def build_parser():
    from .config import PRESETS
    p = argparse.ArgumentParser(prog="python -m mrcnn_np",
                                description="Mask R-CNN from scratch in NumPy.")
    p.add_argument("--debug", action="store_true", help="show tracebacks for every error")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("make-shapes", help="write the synthetic shapes data set (COCO format)")
    s.add_argument("--out", required=True, help="folder to write")
    s.add_argument("--num-train", type=int, default=200)
    s.add_argument("--num-val", type=int, default=50)
    s.add_argument("--size", type=int, default=128, help="image side in pixels")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_make_shapes)

    s = sub.add_parser("train", help="train on a COCO data set")
    s.add_argument("--config", default="tiny", choices=sorted(PRESETS))
    s.add_argument("--data", required=True, help="folder with train/, val/, annotations/")
    s.add_argument("--out", required=True, help="run folder (checkpoints, log, pictures)")
    s.add_argument("--iters", type=int, default=300)
    s.add_argument("--batch-size", type=int, default=2)
    s.add_argument("--lr", type=float, default=0.02)
    s.add_argument("--eval-every", type=int, default=0,
                   help="evaluate every N iterations (0: at the end only, -1: never)")
    s.add_argument("--checkpoint-every", type=int, default=50)
    s.add_argument("--clip-grad-norm", type=float, default=None,
                   help="scale the gradient down to this global norm when it is larger")
    s.add_argument("--no-flip", action="store_true", help="no horizontal-flip augmentation")
    s.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.npz")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("predict", help="draw the model's detections on images")
    s.add_argument("--weights", required=True, help=".npz (ours) or .pth (torchvision)")
    s.add_argument("--images", required=True, nargs="+", help="image files or folders")
    s.add_argument("--out", required=True)
    s.add_argument("--config", default=None, choices=sorted(PRESETS),
                   help="default: config.json next to the weights, else tiny")
    s.add_argument("--score-threshold", type=float, default=0.5)
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("evaluate", help="COCO bbox and mask AP on a split")
    s.add_argument("--weights", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--split", default="val")
    s.add_argument("--config", default=None, choices=sorted(PRESETS))
    s.add_argument("--out", default=None, help="JSON path (default: next to the weights)")
    s.add_argument("--max-images", type=int, default=None)
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("convert", help="torchvision .pth -> our .npz")
    s.add_argument("src")
    s.add_argument("dst")
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("demo", help="data, training, evaluation and pictures in runs/demo")
    s.add_argument("--out", default="runs/demo")
    s.add_argument("--iters", type=int, default=None, help="default: the demo's own setting")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_demo)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings (e.g. skipped annotations) as one line: ``warning: ...``."""
    print(f"warning: {message}", file=sys.stderr)


def main(argv=None):
    from .data.coco import DataError
    from .train import TrainingDiverged
    args = build_parser().parse_args(argv)
    saved_showwarning = warnings.showwarning
    if not args.debug:
        warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except (UserError, DataError, OSError, json.JSONDecodeError) as e:
        # OSError: a file or folder that is missing, unreadable, not writable, a full disk...
        if args.debug:
            raise
        msg = _one_line(e)
        if isinstance(e, OSError) and e.filename and str(e.filename) not in msg:
            msg = f"{e.filename}: {msg}"
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR
    except TrainingDiverged as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print("interrupted" + ("; continue with --resume" if args.command == "train" else ""),
              file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        warnings.showwarning = saved_showwarning


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
