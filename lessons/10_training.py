# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 10 — Training
#
# Chapters 02 to 09 built every piece of Mask R-CNN and its backward pass. Training puts them
# in a loop. Each **iteration** does five things:
#
# 1. pick a small batch of images (here 2) and flip each one left-right with probability 1/2
#    (the demo also turns them upside down and transposes them: section 2);
# 2. run the model forward to the five losses and backward to the gradient of every weight;
# 3. check that no loss and no gradient is NaN or Inf, *before* touching the weights;
# 4. set the learning rate for this iteration (warm-up, then steps down);
# 5. take one optimiser step: SGD with momentum here; the demo uses AdamW (section 5).
#
# The weights $\theta$ move against the gradient of the total loss
#
# $$L = L_{\text{obj}} + L_{\text{rpn box}} + L_{\text{cls}} + L_{\text{box}} + L_{\text{mask}},$$
#
# $$v \leftarrow \mu\, v + \big(\nabla_\theta L + \lambda\,\theta\big), \qquad
#   \theta \leftarrow \theta - \eta_i\, v,$$
#
# with momentum $\mu = 0.9$, weight decay $\lambda = 10^{-4}$ and a learning rate $\eta_i$ that
# depends on the iteration $i$. This chapter trains the **tiny** preset on the synthetic shapes
# data set, live, for a minute; `make demo` does the same for longer (its settings are printed
# below, from `mrcnn_np.demo.DEMO`, and its real run is shown in section 6).

# %%
# %matplotlib inline
import inspect
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import mrcnn_np.train
from mrcnn_np.checkpoint import atomic_path, load_npz, save_npz_atomic
from mrcnn_np.config import tiny
from mrcnn_np.data.shapes import EMPTY_FRACTION, make_shapes_dataset
from mrcnn_np.demo import DEMO
from mrcnn_np.model import LOSS_NAMES, MaskRCNN
from mrcnn_np.nn.optim import SGD, warmup_multistep_lr
from mrcnn_np.train import hyper_parameters, load_split, read_checkpoint, sample_batch, train
from mrcnn_np.viz import draw_instances

np.set_printoptions(precision=4, suppress=True)
work = Path(tempfile.mkdtemp(prefix="mrcnn_ch10_"))  # everything this chapter writes goes here
t_chapter = time.perf_counter()

# %% [markdown]
# ## 1. The shapes data set
#
# A detector needs images with every object outlined. We draw our own: a textured background
# with one to four circles, squares and triangles painted on it. A shape painted later covers
# the ones under it, so each instance mask is the **visible** part of its shape. About 5% of
# the images have no object at all.
#
# `make_shapes_dataset` writes the images as PNG files and the annotations as an ordinary COCO
# JSON file, so the same code reads it as it would read COCO itself. We write 24 training and
# 4 validation images of 128 x 128 (the demo writes 200 and 50). The same seed gives the same
# files, byte for byte.

# %%
paths = make_shapes_dataset(work / "shapes", num_train=24, num_val=4, image_size=(128, 128), seed=0)
for name, p in paths.items():
    print(f"{name:18s} {p}")

ds = load_split(work / "shapes", "train")  # a CocoDataset
print(ds)
n_empty = sum(len(ds.get(i)["labels"]) == 0 for i in range(len(ds)))
print(f"images without objects: {n_empty} of {len(ds)} (EMPTY_FRACTION = {EMPTY_FRACTION})")
assert EMPTY_FRACTION == 0.05 and n_empty == max(1, round(EMPTY_FRACTION * len(ds)))
print("class names (index = label):", ds.class_names)
print("one COCO annotation:", {k: v for k, v in ds.coco.anns[1].items() if k != "segmentation"})

# %% [markdown]
# `ds.get(i)` returns the image as float32 `[3, H, W]` in 0..1 and its targets: `boxes`
# `[G, 4] = (x1, y1, x2, y2)`, `labels` `[G]` in 1..3 and `masks` `[G, H, W]` of 0/1. This is
# the format `MaskRCNN.forward_backward` takes.

# %%
sample = ds.get(0)
print("image", sample["image"].shape, sample["image"].dtype)
print("boxes", sample["boxes"].shape, "\n", sample["boxes"])
print("labels", sample["labels"], "->", [ds.class_names[l] for l in sample["labels"]])
print("masks", sample["masks"].shape, sample["masks"].dtype, "pixels per mask:",
      sample["masks"].sum(axis=(1, 2)))

# %%
fig, axes = plt.subplots(2, 4, figsize=(12, 6.4))
for ax, i in zip(axes.ravel(), range(8)):
    s = ds.get(i)
    ax.imshow(draw_instances(s["image"], s["boxes"], s["labels"], masks=s["masks"],
                             class_names=ds.class_names))
    ax.set_title(f"image {s['image_id']}, objects: {len(s['labels'])}", fontsize=9)
    ax.axis("off")
