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
# # Chapter 05 — The RPN head and its loss
#
# Chapter 04 gave every anchor an answer: a label (1 object, 0 background, -1 not sampled)
# and, for positives, four target deltas. This chapter builds the network that makes the
# *predictions* and the loss that compares the two.
#
# The **RPN head** is tiny. On each FPN level it runs one 3x3 convolution with ReLU, then two
# 1x1 convolutions side by side:
#
#     feature [N, C, H, W] --conv3x3+ReLU--> t [N, C, H, W] --1x1--> objectness [N, A, H, W]
#                                                            --1x1--> deltas     [N, 4A, H, W]
#
# A 1x1 convolution is a small linear layer applied at every location, so each location of
# each level gets A objectness logits (one per anchor centred there) and 4A deltas. The same
# weights are used on P2..P6: an object looks the same to the head whatever its size, because
# the level already accounts for the size.
#
# The **loss** has two parts, both averaged over the anchors sampled in chapter 04:
#
# * objectness: binary cross-entropy on the logit, over the sampled positives and negatives;
# * box: smooth L1 (beta = 1/9) between predicted and target deltas, over the positives only,
#   but divided by the number of *sampled* anchors (torchvision's choice).

# %%
# %matplotlib inline
import inspect

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from mrcnn_np import MaskRCNN
from mrcnn_np.config import tiny
from mrcnn_np.data.shapes import make_shapes_image
from mrcnn_np.nn.losses import (bce_with_logits_forward, cross_entropy_forward,
                                smooth_l1_backward, smooth_l1_forward)
from mrcnn_np.nn.optim import SGD
from mrcnn_np.ops import build_rpn_targets
from mrcnn_np.rpn import (RPN_BOX_BETA, RPNHead, flatten_predictions, objectness_logit,
                          rpn_loss_backward, rpn_loss_forward, unflatten_predictions)

np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## 1. The head on a real image
#
# The library's head, `mrcnn_np.rpn.RPNHead`. Its forward pass is a loop over the levels:

# %%
print(inspect.getsource(RPNHead.forward))

# %% [markdown]
# We draw one image of the synthetic shapes data set (chapter 10 trains on it), build the
# tiny model (random weights), and run its backbone to get P2..P6. The tiny model has 64
# FPN channels and one anchor size per level (16, 32, 64, 128, 256 px) with three aspect
# ratios, so A = 3.

# %%
sample = make_shapes_image(np.random.default_rng(1), 128, 128)
image = (sample["image"].transpose(2, 0, 1) / 255).astype(np.float32)      # [3, 128, 128]
target = dict(boxes=sample["boxes"].astype(np.float32), labels=sample["labels"],
              masks=sample["masks"].astype(np.uint8))
print("GT boxes (x1, y1, x2, y2):\n", target["boxes"], "\nlabels:", target["labels"])

# The tiny preset upsamples 128-px images to 192 (config.py says why); here we keep them at
# 128 px so the numbers worked by hand below stay small.
model = MaskRCNN(tiny(min_size=(128,), max_size=128), rng=np.random.default_rng(0))
model.train(False)                                # inference mode (tiny has no batch norm)
batch, image_sizes, targets = model.transform([image], [target], training=False)  # [1, 3, 128, 128]
features, _ = model.backbone.forward(batch)       # P2..P6, each [1, 64, H_l, W_l]
head = model.rpn.head
objectness, deltas, _ = head.forward(features)
print(f"{'level':6s} {'feature':>18s} {'objectness':>16s} {'deltas':>17s} {'stride':>7s}")
for l, (f, o, d) in enumerate(zip(features, objectness, deltas)):
    print(f"P{l + 2:<5d} {str(f.shape):>18s} {str(o.shape):>16s} {str(d.shape):>17s}"
          f" {128 // f.shape[-1]:7d}")
