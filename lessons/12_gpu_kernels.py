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
# # Chapter 12 — GPU kernels: RoIAlign and NMS in numba.cuda
#
# Two operations of Mask R-CNN have many small, independent pieces of work: RoIAlign (millions
# of output values, each a short weighted sum) and NMS (all pairwise IoUs of a few thousand
# boxes). On a GPU each piece becomes a **thread**. This chapter writes both kernels in
# `numba.cuda`, Python syntax compiled for the GPU, and shows the two ideas they need:
#
# 1. **One thread per output element**, and what happens when threads *write* to shared places
#    (the RoIAlign backward): **atomics**, and the price in determinism.
# 2. **Bits as a data structure**: NMS computes every "box i suppresses box j" at once as a
#    bitmask, and leaves only a cheap sequential pass over the bits.
#
# ## Running on a GPU, or on the simulator
#
# With an NVIDIA GPU and the `numba-cuda` package, the kernels run on the GPU. Without one,
# numba has a **CUDA simulator**: it runs each thread as Python, on the CPU, with the same API
# (thread indices, shared memory, `syncthreads`, atomics). It is about 10,000 times slower
# (~170 us per thread) but exact enough to test kernels, which is what the CI does. It must be
# switched on **before numba is imported**:
#
# ```bash
# NUMBA_ENABLE_CUDASIM=1 python my_script.py       # or set os.environ first, as below
# ```
#
# This notebook turns the simulator on when there is no GPU, so every cell runs anywhere; the
# examples are tiny so that the simulator finishes in seconds.

# %%
import os
import shutil

if shutil.which("nvidia-smi") is None:                # no GPU: use the simulator
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

# %matplotlib inline
import inspect

import matplotlib.pyplot as plt
import numpy as np
from numba import cuda

from kernels import nms_cuda as nms_kernels
from kernels import roi_align_cuda
from mrcnn_np.ops import nms, roi_align_backward, roi_align_forward

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
print("CUDA simulator" if SIM else f"GPU: {cuda.get_current_device().name}")

# %% [markdown]
# ## RoIAlign forward: one thread per output element
#
# The output has `R * C * S_h * S_w` elements; we launch that many threads (rounded up to whole
# blocks of 256). Thread number `index` finds *its* element by peeling off the dimensions,
# last one first, exactly like `np.unravel_index`:
#
# ```
# pw = index % S_w
# ph = (index // S_w) % S_h
# c  = (index // S_w // S_h) % C
# n  = index // S_w // S_h // C
# ```
#
# Then it does what the NumPy reference does for one bin: compute its RoI's `roi_start_h`,
# `bin_size_h`, `roi_bin_grid_h` (same names as the reference), loop over the bin's samples,
# read each by bilinear interpolation, and write the mean. No thread reads what another writes,
# so no coordination is needed. Consecutive threads handle consecutive `pw`, i.e. neighbouring
# samples, so their memory reads are close together (the GPU *coalesces* them).

# %%
print(inspect.getsource(roi_align_cuda.roi_align_forward_kernel))

# %% [markdown]
# A tiny run: 2 RoIs, 2 channels, 2x2 bins = 16 threads. The simulator's result equals the
# NumPy reference up to float rounding.

# %%
rng = np.random.default_rng(0)
x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)          # [N, C, H, W]
rois = np.array([[0, 0.5, 0.5, 4.0, 3.0], [0, 1.7, 2.2, 5.6, 5.9]], np.float32)  # [R, 5]
out_gpu, cache_gpu = roi_align_forward(x, rois, 2, 1.0, 2, True, backend="cuda")
out_ref, cache_ref = roi_align_forward(x, rois, 2, 1.0, 2, True, backend="numpy")
print("threads:", out_gpu.size, " max |cuda - numpy| =", np.abs(out_gpu - out_ref).max())
index = np.arange(out_gpu.size)
n, c, ph, pw = np.unravel_index(index, out_gpu.shape)
for i in range(0, 16, 3):
    print(f"thread {i:2d} -> (n, c, ph, pw) = ({n[i]}, {c[i]}, {ph[i]}, {pw[i]})")

# %% [markdown]
# ## The backward needs atomics
#
# The backward keeps the same mapping: thread `(n, c, ph, pw)` takes its bin's gradient and
# adds `grad * weight / count` to the 4 pixels of each of its samples. Now threads **write**,
# and they write to the same places: neighbouring bins share pixels (a sample near a bin edge
# reads across it), the G x G samples of one bin share pixels, and overlapping RoIs share
# whole regions. If two threads do `g[i] = g[i] + a` at the same time, both read the old
# value and one addition is lost. `cuda.atomic.add(g, i, a)` makes the read-add-write one
# indivisible step.
#
# The picture counts, for one channel, how many threads write each input pixel in our tiny
# example: every pixel above 1 is a collision that plain `+=` would get wrong.

# %%
from mrcnn_np.ops.roi_align import bilinear_axis, roi_align_params  # noqa: E402

