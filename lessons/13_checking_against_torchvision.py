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
# # Chapter 13 — Checking against torchvision
#
# A from-scratch implementation is only worth reading if it is *right*. "It trains" is weak
# evidence: a detector with a wrong anchor order, a half-pixel shift in RoIAlign or a loss
# averaged over the wrong count still trains, just worse. So we hold mrcnn-np against an
# oracle: torchvision's `maskrcnn_resnet50_fpn`. If both libraries, given the same weights and
# the same image, produce the same features, the same proposals and the same detections, then
# every convention along the way agrees.
#
# This chapter does it in three steps: import the weights (a table of names), run both models,
# and measure the agreement stage by stage, saying what each tolerance means.
#
# torch is the oracle here and in `tests/`; it is never imported by `mrcnn_np/` at run time,
# except by the converter that reads a `.pth` file.

# %%
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path.cwd().parent / "tools"))
import torch  # noqa: E402  (the oracle)
import tv_agreement  # noqa: E402

torch.set_num_threads(1)

# %% [markdown]
# ## 1. The weights, name by name
#
# We build torchvision's model with random weights (no download) and a fixed torch seed.
# `tv_agreement.build_torchvision_maskrcnn` also draws random batch-norm statistics, so that
# batch norm is not the identity and its import is really tested. Five classes make random
# weights produce many detections above the 0.05 score threshold (with 91 classes almost every
# softmax score would be near 1/91 and the comparison would have nothing to compare).

# %%
tv = tv_agreement.build_torchvision_maskrcnn(num_classes=5, min_size=192, max_size=320, seed=0)
sd = tv.state_dict()
print(f"torchvision state_dict: {len(sd)} tensors, "
      f"{sum(v.numel() for k, v in sd.items() if v.is_floating_point()):,} numbers")

# %% [markdown]
# Our parameter names were *chosen* to be torchvision's keys (`backbone.body.layer1.0.conv1.weight`,
# `rpn.head.conv.0.0.weight`, `roi_heads.mask_predictor.conv5_mask.weight`, ...), so the mapping
# is a table of identities with one documented exception: BatchNorm's `num_batches_tracked`
# counter has no role in a frozen or eval-mode batch norm and is dropped. The table, counted
# stage by stage, and every row that is not an identity:

# %%
from mrcnn_np.convert import mapping_table  # noqa: E402

ours = tv_agreement.ours_from_torchvision(tv)
ours_sd = ours.state_dict()
rows = mapping_table(ours, sd)                     # (torchvision key, our key, shape, note)
stages = ["backbone.body", "backbone.fpn", "rpn.head", "roi_heads.box_head",
          "roi_heads.box_predictor", "roi_heads.mask_head", "roi_heads.mask_predictor"]
print(f"{'stage':26s} {'tensors':>7s} {'same name':>9s} {'dropped':>7s}")
for stage in stages:
    notes = [r[3] for r in rows if r[0].startswith(stage + ".")]
    print(f"{stage:26s} {len(notes):7d} {notes.count('same name'):9d} {len(notes) - notes.count('same name'):7d}")
same = [r for r in rows if r[3] == "same name"]
other = [r for r in rows if r[3] != "same name"]
print(f"{'all':26s} {len(rows):7d} {len(same):9d} {len(other):7d}")
print(f"\nrows that are not an identity: {len(other)}, all of one kind:")
for note in sorted({r[3] for r in other}):
    keys = [r[0] for r in other if r[3] == note]
    print(f"  {note}: {len(keys)} keys, e.g. {keys[0]}")
renamed = [r for r in rows if r[1] not in (r[0], "-")]
print(f"renamed: {len(renamed)}")

assert sum(sum(r[0].startswith(st + ".") for r in rows) for st in stages) == len(sd) == len(rows)
assert renamed == [] and {r[3] for r in other} == {"dropped: BN step counter"}
assert [r[0] for r in other] == [k for k in sd if k.endswith("num_batches_tracked")]
assert all(tuple(ours_sd[k].shape) == shape for k, _, shape, _ in same)   # no transposes

# %% [markdown]
# Two details hide in that table:
#
# - **Layouts agree without transposes.** Both libraries store a convolution as
#   `[F, C, kh, kw]`, a linear layer as `[F, D]` (`out = x @ W.T + b`), and a transposed
#   convolution as `[C_in, C_out, kh, kw]`. Our ops follow torch's layouts on purpose.
# - **Frozen vs ordinary batch norm.** torchvision built with `weights=None` uses `BatchNorm2d`;
#   fine-tuned from ImageNet it uses `FrozenBatchNorm2d`. Both store `weight, bias,
#   running_mean, running_var`, and in eval mode both compute
#   `y = (x - mean) / sqrt(var + eps) * weight + bias`, which is what our frozen batch norm does.

# %% [markdown]
# ## 2. Both models on the same images
#
# Two images, one not square, so that padding to a multiple of 32 and the per-image sizes are
# exercised. `stagewise` runs each stage of both models and returns the agreement figures.