n_params = sum(p.size for _, p, _ in head.named_parameters())
print("head parameters:", n_params, "=", "64*64*9 + 64 (conv) + 64*3 + 3 (cls) + 64*12 + 12 (box)")
assert n_params == 64 * 64 * 9 + 64 + 64 * 3 + 3 + 64 * 12 + 12

# %% [markdown]
# The number of predictions equals the number of anchors:
# (32² + 16² + 8² + 4² + 2²) x 3 = 1364 x 3 = 4092.

# %%
anchors = model.anchor_generator(batch.shape[-2:], [f.shape[-2:] for f in features])  # [A_all, 4]
obj, box, shapes = flatten_predictions(objectness, deltas)   # [1, A_all, 1], [1, A_all, 4]
print("anchors:", anchors.shape, " flat objectness:", obj.shape, " flat deltas:", box.shape)
assert anchors.shape[0] == obj.shape[1] == box.shape[1] == 3 * (32**2 + 16**2 + 8**2 + 4**2 + 2**2)
assert 32**2 + 16**2 + 8**2 + 4**2 + 2**2 == 1364 and anchors.shape[0] == 4092

# %% [markdown]
# ## 2. Why the predictions line up with the anchors
#
# The loss compares prediction `i` with the target of anchor `i`, so both lists must be in
# the same order. The anchor generator lists anchors **level by level, then location by
# location in row-major order (y, then x), then the A anchors at that location**.
# `flatten_predictions` lays the head outputs out the same way: channel `a` of level `l` at
# `(y, x)` goes to position
#
# $$i = \text{offset}_l + (y \cdot W_l + x) \cdot A + a.$$
#
# The reshape `[N, A, H, W] -> [N, H, W, A] -> [N, H*W*A]` is exactly that formula:

# %%
print(inspect.getsource(flatten_predictions))

# %% [markdown]
# Check it on one anchor: level P3 (l = 1), location y = 5, x = 9, anchor a = 2. P2 holds
# 32 x 32 x 3 = 3072 anchors before it, so i = 3072 + (5 x 16 + 9) x 3 + 2 = 3341. The anchor
# there must be centred at (x, y) x stride = (72, 40), and the prediction must be channel 2 of
# P3's objectness at (5, 9).

# %%
l, y, x, a = 1, 5, 9, 2
i = 32 * 32 * 3 + (y * 16 + x) * 3 + a
print("i =", i, " anchor:", anchors[i], " centre:", (anchors[i, :2] + anchors[i, 2:]) / 2)
print("flat objectness:", obj[0, i, 0], " head output:", objectness[l][0, a, y, x])
assert i == 3341
assert np.allclose((anchors[i, :2] + anchors[i, 2:]) / 2, [9 * 8, 5 * 8])
assert obj[0, i, 0] == objectness[l][0, a, y, x]
assert np.array_equal(box[0, i], deltas[l][0, 4 * a:4 * a + 4, y, x])

# %% [markdown]
# Flattening is a pure re-layout, so its backward, `unflatten_predictions`, moves every
# gradient back to where its value came from, unchanged:

# %%
back_obj, back_box = unflatten_predictions(obj, box, shapes)
assert all(np.array_equal(u, v) for u, v in zip(back_obj, objectness))
assert all(np.array_equal(u, v) for u, v in zip(back_box, deltas))
print("unflatten(flatten(x)) == x on every level")

# %% [markdown]
# ## 3. The objectness loss: sigmoid or 2-way softmax
#
# torchvision predicts **one** logit $x$ per anchor and uses the sigmoid
# $\sigma(x) = 1/(1+e^{-x})$ as P(object). Binary cross-entropy with label $y \in \{0, 1\}$:
#
# $$\ell_{\text{BCE}}(x, y) = -y \log \sigma(x) - (1-y)\log(1-\sigma(x)).$$
#
# matterport (and the Faster R-CNN paper) predicts **two** logits $(z_0, z_1)$ = (background,
# object) and uses a softmax. But
#
# $$\text{softmax}(z)_1 = \frac{e^{z_1}}{e^{z_0} + e^{z_1}} = \frac{1}{1 + e^{-(z_1 - z_0)}}
#   = \sigma(z_1 - z_0),$$
#
# so the 2-way cross-entropy is the BCE of the **difference** $z_1 - z_0$. The softmax head
# has twice the output channels and one redundant degree of freedom (adding the same number
# to $z_0$ and $z_1$ changes nothing). `objectness_logit` returns $z_1 - z_0$ in that case so
# the proposal layer can rank anchors the same way. Here both losses are computed on the same
# logit differences:

