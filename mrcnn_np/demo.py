"""``make demo``: the whole job on a 2-core CPU, in one command.

    python -m mrcnn_np demo --out runs/demo

1. writes the shapes data set to ``runs/demo/data`` (kept when it is already there),
2. trains the ``tiny`` preset on it (``runs/demo/checkpoint.npz``, ``log.jsonl``,
   ``loss_curve.png``, ``weights.npz``); a demo that was interrupted continues from its last
   checkpoint when run again,
3. evaluates on the validation split with pycocotools (``coco_table.txt``, ``coco_eval.json``),
4. draws the predictions on validation images (``gallery.png``) and the RoIPool-vs-RoIAlign
   figure of chapter 08 (``roipool_vs_roialign.png``),

and prints where everything is. Every setting is a keyword of :func:`run_demo`; the defaults
are in ``DEMO`` below.
"""
import time
from pathlib import Path

DEMO = dict(
    num_train=200, num_val=50, image_size=128, data_seed=0,  # the data set
    iters=3600, batch_size=2, optimizer="adamw", lr=0.001, clip_grad_norm=10.0, seed=0,
    # 3,600 iterations (2,400 until 2026-12-02): the faster steps paid for 50% more, and
    # mask AP50 rose from 0.949 (mean of 8 runs of 2,400) to 0.964 (mean of 5 runs), mask AP
    # from 0.814 to 0.849, the objects read right from 93.2% to 94.7% (chapter 10's levers).
    # make demo takes 6.8 minutes on the Intel Xeon the chapters were built on (0.106 s a
    # step); 10.6 on the AMD EPYC of the earlier sessions (0.172 s a step, 2026-12-04)
    flip="dihedral",  # the square's 8 symmetries: a shape has no up. Measured: mask AP50 0.943
    # over 3 runs vs 0.937 over 2 with left-right flips only, within the spread between runs
    # (chapter 10's levers); they cost nothing
    mask_rois_per_image=8,  # the mask branch on 8 of each image's ~15 positives: 23% less time
    # per step, the same mask AP50 at 1,800 iterations (chapter 10's levers); the time goes
    # into more iterations
    box_positive_fraction=0.5,  # half of each image's 64 box RoIs positive, not a quarter:
    # the classifier sees twice the shapes per step. 4 seeds: 108-111 of 114 objects read
    # right (mean 96.1%) against 107-110 (mean 95.3%) for 3 seeds of 0.25, the same AP
    # (chapter 10's levers); it costs nothing
    checkpoint_every=200,
    workers=2,  # DataParallel: one image of each batch per core (the same losses, 1.4-1.9x)
    gallery_images=8, gallery_score_threshold=0.5,  # gallery.png: images, least score drawn
)


# ``demo --keypoints``: the same job for the keypoint model (chapter 15) on stick figures
# The keypoint model starts its backbone and RPN from a shapes demo's weights, as the paper
# starts from ImageNet's (same backgrounds, other objects): 1,600 iterations then reach
# keypoint AP 0.714 where from scratch they reach 0.655. Every keypoint RoI is trained: 8 of
# them and 2,000 iterations from scratch gave 0.607. ``keypoint_init.npz`` is the shapes demo
# of 2026-12-02 before the dihedral flips (mask AP50 0.936), the weights the shipped keypoint
# run started from; it stays fixed when the shapes demo is retrained, so that this demo
# repeats the shipped run.
PRETRAINED = Path(__file__).resolve().parents[1] / "notebooks" / "assets" / "keypoint_init.npz"
KEYPOINT_DEMO = dict(DEMO, iters=1600, keypoint_rois_per_image=0, init_weights=str(PRETRAINED),
                     flip=True,  # people have an up: the left-right flip only
                     box_positive_fraction=0.25)  # the preset's, as its shipped run trained


def _data_ready(data_dir):
    ann = Path(data_dir) / "annotations"
    return (ann / "instances_train.json").is_file() and (ann / "instances_val.json").is_file()


