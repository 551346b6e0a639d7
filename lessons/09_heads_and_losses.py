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
# # Chapter 09 — The heads and the losses
#
# Chapter 07 sampled the RoIs and built their targets; chapter 08 pooled each RoI's features
# from the FPN with RoIAlign. Two small networks now turn those features into answers:
#
# * the **box head** reads a 7 x 7 feature and says which class the RoI holds (K logits,
#   background included) and how to move its box (4 deltas per class);
# * the **mask head** reads a 14 x 14 feature of each *positive* RoI and draws K masks of
#   28 x 28 logits, one per class.
#
# Each head has a loss, and the model's training loss is the sum
#
# $$L = \underbrace{L_{\text{obj}} + L_{\text{rpn box}}}_{\text{RPN, chapter 05}}
#     + \underbrace{L_{\text{cls}} + L_{\text{box}} + L_{\text{mask}}}_{\text{this chapter}}.$$
#
# The paper writes $L = L_{cls} + L_{box} + L_{mask}$ for the second stage; its most important
# choice is in $L_{mask}$: one **sigmoid per class**, trained only on the RoI's own class.

# %%
# %matplotlib inline
import inspect

import matplotlib.pyplot as plt
import numpy as np

from mrcnn_np import MaskRCNN
from mrcnn_np.config import tiny, torchvision_r50_fpn
from mrcnn_np.data.shapes import make_shapes_image
from mrcnn_np.model import LOSS_NAMES
from mrcnn_np.roi_heads import (FastRCNNPredictor, MaskRCNNHeads, MaskRCNNPredictor, TwoMLPHead,
                                fastrcnn_loss_backward, fastrcnn_loss_forward,
                                maskrcnn_loss_backward, maskrcnn_loss_forward)

np.set_printoptions(precision=4, suppress=True)
cfg = tiny()
r50 = torchvision_r50_fpn()

# %% [markdown]
# ## 1. The box head: two fully connected layers
#
# `TwoMLPHead` flattens the pooled feature and applies two linear layers with ReLU.
# In torchvision's ResNet-50-FPN: 256 x 7 x 7 = 12,544 inputs, then 1024, then 1024. In the
# tiny preset: 64 x 7 x 7 = 3,136 inputs, then 256, then 256.

# %%
print(inspect.getsource(TwoMLPHead.forward))
rng = np.random.default_rng(0)
C, S, rep, K = cfg.fpn_channels, cfg.box_roi_output_size, cfg.representation_size, cfg.num_classes
box_head = TwoMLPHead(C * S * S, rep, rng)
box_predictor = FastRCNNPredictor(rep, K, rng)
pooled = rng.normal(size=(5, C, S, S)).astype(np.float32)      # [R, C, 7, 7], 5 RoIs
h, _ = box_head.forward(pooled)                                 # [R, rep]
class_logits, box_regression, _ = box_predictor.forward(h)      # [R, K], [R, 4K]
print("pooled", pooled.shape, "-> representation", h.shape,
      "-> class logits", class_logits.shape, "+ box deltas", box_regression.shape)


def mlp_params(c_in, rep):
    return c_in * rep + rep + rep * rep + rep


n_tiny = sum(p.size for _, p, _ in box_head.named_parameters())
for name, c in (("tiny", cfg), ("ResNet-50-FPN", r50)):
    c_in = c.fpn_channels * c.box_roi_output_size ** 2
    print(f"{name:14s} {c.fpn_channels} x {c.box_roi_output_size} x {c.box_roi_output_size} = "
          f"{c_in:,} inputs -> {c.representation_size} -> {c.representation_size}: "
          f"{mlp_params(c_in, c.representation_size):,} parameters")
assert n_tiny == mlp_params(C * S * S, rep)
assert (C * S * S, rep) == (3136, 256)
assert (r50.fpn_channels * r50.box_roi_output_size ** 2, r50.representation_size) == (12544, 1024)

# %% [markdown]
# The **predictor** is two linear layers side by side: `cls_score` gives K logits (K = 4 here:
# background, circle, square, triangle) and `bbox_pred` gives 4K deltas, a separate box
# refinement for every class ("class-specific" boxes). Only the deltas of the RoI's GT class
# are trained; at test time we read the deltas of the predicted class. The predictor starts
# near zero (weights with std 0.01 and 0.001), so the first class scores are nearly uniform:

# %%
print(f"K = {K}; weight std: cls_score {box_predictor.cls_score.params['weight'].std():.4f}, "
      f"bbox_pred {box_predictor.bbox_pred.params['weight'].std():.5f}")
p_class = np.exp(class_logits) / np.exp(class_logits).sum(1, keepdims=True)
print("softmax of the first RoI's logits:", p_class[0], " (1/K =", 1 / K, ")")
assert K == 4 and np.allclose(p_class, 1 / K, atol=0.01)

# %% [markdown]
# ## 2. The mask head: a small fully convolutional network
#
# `MaskRCNNHeads` is four 3 x 3 convolutions with ReLU that keep the 14 x 14 size; then
# `MaskRCNNPredictor` doubles it with a 2 x 2, stride-2 **transposed convolution** (+ ReLU) and
# a 1 x 1 convolution gives one 28 x 28 logit map per class. Because every layer is a
# convolution, the mask keeps its spatial layout: no pixel is squeezed through a fully connected
# layer, which is the paper's argument for an FCN mask head.

# %%
print(inspect.getsource(MaskRCNNPredictor.forward))
mask_head = MaskRCNNHeads(C, cfg.mask_layers, rng)
mask_predictor = MaskRCNNPredictor(cfg.mask_layers[-1], cfg.mask_dim_reduced, K, rng)
x = rng.normal(size=(3, C, 14, 14)).astype(np.float32)        # [Rp, C, 14, 14], 3 positive RoIs
print(f"{'input':24s} {x.shape}")
for i, block in enumerate(mask_head):
    x, _ = block.forward(x)
    print(f"{'conv3x3 + ReLU #' + str(i + 1):24s} {x.shape}")
x, _ = mask_predictor.conv5_mask.forward(x)
print(f"{'deconv 2x2, stride 2':24s} {x.shape}")
x, _ = mask_predictor.relu.forward(x)
x, _ = mask_predictor.mask_fcn_logits.forward(x)
print(f"{'conv 1x1 -> K logits':24s} {x.shape}")
assert x.shape == (3, K, 28, 28)

# %% [markdown]
# ## 3. The box-head losses
#
# With R sampled RoIs, labels $c_r$ (0 = background) and the chapter-07 targets $t^*_r$:
#
# $$L_{\text{cls}} = \frac1R\sum_r -\log \text{softmax}(z_r)_{c_r}, \qquad
#   L_{\text{box}} = \frac1R\sum_{r:\,c_r>0}\ \sum_{j=1}^4 \text{smooth}_{L1}\big(t_{r,c_r,j} - t^*_{r,j}\big),
#   \ \beta = \tfrac19.$$
#
# The box loss is divided by **all** R RoIs, not by the positives (torchvision's choice; it
# keeps the box term's weight stable when the number of positives changes). Its gradient
# reaches only the 4 deltas of the GT class of each positive RoI. The cross-entropy gradient
# is $(\text{softmax}(z_r) - \text{onehot}(c_r))/R$, the K-way version of chapter 05's
# $\sigma(x) - y$.

# %%
print(inspect.getsource(fastrcnn_loss_forward))
labels = np.array([0, 2, 0, 1, 0])                              # [R]
reg_targets = rng.normal(size=(5, 4)).astype(np.float32)        # [R, 4]
loss_cls, loss_box, c = fastrcnn_loss_forward(class_logits, box_regression, labels, reg_targets)
dlogits, dbox = fastrcnn_loss_backward(1.0, 1.0, c)
print(f"L_cls = {loss_cls:.4f} (log K = {np.log(K):.4f}),  L_box = {loss_box:.4f}")
trained = (dbox.reshape(5, K, 4) != 0).any(2)                  # [R, K]
print("which deltas get a gradient (RoI x class):\n", trained.astype(int))
assert np.array_equal(trained, np.eye(K, dtype=bool)[labels] & (labels > 0)[:, None])