# %%
print(inspect.getsource(objectness_logit))
rng = np.random.default_rng(0)
z = rng.normal(size=(6, 2)) * 3                               # [6, 2] = (z_bg, z_obj)
yl = np.array([1, 0, 1, 1, 0, 0])
shift = rng.normal(size=(6, 1)) * 5                           # the redundant degree of freedom
softmax_loss = cross_entropy_forward(z + shift, yl)[0]
sigmoid_loss = bce_with_logits_forward(z[:, 1] - z[:, 0], yl.astype(float))[0]
print(f"2-way softmax CE: {softmax_loss:.6f}   BCE of the difference: {sigmoid_loss:.6f}")
assert np.isclose(softmax_loss, sigmoid_loss)

# %% [markdown]
# ## 4. The box loss: smooth L1 with beta = 1/9
#
# With $d$ = predicted delta - target delta,
#
# $$\text{smooth}_{L1}(d) = \begin{cases} 0.5\, d^2 / \beta & |d| < \beta \\
#   |d| - 0.5\,\beta & \text{otherwise}\end{cases}$$
#
# It is L2 near zero (a smooth minimum, small gradients for small errors) and L1 far away (a
# bounded gradient of ±1, so one bad anchor with a huge error cannot blow up the update).
# The two pieces meet with equal value and equal slope at $|d| = \beta$. Fast R-CNN used
# $\beta = 1$; torchvision's RPN and box head use $\beta = 1/9$, so the quadratic zone is
# narrow: $|d| < 0.11$ in delta units, a ninth of the anchor's width for $d_x$.

# %%
print("RPN_BOX_BETA =", RPN_BOX_BETA)
dd = np.linspace(-0.6, 0.6, 601)
sl1, cache_sl1 = smooth_l1_forward(dd, np.zeros_like(dd), beta=RPN_BOX_BETA, reduction="none")
grad_sl1 = smooth_l1_backward(np.ones_like(dd), cache_sl1)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
axes[0].plot(dd, np.abs(dd), label="L1: |d|", ls="--")
axes[0].plot(dd, 0.5 * dd ** 2, label="L2: d²/2", ls=":")
axes[0].plot(dd, sl1, label="smooth L1, β = 1/9", lw=2)
axes[0].set_ylim(0, 0.6)
axes[1].plot(dd, np.sign(dd), label="L1", ls="--")
axes[1].plot(dd, dd, label="L2", ls=":")
axes[1].plot(dd, grad_sl1, label="smooth L1, β = 1/9", lw=2)
for ax, name in zip(axes, ["loss", "derivative d loss / d d"]):
    ax.axvspan(-RPN_BOX_BETA, RPN_BOX_BETA, color="0.9")
    ax.set_xlabel("d = prediction - target")
    ax.set_title(name)
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# (Shaded: the quadratic zone $|d| < 1/9$.) The derivative is $d/\beta$ inside the zone and
# $\text{sign}(d)$ outside; at $d = 0$ it is 0.
#
# ## 5. The whole RPN loss
#
# `rpn_loss_forward` takes the flattened predictions and the chapter-04 targets of all images:

# %%
print(inspect.getsource(rpn_loss_forward))

