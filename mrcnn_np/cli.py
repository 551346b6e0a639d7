"""The command line: ``python -m mrcnn_np <command> ...``.

    python -m mrcnn_np make-shapes --out data/shapes
    python -m mrcnn_np make-figures --out data/figures [--train N --val N --size S --seed S]
    python -m mrcnn_np train    --config tiny --data data/shapes --out runs/r1 [--iters N ...]
    python -m mrcnn_np train    --out runs/r1 --data data/shapes --resume
    python -m mrcnn_np predict  --weights runs/r1/weights.npz --images a.png b.jpg --out preds/
                                [--annotations instances.json | --data data/shapes --split val]
    python -m mrcnn_np evaluate --weights runs/r1/weights.npz --data data/shapes [--split val]
    python -m mrcnn_np evaluate --predictions results.json --annotations instances.json
    python -m mrcnn_np convert  maskrcnn.pth weights.npz [--config torchvision_r50_fpn]
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
import sys
import warnings
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
    from .checkpoint import BadNpzFile, load_npz
    from .train import extract_weights
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: weights file not found")
    if path.suffix in (".pth", ".pt"):
        from .convert import NotAStateDict, torchvision_to_numpy
        try:
            return torchvision_to_numpy(path)
        except NotAStateDict as e:
            raise UserError(str(e)) from None
    try:
        return extract_weights(load_npz(path))
    except BadNpzFile as e:
        raise UserError(f"{e} (weights are our .npz, or a torchvision .pth)") from None


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


def _keypoint_meta(weights_path):
    """(keypoint_names, skeleton) from the ``config.json`` next to the weights (``train``
    writes them for a keypoint data set); (None, None) when it has none: dots, no skeleton."""
    sidecar = Path(weights_path).parent / "config.json"
    try:
        meta = json.loads(sidecar.read_text())
        return meta["keypoint_names"], np.asarray(meta["skeleton"], np.int64).reshape(-1, 2)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None, None


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


def cmd_make_figures(args):
    from .data.stickfigures import make_figures_dataset
    try:
        paths = make_figures_dataset(args.out, num_train=args.num_train, num_val=args.num_val,
                                     image_size=(args.size, args.size), seed=args.seed)
    except ValueError as e:                        # e.g. --train -1, --size 0
        raise UserError(f"make-figures: {_one_line(e)}") from None
    print(f"wrote {args.num_train} train and {args.num_val} val images of stick figures to"
          f" {paths['root']}")
    return 0


def cmd_train(args):
    from .config import get_config
    from .train import train
    try:
        cfg = get_config(args.config, backend=args.backend)
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.iters <= 0 or args.batch_size <= 0 or not args.lr > 0 or args.workers <= 0:
        raise UserError("--iters, --batch-size, --lr and --workers must be positive")
    if args.ema_decay is not None and not 0 < args.ema_decay < 1:
        raise UserError(f"--ema-decay must be between 0 and 1 (0.998: about the last 500 "
                        f"steps), got {args.ema_decay}")
    summary = train(cfg, args.data, args.out, iters=args.iters, batch_size=args.batch_size,
                    lr=args.lr, optimizer=args.optimizer, workers=args.workers,
                    eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
                    clip_grad_norm=args.clip_grad_norm, ema_decay=args.ema_decay,
                    flip=False if args.no_flip else ("dihedral" if args.dihedral else True),
                    resume=args.resume, seed=args.seed, progress=not args.no_progress,
                    log=lambda m: print(m, file=sys.stderr))
    print(f"trained {summary['iterations']} iterations in {summary['wall_s']:.0f} s; "
          f"weights: {summary['paths']['weights']}")
    if summary["eval"]:
        from .eval.coco_eval import format_table
        print(format_table(summary["eval"]))
    return 0


def _image_paths(items):
    """Files named on the command line; a folder stands for the images in it (sorted). A file
    named twice is predicted once."""
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
    seen, unique = set(), []
    for p in paths:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


def picture_names(paths):
    """``<stem>_pred.png`` for each image; images whose stems collide (``a/img.png`` and
    ``b/img.png``, or ``img.png`` and ``img.jpg``) are named by their path below the folder
    the inputs share instead: ``a_img_pred.png``, ``b_img_pred.png``, ``img_jpg_pred.png``."""
    import os
    stems = [p.stem for p in paths]
    clash = {s for s in stems if stems.count(s) > 1}
    absolute = [p.resolve() for p in paths]
    common = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    names = []
    for p, a in zip(paths, absolute):
        if p.stem not in clash:
            names.append(f"{p.stem}_pred.png")
            continue
        rel = a.relative_to(common)
        parts = list(rel.parent.parts) + [rel.stem]
        if sum(q.stem == p.stem and q.parent == a.parent for q in absolute) > 1:
            parts.append(rel.suffix.lstrip("."))  # the same folder: the suffix tells them apart
        names.append("_".join(parts) + "_pred.png")
    return names


def _image_ids(paths, ann_file):
    """{path: (COCO image id, height, width)} from ``ann_file``, each image matched by its
    ``file_name`` (the entry whose file_name the path ends with). Raises UserError for an
    image the file does not list, or lists twice."""
    from .data.coco import read_coco_json
    by_name = {}
    for img in read_coco_json(ann_file)["images"]:
        by_name.setdefault(Path(str(img["file_name"])).name, []).append(img)
    out = {}
    for p in paths:
        found = [img for img in by_name.get(p.name, [])
                 if p.resolve().as_posix().endswith("/" + Path(str(img["file_name"])).as_posix())]
        if len(found) != 1:
            why = "no 'images' entry has this file_name" if not found else \
                f"{len(found)} 'images' entries match it"
            raise UserError(f"{p}: not matched in {ann_file} ({why})")
        out[p] = (int(found[0]["id"]), int(found[0]["height"]), int(found[0]["width"]))
    return out


def cmd_predict(args):
    from .checkpoint import atomic_save_png, atomic_write_json, check_writable
    from .data.coco import check_image, load_image
    from .eval.coco_eval import detection_to_coco_results
    from .viz import blend_masks, draw_instances, one_per_object, to_uint8_hwc
    model, class_names, label_to_cat_id = load_model(args.weights, args.config)
    keypoint_names, skeleton = _keypoint_meta(args.weights) if model.cfg.keypoints else (None, None)
    paths = _image_paths(args.images)
    ann_file = args.annotations
    if ann_file is None and args.data is not None:
        from .train import find_split
        _, ann_file = find_split(args.data, args.split)
    ids = _image_ids(paths, ann_file) if ann_file is not None else \
        {p: (n, None, None) for n, p in enumerate(paths, start=1)}
    source = "position" if ann_file is None else str(ann_file)
    # every image checked before anything is written (header, integrity, size vs the JSON)
    bad = [(p, why) for p in paths if (why := check_image(p, *ids[p][1:])) is not None]
    if bad:
        raise UserError("; ".join(f"{p}: {why}" for p, why in bad))
    out = Path(args.out)
    check_writable(out)
    results = []
    for path, picture in zip(paths, picture_names(paths)):
        image = load_image(path)  # [3, H, W], one image in memory at a time
        pred = model.predict([image], paste_masks=False)[0]  # masks [D, 1, M, M], not pasted
        keep = pred["scores"] >= args.score_threshold  # [D]
        pred = {k: v[keep] for k, v in pred.items()}
        canvas = to_uint8_hwc(image).astype(np.float64)  # [H, W, 3]
        shown = np.zeros(len(pred["scores"]), bool)  # [D] what the picture shows: one per object
        shown[one_per_object(pred["boxes"], pred["scores"])] = True

        def blend(start, binary):  # binary [c, H, W]: detections start .. start + c - 1
            part = shown[start:start + len(binary)]
            blend_masks(canvas, binary[part], pred["labels"][start:start + len(binary)][part])

        # masks pasted a chunk at a time: encoded for the JSON and blended into the picture
        mine = detection_to_coco_results(pred, ids[path][0], image.shape[1:], label_to_cat_id,
                                         on_masks=blend, paste=model.transform.mask_paste)
        for r, label in zip(mine, pred["labels"]):
            # COCO's results format, plus the file and class names and the ids' source
            r.update(file_name=str(path), image_id_source=source, category_name=(
                class_names[label] if label < len(class_names) else str(int(label))))
        results += mine
        blended = np.round(canvas).astype(np.uint8)  # [H, W, 3]
        del canvas, image  # (a 4000 x 3000 image: 288 MB and 144 MB)
        kp = {} if "keypoints" not in pred else dict(  # the skeletons of a keypoint model
            keypoints=pred["keypoints"][shown], keypoints_scores=pred["keypoints_scores"][shown],
            skeleton=skeleton, keypoint_names=keypoint_names)
        drawn = draw_instances(blended, pred["boxes"][shown], pred["labels"][shown],
                               pred["scores"][shown], None, class_names,
                               score_threshold=args.score_threshold,
                               one_label_per_object=False, **kp)  # [H, W, 3] (chosen above)
        atomic_save_png(out / picture, drawn)
        print(f"{path}: {len(pred['scores'])} objects -> {out / picture}")
    atomic_write_json(out / "predictions.json", results)
    print(f"COCO results: {out / 'predictions.json'}"
          + ("" if ann_file else " (image ids are positions 1..N; pass --annotations for COCO's)"))
    return 0


def _evaluate_outputs(args, default):
    """The JSON path of the AP table (``--out``, else ``default``), checked writable first."""
    from .checkpoint import check_writable
    out = Path(args.out) if args.out else default
    check_writable(out.parent, out)
    return out


def cmd_evaluate(args):
    from .checkpoint import atomic_write_json
    from .eval.coco_eval import format_table
    from .train import find_split
    if (args.weights is None) == (args.predictions is None):
        raise UserError("evaluate needs --weights (a model to run) or --predictions (a COCO "
                        "results file), not both")
    if args.max_images is not None and args.max_images < 1:
        raise UserError(f"--max-images must be positive (got {args.max_images})")
    if args.predictions is not None:
        if (args.annotations is None) == (args.data is None):
            raise UserError("evaluate --predictions needs --annotations FILE or --data DIR")
        ann_file = args.annotations or find_split(args.data, args.split)[1]
        return _evaluate_results_file(args, Path(args.predictions), Path(ann_file))
    if args.data is None:
        raise UserError("evaluate --weights needs --data (the folder with the split to score)")
    from .data.coco import check_images
    from .train import evaluate_model, load_split
    ds = load_split(args.data, args.split, check_files=False)
    check_images([ds])
    model, _, _ = load_model(args.weights, args.config)
    if model.cfg.num_classes != ds.num_classes:
        raise UserError(f"{args.weights}: the model has {model.cfg.num_classes - 1} classes, the "
                        f"'{args.split}' split of {args.data} has {ds.num_classes - 1}")
    out = _evaluate_outputs(args, Path(args.weights).parent / f"eval_{args.split}.json")
    stats, results = evaluate_model(model, ds, max_images=args.max_images, progress=not args.no_progress)
    results_path = out.with_name(out.stem + "_predictions.json")
    atomic_write_json(results_path, results)
    atomic_write_json(out, dict(weights=str(args.weights), data=str(args.data), split=args.split,
                                images=len(ds) if args.max_images is None else min(len(ds), args.max_images),
                                predictions=str(results_path), **stats))
    print(format_table(stats))
    print(f"saved {out} (the results scored: {results_path})")
    return 0


def _evaluate_results_file(args, predictions, ann_file):
    """``evaluate --predictions``: score any COCO results file (ours, torchvision's,
    detectron2's) with pycocotools against ``ann_file``."""
    from .checkpoint import atomic_write_json
    from .data.coco import load_coco
    from .eval.coco_eval import check_results, coco_evaluate, format_table
    if not predictions.is_file():
        raise UserError(f"{predictions}: results file not found")
    coco_gt = load_coco(ann_file)
    try:
        raw = json.loads(predictions.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{predictions}: not a JSON file ({type(e).__name__})") from None
    try:
        results = check_results(raw, coco_gt, source=str(predictions))
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.max_images is not None:
        raise UserError("--max-images applies to --weights only (a results file is scored whole)")
    iou_types = tuple(t for t, key in (("bbox", "bbox"), ("segm", "segmentation"),
                                       ("keypoints", "keypoints"))
                      if all(key in r for r in results))
    if not iou_types:
        raise UserError(f"{predictions}: no IoU type to score: neither every result has a "
                        f"'bbox' nor every result a 'segmentation'")
    if not results:
        warnings.warn(f"{predictions}: no detections; every AP is 0")
    out = _evaluate_outputs(args, predictions.with_name(predictions.stem + "_eval.json"))
    stats = coco_evaluate(coco_gt, results, iou_types)
    atomic_write_json(out, dict(predictions=str(predictions), annotations=str(ann_file),
                                results=len(results), **stats))
    print(format_table(stats))
    print(f"saved {out}")
    return 0


def cmd_convert(args):
    from .checkpoint import check_writable, save_npz_atomic
    from .convert import NotAStateDict, torchvision_to_numpy
    src, dst = Path(args.src), Path(args.dst)
    if not src.is_file():
        raise UserError(f"{src}: file not found")
    try:
        arrays = torchvision_to_numpy(src)
    except NotAStateDict as e:
        raise UserError(str(e)) from None
    if not args.no_check:  # the tensors must fit the model they are for, as predict checks
        from .model import MaskRCNN
        cfg, _, _ = _config_for(src, args.config, arrays)
        try:
            MaskRCNN(cfg).load_state_dict(arrays)
        except ValueError as e:
            raise UserError(f"{src}: these weights are not for the '{cfg.name}' model (choose "
                            f"the model with --config, or --no-check to convert any tensors): "
                            f"{_one_line(e, 300)}") from None
    check_writable(dst.parent)
    save_npz_atomic(dst, arrays)
    print(f"wrote {len(arrays)} tensors to {dst}")
    return 0


def cmd_demo(args):
    from .demo import run_demo
    data = {k: v for k, v in (("num_train", args.num_train), ("num_val", args.num_val)) if v is not None}
    if any(v <= 0 for v in data.values()):
        raise UserError("--num-train and --num-val must be positive")
    run_demo(args.out, iters=args.iters, progress=not args.no_progress,
             keypoints=args.keypoints, **data)
    return 0


def cmd_ablate(args):
    from .ablate import grid_variants, run_grid
    only = args.only.split(",") if args.only else None
    try:
        grid_variants(args.grid, only)  # a bad grid or variant name: one line, nothing written
    except ValueError as e:
        raise UserError(str(e))
    if args.seeds <= 0 or args.iters <= 0:
        raise UserError("--seeds and --iters must be positive")
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be positive")
    try:
        train_settings = {} if args.workers is None else dict(workers=args.workers)
        results = run_grid(args.grid, args.out, seeds=args.seeds, iters=args.iters,
                           data_dir=args.data, only=only, train_settings=train_settings,
                           progress=not args.no_progress,
                           log=lambda m: print(m, file=sys.stderr))
    except KeyboardInterrupt:
        print("interrupted; run the same command again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"{len(results['runs'])} runs of grid '{args.grid}' in {results['wall_s'] / 60:.1f} "
          f"min; {Path(args.out) / 'table.md'}:")
    print((Path(args.out) / "table.md").read_text(), end="")
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

    s = sub.add_parser("make-figures",
                       help="write the synthetic stick-figure keypoints data set (COCO format)")
    s.add_argument("--out", required=True, help="folder to write")
    s.add_argument("--train", "--num-train", dest="num_train", type=int, default=200,
                   help="training images")
    s.add_argument("--val", "--num-val", dest="num_val", type=int, default=50,
                   help="validation images")
    s.add_argument("--size", type=int, default=128, help="image side in pixels")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_make_figures)

    s = sub.add_parser("train", help="train on a COCO data set")
    s.add_argument("--config", default="tiny", choices=sorted(PRESETS))
    s.add_argument("--data", required=True, help="folder with train/, val/, annotations/")
    s.add_argument("--out", required=True, help="run folder (checkpoints, log, pictures)")
    s.add_argument("--iters", type=int, default=300)
    s.add_argument("--batch-size", type=int, default=2)
    s.add_argument("--lr", type=float, default=0.02)
    s.add_argument("--optimizer", default="sgd", choices=("sgd", "adamw"),
                   help="sgd: torchvision's recipe (momentum 0.9); adamw: try --lr 0.001")
    s.add_argument("--workers", type=int, default=1,
                   help="worker processes, one share of each batch each (2 on a 2-core machine)")
    s.add_argument("--eval-every", type=int, default=0,
                   help="evaluate every N iterations (0: at the end only, -1: never)")
    s.add_argument("--checkpoint-every", type=int, default=50)
    s.add_argument("--clip-grad-norm", type=float, default=None,
                   help="scale the gradient down to this global norm when it is larger")
    s.add_argument("--ema-decay", type=float, default=None,
                   help="evaluate and save an exponential moving average of the weights "
                        "with this decay (0.998: about the last 500 steps)")
    s.add_argument("--no-flip", action="store_true", help="no horizontal-flip augmentation")
    s.add_argument("--dihedral", action="store_true",
                   help="also flip upside down and transpose (all 8 symmetries of the square;"
                        " for objects without an up, such as the shapes)")
    s.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.npz")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--backend", default="auto", choices=("numpy", "numba", "auto"),
                   help="numpy: the readable reference only; auto/numba: the numba kernels "
                        "(the same numbers, on every core)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("predict", help="draw the model's detections on images")
    s.add_argument("--weights", required=True, help=".npz (ours) or .pth (torchvision)")
    s.add_argument("--images", required=True, nargs="+", help="image files or folders")
    s.add_argument("--out", required=True)
    s.add_argument("--config", default=None, choices=sorted(PRESETS),
                   help="default: config.json next to the weights, else tiny")
    s.add_argument("--score-threshold", type=float, default=0.5)
    s.add_argument("--annotations", default=None,
                   help="COCO instances JSON: results get its image ids, matched by file_name "
                        "(without it: positions 1..N)")
    s.add_argument("--data", default=None, help="a data folder: --annotations of its --split")
    s.add_argument("--split", default="val")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("evaluate", help="COCO bbox and mask AP of a model, or of a results file")
    s.add_argument("--weights", default=None, help="a model to run on the split")
    s.add_argument("--predictions", default=None,
                   help="a COCO results JSON to score instead (ours, torchvision's, detectron2's)")
    s.add_argument("--data", default=None, help="folder with the split (and its annotations)")
    s.add_argument("--annotations", default=None, help="instances JSON (with --predictions)")
    s.add_argument("--split", default="val")
    s.add_argument("--config", default=None, choices=sorted(PRESETS))
    s.add_argument("--out", default=None,
                   help="JSON path (default: next to the weights / the results file)")
    s.add_argument("--max-images", type=int, default=None)
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("convert", help="torchvision .pth -> our .npz")
    s.add_argument("src")
    s.add_argument("dst")
    s.add_argument("--config", default="torchvision_r50_fpn", choices=sorted(PRESETS),
                   help="the model the weights must fit (checked before writing)")
    s.add_argument("--no-check", action="store_true",
                   help="write the tensors as they are (e.g. a backbone alone)")
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("demo", help="data, training, evaluation and pictures in runs/demo")
    s.add_argument("--out", default="runs/demo")
    s.add_argument("--iters", type=int, default=None, help="default: the demo's own setting")
    s.add_argument("--num-train", type=int, default=None,
                   help="training images to write (default: the demo's own setting)")
    s.add_argument("--num-val", type=int, default=None,
                   help="validation images to write (default: the demo's own setting)")
    s.add_argument("--keypoints", action="store_true",
                   help="the keypoint model (chapter 15) on the stick-figure data set instead")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_demo)

    from .ablate import DEFAULT_ITERS, GRIDS
    s = sub.add_parser("ablate", help="train every variant of an ablation grid (chapter 14)")
    s.add_argument("--grid", required=True, help=f"the grid: {', '.join(GRIDS)}")
    s.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 for every variant")
    s.add_argument("--iters", type=int, default=DEFAULT_ITERS, help="iterations of each run")
    s.add_argument("--out", default="runs/ablate", help="grid folder (run it again to continue)")
    s.add_argument("--data", default=None,
                   help="a COCO data folder (default: the shapes set, written into OUT/data)")
    s.add_argument("--only", default=None, metavar="A,B",
                   help="train only these variants (two processes can split a grid's folder)")
    s.add_argument("--workers", type=int, default=None,
                   help="DataParallel workers per run (default: the grid's, 2; the same losses)")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_ablate)
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
        if isinstance(e, OSError) and e.filename and e.strerror:  # "path: what", no errno
            msg = f"{e.filename}: {e.strerror}"
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