fig.suptitle("Training images with their ground truth: visible-part masks, boxes and labels")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. The training loop, written out
#
# `mrcnn_np.train.train` is the library's loop: it adds checkpoints, a log file, a progress bar
# and evaluation around the five steps. Its docstring states them:

# %%
print(mrcnn_np.train.__doc__.split("and, every so often")[0])

# %% [markdown]
# Step 1 is `sample_batch`. Every random choice of the run (which images, which flips, and
# inside the model the scale jitter and the anchor and RoI sampling) comes from **one**
# `numpy.random.Generator`; that is what makes a run repeatable and a resumed run exact
# (section 4).

# %%
print(inspect.getsource(sample_batch))

# %% [markdown]
# A left-right flip is the augmentation of the Mask R-CNN paper (and of torchvision's reference
# scripts): a mirrored person is still a person, an upside-down one is not. A circle, a square
# or a triangle has no up, so the shapes can also be turned upside down and transposed
# (`flip="dihedral"`): with the left-right flip these give all **8 symmetries of the square**,
# each drawn with probability 1/8, and every one of them is a training image the generator
# could have drawn. The demo trains so (`DEMO["flip"]`, printed below): with left-right flips
# only, its model fitted its training images almost perfectly while validation lagged. Did
# the 8 symmetries close part of that gap? Over five runs the difference is smaller than the
# spread from one run to the next (the levers table of section 6): an honest "not measurably".
# Boxes follow the pixels: upside down maps `(x1, y1, x2, y2)` to `(x1, H - y2, x2, H - y1)`,
# transposed to `(y1, x1, y2, x2)`.

# %%
from mrcnn_np.data.coco import flip_vertical_transpose  # noqa: E402

print("the demo's flips:", DEMO["flip"])
triangle = ds.class_names.index("triangle")
i_sym = next(i for i in range(len(ds))  # an image with a triangle and another shape shows it
             if triangle in ds.get(i)["labels"] and len(ds.get(i)["labels"]) >= 2)
fig, axes = plt.subplots(2, 4, figsize=(12, 6.4))
for ax, (lr, ud, tr) in zip(axes.ravel(), [(a, b, c) for c in (0, 1) for b in (0, 1) for a in (0, 1)]):
    s = flip_vertical_transpose(ds.get(i_sym, flip=bool(lr)), bool(ud), bool(tr))
    ax.imshow(draw_instances(s["image"], s["boxes"], s["labels"], masks=s["masks"],
                             class_names=ds.class_names))
    ax.set_title("left-right " * lr + "upside down " * ud + "transposed" * tr or "as drawn",
                 fontsize=9)
    ax.axis("off")
    for m, b in zip(s["masks"], s["boxes"]):  # each box still encloses its mask
        ys, xs = np.nonzero(m)
        assert b[0] <= xs.min() and xs.max() < b[2] and b[1] <= ys.min() and ys.max() < b[3]
fig.suptitle("One training image under the 8 symmetries of the square (flip='dihedral')")
plt.tight_layout()
plt.show()

# %% [markdown]
# Step 2 is `forward_backward`: the forward pass of chapter 09 to the five losses, then the
# backward pass, which leaves $\partial L / \partial \theta$ in every layer's `.grads`.

# %%
print(inspect.getsource(MaskRCNN.forward_backward))

# %% [markdown]
# Here is the whole loop, in about ten lines, with the library's pieces. We train the tiny
# preset (about 1.8 M weights) for 60 iterations of 2 images, learning rate 0.02, warm-up over
# the first 20 iterations (section 3), and one step down (x0.1) at iteration 50. As in the
# demo, a gradient whose global norm $\lVert g \rVert$ is above 10 is scaled down to norm 10
# before the step (same direction, shorter step; section 3 says why). Images without objects
# are left out of training, as torchvision's reference script does.

# %%
ITERS, BASE_LR, WARMUP, MILESTONES, CLIP = 60, 0.02, 20, [50], 10.0
MOMENTUM, WEIGHT_DECAY, WARMUP_FACTOR = 0.9, 1e-4, 1e-3  # torchvision's detection reference


def grad_norm(model):
    """sqrt(sum of every gradient squared): one number to watch for blow-ups."""
    return math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64)))
                         for _, _, g in model.named_parameters()))


indices = np.array([i for i in range(len(ds)) if len(ds.get(i)["labels"]) > 0])  # not empty