# %% [markdown]
# With $S$ the sampled anchors (256 per image) and $P \subset S$ the positives:
#
# $$L_{\text{obj}} = \frac{1}{|S|}\sum_{i \in S} \ell_{\text{BCE}}(x_i, y_i), \qquad
#   L_{\text{box}} = \frac{1}{|S|}\sum_{i \in P}\sum_{j=1}^4
#   \text{smooth}_{L1}(t_{ij} - t^*_{ij}).$$
#
# On our image, with the untrained head: the logits are all near 0, so $\sigma \approx 0.5$
# and $L_{\text{obj}} \approx \log 2 = 0.693$; the deltas are near 0, so $L_{\text{box}}$ is
# small but not zero.

# %%
labels, reg_targets, _ = build_rpn_targets(anchors, targets[0]["boxes"], np.random.default_rng(0))
loss_obj, loss_box, _ = rpn_loss_forward(obj, box, labels[None], reg_targets[None])
print(f"sampled {np.sum(labels >= 0)} anchors, {np.sum(labels == 1)} positive")
print(f"L_obj = {loss_obj:.4f} (log 2 = {np.log(2):.4f}),  L_box = {loss_box:.5f}")
assert abs(loss_obj - np.log(2)) < 0.01
assert 0 < loss_box < 0.1 * loss_obj                    # small, but not zero

# %% [markdown]
# ## 6. The backward, by hand
#
# For one sampled anchor, write $s = \sigma(x)$. Since $\frac{d\sigma}{dx} = s(1-s)$,
#
# $$\frac{\partial \ell_{\text{BCE}}}{\partial x} = -y\frac{s(1-s)}{s} + (1-y)\frac{s(1-s)}{1-s}
#   = -y(1-s) + (1-y)s = s - y,$$
#
# so $\partial L_{\text{obj}}/\partial x_i = (\sigma(x_i) - y_i)/|S|$ for a sampled anchor and
# 0 for every other one. For the deltas of a positive anchor,
# $\partial L_{\text{box}}/\partial t_{ij} = g(t_{ij} - t^*_{ij})/|S|$ with $g$ the
# smooth-L1 derivative drawn above ($d/\beta$ inside, sign outside); 0 for every anchor that
# is not a sampled positive. The library's backward:

# %%
print(inspect.getsource(rpn_loss_backward))

# %% [markdown]
# We check both formulas, and then the backward against **central finite differences**,
# on a small problem in float64: 2 images, 10 anchors each, random logits and deltas.

# %%
rng = np.random.default_rng(1)
N, A = 2, 10
x_obj = rng.normal(size=(N, A, 1))                          # [N, A, 1] logits
x_box = rng.normal(size=(N, A, 4)) * 0.2                    # [N, A, 4] deltas
lab = rng.choice([-1, 0, 1], size=(N, A))                   # [N, A]
tgt = rng.normal(size=(N, A, 4)) * 0.2                      # [N, A, 4]
_, _, cache = rpn_loss_forward(x_obj, x_box, lab, tgt)
g_obj, g_box = rpn_loss_backward(1.0, 1.0, cache)           # dL_obj/dx, dL_box/dt

S = np.sum(lab >= 0)
by_hand_obj = np.where(lab >= 0, 1 / (1 + np.exp(-x_obj[..., 0])) - lab, 0) / S
diff = x_box - tgt
slope = np.where(np.abs(diff) < RPN_BOX_BETA, diff / RPN_BOX_BETA, np.sign(diff))
by_hand_box = np.where((lab == 1)[..., None], slope, 0) / S
print("sampled S =", S, " positives =", np.sum(lab == 1))
print("dL_obj/dx, image 0:", g_obj[0, :, 0])
print("labels,    image 0:", lab[0])
assert np.allclose(g_obj[..., 0], by_hand_obj) and np.allclose(g_box, by_hand_box)


from mrcnn_np.nn.gradcheck import numerical_grad  # d sum(dout * f(x)) / dx, chapter 01