# %% [markdown]
# ## 4. The mask loss: per-class sigmoid, or softmax over classes?
#
# A positive RoI $r$ of class $k_r$ has K logit maps $x_{r,k,i,j}$ and one target $y_{r,i,j}$
# (chapter 07, soft at the edges).
#
# **Per-class sigmoid (Mask R-CNN).** Pick the channel of the RoI's class and apply binary
# cross-entropy at each of its $M^2$ pixels, averaged over all $P M^2$ pixels of the $P$
# positive RoIs:
#
# $$L_{\text{mask}} = \frac{1}{PM^2}\sum_{r,i,j} \ell_{\text{BCE}}(x_{r,k_r,i,j},\, y_{r,i,j}),
# \qquad
# \frac{\partial L_{\text{mask}}}{\partial x_{r,k,i,j}} =
# \begin{cases}\dfrac{\sigma(x_{r,k,i,j}) - y_{r,i,j}}{PM^2} & k = k_r\\[4pt] 0 & k \ne k_r.\end{cases}$$
#
# The derivative is chapter 05's $\sigma(x) - y$ again; the other $K - 1$ channels are not
# in the loss at all, so they get exactly zero.
#
# **Softmax over classes (the FCN way).** At each pixel, the K logits compete in a softmax;
# the target class is $k_r$ where $y \ge 0.5$ and background (0) elsewhere:
#
# $$L = \frac{1}{PM^2}\sum_{r,i,j} -\log p_{r,c_{rij},i,j}, \quad
#   p_{r,k,i,j} = \frac{e^{x_{r,k,i,j}}}{\sum_{k'} e^{x_{r,k',i,j}}},\qquad
# \frac{\partial L}{\partial x_{r,k,i,j}} = \frac{p_{r,k,i,j} - [k = c_{rij}]}{PM^2}.$$
#
# Every channel gets a gradient: raising "square" at a pixel lowers "circle" there. The two
# losses, as the library writes them:

# %%
print(inspect.getsource(maskrcnn_loss_forward))

# %% [markdown]
# Check both gradients, first against the formulas and then against central finite
# differences, on a tiny problem in float64: P = 2 RoIs, K = 3 classes, M = 4.

# %%
rng = np.random.default_rng(1)
P, Kc, M = 2, 3, 4
logits = rng.normal(size=(P, Kc, M, M))                         # [P, K, M, M]
cls = np.array([2, 1])                                          # [P], the RoIs' classes
y = np.clip(rng.normal(0.5, 0.5, size=(P, M, M)), 0, 1)         # [P, M, M], soft targets
y[y == 0.5] = 0.6                                               # keep the softmax targets unambiguous


from mrcnn_np.nn.gradcheck import numerical_grad  # d sum(dout * f(x)) / dx, chapter 01

grads = {}
for mode in ("sigmoid", "softmax"):
    _, cache = maskrcnn_loss_forward(logits, cls, y, mode=mode)
    grads[mode] = maskrcnn_loss_backward(1.0, cache)              # [P, K, M, M]
    num = numerical_grad(lambda v: maskrcnn_loss_forward(v, cls, y, mode=mode)[0], logits, 1.0)
    print(f"{mode}: largest |analytic - numerical| = {np.max(np.abs(num - grads[mode])):.2e}")
    assert np.allclose(num, grads[mode], atol=1e-8)

sig = 1 / (1 + np.exp(-logits[np.arange(P), cls]))              # [P, M, M]
by_hand = np.zeros_like(logits)
by_hand[np.arange(P), cls] = (sig - y) / (P * M * M)
assert np.allclose(grads["sigmoid"], by_hand)
p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)       # [P, K, M, M]
c_pix = np.where(y >= 0.5, cls[:, None, None], 0)               # [P, M, M] target class per pixel
onehot = np.arange(Kc)[None, :, None, None] == c_pix[:, None]   # [P, K, M, M]
assert np.allclose(grads["softmax"], (p - onehot) / (P * M * M))
print("nonzero gradient entries per channel of RoI 0 (class 2):")
for mode in grads:
    print(f"  {mode:8s}", [int((grads[mode][0, k] != 0).sum()) for k in range(Kc)])