def run_demo(out="runs/demo", iters=None, progress=True, log=print, keypoints=False, **settings):
    """Run the demo into ``out``; returns a summary dict (wall_s, eval stats, paths).
    ``settings`` override ``DEMO`` (``num_train``, ``image_size``, ``batch_size``, ...).
    ``keypoints=True``: the stick-figure data set and the ``tiny_keypoints`` preset instead
    (settings ``KEYPOINT_DEMO``); its gallery draws the skeletons."""
    from .config import tiny, tiny_keypoints
    from .data.shapes import make_shapes_dataset
    from .data.stickfigures import make_figures_dataset
    from .eval.coco_eval import format_table
    from .figures import roi_pool_vs_roi_align_figure
    from .checkpoint import atomic_path, atomic_save_png, atomic_write_bytes, atomic_write_json
    from .eval.coco_eval import object_recall
    from .train import load_split, train
    from .viz import save_gallery

    defaults = KEYPOINT_DEMO if keypoints else DEMO
    unknown = set(settings) - set(defaults)
    if unknown:
        raise ValueError(f"unknown demo settings {sorted(unknown)}; known: {sorted(defaults)}")
    s = dict(defaults, **settings)
    what, make_data, preset = (("stick-figure", make_figures_dataset, tiny_keypoints) if keypoints
                               else ("shapes", make_shapes_dataset, tiny))
    if iters is not None:
        s["iters"] = iters
    out = Path(out)
    data_dir = out / "data"
    t0 = time.perf_counter()

    # 1. data
    if _data_ready(data_dir):
        log(f"[1/4] {what} data set already in {data_dir}")
    else:
        log(f"[1/4] writing the {what} data set to {data_dir}")
        make_data(data_dir, num_train=s["num_train"], num_val=s["num_val"],
                  image_size=(s["image_size"], s["image_size"]), seed=s["data_seed"])

    # 2. training (continue an interrupted demo from its checkpoint)
    resume = (out / "checkpoint.npz").is_file()
    log(f"[2/4] training the {preset.__name__} preset for {s['iters']} iterations"
        + (" (continuing from the checkpoint)" if resume else ""))
    extra = dict(keypoint_rois_per_image=s["keypoint_rois_per_image"]) if keypoints else {}
    init = dict(init_weights=s["init_weights"]) if keypoints and s["init_weights"] else {}
    cfg = preset(mask_rois_per_image=s["mask_rois_per_image"],
                 box_positive_fraction=s["box_positive_fraction"], **extra)
    summary = train(cfg, data_dir, out,
                    iters=s["iters"], batch_size=s["batch_size"],
                    optimizer=s["optimizer"], lr=s["lr"], workers=s["workers"],
                    clip_grad_norm=s["clip_grad_norm"], seed=s["seed"], flip=s["flip"],
                    checkpoint_every=s["checkpoint_every"], eval_every=0,
                    resume=resume, progress=progress, log=log, **init)
    t_train = time.perf_counter() - t0

    # 3. the COCO table (train() evaluated the final weights on the whole val split)
    log("[3/4] COCO evaluation on the validation split")
    stats = summary["eval"]
    table = format_table(stats)
    atomic_write_bytes(out / "coco_table.txt", (table + "\n").encode())
    atomic_write_json(out / "coco_eval.json", stats)

    # 4. pictures
    log("[4/4] prediction gallery" + ("" if keypoints else " and the RoIPool-vs-RoIAlign figure"))
    from .model import MaskRCNN
    from .train import read_checkpoint
    ck = read_checkpoint(out / "checkpoint.npz")
    model = MaskRCNN(ck["config"])
    model.load_state_dict(ck["model_state"])
    val = load_split(data_dir, "val")
    # objects read right: each one's best detection has its class and a score >= 0.5, from
    # the results the final evaluation scored (no second prediction pass)
    recall = object_recall(val.coco, summary["eval_results"],
                           score_threshold=s["gallery_score_threshold"])
    log(f"objects whose best detection has the right class and score >= "
        f"{s['gallery_score_threshold']}: {recall['found']} of {recall['objects']} "
        f"({100 * recall['recall']:.1f}%); wrong class {recall['wrong_class']}, "
        f"missed {recall['missed']}")
    items = []
    for i in range(min(s["gallery_images"], len(val))):
        image = val.get(i)["image"]  # [3, H, W]
        items.append((image, model.predict([image])[0]))
    with atomic_path(out / "gallery.png") as tmp:  # gallery.png appears whole, or not at all
        save_gallery(items, tmp, cols=4, class_names=summary["class_names"],
                     score_threshold=s["gallery_score_threshold"], skeleton=val.skeleton,
                     keypoint_names=val.keypoint_names)
    if not keypoints:
        atomic_save_png(out / "roipool_vs_roialign.png", roi_pool_vs_roi_align_figure())

    wall = time.perf_counter() - t0
    result = dict(wall_s=wall, train_and_eval_s=t_train, iterations=summary["iterations"],
                  settings=s, eval=stats, object_recall=recall, first_losses=summary["first"],
                  final_losses=summary["final"])
    atomic_write_json(out / "demo_summary.json", result)
    log("")
    log(table)
    log("")
    log(f"demo done in {wall / 60:.1f} min. Files in {out}/:")
    for name, what in (("gallery.png", "predictions on validation images"),
                       ("loss_curve.png", "the losses during training"),
                       ("coco_table.txt", "COCO AP table (bbox, segm"
                        + (", keypoints)" if keypoints else ")")),
                       ("coco_eval.json", "every COCO number"),
                       ("roipool_vs_roialign.png", "chapter 08's figure"),
                       ("log.jsonl", "one line of losses per iteration"),
                       ("weights.npz", "the trained weights (predict / evaluate --weights)"),
                       ("checkpoint.npz", "weights + optimiser + RNG (train --resume)"),
                       ("data/", f"the {what} data set (COCO format)"),
                       ("demo_summary.json", "wall time, settings, AP")):
        if (out / name).exists():  # (no chapter 08 figure with --keypoints)
            log(f"  {out / name}  -- {what}")
    return result