num_obj = numerical_grad(lambda v: rpn_loss_forward(v, x_box, lab, tgt)[0], x_obj, 1.0)
num_box = numerical_grad(lambda v: rpn_loss_forward(x_obj, v, lab, tgt)[1], x_box, 1.0)
err = max(np.max(np.abs(num_obj - g_obj)), np.max(np.abs(num_box - g_box)))
print(f"largest |analytic - numerical| = {err:.2e}")
assert err < 1e-8

# %% [markdown]
# The finite differences agree to about 1e-10. (A delta that sits exactly at $|d| = \beta$
# would sit on the kink of smooth L1, where the two one-sided slopes agree anyway; random
# numbers never land there.)
#
# ## 7. Watching the loss work: training the head alone
#
# The head's output is more telling once it has learned something. We keep the backbone
# **frozen at its random initial weights** (its features are random projections of the image,
# but they still differ where the shapes are) and take 50 SGD steps on the head alone, drawing
# a fresh 256-anchor sample at every step. Each step is: head forward, flatten, loss,
# loss backward, unflatten, head backward, update.

# %%
before = [o.copy() for o in objectness]                         # untrained logits, per level
head = model.rpn.head
opt = SGD(head, lr=0.1, momentum=0.9)
sample_rng = np.random.default_rng(0)
history = []
for step in range(50):
    head.zero_grad()
    o_l, d_l, c_head = head.forward(features)
    o_flat, d_flat, shapes = flatten_predictions(o_l, d_l)     # [1, A_all, 1], [1, A_all, 4]
    lab_s, reg_s, _ = build_rpn_targets(anchors, targets[0]["boxes"], sample_rng)
    l_obj, l_box, c_loss = rpn_loss_forward(o_flat, d_flat, lab_s[None], reg_s[None])
    d_obj, d_box = rpn_loss_backward(1.0, 1.0, c_loss)         # dL/d(flat predictions)
    head.backward(*unflatten_predictions(d_obj, d_box, shapes), c_head)  # grads into head.grads
    opt.step()
    history.append((float(l_obj), float(l_box)))
after, after_deltas, _ = head.forward(features)
print("step  L_obj   L_box")
for s in (0, 10, 20, 30, 40, 49):
    print(f"{s:4d}  {history[s][0]:.4f}  {history[s][1]:.4f}")
assert history[-1][0] < 0.2 * history[0][0]

# %% [markdown]
# ## 8. Objectness as a heat map
#
# For each level we show $\max_a \sigma(x_{a,y,x})$, the most confident of the three anchors
# at each location, stretched over the image (each cell covers stride x stride pixels; the
# anchor centre is the cell's top-left corner, chapter 03). The table before the picture
# lists each object's positive anchors by level and how confident the trained head is on
# them. Top row: the untrained head
# (0.5 everywhere). Bottom row: after 50 steps. White boxes: the ground truth; cyan dots: the
# centres of the positive anchors of chapter 04 (IoU >= 0.7 or best match). The three
# objects of 29-37 px light up on P3, whose 32 px anchors fit them; everything else has
# learned to say "background". The 20 px square's two positives lie on P2 (16 px anchors): on
# the map they are a single small spot among 3072 anchors, nearly all negatives, though the
# table shows the head surer of them than of some of the larger objects' positives. 50 steps
# on one image with a frozen random backbone is a demonstration of the loss, not a trained
# RPN (chapter 10).

# %%
def heat(o):
    return np.exp(-np.logaddexp(0, -o[0])).max(axis=0)        # [H_l, W_l]; sigma without overflow