prm = roi_align_params(rois, 1.0, 2, 2, 2, True)
y_low, y_high, _, _ = bilinear_axis(prm["roi_start_h"], prm["bin_size_h"], prm["roi_bin_grid_h"], 2, 6)
x_low, x_high, _, _ = bilinear_axis(prm["roi_start_w"], prm["bin_size_w"], prm["roi_bin_grid_w"], 2, 6)
writers = [[set() for _ in range(6)] for _ in range(6)]           # which threads write pixel (i, j)
for r in range(2):
    for p in range(2):
        for q in range(2):
            thread = (r, p, q)
            for ys in (y_low[r, p], y_high[r, p]):
                for xs in (x_low[r, q], x_high[r, q]):
                    for yy in ys:
                        for xx in xs:
                            writers[yy][xx].add(thread)
count = np.array([[len(w) for w in row] for row in writers])
fig, ax = plt.subplots(figsize=(5, 4.4))
im = ax.imshow(count, cmap="Reds", extent=(0, 6, 6, 0))
for i in range(6):
    for j in range(6):
        ax.text(j + 0.5, i + 0.5, count[i, j], ha="center", va="center")
for r in rois:
    ax.add_patch(plt.Rectangle((r[1], r[2]), r[3] - r[1], r[4] - r[2], fill=False, ec="b", lw=2))
ax.set_title("threads (bins) writing each input pixel, one channel")
plt.colorbar(im, ax=ax, fraction=0.046)
plt.show()

dx_gpu = roi_align_backward(np.ones_like(out_gpu), cache_gpu)
dx_ref = roi_align_backward(np.ones_like(out_ref), cache_ref)
print("max |cuda - numpy| in the gradient:", np.abs(dx_gpu - dx_ref).max())

# %% [markdown]
# **What atomics do to determinism.** Atomics make every addition happen, but not in a fixed
# order: which thread gets there first changes from run to run. Floating-point addition is not
# associative, so the last bits of the gradient can change between two identical runs on a
# GPU. The same numbers summed in two orders:

# %%
vals = rng.standard_normal(10_000).astype(np.float32)
forward_order = np.float32(0)
for v in vals:
    forward_order += v
backward_order = np.float32(0)
for v in vals[::-1]:
    backward_order += v
print(f"sum in one order: {forward_order!r}, in the other: {backward_order!r}, "
      f"difference {abs(forward_order - backward_order):.2e}")

# %% [markdown]
# The difference is at the level of float32 rounding: harmless for training, but it means a
# GPU run is not bit-for-bit repeatable. Our CPU backends are deterministic (the numba
# backward gives each thread whole channel planes, so no two threads ever write the same
# pixel), and torchvision offers a deterministic pure-PyTorch RoIAlign for the same reason.
#
# ## NMS as a bitmask
#
# Greedy NMS (chapter 06) keeps the best box, drops everything that overlaps it by more than
# the threshold, and repeats. The loop is sequential, but the question it keeps asking,
# "does box i suppress box j?", can be answered for all pairs at once. Sorted by score, boxes
# are cut into **tiles of 64**, the width of a `uint64`. GPU block `(col tile, row tile)` loads
# the 64 column boxes into shared memory; thread `t` takes row box `t` and sets bit `i` of one
# 64-bit word when its IoU with column box `i` is above the threshold. Box `i` can only
# suppress *later* boxes, so blocks below the diagonal return at once.

# %%
print(inspect.getsource(nms_kernels._nms_kernel))

# %% [markdown]
# A picture: 100 random boxes in 2 tiles (64 + 36), IoU threshold 0.3. Each row is one box's
# words, unpacked into bits: a dark pixel at `(i, j)` means "box i suppresses box j". Only the
# upper triangle can be set.