# %% [markdown]
# The picture, on a slightly bigger example: one RoI of class 2 with a 12 x 12 target (a disk)
# and random logits. Sigmoid: only channel 2 is touched, and its gradient is the disk's
# "raise here, lower there" pattern. Softmax: all three channels move; where the target class
# is 2 the background channel is pushed down, where it is background the class-2 channel is.

# %%
yy, xx = np.mgrid[:12, :12] + 0.5
disk = np.clip(4.5 - np.hypot(xx - 6, yy - 6), 0, 1)[None]      # [1, 12, 12], soft edge
lg = np.random.default_rng(2).normal(size=(1, 3, 12, 12))        # [1, K, 12, 12]
pic = {}
for mode in ("sigmoid", "softmax"):
    pic[mode] = maskrcnn_loss_backward(1.0, maskrcnn_loss_forward(lg, np.array([2]), disk, mode=mode)[1])
fig, axes = plt.subplots(2, 4, figsize=(12, 6))
vmax = max(np.abs(g).max() for g in pic.values())
axes[0, 0].imshow(disk[0], cmap="gray", vmin=0, vmax=1)
axes[0, 0].set_title("target y")
axes[1, 0].imshow(disk[0] >= 0.5, cmap="viridis")
axes[1, 0].set_title("softmax target (yellow: 2)")
for row, mode in enumerate(pic):
    for k in range(3):
        im = axes[row, k + 1].imshow(pic[mode][0, k], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        axes[row, k + 1].set_title(f"{mode}, channel {k}" + (" (GT)" if k == 2 else ""))
for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(im, ax=axes, shrink=0.7, label="dL/dx")
plt.show()
assert np.all(pic["sigmoid"][0, :2] == 0) and np.all(pic["softmax"][0] != 0)

# %% [markdown]
# ## 5. Why decoupling matters
#
# With the sigmoid loss the mask head never has to decide the class: the box head already
# did, and the mask head only answers "which pixels of this RoI belong to the object of class
# $k_r$?". The masks of different classes do not compete, so a "circle" mask is not pushed
# down just because a "square" mask is confident at the same pixel. In the paper's ablation
# (Mask R-CNN, Table 2b, ResNet-50-C4 on COCO) the softmax loss gives 24.8 mask AP and the
# per-class sigmoid 30.3: **+5.5 AP** from this one choice. (Chapter 14 repeats the
# comparison at small scale; `Config.mask_loss = "softmax"` switches it.)
#
# Going further, a **class-agnostic** mask head predicts a single 28 x 28 map for every RoI
# (`Config.class_agnostic_masks = True`, K_m = 1). The paper finds it nearly as good: 29.7 vs
# 30.3 mask AP. The loss is the same BCE, on channel 0:

# %%
one_channel = logits[:, :1]                                     # [P, 1, M, M]
loss_agn, cache = maskrcnn_loss_forward(one_channel, cls, y)    # labels are not needed to pick
loss_ch0, _ = maskrcnn_loss_forward(logits, np.zeros(P, np.int64), y)  # = channel 0 of K
print(f"class-agnostic loss {loss_agn:.6f} = per-class loss on channel 0 {loss_ch0:.6f}")
assert np.isclose(loss_agn, loss_ch0) and maskrcnn_loss_backward(1.0, cache).shape == (P, 1, M, M)

# %% [markdown]
# ## 6. The whole model: forward, five losses, backward
#
# `MaskRCNN.forward_train` runs every stage and keeps every cache; `backward_train` walks the
# stages in reverse. Its code is the gradient path of Mask R-CNN, top to bottom: each loss
# starts with gradient 1 (L is their sum), the three branches add their gradients into the
# FPN maps, and the backbone is last.

# %%
print(inspect.getsource(MaskRCNN.backward_train))

# %% [markdown]
# Where the gradient stops, branch by branch: the mask and box losses flow back through the
# heads and RoIAlign into P2..P5, but **not** into the RoI coordinates (the proposals are
# constants, chapter 05), nor into the targets (chapter 07). The RPN's gradient enters
# P2..P6 through its head. The FPN sums the three branches' gradients at every level.
#
# One training step of the untrained tiny model on the chapter-07 image:

# %%
sample = make_shapes_image(np.random.default_rng(1), 128, 128)
image = (sample["image"].transpose(2, 0, 1) / 255).astype(np.float32)   # [3, 128, 128]
target = dict(boxes=sample["boxes"].astype(np.float32), labels=sample["labels"],
              masks=sample["masks"].astype(np.uint8))
model = MaskRCNN(tiny(), rng=np.random.default_rng(0))
model.zero_grad()
losses, cache = model.forward_train([image], [target], np.random.default_rng(0))  # every cache
model.backward_train(cache)                                     # (forward_backward does both)
for name in LOSS_NAMES:
    print(f"{name:18s} {losses[name]:.2e}")
total = sum(losses[k] for k in LOSS_NAMES)
print(f"{'total L':18s} {total:.4f}   (log 2 = {np.log(2):.4f}, log K = {np.log(K):.4f})")
x_gt, y_gt = cache.mask.loss[3][:2]        # the BCE's cache: GT-channel logits, targets [Rp, 28, 28]
R_box = cache.box.loss[0]                  # the box losses' R: every sampled RoI
wrong = ((x_gt > 2) & (y_gt < 0.5)) | ((x_gt < -2) & (y_gt >= 0.5))   # sigmoid past 0.88 the wrong way
print(f"{x_gt.shape[0]} positive RoIs of {R_box} sampled; their GT-channel mask logits: "
      f"std {x_gt.std():.2f}, {wrong.mean():.0%} of pixels confidently wrong")
assert abs(losses["loss_objectness"] - np.log(2)) < 0.05         # every anchor near sigma = 0.5
assert abs(losses["loss_classifier"] - np.log(K)) < 0.05        # near-uniform class scores
assert losses["loss_box_reg"] < 1e-3 and losses["loss_rpn_box_reg"] < 0.1
assert losses["loss_mask"] > 1.5 * np.log(2)                     # confidently wrong pixels
assert x_gt.std() > 1.5 and wrong.mean() > 0.1

# %% [markdown]
# What to expect from an untrained model: $L_{\text{obj}} \approx \log 2$ (every anchor at
# $\sigma = 0.5$), $L_{\text{cls}} \approx \log 4$ (uniform over K = 4 classes), and small box
# losses (all deltas start near 0, and the box loss of the few positives is divided by every
# RoI sampled). The mask loss starts far above $\log 2$: the mask head and predictor start with
# Kaiming-initialised weights (as torchvision's), so the 28 x 28 logits start far from 0 (the
# standard deviation and the share of confidently wrong pixels are printed above).
#
# After the backward, every trainable parameter holds its gradient. The size of the gradient
# per stage (the root of the sum of squares over each stage's parameters):

# %%
stages = ["backbone.body", "backbone.fpn", "rpn.head", "roi_heads.box_head",
          "roi_heads.box_predictor", "roi_heads.mask_head", "roi_heads.mask_predictor"]
norms = [np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2))
                     for n, _, g in model.named_parameters() if n.startswith(s))) for s in stages]
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
axes[0].bar([n.replace("loss_", "") for n in LOSS_NAMES], [losses[n] for n in LOSS_NAMES],
            color=["tab:blue", "tab:blue", "tab:orange", "tab:orange", "tab:green"])