def run(lr, warmup_iters, iters, clip=None, seed=0):
    """Train a fresh tiny model; returns (model, per-iteration records). Stops at a NaN."""
    model = MaskRCNN(tiny(num_classes=ds.num_classes), rng=np.random.default_rng(seed))
    optimizer = SGD(model, lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    rng = np.random.default_rng(seed + 1)  # the ONE generator of the run
    records = []
    for i in range(iters):
        images, targets = sample_batch(ds, indices, rng, batch_size=2)          # 1. data
        losses = model.forward_backward(images, targets, rng)                   # 2. fwd + bwd
        gn = grad_norm(model)
        if not (math.isfinite(losses["loss"]) and math.isfinite(gn)):          # 3. guard
            print(f"iteration {i + 1}: loss {losses['loss']:.3g}, gradient norm {gn:.3g}: "
                  "stopped before the step")
            break
        if clip is not None and gn > clip:                                      # (clipping)
            for _, _, g in model.named_parameters():
                g *= g.dtype.type(clip / gn)
        optimizer.lr = warmup_multistep_lr(i, lr, warmup_iters, WARMUP_FACTOR, MILESTONES)  # 4.
        optimizer.step()                                                        # 5. SGD step
        records.append(dict(iter=i + 1, lr=optimizer.lr, grad_norm=gn, **losses))
    return model, records


t0 = time.perf_counter()
model, records = run(BASE_LR, WARMUP, ITERS, clip=CLIP)
n_weights = sum(p.size for _, p, _ in model.named_parameters())
print(f"{len(records)} iterations in {time.perf_counter() - t0:.1f} s; "
      f"{n_weights / 1e6:.2f} M weights")
assert 1.75e6 < n_weights < 1.85e6  # "about 1.8 M" above
for r in records[:3] + records[-3:]:
    print(f"iter {r['iter']:3d}  lr {r['lr']:.5f}  loss {r['loss']:.3f}  "
          + "  ".join(f"{k[5:]} {r[k]:.3f}" for k in LOSS_NAMES))

# %%
it = np.array([r["iter"] for r in records])  # [T]


def smooth(y, n=5):
    """Mean of the last n values at each point (the first points use what there is)."""
    c = np.concatenate([[0.0], np.cumsum(y)])  # [T + 1]
    lo = np.maximum(np.arange(1, len(y) + 1) - n, 0)  # [T]
    return (c[1:] - c[lo]) / (np.arange(1, len(y) + 1) - lo)  # [T]


fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(9, 6), sharex=True,
                                gridspec_kw=dict(height_ratios=(3, 1)))
for key in ("loss",) + LOSS_NAMES:
    y = np.array([r[key] for r in records])  # [T]
    line, = ax.plot(it, smooth(y), lw=2.5 if key == "loss" else 1.5, label=key)
    ax.plot(it, y, lw=0.6, alpha=0.35, color=line.get_color())
ax.set_yscale("log")
ax.set_ylabel("loss (thin: raw, thick: mean of 5)")
ax.legend(fontsize=8, ncol=3)
ax.grid(alpha=0.3)
ax.set_title("The five losses of the tiny Mask R-CNN, trained live on 24 shapes images")
ax_lr.plot(it, [r["lr"] for r in records], color="k")
ax_lr.set_ylabel("learning rate")
ax_lr.set_xlabel("iteration")
ax_lr.grid(alpha=0.3)
plt.show()

first = np.mean([r["loss"] for r in records[:10]])
last = np.mean([r["loss"] for r in records[-10:]])
print(f"mean loss, first 10 iterations: {first:.3f}; last 10: {last:.3f} "
      f"({first / last:.1f}x lower)")
assert last < first / 1.5  # 60 iterations is the first minute: the demo goes on much longer

# %% [markdown]
# What to read in the curves:
#
# * **objectness** starts at $\log 2 \approx 0.69$ (a sigmoid that knows nothing) and stays
#   there while the learning rate is tiny; then it falls steadily: telling "some shape here"
#   from background is the easiest task.
# * **classifier** starts near $\log 4 \approx 1.39$ (4 classes, background included) and
#   falls fast, mostly by learning that most RoIs are background; it creeps up again as the
#   RPN improves and sends more positive RoIs, whose shape must be told apart.
# * **mask** starts far above $\log 2$ (the untrained mask logits are large, so confident and
#   often wrong) and falls fast to about 0.6 ("the middle of a positive box is object"), then
#   flattens: drawing the actual shape takes much longer.
# * **box** losses are small in absolute value (smooth L1 of deltas that start near 0) and
#   rise at first: the better the RPN, the more positive RoIs carry a box loss.
#
# Sixty iterations is far from a trained model; the demo trains for `DEMO["iters"]` (printed
# in the next section) on more images.