_, _, matched = build_rpn_targets(anchors, targets[0]["boxes"], np.random.default_rng(0))
positive_centres = (anchors[matched >= 0, :2] + anchors[matched >= 0, 2:]) / 2   # [P, 2]
level_of = np.repeat(np.arange(5), [3 * f.shape[2] * f.shape[3] for f in features])  # [A_all]
positive_levels = level_of[matched >= 0]                                              # [P]
score_after = 1 / (1 + np.exp(-flatten_predictions(after, after_deltas)[0][0, :, 0]))  # [A_all]
sizes = targets[0]["boxes"][:, 2:] - targets[0]["boxes"][:, :2]                       # [G, 2]
print("GT  size (w x h)  positives on P2..P6   best sigma of its positives after 50 steps")
for g_i, (wg, hg) in enumerate(sizes):
    print(f"{g_i:2d}  {wg:4.0f} x {hg:<4.0f}   {np.bincount(level_of[matched == g_i], minlength=5)}"
          f"       {score_after[matched == g_i].max():.3f}")
print("anchors on P2:", np.sum(level_of == 0), "of", len(level_of))
square = int(np.argmin(sizes.max(axis=1)))                                           # the 20 px one
others = [g_i for g_i in range(len(sizes)) if g_i != square]
assert np.all(level_of[matched == square] == 0) and sizes[square].max() == 20      # P2 only
assert all(np.all(level_of[matched == g_i] == 1) for g_i in others)                # P3 only
assert 29 <= sizes[others].min() and sizes[others].max() <= 37
assert np.sum(level_of == 0) == 3072
rest = score_after[matched < 0]                                                       # [A_all - P]
print(f"every other anchor: median sigma {np.median(rest):.3f}, 99th percentile "
      f"{np.percentile(rest, 99):.3f}")
best_pos = [score_after[matched == g_i].max() for g_i in range(len(sizes))]           # [G]
assert min(best_pos) > 0.4 and np.median(rest) < 0.1
assert best_pos[square] > min(best_pos[g_i] for g_i in others)


fig, axes = plt.subplots(2, 6, figsize=(16, 5.8))
for row, maps in enumerate([before, after]):
    axes[row, 0].imshow(sample["image"])
    axes[row, 0].set_title("image" if row == 0 else "")
    for l, o in enumerate(maps):
        ax = axes[row, l + 1]
        im = ax.imshow(heat(o), vmin=0, vmax=1, cmap="magma", extent=(0, 128, 128, 0))
        ax.set_title(f"P{l + 2} ({o.shape[2]}x{o.shape[3]}), anchor {16 * 2 ** l} px"
                     if row == 0 else f"P{l + 2} after 50 steps", fontsize=9)
        if row == 1:
            cx, cy = positive_centres[positive_levels == l].T
            ax.plot(cx, cy, "o", ms=3, mew=0.7, mfc="none", mec="cyan")
    for ax in axes[row]:
        for x1, y1, x2, y2 in targets[0]["boxes"]:
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="white", lw=1))
        ax.set_xticks([])
        ax.set_yticks([])
fig.colorbar(im, ax=axes, shrink=0.6, label="max over anchors of σ(logit)")
plt.show()

# %% [markdown]
# ## 9. Where the gradient stops
#
# The loss has inputs that are **not** functions of the weights, and they get no gradient:
#
# * **anchors**: fixed boxes laid on the image (chapter 03), not parameters;
# * **labels and regression targets**: built from anchors and GT by IoU comparisons and a
#   random sample (chapter 04): step functions whose derivative is 0 almost everywhere;
# * **proposals**: decoded from the deltas (chapter 06) and passed to the RoI heads. Their
#   coordinates *could* carry a gradient, but Faster R-CNN and torchvision treat them as
#   constants (`detach()`): the RPN is trained only by its own two losses, and the later
#   losses do not pull the proposals around. Our `MaskRCNN` does the same.
#
# So `rpn_loss_backward` returns gradients for the two prediction arrays only, and the head
# sums them over the five levels into its shared weights.
#
# ## Summary
#
# * The RPN head is conv3x3 + ReLU and two 1x1 convs, shared by all levels: A logits and 4A
#   deltas per location.
# * Predictions are flattened level by level, then (y, x), then anchor — the anchor
#   generator's order — so prediction $i$ belongs to anchor $i$.
# * Objectness: BCE on one logit; a 2-way softmax is the same function of $z_1 - z_0$.
# * Box: smooth L1 with $\beta = 1/9$ over the positives, divided by the number sampled.
# * Backward: $(\sigma(x) - y)/|S|$ for sampled anchors; the clipped slope of smooth L1
#   over $|S|$ for positives; zero elsewhere. Checked by finite differences.
# * Anchors, targets and proposals are constants.
#
# ## Exercises
#
# Each exercise: the task, a collapsed solution (try first, then open it), and a cell that
# checks your answer.