axes[0].set_title("the five losses (blue RPN, orange box head, green mask head)")
axes[1].barh([s.replace("roi_heads.", "").replace("backbone.", "backbone ") for s in stages], norms)
axes[1].set_xscale("log")
axes[1].set_title("gradient norm per stage, after backward_train")
plt.tight_layout()
plt.show()
for s, n in zip(stages, norms):
    print(f"{s:26s} {n:.3e}")
assert all(n > 0 for n in norms)

# %% [markdown]
# ## Summary
#
# * Box head: flatten, fc, ReLU, fc, ReLU (7x7x256 -> 1024 -> 1024 in R50; 7x7x64 -> 256 ->
#   256 in tiny); predictor: K class logits and 4K class-specific deltas.
# * Mask head: 4 x (3x3 conv + ReLU) on 14 x 14, a 2x2 stride-2 deconvolution to 28 x 28, a
#   1x1 conv to K logit maps.
# * $L_{\text{cls}}$: softmax cross-entropy over all sampled RoIs. $L_{\text{box}}$: smooth L1
#   (beta 1/9) on the GT class's deltas of the positives, divided by all RoIs.
# * $L_{\text{mask}}$: BCE on the GT class's channel only; gradient $(\sigma(x) - y)/(PM^2)$
#   there and 0 on the other channels. The softmax alternative couples the channels and cost
#   5.5 AP in the paper. Class-agnostic masks are nearly as good.
# * $L = L_{obj} + L_{rpn\,box} + L_{cls} + L_{box} + L_{mask}$; `backward_train` runs
#   mask branch, box branch, RPN, then the backbone.
#
# ## Exercises
#
# Work each answer out by hand first; the solution cell is collapsed (click to open it), and
# the cell after it checks your answer against the library.