# %% [markdown]
# ## 3. Warm-up: why a detector trained from scratch needs it
#
# The learning rate follows torchvision's detection recipe: a **linear warm-up** from
# $0.001\,\eta$ to $\eta$ over the first $W$ iterations, then a step down by $\gamma = 0.1$ at
# each milestone:
#
# $$\eta_i = \eta \cdot \Big(f + (1 - f)\,\tfrac{i}{W}\Big)_{\text{if } i < W} \cdot
#   \gamma^{\#\{m \,\le\, i\}}, \qquad f = 0.001 .$$

# %%
print(inspect.getsource(warmup_multistep_lr))
# the demo's schedule, as train() fills it in: warm-up min(100, iters // 5), steps at 75% and 90%
demo_iters = DEMO["iters"]
hp = hyper_parameters(demo_iters, DEMO["batch_size"], DEMO["lr"], 0.9, 1e-4, None, 1e-3, None,
                      0.1, DEMO["clip_grad_norm"], 0, True, DEMO["optimizer"])
W_demo, (m1, m2) = hp["warmup_iters"], hp["milestones"]
demo_lr = [warmup_multistep_lr(i, DEMO["lr"], W_demo, 1e-3, [m1, m2]) for i in range(demo_iters)]
print(f"the demo: {demo_iters} iterations of {DEMO['batch_size']} images, {hp['optimizer']} "
      f"lr {DEMO['lr']}, warm-up {W_demo}, milestones {m1} and {m2}, clipping at {DEMO['clip_grad_norm']}")