# %%
n_boxes = 100
xy = rng.uniform(0, 60, (n_boxes, 2))
boxes = np.concatenate([xy, xy + rng.uniform(8, 30, (n_boxes, 2))], 1).astype(np.float32)
scores = rng.random(n_boxes).astype(np.float32)
order = np.argsort(-scores, kind="stable")
mask = nms_kernels.nms_mask_device(cuda.to_device(boxes[order]), 0.3).copy_to_host()  # [100, 2] uint64
j = np.arange(n_boxes)
bits = (mask[:, j // 64] >> (j % 64).astype(np.uint64)) & np.uint64(1)           # [100, 100]: bit j of row i
fig, ax = plt.subplots(figsize=(6, 6))
ax.imshow(bits, cmap="Greys", interpolation="nearest")
ax.axhline(63.5, color="tab:red")
ax.axvline(63.5, color="tab:red")
ax.set_xlabel("box j (sorted by score)")
ax.set_ylabel("box i (sorted by score)")
ax.set_title(f"mask [{n_boxes}, {mask.shape[1]}] uint64, unpacked: i suppresses j")
plt.show()

# %% [markdown]
# **The keep pass.** One word per tile, `remv`, holds the boxes removed so far. Walk the
# boxes in score order: if box `i`'s bit in `remv` is clear, keep it and OR its mask row into
# `remv`. That is `N` steps of a few word operations: tiny, so it runs on the host (an `@njit`
# loop; torchvision runs the same loop in a one-thread-block kernel).

# %%
print(inspect.getsource(nms_kernels.keep_pass))
keep = nms_kernels.nms_cuda(boxes, scores, 0.3)
keep_numpy = nms(boxes, scores, 0.3, backend="numpy")
print(f"kept {len(keep)} of {n_boxes}; same as the NumPy nms: {np.array_equal(keep, keep_numpy)}")

# %% [markdown]
# ## Speed
#
# `benchmarks/bench_roi.py --gpu` times our kernels against torchvision's CUDA ops in the same
# run (and without `--gpu`, our numba CPU kernels against torchvision's CPU ops). The figures
# below are a record of one run; rerun the script to get yours.
#
# **CPU**, two runs of the same script on the 2-core development machine: one while other jobs
# shared it (load 3.5-8), one with it quiet (load 1.5). Input [1, 256, 200, 272], 512
# proposal-like RoIs, 7x7, scale 1/4, sampling 2; ours: numba on 2 threads, the input's
# NCHW -> NHWC copy included; torchvision: its single-threaded CPU ops; medians of 5-7.
#
# | case | loaded: ours / tv (ms) | speed-up | quiet: ours / tv (ms) | speed-up | target |
# | --- | ---: | ---: | ---: | ---: | ---: |
# | `roi_align` forward (numba, channels-last) | 55 / 269 | 4.9x | 40 / 267 | 6.7x | 5x |
# | `roi_align` backward (numba) | 104 / 605 | 5.8x | 85 / 617 | 7.3x | 5x |
# | `roi_pool` forward (numba, channels-last) | 121 / 484 | 4.0x | 99 / 494 | 5.0x | 3x |
# | `roi_pool` backward (numba) | 30 / 145 | 4.8x | 98 / 153 | 1.6x | 3x |
# | `multi_scale_roi_align` fwd + bwd, 1000 RoIs on P2..P5 | 313 / 1469 | 4.7x | 251 / 1564 | 6.2x | 4x |
#
# Two lessons hide in this table. First, our kernels use both cores and torchvision's CPU ops
# use one, so a busy machine hurts us more: the RoIAlign forward misses its 5x target under load
# and clears it when quiet (a third of its time is the copy to channels-last, which the timing
# counts). Second, the `roi_pool` backward is bimodal: timed alone it takes about 22 ms, but
# about 124 ms whenever its freshly allocated 56 MB gradient buffer is touched for the first
# time (the operating system maps and zeroes each page on its first write). A benchmark that
# reports one median can land in either mode; measure more than once.
#
# **GPU**: not measured yet: no GPU was available when this chapter was written. Run
# `python benchmarks/bench_roi.py --gpu` on a machine with one; the targets are within 1.5x
# of torchvision for RoIAlign and within 2x for NMS.
#
# ## Summary
#
# - A GPU kernel is the body of a loop; `cuda.grid(1)` says which iteration a thread runs.
#   RoIAlign's forward maps one thread to one output element and needs no coordination.
# - The backward scatters: many threads add into the same input pixels, so each addition is a
#   `cuda.atomic.add` into a zeroed gradient. Atomics are correct but not ordered: GPU
#   gradients may differ in the last bits from run to run.
# - NMS splits into a parallel part (every IoU, stored as bits: 64 boxes per `uint64` word) and
#   a tiny sequential part (a walk over the words).
# - The simulator (`NUMBA_ENABLE_CUDASIM=1`) runs the same kernels on a CPU, thread by thread:
#   slow, but enough to test them anywhere.
#
# ## Exercises (each cell checks itself)
#
# **1.** How many threads does the RoIAlign forward launch for 512 RoIs, 256 channels and a 7x7
# output, and how many blocks of 256 threads is that?

# %%
answer_threads = 512 * 256 * 7 * 7
answer_blocks = (answer_threads + 255) // 256
assert answer_threads == 6_422_528 and answer_blocks == roi_align_cuda._blocks(answer_threads)

# %% [markdown]
# **2.** For `N = 1000` boxes, how many mask words does the NMS kernel write (rows times tiles),
# and how many of its `tiles x tiles` blocks do any work?

# %%
tiles = (1000 + 63) // 64                         # 16 tiles
answer_words = 1000 * tiles                       # 16,000 words of 64 bits
answer_busy_blocks = tiles * (tiles + 1) // 2     # the diagonal and above: 136 of 256
assert (answer_words, answer_busy_blocks) == (16_000, 136)

# %% [markdown]
# **3.** Thread `index = 37` of a forward launch on an output of shape `[R=2, C=3, 2, 4]`:
# which element `(n, c, ph, pw)` does it compute? Peel the dimensions off by hand.

# %%
# pw = 37 % 4 = 1; ph = (37 // 4) % 2 = 9 % 2 = 1; c = (37 // 8) % 3 = 4 % 3 = 1; n = 37 // 24 = 1
answer_3 = (1, 1, 1, 1)
assert answer_3 == tuple(int(i) for i in np.unravel_index(37, (2, 3, 2, 4)))