# %% [markdown]
# **1.** How many parameters does torchvision's `TwoMLPHead` (12,544 -> 1024 -> 1024, with
# biases) have? Put the number in `answer_1`.

# %% jupyter={"source_hidden": true}
# a solution: fc6 weights + biases, then fc7 weights + biases
answer_1 = 12544 * 1024 + 1024 + 1024 * 1024 + 1024

# %%
r50_head = TwoMLPHead(256 * 7 * 7, 1024, np.random.default_rng(0))   # the library's layer
assert answer_1 == sum(p.size for _, p, _ in r50_head.named_parameters())
print(f"{answer_1:,}")
del r50_head

# %% [markdown]
# **2.** One positive RoI (P = 1) of class 2, M = 28, K = 4. At every pixel all logits are 0
# and the target is 1. With the sigmoid loss, what is the gradient at one pixel on channel 2,
# and on channel 1? Put the pair in `answer_2`.

# %% jupyter={"source_hidden": true}
# a solution: (sigma(0) - y) / (P M^2) on the GT channel, nothing on the others
answer_2 = ((0.5 - 1) / 784, 0.0)

# %%
xl = np.zeros((1, 4, 28, 28))                                   # [P, K, M, M], all logits 0
_, c2 = maskrcnn_loss_forward(xl, np.array([2]), np.ones((1, 28, 28)))
g2 = maskrcnn_loss_backward(1.0, c2)
assert np.isclose(g2[0, 2, 5, 5], answer_2[0]) and g2[0, 1, 5, 5] == answer_2[1]

# %% [markdown]
# **3.** Same setting with the softmax loss (the target class is 2 at every pixel, since the
# target is 1 everywhere). What are the gradients at one pixel on channels 2 and 1? Put the
# pair in `answer_3`.

# %% jupyter={"source_hidden": true}
# a solution: (p - onehot) / (P M^2) with p = 1/4 on every channel
answer_3 = ((0.25 - 1) / 784, 0.25 / 784)

# %%
_, c3 = maskrcnn_loss_forward(xl, np.array([2]), np.ones((1, 28, 28)), mode="softmax")
g3 = maskrcnn_loss_backward(1.0, c3)
assert np.isclose(g3[0, 2, 5, 5], answer_3[0]) and np.isclose(g3[0, 1, 5, 5], answer_3[1])

# %% [markdown]
# **4.** The box loss of 3 RoIs (K = 2), one positive of class 1 whose class-1 deltas are off
# by (0.5, 0, 0, 0) from its target. What is $L_{\text{box}}$? Put it in `answer_4`.

# %% jupyter={"source_hidden": true}
# a solution: smooth L1's linear zone (0.5 > beta = 1/9), divided by R = 3, not by 1 positive
answer_4 = (0.5 - 0.5 / 9) / 3

# %%
deltas4 = np.zeros((3, 8))                # [R, 4K]
deltas4[1, 4] = 0.5                       # RoI 1, class 1, dx
_, lb4, _ = fastrcnn_loss_forward(np.zeros((3, 2)), deltas4, np.array([0, 1, 0]), np.zeros((3, 4)))
assert np.isclose(lb4, answer_4)