print(f"demo learning rate at iterations 0, {W_demo // 2}, {W_demo}, {m1 - 1}, {m1}, {m2}:",
      [round(demo_lr[i], 6) for i in (0, W_demo // 2, W_demo, m1 - 1, m1, m2)])

# %% [markdown]
# Why not start at $\eta = 0.02$ straight away? At the start every weight is random. The
# gradient is large (about ten times its norm after a few dozen steps; printed below) and
# points in directions that stop being right after a small move. The RPN's proposals, and
# therefore the RoIs the heads see, change from one step to the next. A full-size step
# $\eta\,g$ in that state overshoots; the next gradient is larger still, and momentum adds
# the old step to the new one.
#
# Two remedies keep the early steps short: **warm-up** makes $\eta$ small while $g$ is large;
# **clipping** caps $\lVert g \rVert$. Below, the run of section 2 (same weights, same
# batches) is repeated for 12 iterations with neither, with warm-up only, with clipping only
# and with both, at $\eta = 0.05$, 2.5 times section 2's rate. (At section 2's 0.02 this small
# network happens to survive its first steps even with neither remedy; we measured it. The
# margin is thin, and a larger rate shows what the remedies are for.)

# %%
HOT_LR = 0.05
with np.errstate(all="ignore"):  # the run with neither overflows on purpose
    _, neither = run(HOT_LR, 0, 12)
_, warmup_only = run(HOT_LR, WARMUP, 12)
_, clip_only = run(HOT_LR, 0, 12, clip=CLIP)
_, both = run(HOT_LR, WARMUP, 12, clip=CLIP)
runs = {"neither": neither, "warm-up only": warmup_only, "clipping only": clip_only,
        "both": both}

fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 3.8))
ax1.semilogy(np.arange(1, demo_iters + 1), demo_lr, color="k")
ax1.set_title(f"the demo's learning rate ({demo_iters} iterations)")
ax1.set_xlabel("iteration")
ax1.grid(alpha=0.3, which="both")
for name, rs in runs.items():
    style = dict(marker="o", ms=3) if name != "neither" else dict(marker="s", ls="--")
    ax2.semilogy([r["iter"] for r in rs], [r["loss"] for r in rs], label=name, **style)
    ax3.semilogy([r["iter"] for r in rs], [r["grad_norm"] for r in rs], label=name, **style)
ax2.set_title("total loss, first 12 iterations")
ax3.set_title("gradient norm (before clipping)")
for ax in (ax2, ax3):
    ax.set_xlabel("iteration")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
plt.tight_layout()
plt.show()
for name, rs in runs.items():
    print(f"{name:17s} steps taken {len(rs):2d}, loss after them {rs[-1]['loss']:.3g}")
assert len(neither) < 12 and len(warmup_only) == 12 and len(clip_only) == 12 and len(both) == 12
g_first, g_later = records[0]["grad_norm"], np.median([r["grad_norm"] for r in records[29:]])
print(f"section 2's gradient norm at iteration 1: {g_first:.0f}; median over iterations "
      f"30-60: {g_later:.1f} ({g_first / g_later:.0f}x smaller)")
assert g_first > 5 * g_later

# %% [markdown]
# With neither remedy the loss jumps, the gradient norm grows by orders of magnitude and within
# about ten iterations the numbers overflow: the guard of step 3 stops the run *before* a NaN reaches
# the weights. Either remedy gets this run through its start, and neither is a guarantee on
# its own: one unlucky batch of two images can still produce a huge gradient later.
# torchvision's recipe uses warm-up alone, with 16 images per batch and a pre-trained
# backbone; a from-scratch model on batches of 2 is more fragile, so `make demo` uses both
# (warm-up 100, clipping at 10).

# %% [markdown]
# ## 4. Checkpoints and exact resume
#
# A long run must survive Ctrl-C, a crash or a full disk. `train` saves a **checkpoint**
# every `checkpoint_every` iterations: the weights, BatchNorm's running statistics, SGD's
# momentum buffers, the iteration number and the state of the random generator, all in one
# `.npz` file (no pickle).
#
# The file is written **atomically**: to a temporary file in the same folder, flushed to disk,
# then renamed over the old one. A rename within one file system is atomic, so the file on
# disk is always either the old good checkpoint or the new good one, never half of each.

# %%
print(inspect.getsource(atomic_path))
print(inspect.getsource(save_npz_atomic))

# %% [markdown]
# Because the generator's state is saved too, a resumed run draws the same images, flips and
# samples as a run that was never stopped, and ends with **bit-identical** weights. We check
# it: run A trains 6 iterations in one go; run B trains 3, stops, and is resumed to 6.

# %%
kw = dict(batch_size=2, lr=0.02, warmup_iters=2, milestones=[5], eval_every=-1,
          checkpoint_every=3, progress=False, log=lambda message: None)
train(tiny(), work / "shapes", work / "run_A", iters=6, **kw)
train(tiny(), work / "shapes", work / "run_B", iters=3, **kw)  # ... interrupted after 3
ck = read_checkpoint(work / "run_B" / "checkpoint.npz")
print("run B's checkpoint: iteration", ck["iteration"], "| hyper-parameters", ck["hparams"])
train(tiny(), work / "shapes", work / "run_B", iters=6, resume=True, **kw)  # ... resumed to 6
wa, wb = load_npz(work / "run_A" / "weights.npz"), load_npz(work / "run_B" / "weights.npz")
same = all(np.array_equal(wa[k], wb[k]) for k in wa)
print(f"{len(wa)} weight tensors; A and B identical bit for bit: {same}")
print("files of a run:", sorted(p.name for p in (work / "run_B").iterdir()))
assert same

# %% [markdown]
# From the command line the same run is
#
#     python -m mrcnn_np train --config tiny --data data/shapes --out runs/r1 --iters 600
#     python -m mrcnn_np train --data data/shapes --out runs/r1 --resume   # after a stop
#
# and `make demo` writes the data set, trains, evaluates and draws pictures in `runs/demo/`
# (its `weights.npz` is what chapter 11 loads).

# %% [markdown]
# ## 5. The demo's optimiser, and both cores
#
# **AdamW.** SGD moves every weight by $\eta$ times its gradient, so layers whose gradients
# are small learn slowly. Trained from scratch, the box classifier is such a layer: in the
# SGD runs its loss was the slowest of the five to fall. AdamW (Loshchilov & Hutter; as
# `torch.optim.AdamW`, and `tests/test_nn_optim.py` checks it against torch) divides each
# weight's step by a running estimate of its gradient's size:
#
# $$m \leftarrow \beta_1 m + (1-\beta_1)\,g, \qquad v \leftarrow \beta_2 v + (1-\beta_2)\,g^2,
#   \qquad \theta \leftarrow \theta(1 - \eta\lambda) - \eta\,
#   \frac{m / (1-\beta_1^t)}{\sqrt{v / (1-\beta_2^t)} + \epsilon},$$
#
# so every weight moves by about $\eta$ per step in the direction its recent gradients
# agree on, whatever their scale; the weight decay $\lambda$ shrinks the weights directly
# instead of being added to the gradient. The cell shows it on two weights whose gradients
# differ a thousandfold.

# %%
from mrcnn_np.nn.modules import Linear  # noqa: E402
from mrcnn_np.nn.optim import AdamW  # noqa: E402

print(inspect.getsource(AdamW.step))
steps = {}
for name, make in (("SGD", lambda m: SGD(m, lr=0.01)), ("AdamW", lambda m: AdamW(m, lr=0.01, weight_decay=0.0))):
    layer = Linear(2, 1, bias=False)
    layer.params["weight"][...] = 0.0
    opt = make(layer)
    for _ in range(5):
        layer.grads["weight"][...] = [[1.0, 0.001]]  # a large and a small gradient
        opt.step()
    steps[name] = -layer.params["weight"][0]
    print(f"{name:5s}: after 5 steps the two weights moved by {steps[name][0]:.5f} and {steps[name][1]:.8f}")
assert np.isclose(steps["SGD"][0] / steps["SGD"][1], 1000, rtol=1e-3)  # SGD: in proportion
assert np.allclose(steps["AdamW"], 0.05, rtol=1e-3)  # AdamW: 5 x lr each, whatever the scale

# %% [markdown]
# On the demo's data and schedule, 1,200 iterations each (the levers table at the end of
# section 6 prints these numbers from `demo_levers.json`): SGD with $\eta = 0.02$ reached mask AP50
# 0.53, AdamW with $\eta = 0.001$ reached 0.78, so the demo trains with AdamW
# (`DEMO["optimizer"]`, printed below). Its learning rate matters as much as SGD's: 0.0005
# and 0.003 gave 0.64 and 0.44.
#
# **Both cores.** A training step of the tiny model is hundreds of small operations, and
# most of them use one core whatever the thread settings say. But the two images of a batch
# are independent until their losses are averaged. `parallel.DataParallel` gives each image
# to its own worker process: the workers run the backbone and the RPN, the main process draws
# every anchor and RoI sample with the run's one generator (the same draws, in the same
# order, as `forward_train`), the workers compute their image's five losses and the backward
# pass, and the main process adds the two gradients and takes the optimiser step on weights
# that live in shared memory. The batch's losses are averages over the whole batch (over
# all sampled anchors, all RoIs, all positive RoIs), so each worker's loss enters with its
# share of that count as weight, in the forward sum and in the backward pass alike. The same
# losses come out, up to the order in which floating-point sums are added; the cell checks
# it on three iterations, and `tests/test_parallel_equivalence.py` on twenty (1e-6 relative).
# Both in float64: in float32 a last-bit difference can move one proposal past another in the
# ranking, and from then on the two runs sample different RoIs (try it: drop the `astype`).

# %%
from mrcnn_np.parallel import DataParallel  # noqa: E402

print("the demo:", {k: DEMO[k] for k in ("optimizer", "lr", "workers")})
one_model = MaskRCNN(tiny(num_classes=ds.num_classes), rng=np.random.default_rng(5))
two_model = MaskRCNN(tiny(num_classes=ds.num_classes), rng=np.random.default_rng(5))
for m in (one_model, two_model):
    m.astype(np.float64)  # float64: rounding differences stay far below any sampling decision
batches = [sample_batch(ds, indices, np.random.default_rng(10 + i), batch_size=2) for i in range(3)]
batches = [([im.astype(np.float64) for im in images], targets) for images, targets in batches]
with DataParallel(two_model, workers=2) as dp:
    opts = [AdamW(one_model, lr=1e-3), AdamW(two_model, lr=1e-3)]
    for i, (images, targets) in enumerate(batches):
        ref = one_model.forward_backward(images, targets, np.random.default_rng(i))
        par = dp.forward_backward(images, targets, np.random.default_rng(i))
        for opt in opts:
            opt.step()
        print(f"iteration {i + 1}: total loss {ref['loss']:.12f} in one process, "
              f"{par['loss']:.12f} on two workers")
        assert np.isclose(par["loss"], ref["loss"], rtol=1e-9)

# %% [markdown]
# On the 2-core machine a step at the demo's trained state took 231-238 ms on two workers
# against 328-444 ms in one process (its numba kernels on both cores), the same model and
# batch, medians of 20 steps (the levers table says how it was measured).
# `benchmarks/bench_tiny.py --ours-workers 2` measures it against torchvision.

# %% [markdown]
# ## 6. The demo's real run
#
# Sixty iterations show the start; here is a whole `make demo` run, as it was shipped with
# this chapter: its settings, its wall time on the 2-core machine, its losses (one point per
# `log_step` iterations, their mean, from its `log.jsonl`), and its COCO numbers on the
# validation split. `notebooks/assets/demo_run.json` was written from the run folder
# by `python tools/demo_assets.py runs/demo`; chapter 11 loads the same run's weights.
# The demo trains its mask branch on a random `mask_rois_per_image` of each image's positive
# RoIs instead of all of them (printed below): the mask head is the costliest part of a step,
# and the levers table at the end shows that this costs no AP50 at 1,800 iterations; the
# time it saves, with the faster steps of later sessions, went into more iterations (the
# table's later rows: 2,400, then 3,600 iterations instead of 1,800). It also samples half
# of the box head's RoIs from the positives where the preset (and the paper) takes a quarter
# (`box_positive_fraction`, printed below): the classifier sees twice the shapes per step,
# and over four seeds that read one object more right per run (the levers table).

# %%
from mrcnn_np.eval.coco_eval import format_table  # noqa: E402

assets = Path(mrcnn_np.train.__file__).resolve().parents[1] / "notebooks" / "assets"
shipped = json.loads((assets / "demo_run.json").read_text())
st = shipped["settings"]
print(f"command: {shipped['command']} at commit {shipped['commit']}; "
      f"{shipped['iterations']} iterations of {st['batch_size']} images, "
      f"{st['num_train']} training images of {st['image_size']} px, the mask branch on "
      f"{st['mask_rois_per_image']} positive RoIs per image, "
      f"{st.get('box_positive_fraction', 0.25):.0%} of the box RoIs positive, "
      f"flips {st.get('flip', True)}; "
      f"wall time {shipped['wall_s'] / 60:.1f} min")
print(format_table(shipped["eval"]))
rec = shipped["object_recall"]
print(f"objects whose best detection has the right class and score >= 0.5: {rec['found']} of "
      f"{rec['objects']} ({100 * rec['recall']:.1f}%); wrong class {rec['wrong_class']}, "
      f"missed {rec['missed']}")
assert shipped["iterations"] == st["iters"]  # the shipped run is a whole demo

lg = shipped["log"]
hp_run = hyper_parameters(st["iters"], st["batch_size"], st["lr"], 0.9, 1e-4, None, 1e-3, None,
                          0.1, st["clip_grad_norm"], 0, True, st.get("optimizer", "sgd"))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4))
