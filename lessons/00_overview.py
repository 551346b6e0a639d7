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
# # Chapter 00 — Overview: what Mask R-CNN does, and how this repository teaches it
#
# **Instance segmentation** asks, for every object in a picture: *what is it, where is it,
# and exactly which pixels are it?* Two neighbouring objects of the same class are two
# answers, not one. That is the difference from **semantic segmentation**, which labels each
# pixel with a class and cannot tell two touching circles apart.
#
# Mask R-CNN (He, Gkioxari, Dollár, Girshick, 2017) answers the question by adding one small
# branch to a detector. The detector is **Faster R-CNN**: a backbone turns the image into
# feature maps, a **Region Proposal Network** (RPN) proposes boxes that may hold an object,
# and a **box head** classifies each proposal and refines its box. Mask R-CNN adds a **mask
# head**, a small fully convolutional network that predicts a 28x28 mask inside each box, and
# it replaces the coarse RoIPool with **RoIAlign**, so the mask lines up with the pixels.
#
# Everything in this repository is NumPy you can step through. This chapter draws the whole
# pipeline once; every later chapter opens one box of the drawing.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

# %% [markdown]
# ## Semantic vs instance segmentation
#
# A toy scene: two circles (one class) that touch, and a square (another class). We draw
# the scene here with a few lines of NumPy, only to have something to look at.

# %%
H, W = 96, 128
yy, xx = np.mgrid[:H, :W]
circle_a = (xx - 40) ** 2 + (yy - 50) ** 2 <= 22 ** 2
circle_b = ((xx - 78) ** 2 + (yy - 48) ** 2 <= 20 ** 2) & ~circle_a
square = (xx >= 96) & (xx < 122) & (yy >= 10) & (yy < 36)
instances = [("circle", circle_a), ("circle", circle_b), ("square", square)]

image = np.full((H, W, 3), 0.92)
for (_, m), colour in zip(instances, [(0.2, 0.4, 0.8), (0.2, 0.4, 0.8), (0.8, 0.3, 0.2)]):
    image[m] = colour

classes = {"circle": 1, "square": 2}
semantic = np.zeros((H, W), int)
instance = np.zeros((H, W), int)
for i, (name, m) in enumerate(instances, start=1):
    semantic[m] = classes[name]
    instance[m] = i

fig, axes = plt.subplots(1, 3, figsize=(11, 3))
for ax, (title, arr, cmap) in zip(axes, [("image", image, None),
                                         ("semantic: one label per class", semantic, "viridis"),
                                         ("instance: one label per object", instance, "tab10")]):
    ax.imshow(arr, cmap=cmap, interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
plt.show()
print("semantic labels present:", np.unique(semantic), "  instance labels present:", np.unique(instance))

# %% [markdown]
# The semantic map has one "circle" region: the two circles merged. The instance map keeps
# them apart. Mask R-CNN produces the instance answer as a list of detections, each with a
# box, a class, a score and its own mask — exactly what torchvision returns:
#
# ```python
# {"boxes": [D, 4], "labels": [D], "scores": [D], "masks": [D, 1, H, W]}
# ```

# %% [markdown]
# ## The pipeline
#
# One picture of the whole model. Each box is a chapter; the arrows are arrays, with their
# shapes for a 1024x1024 image (N images, C = 256 FPN channels, R RoIs).

# %%
stages = [
    # (x, y, text, chapter)
    (0.0, 2.0, "image\n[N, 3, 1024, 1024]", "10"),
    (2.2, 2.0, "ResNet-50\nC2..C5", "02"),
    (4.4, 2.0, "FPN\nP2..P6 [N, 256, H/s, W/s]", "02"),
    (6.9, 3.4, "RPN head\nobjectness, deltas", "05"),
    (9.3, 3.4, "proposals + NMS\n~1000 boxes / image", "06"),
    (6.9, 0.6, "anchors + matching\n+ sampling (targets)", "03-04"),
    (9.3, 2.0, "RoI sampling\n512 / image, 25% pos", "07"),
    (11.7, 3.0, "RoIAlign 7x7 ->\nbox head: class, box", "08-09"),
    (11.7, 1.0, "RoIAlign 14x14 ->\nmask head: 28x28", "08-09"),
    (14.1, 2.0, "losses / detections\n+ pasted masks", "09-11"),
]
fig, ax = plt.subplots(figsize=(15, 4.5))
for x, y, text, ch in stages:
    ax.add_patch(FancyBboxPatch((x, y - 0.45), 1.9, 0.9, boxstyle="round,pad=0.05",
                                fc="#e8f0fb", ec="#35608f"))
    ax.text(x + 0.95, y, text, ha="center", va="center", fontsize=8)
    ax.text(x + 1.85, y + 0.38, ch, ha="right", va="top", fontsize=7, color="#a33")
arrows = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 6), (5, 3), (2, 7), (6, 7), (6, 8), (2, 8), (7, 9), (8, 9)]
for a, b in arrows:
    (xa, ya, *_), (xb, yb, *_) = stages[a], stages[b]
    ax.add_patch(FancyArrowPatch((xa + 1.95, ya), (xb - 0.05, yb), arrowstyle="->",
                                 mutation_scale=10, color="#555"))