# %% [markdown]
# **1.** A 256 x 192 image (height 256, width 192) on the tiny model (strides 4..64, 3 anchors
# per location). How many anchors, and therefore how many objectness logits, are there? Into
# `answer_1`.

# %% jupyter={"source_hidden": true}
# level with stride s: (256 / s) x (192 / s) locations, 3 anchors each
answer_1 = 3 * sum((256 // s) * (192 // s) for s in (4, 8, 16, 32, 64))

# %%
gen_sizes = [(256 // s, 192 // s) for s in (4, 8, 16, 32, 64)]
assert answer_1 == model.anchor_generator((256, 192), gen_sizes).shape[0]
print(answer_1)

# %% [markdown]
# **2.** Four anchors are sampled (|S| = 4). The first is a negative with logit $x = 2$.
# What is $\partial L_{\text{obj}} / \partial x$ for it? Into `answer_2`.

# %% jupyter={"source_hidden": true}
answer_2 = (1 / (1 + np.exp(-2.0)) - 0) / 4           # (sigma(x) - y) / |S|

# %%
# five anchors: the first is a negative with logit 2, four are sampled, the last is not
_, _, c = rpn_loss_forward(np.array([[[2.0], [0.0], [1.0], [-1.0], [5.0]]]), np.zeros((1, 5, 4)),
                           np.array([[0, 1, 0, 1, -1]]), np.zeros((1, 5, 4)))
g, _ = rpn_loss_backward(1.0, 1.0, c)
assert np.isclose(answer_2, g[0, 0, 0]) and g[0, 4, 0] == 0   # the unsampled anchor gets 0
print(answer_2)

# %% [markdown]
# **3.** A positive anchor's predicted $d_x$ is 0.05 and its target is 0.5 (all other
# coordinates exact). What does it add to $\sum$ smooth L1 (β = 1/9), and what is the
# derivative with respect to the prediction (before dividing by $|S|$)? A pair
# `(loss, derivative)` into `answer_3`. Is the anchor in the quadratic zone?

# %% jupyter={"source_hidden": true}
# d = 0.05 - 0.5 = -0.45, |d| > 1/9: the linear zone, |d| - beta / 2 and slope sign(d) = -1
answer_3 = (0.45 - 0.5 / 9, -1.0)

# %%
loss3, c3 = smooth_l1_forward(np.array([0.05]), np.array([0.5]), beta=1 / 9, reduction="sum")
assert np.isclose(answer_3[0], loss3) and np.isclose(answer_3[1], smooth_l1_backward(1.0, c3)[0])
print(answer_3)

# %% [markdown]
# **4.** A softmax head outputs $(z_0, z_1) = (1.0, 3.5)$ for an anchor. Which single logit
# would the sigmoid head need to give the same probability, and what is that probability?
# A pair `(logit, probability)` into `answer_4`.

# %% jupyter={"source_hidden": true}
answer_4 = (3.5 - 1.0, 1 / (1 + np.exp(-2.5)))        # z1 - z0, and its sigmoid

# %%
assert np.isclose(answer_4[0], objectness_logit(np.array([[[1.0, 3.5]]]))[0, 0])
assert np.isclose(answer_4[1], np.exp(3.5) / (np.exp(1.0) + np.exp(3.5)))   # the softmax's P(object)
print(f"logit {answer_4[0]:.2f}, probability {answer_4[1]:.4f}")