ax1.semilogy(lg["iter"], lg["loss"], color="k", lw=2, label="total")
for name in LOSS_NAMES:
    ax1.semilogy(lg["iter"], lg[name], lw=1, label=name.replace("loss_", ""))
for m in hp_run["milestones"]:
    ax1.axvline(m, color="grey", ls=":", lw=1)
ax1.set_xlabel("iteration")
ax1.set_title(f"the demo's losses (mean of every {shipped['log_step']} iterations; "
              "dotted: lr steps)")
ax1.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside, not on, the curves
ax1.grid(alpha=0.3, which="both")
ax2.plot(lg["iter"][1:], 1e3 * np.array(lg["time"][1:]), color="tab:blue")  # the first point
ax2.set_ylim(0, None)  # (the workers' start) is printed below instead: it would squash the rest
ax2.set_xlabel("iteration")
ax2.set_ylabel("ms per iteration")
ax2.set_title(f"time per iteration (from iteration {2 * shipped['log_step']} on)")
ax2.grid(alpha=0.3)
plt.tight_layout()
plt.show()
k = 100 // shipped["log_step"]  # points per 100 iterations
first_t, early_t, last_t = (1e3 * lg["time"][0], 1e3 * np.mean(lg["time"][1:k + 1]),
                            1e3 * np.mean(lg["time"][-k:]))
