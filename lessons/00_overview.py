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
from scipy import ndimage

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
circle_regions = ndimage.label(semantic == classes["circle"])[1]   # connected "circle" regions
print("connected circle regions: semantic map", circle_regions, "| instance map",
      sum(ndimage.label(instance == i)[1] for i in (1, 2)))
assert circle_regions == 1                   # the two circles touch: one region, one label

# %% [markdown]
# The semantic map has one "circle" region: the two circles merged. The instance map keeps
# them apart, one region each. Mask R-CNN produces the instance answer as a list of
# detections, each with a box, a class, a score and its own mask — exactly what torchvision
# returns:
#
# ```python
# {"boxes": [D, 4], "labels": [D], "scores": [D], "masks": [D, 1, H, W]}
# ```

# %% [markdown]
# ## The pipeline
#
# One picture of the whole model. Each box is a chapter (its number in red); the arrows are
# arrays, with their shapes for a 1024x1024 image (N images, C = 256 FPN channels, R RoIs).
# The numbers in the boxes are those of torchvision's `maskrcnn_resnet50_fpn`, read from our
# preset of it, so the drawing cannot disagree with the code.

# %%
from mrcnn_np.config import get_config  # noqa: E402

tv = get_config("torchvision_r50_fpn")
k_box, k_mask, m = tv.box_roi_output_size, tv.mask_roi_output_size, tv.mask_size
stages = {  # name: (column, row, text, chapter)
    "image": (0, 1, "image\n[N, 3,\n1024, 1024]", "10"),
    "resnet": (1, 1, "ResNet-50\nC2..C5", "02"),
    "fpn": (2, 1, f"FPN: P2..P6\n[N, {tv.fpn_channels},\nH/s, W/s]", "02"),
    "anchors": (2, 2, f"anchors\n{len(tv.aspect_ratios[0])} per location\n+ matching", "03-04"),
    "rpn": (3, 2, "RPN head\nobjectness,\nbox deltas", "05"),
    "proposals": (4, 2, f"proposals, NMS\n{tv.rpn_post_nms_top_n_train} / image\n"
                  f"({tv.rpn_post_nms_top_n_test} at test)", "06"),
    "sampling": (5, 2, f"RoI sampling\n{tv.box_batch_size_per_image} / image,\n"
                 f"{tv.box_positive_fraction:.0%} positive", "07"),
    "box": (6, 1, f"RoIAlign {k_box}x{k_box}\n-> box head:\nclass, box", "08-09"),
    "mask": (6, 0, f"RoIAlign {k_mask}x{k_mask}\n-> mask head:\n{m}x{m} / class", "08-09"),
    "out": (7, 0.5, "losses, or\ndetections +\npasted masks", "09-11"),
}
arrows = [("image", "resnet"), ("resnet", "fpn"), ("fpn", "rpn"), ("anchors", "rpn"),
          ("rpn", "proposals"), ("proposals", "sampling"), ("fpn", "box"), ("fpn", "mask"),
          ("sampling", "box"), ("sampling", "mask"), ("box", "out"), ("mask", "out")]
BOX_W, BOX_H = 2.1, 1.1


def place(column, row):
    """The lower-left corner of a stage's box: a wider gap before the RoI heads leaves room
    for the two arrows that come down from RoI sampling."""
    return 2.5 * column + 0.6 * (column >= 6), 1.6 * row


fig, ax = plt.subplots(figsize=(14, 4.4))
for name, (col, row, text, ch) in stages.items():
    x, y = place(col, row)
    ax.add_patch(FancyBboxPatch((x, y), BOX_W, BOX_H, boxstyle="round,pad=0.04",
                                fc="#e8f0fb", ec="#35608f"))
    ax.text(x + BOX_W / 2, y + BOX_H / 2, text, ha="center", va="center", fontsize=9,
            linespacing=1.3)
    ax.text(x + BOX_W, y + BOX_H + 0.07, ch, ha="right", va="bottom", fontsize=9,
            color="#a33")
for a, b in arrows:  # from the right edge of a to the left edge of b: always forward
    (xa, ya), (xb, yb) = place(*stages[a][:2]), place(*stages[b][:2])
    assert xb > xa + BOX_W                    # the target lies to the right of the source
    ax.add_patch(FancyArrowPatch((xa + BOX_W + 0.06, ya + BOX_H / 2),
                                 (xb - 0.06, yb + BOX_H / 2), arrowstyle="-|>",
                                 mutation_scale=12, color="#555", lw=1.2))
right = max(place(c, r)[0] for c, r, *_ in stages.values()) + BOX_W
ax.set_xlim(-0.1, right + 0.1)
ax.set_ylim(-0.1, 1.6 * 2 + BOX_H + 0.4)
ax.axis("off")
ax.set_title("Mask R-CNN = Faster R-CNN (backbone, RPN, box head) + a mask head + RoIAlign "
             "(red: chapter)", fontsize=11)
plt.show()