ax.set_xlim(-0.2, 16.2)
ax.set_ylim(-0.1, 4.1)
ax.axis("off")
ax.set_title("Mask R-CNN = Faster R-CNN (backbone, RPN, box head) + a mask head + RoIAlign "
             "(red: chapter)")
plt.show()

# %% [markdown]
# Read the drawing left to right:
#
# 1. **Backbone** (chapter 02). ResNet-50 computes feature maps C2..C5 at strides 4..32; the
#    Feature Pyramid Network mixes them top-down into P2..P6, all with 256 channels, so that
#    small objects are found on fine maps and large ones on coarse maps.
# 2. **Anchors and targets** (03, 04). At every position of every level sit a few reference
#    boxes, the anchors: 3 aspect ratios x 1 size per level. In training each anchor is
#    matched to the ground truth by IoU and labelled object / background / ignore.
# 3. **RPN** (05). A 3x3 conv and two 1x1 convs predict, for every anchor, an objectness
#    logit and four box deltas.
# 4. **Proposals** (06). Deltas applied to anchors, the best few thousand kept, overlaps
#    removed by non-maximum suppression: about 1000 proposals per image.
# 5. **RoI sampling** (07). In training, 512 proposals per image are matched and sampled,
#    25% positive; each positive gets a box target and a 28x28 mask target.
# 6. **RoIAlign** (08). Each RoI is cut out of the right FPN level as a fixed 7x7 (box) or
#    14x14 (mask) feature, with bilinear sampling instead of rounding.
# 7. **Heads and losses** (09). The box head classifies and refines; the mask head predicts
#    one 28x28 mask *per class* and is trained only on the true class's channel, with a
#    per-pixel sigmoid. The five losses add up:
#
# $$L = L_{rpn\_cls} + L_{rpn\_box} + L_{cls} + L_{box} + L_{mask}$$
#
# 8. **Inference** (11). Per-class score threshold, NMS, top 100; each 28x28 mask is pasted
#    back into its box in the image.

# %% [markdown]
# ## The repository in one look
#
# - `mrcnn_np/`: the model, stage by stage, in NumPy. Every op is a pair
#   `x_forward(...) -> (out, cache)` and `x_backward(dout, cache) -> grads`.
# - `kernels/`: Numba CPU kernels and numba.cuda GPU kernels for RoIAlign, RoIPool and NMS;
#   the NumPy versions are the definitions they are tested against.
# - `lessons/` and `notebooks/`: this course. `tests/`: everything checked against torchvision
#   and finite differences. `benchmarks/`: speed, against torchvision, on the same machine.
#
# The model is a handful of objects. Here is the tiny preset that trains on a laptop CPU, and
# where its parameters are:

# %%
from mrcnn_np import MaskRCNN
from mrcnn_np.config import get_config

model = MaskRCNN(get_config("tiny"))
counts = {}
for name, p, _ in model.named_parameters():
    stage = ".".join(name.split(".")[:2])
    counts[stage] = counts.get(stage, 0) + p.size
for stage, n in counts.items():
    print(f"{stage:28s} {n:>9,d}")
total = sum(counts.values())
print(f"{'total':28s} {total:>9,d}")

# %% [markdown]
# And one prediction, from random weights, only to see the output's shape (chapter 10
# trains it):

# %%
rng = np.random.default_rng(0)
out = model.predict([image.transpose(2, 0, 1).astype(np.float32)])[0]
for k, v in out.items():
    print(f"{k:7s} {str(v.shape):20s} {v.dtype}")

# %% [markdown]
# ## Using the repository
#
# ```bash
# make demo    # generate shapes, train the tiny model, evaluate, write runs/demo/
# make test    # all tests, including the comparisons with torchvision
# make notebooks   # rebuild these chapters from lessons/
# python -m mrcnn_np --help
# ```
#
# ## Summary
#
# - Instance segmentation = detection + a mask per object; semantic segmentation cannot
#   separate touching objects of one class.
# - Mask R-CNN = Faster R-CNN + a small FCN mask head + RoIAlign, trained with five summed
#   losses.
# - Every stage here is NumPy with its backward written out; later chapters open each one.
#
# ## Exercises
#
# 1. How many instances and how many semantic classes (background excluded) does the toy
#    scene have? Check with the arrays.
# 2. Which stage of the tiny model has the most parameters?

# %%
assert len(np.unique(instance)) - 1 == 3
assert len(np.unique(semantic)) - 1 == 2
biggest = max(counts, key=counts.get)
print("most parameters:", biggest)
assert counts[biggest] == max(counts.values())