print(f"ms per iteration: {first_t:.0f} over the first {shipped['log_step']} (the workers start "
      f"and compile their kernels), {early_t:.0f} over the next 100, {last_t:.0f} over the "
      f"last 100")
print(f"total loss: {np.mean(lg['loss'][:k]):.3f} over the first 100 iterations, "
      f"{np.mean(lg['loss'][-k:]):.3f} over the last 100")

# %% [markdown]
# Why can an iteration get slower as training goes on? The untrained RPN's proposals rarely
# overlap an object, so the positive RoIs are mostly the ground-truth boxes themselves (the
# sampler adds them to the proposals): about one per object. A trained RPN puts many
# proposals on every object, so the sampler finds its full quota of positives
# (`box_positive_fraction` of `box_batch_size_per_image` RoIs per image, printed below), and
# the mask branch, which runs only on positives, does several times more work. The demo caps
# that work at `mask_rois_per_image` positives per image, so its steps grow less.
#
# **What we tried to make the demo better**, each measured (the table is printed from
# `notebooks/assets/demo_levers.json`, where every row says how it was measured):

# %%
cfg_demo = tiny()
print(f"positive RoIs per image at most: {cfg_demo.box_positive_fraction} x "
      f"{cfg_demo.box_batch_size_per_image} = "
      f"{int(cfg_demo.box_positive_fraction * cfg_demo.box_batch_size_per_image)}")
levers = json.loads((assets / "demo_levers.json").read_text())
print(levers["machine"])
for row in levers["rows"]:
    print(f"- {row['lever']}: {row['result']}  [{row['how']}]")