# %%
rng = np.random.default_rng(0)
images = []
for h, w in [(150, 200), (160, 160)]:
    small = rng.random((3, h // 16 + 1, w // 16 + 1)).astype(np.float32)
    images.append(np.ascontiguousarray(np.kron(small, np.ones((1, 16, 16), np.float32))[:, :h, :w]))
res = tv_agreement.stagewise(ours, tv, images)

print(f"transform: max |difference| {res['transform_max_abs']:.2e}, image sizes equal: "
      f"{res['image_sizes_equal']}")
for level in ["0", "1", "2", "3", "pool"]:
    print(f"FPN {level:>4s}: max |difference| / max |value| = {res[f'feature_{level}_max_rel']:.2e}")
for i, (n_ours, n_tv, same) in enumerate(res["proposals"]):
    print(f"image {i}: proposals ours {n_ours}, torchvision {n_tv}, same position and box (< 0.01 px): {same:.1%}")
for i, d in enumerate(res["detections"]):
    print(f"image {i}: detections {d['n_ours']} vs {d['n_theirs']}, matched {d['matched_fraction']:.1%}, "
          f"max box diff {d['max_box_diff']:.1e} px, max score diff {d['max_score_diff']:.1e}, "
          f"mean mask diff {d['mean_mask_diff']:.1e}")

# %% [markdown]
# ## 3. What each tolerance means
#
# Both libraries compute in float32, whose unit round-off is 2^-24, about 6e-8. They do not add the
# same numbers in the same order (a GEMM through OpenBLAS vs torch's oneDNN convolution), so
# bit-for-bit equality is not expected; the question is whether every difference is the size
# of round-off, and never the size of a mistake.
#
# | stage | tolerance (tests/test_model_e2e.py) | what a violation would mean |
# | --- | --- | --- |
# | transform | max abs < 1e-4 | a different resize rule or normalisation |
# | FPN features | max abs / max value < 1e-4 | a wrong layer, stride, padding or weight layout |
# | proposals | >= 98% equal within 0.01 px, in order | a different anchor order, decoding, clipping or NMS; the 2% allows top-k ties |
# | detections | >= 98% matched; boxes < 0.01 px; scores < 1e-4; mask mean abs < 1e-3 | a different box coder, per-class NMS, RoIAlign sampling or mask pasting |
#
# Round-off grows through depth: after the whole backbone and FPN the features differ by a
# few millionths of their range (printed above), far inside 1e-4. Proposals are the fragile
# stage. Each level keeps its top 1000 anchors by objectness, and two anchors whose logits
# differ by less than round-off can swap places at the cut-off; the detections are robust to
# that because both orderings lead to the same objects. A real mistake is far outside these
# tolerances: section 5 makes one on purpose. The cell checks every line of the table on this
# run:

# %%
unit_roundoff = np.finfo(np.float32).eps / 2
worst_feature = max(res[f"feature_{k}_max_rel"] for k in ["0", "1", "2", "3", "pool"])
print(f"float32 unit round-off {unit_roundoff:.2e}; worst FPN level {worst_feature:.2e} "
      f"= {worst_feature / unit_roundoff:.0f} round-offs")
assert unit_roundoff == 2.0 ** -24
assert res["transform_max_abs"] < 1e-4 and res["image_sizes_equal"]
assert 1e-7 < worst_feature < 1e-5                 # "a few millionths": round-off, grown by depth
assert all(n_ours == n_tv and same >= 0.98 for n_ours, n_tv, same in res["proposals"])
for d in res["detections"]:
    assert d["n_theirs"] > 10 and d["matched_fraction"] >= 0.98
    assert d["max_box_diff"] < 0.01 and d["max_score_diff"] < 1e-4 and d["mean_mask_diff"] < 1e-3

# %% [markdown]
# ## 4. Op by op
#
# The end-to-end check is the last of many. Every op that torch or torchvision also has is
# compared on inputs drawn by hypothesis, values *and* gradients through autograd:
#
# | ours | oracle | tests |
# | --- | --- | --- |
# | conv2d, conv_transpose2d, linear, max_pool2d, batch norm, losses | `torch.nn.functional` | `tests/test_nn_*.py` |
# | box_iou, nms, batched_nms, BoxCoder, AnchorGenerator, Matcher, proposals | `torchvision.ops`, `models.detection` | `tests/test_boxes.py`, `test_nms.py`, `test_anchors.py`, ... |
# | roi_align, roi_pool, MultiScaleRoIAlign | `torchvision.ops` | `tests/test_roi_*.py`, `test_poolers.py` |
# | transform, paste_masks_in_image, postprocess_detections | `GeneralizedRCNNTransform`, `roi_heads` | `tests/test_transform.py`, `test_postprocess.py` |
# | RPN loss, fastrcnn_loss, maskrcnn_loss | torchvision's own loss code | `tests/test_heads_losses.py` |
# | ResNet-FPN backbone | `resnet_fpn_backbone` | `tests/test_backbone.py` |
#
# And what has no oracle -- the written-out backward of the whole model -- is checked against
# finite differences of the total loss in float64 (`tests/test_model.py`).
#
# ## 5. What a real mistake looks like
#
# torchvision's `maskrcnn_resnet50_fpn` pools with `aligned=False`. Import the same weights into
# a model built with `roi_aligned=True` (our config switch): every sample point moves by half
# a pixel, every pooled feature changes, so every score and box moves a little, and near the
# score and NMS thresholds some detections are replaced by others.

# %%
shifted = tv_agreement.ours_from_torchvision(tv, roi_aligned=True)
out_aligned = shifted.predict(images[:1])[0]
out_ref = ours.predict(images[:1])[0]
m = tv_agreement.match_detections(out_aligned, out_ref, iou_min=0.5)
print(f"aligned=True vs aligned=False: matched {m['matched_fraction']:.0%}, "
      f"max box difference {m['max_box_diff']:.2f} px "
      f"= {m['max_box_diff'] / 0.01:,.0f}x the 0.01 px tolerance")
assert m["matched_fraction"] < 0.98 and m["max_box_diff"] > 0.01   # both tolerances fail
del shifted

# %% [markdown]
# ## Summary
#
# - Names equal to torchvision's keys make weight import a table of identities; the only
#   rows that are not are the dropped `num_batches_tracked` counters.
# - With the same weights, both models agree at every stage to float32 round-off.
# - Tolerances are chosen to be far above round-off and far below any real mistake.
#
# ## Exercises
#
# Work each answer out first; the solution cell is collapsed (click to open it), and the cell
# after it checks your answer against torchvision's state_dict `sd` or its modules.

# %% [markdown]
# **1.** Predict a shape. The RPN head's `bbox_pred` is a 1 x 1 convolution that reads the
# 256 FPN channels and gives 4 box deltas for each of the A = 3 anchors (one per aspect ratio)
# at every position. Write the shape of its weight, `rpn.head.bbox_pred.weight`, from the
# layout rule of section 1 (a convolution is `[F, C, kh, kw]`), as a tuple in `answer_1`.

# %% jupyter={"source_hidden": true}
# a solution: F = 4 deltas x 3 anchors, C = 256, a 1 x 1 kernel
answer_1 = (4 * 3, 256, 1, 1)

# %%
assert answer_1 == tuple(sd["rpn.head.bbox_pred.weight"].shape)
assert answer_1 == ours_sd["rpn.head.bbox_pred.weight"].shape
print(answer_1)

# %% [markdown]
# **2.** Which name maps to which. The FPN's `inner_blocks` are the 1 x 1 lateral convolutions,
# one per backbone output, numbered in the order C2, C3, C4, C5. Which torchvision key holds
# the weight of the lateral convolution that reads C4 (the output of `layer3`, 1024 channels)?
# Put the key, a string, in `answer_2`.

# %% jupyter={"source_hidden": true}
# a solution: C2 -> 0, C3 -> 1, C4 -> 2, C5 -> 3; the conv sits at index 0 inside its block
answer_2 = "backbone.fpn.inner_blocks.2.0.weight"

# %%
assert tuple(sd[answer_2].shape) == (256, 1024, 1, 1)       # reads C4's 1024 channels
assert np.array_equal(ours_sd[answer_2], sd[answer_2].numpy())
print(answer_2)

# %% [markdown]
# **3.** Load a state_dict entry by name. In eval mode a batch norm is one affine map per
# channel, `y = x * scale + shift`. From the four tensors of `backbone.body.bn1` in `sd`
# (`weight`, `bias`, `running_mean`, `running_var`; `.numpy()` turns a tensor into an array)
# and its `eps` (`tv.backbone.body.bn1.eps`), compute `scale` and `shift` ([64] each) and put
# them in `answer_3 = (scale, shift)`.

# %% jupyter={"source_hidden": true}
# a solution: (x - mean) / sqrt(var + eps) * weight + bias, regrouped
bn = {k: sd[f"backbone.body.bn1.{k}"].numpy() for k in ("weight", "bias", "running_mean", "running_var")}
scale = bn["weight"] / np.sqrt(bn["running_var"] + tv.backbone.body.bn1.eps)
answer_3 = (scale, bn["bias"] - bn["running_mean"] * scale)

# %%
x_bn = np.random.default_rng(3).standard_normal((1, 64, 5, 5)).astype(np.float32)  # [N, 64, H, W]
with torch.no_grad():
    y_torch = tv.backbone.body.bn1(torch.from_numpy(x_bn)).numpy()       # torch's own module
scale, shift = answer_3
assert scale.shape == shift.shape == (64,)
assert np.allclose(x_bn * scale[:, None, None] + shift[:, None, None], y_torch, atol=1e-5)