# %% [markdown]
# Read the drawing left to right:
#
# 1. **Backbone** (chapter 02). ResNet-50 computes feature maps C2..C5 at strides 4..32; the
#    Feature Pyramid Network mixes them top-down into P2..P6 (strides 4..64), all with the
#    same number of channels (256 in torchvision's model), so that small objects are found
#    on fine maps and large ones on coarse maps.
# 2. **Anchors and targets** (03, 04). At every position of every level sit a few reference
#    boxes, the anchors: 3 aspect ratios x 1 size per level. In training each anchor is
#    matched to the ground truth by IoU and labelled object / background / ignore.
# 3. **RPN** (05). A 3x3 conv and two 1x1 convs predict, for every anchor, an objectness
#    logit and four box deltas.
# 4. **Proposals** (06). Deltas applied to anchors, the best 2000 of each level kept (1000
#    at test time), overlaps removed by non-maximum suppression: 2000 proposals per image in
#    training, 1000 at test time.
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
#
# The numbers of this list, from the code: torchvision's preset, the five losses the model
# returns, and the backbone's feature maps for a 64x64 image (the tiny model: the same
# strides, fewer channels).

# %%
from mrcnn_np import MaskRCNN  # noqa: E402
from mrcnn_np.model import LOSS_NAMES  # noqa: E402

print("anchor sizes per level:", tv.anchor_sizes, " ratios h/w:", tv.aspect_ratios[0])
print(f"pre-NMS per level: {tv.rpn_pre_nms_top_n_train} train / {tv.rpn_pre_nms_top_n_test} test;"
      f"  post-NMS per image: {tv.rpn_post_nms_top_n_train} / {tv.rpn_post_nms_top_n_test}")
print(f"RoIs sampled per image: {tv.box_batch_size_per_image}, "
      f"{tv.box_positive_fraction:.0%} positive;  RoIAlign {k_box}x{k_box} (box), "
      f"{k_mask}x{k_mask} (mask);  mask {m}x{m};  detections per image: {tv.box_detections_per_img}")
print("losses:", LOSS_NAMES)
assert tv.fpn_channels == 256 and tv.mask_size == 28 and (k_box, k_mask) == (7, 14)
assert all(len(s) == 1 for s in tv.anchor_sizes) and len(tv.aspect_ratios[0]) == 3
assert (tv.rpn_pre_nms_top_n_train, tv.rpn_pre_nms_top_n_test) == (2000, 1000)
assert (tv.rpn_post_nms_top_n_train, tv.rpn_post_nms_top_n_test) == (2000, 1000)
assert (tv.box_batch_size_per_image, tv.box_positive_fraction) == (512, 0.25)
assert tv.box_detections_per_img == 100 and len(LOSS_NAMES) == 5

model = MaskRCNN(get_config("tiny"))
features, _ = model.backbone.forward(np.zeros((1, 3, 64, 64), np.float32))
print("P2..P6 of a 64x64 image:", [f.shape for f in features])
assert [64 // f.shape[2] for f in features] == [4, 8, 16, 32, 64]
head = {name: p.shape for name, p, _ in model.rpn.named_parameters()}
print("RPN head:", head)
A = len(model.cfg.aspect_ratios[0])                        # anchors per location
assert head["head.conv.0.0.weight"][2:] == (3, 3)          # one 3x3 conv, then two 1x1 convs:
assert head["head.cls_logits.weight"] == (A, model.cfg.fpn_channels, 1, 1)        # 1 logit
assert head["head.bbox_pred.weight"] == (4 * A, model.cfg.fpn_channels, 1, 1)     # 4 deltas

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
counts = {}  # stage -> number of parameters; model: the tiny preset, built above
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

# %% [markdown]
# **1.** How many instances, and how many semantic classes (background excluded), does the
# toy scene have? Count them from the arrays `instance` and `semantic` into `n_instances`
# and `n_classes`.

# %% jupyter={"source_hidden": true}
# a solution: the distinct labels of each map, less the background's 0
n_instances = len(np.unique(instance)) - 1
n_classes = len(np.unique(semantic)) - 1

# %%
assert n_instances == len(instances)                     # the list the scene was drawn from
assert n_classes == len({name for name, _ in instances})
print(n_instances, "instances of", n_classes, "classes")

# %% [markdown]
# **2.** Which stage of the tiny model (a row of the parameter table above, such as
# `"rpn.head"`) has the most parameters? Put its name into `answer_2`. Can you say why that
# stage, from the shapes of its weights?

# %% jupyter={"source_hidden": true}
# a solution: the largest entry of the table; the box head's fc6 sees every number of the
# flattened 7x7 RoI feature (64 x 7 x 7 = 3,136 inputs) and has 256 outputs: 802,816 weights
answer_2 = max(counts, key=counts.get)

# %%
# checked by another route: walk the model's tree of modules two levels down and count each
# stage's arrays in its state_dict (not its named_parameters)
def size_of(module):
    return sum(v.size for v in module.state_dict().values())


by_module = {f"{a}.{b}": size_of(sub) for a, top in model.children.items()
             for b, sub in top.children.items()}
named = model
for part in answer_2.split("."):
    named = named.children[part]
assert size_of(named) == max(by_module.values()), (answer_2, by_module)
assert sum(by_module.values()) == total                 # the two routes count the same model
print(f"{answer_2}: {size_of(named):,} of {total:,} parameters")