# %% [markdown]
# ## Summary
#
# * One iteration: **sample** a batch, **forward and backward** to the gradient of the sum of
#   the five losses, **check** it is finite, set the **learning rate**, take an **optimiser
#   step** (SGD in the loop written out here; in `make demo` AdamW, which reached mask AP50
#   0.78 where SGD reached 0.53 after 1,200 iterations), on two worker processes.
# * The shapes data set is written as real COCO, so the loop is the one you would run on COCO.
# * A detector trained from scratch needs short early steps: large early gradients with a
#   full learning rate make the loss explode within ten iterations. **Warm-up** (a linear ramp
#   of the learning rate) and **gradient clipping** both prevent it; the demo uses both.
# * **Checkpoints** are written atomically and hold the generator's state, so a resumed run
#   is bit-for-bit the run that was never stopped.
# * The losses fall at different speeds: objectness and classification first, masks later.

# %% [markdown]
# ## Exercises
#
# **1.** What is the demo's learning rate halfway through its warm-up, and just after its
# first milestone? (Warm-up `W_demo` iterations, factor 0.001, $\eta$ = `DEMO["lr"]`,
# milestones `m1` and `m2`, all printed in section 3.) Work it out from the formula, then
# check it.

# %% jupyter={"source_hidden": true}
# a solution: the warm-up formula halfway, then one step of gamma = 0.1
answer_1 = (DEMO["lr"] * (0.001 + 0.999 * (W_demo // 2) / W_demo), DEMO["lr"] * 0.1)

# %%
assert np.isclose(warmup_multistep_lr(W_demo // 2, DEMO["lr"], W_demo, 1e-3, [m1, m2]), answer_1[0])
assert np.isclose(warmup_multistep_lr(m1, DEMO["lr"], W_demo, 1e-3, [m1, m2]), answer_1[1])
print(answer_1)

# %% [markdown]
# **2.** Over-fit one image. A model that cannot learn a single image by heart has a bug.
# Train on one image only (no flips, batch 1) and check that the total loss falls at least
# 10x. To keep it fast we use 64 x 64 pixels and a thinner model (the same code paths). The
# settings that work: 80 iterations, lr 0.02, warm-up 10, a step down at 72, gradient norm
# clipped at 10. (In our trials, lr 0.01 made the loss fall only about 8x in 80 iterations.)
# The data set and the thinner model are below; call `train()` (`flip=False`, no evaluation)
# into `work / "run_one"`, and read its log into `log`, one dict per iteration.

# %%
SIZE = 64
make_shapes_dataset(work / "one", num_train=1, num_val=1, image_size=(SIZE, SIZE), seed=17,
                    max_objects=3)
small = tiny(min_size=(SIZE,), max_size=SIZE, rpn_pre_nms_top_n_train=200,
             rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50,
             box_batch_size_per_image=64, representation_size=128, mask_layers=(32,) * 4,
             mask_dim_reduced=32,
             # one image: its batch statistics ARE the population's, so batch norm has none of
             # the train/eval mismatch that made the preset drop it, and it fits fastest here
             backbone_norm="batch")
t0 = time.perf_counter()

# %% jupyter={"source_hidden": true}
train(small, work / "one", work / "run_one", iters=80, batch_size=1, lr=0.02, warmup_iters=10,
      milestones=[72], clip_grad_norm=10.0, flip=False, eval_every=-1, checkpoint_every=80,
      progress=False, log=lambda message: None)
log = [json.loads(line) for line in (work / "run_one" / "log.jsonl").read_text().splitlines()]

# %%
assert [r["iter"] for r in log] == list(range(1, 81))  # one record per iteration, 80 of them
first = np.mean([r["loss"] for r in log[:3]])
last = np.mean([r["loss"] for r in log[-5:]])
print(f"80 iterations in {time.perf_counter() - t0:.1f} s: loss {first:.3f} -> {last:.3f} "
      f"({first / last:.1f}x lower)")
assert last <= first / 10

# %% [markdown]
# **3.** In the run with neither warm-up nor clipping, at which iteration did the guard stop
# the run, and was any step taken with a non-finite loss? (The loop appends a record only
# after a step, so the number of records is the number of steps taken.) Put the iteration
# and `True`/`False` in `answer_3`.

# %% jupyter={"source_hidden": true}
answer_3 = (len(neither) + 1, any(not math.isfinite(r["loss"]) for r in neither))

# %%
assert answer_3[0] == neither[-1]["iter"] + 1 < 12 + 1  # the record of the last step taken
assert answer_3[1] is False and all(math.isfinite(r["grad_norm"]) for r in neither)
print(f"stopped at iteration {answer_3[0]}, after {answer_3[0] - 1} finite steps")
print(f"chapter ran in {time.perf_counter() - t_chapter:.0f} s")
shutil.rmtree(work)  # the chapter's data set and runs
