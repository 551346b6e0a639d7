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
# `numba.cuda`, Python syntax compiled for the GPU, around three ideas:
#
# 1. **Threads**: one thread per output element (the RoIAlign forward). No thread reads what
#    another writes, so nothing needs coordinating.
# 2. **Atomics**: when threads share an output (the RoIAlign backward scatters into input
#    pixels that many threads hit), each addition must be one indivisible step, and the order
#    of the additions is no longer fixed.
# 3. **The bitmask**: NMS answers "does box i suppress box j?" for all pairs at once, 64
#    answers to a `uint64` word, and leaves only a cheap sequential pass over the words.
#
# **Running on a GPU, or on the simulator.** With an NVIDIA GPU and the `numba-cuda` package,
# the kernels run on the GPU. Without one, numba has a **CUDA simulator**: it runs each thread
# as Python, on the CPU, with the same API (thread indices, shared memory, `syncthreads`,
# atomics). It is very slow (section 1 prints the cost of one simulated thread) but exact
# enough to test kernels, which is what the CI does. It must be switched on **before numba is
# imported**:
#
# ```bash
# NUMBA_ENABLE_CUDASIM=1 python my_script.py       # or set os.environ first, as below
# ```
#
# This notebook turns the simulator on when there is no GPU, so every cell runs anywhere; the
# launches are tiny (a few hundred threads) so that the simulator finishes in seconds.

# %%
import os
import shutil
import time

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
# ## 1. Threads: one thread per output element
#
# The RoIAlign output has `R * C * S_h * S_w` elements; we launch that many threads, rounded up
# to whole blocks of `roi_align_cuda.THREADS_PER_BLOCK` (printed below). Thread number `index`
# finds *its* element by peeling off the dimensions, last one first, exactly like
# `np.unravel_index`:
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
# A tiny run: 2 RoIs, 2 channels, 2x2 bins = 16 threads with work, in one block of 256 (the
# other 240 fail the `index >=` test and return). The result equals the NumPy reference up to
# float rounding.

# %%
rng = np.random.default_rng(0)
x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)          # [N, C, H, W]
rois = np.array([[0, 0.2, 0.2, 4.2, 3.2], [0, 1.8, 2.2, 5.8, 5.8]], np.float32)  # [R, 5]
t0 = time.perf_counter()
out_gpu, cache_gpu = roi_align_forward(x, rois, 2, 1.0, 2, True, backend="cuda")
t_launch = time.perf_counter() - t0
out_ref, cache_ref = roi_align_forward(x, rois, 2, 1.0, 2, True, backend="numpy")
print(f"threads: {out_gpu.size} in {roi_align_cuda._blocks(out_gpu.size)} block(s) of "
      f"{roi_align_cuda.THREADS_PER_BLOCK};  max |cuda - numpy| = {np.abs(out_gpu - out_ref).max():.1e}")
launched = roi_align_cuda._blocks(out_gpu.size) * roi_align_cuda.THREADS_PER_BLOCK
if SIM:                                 # the 240 threads past the output return at once
    print(f"the simulated launch of {launched} threads took {t_launch * 1e3:.0f} ms: "
          f"{t_launch / launched * 1e6:.0f} us per simulated thread")
assert np.allclose(out_gpu, out_ref, atol=1e-6) and (out_gpu.size, launched) == (16, 256)
index = np.arange(out_gpu.size)
n, c, ph, pw = np.unravel_index(index, out_gpu.shape)
for i in range(0, 16, 3):
    print(f"thread {i:2d} -> (n, c, ph, pw) = ({n[i]}, {c[i]}, {ph[i]}, {pw[i]})")

# %% [markdown]
# ## 2. Atomics: when threads share an output
#
# The backward keeps the same mapping: thread `(n, c, ph, pw)` takes its bin's gradient and
# adds `grad * weight / count` to the 4 pixels of each of its samples. Now threads **write**,
# and they write to the same places: neighbouring bins share pixels (a sample near a bin edge
# reads across it), the G x G samples of one bin share pixels, and overlapping RoIs share
# whole regions. The second half of the backward kernel:

# %%
src = inspect.getsource(roi_align_cuda.roi_align_backward_kernel)
print(src[src.index("    grad_output_this_bin"):])

# %% [markdown]
# Why not `grad_input[b, c, y, x] += v`? On a GPU that line is three steps: read the old
# value, add, write back. Two threads that hit the same pixel can both read before either
# writes, and one addition is lost. Played out by hand, in the order the hardware may run it:

# %%
g = 0.0                              # one pixel of grad_input
old_a = g                            # thread A reads
old_b = g                            # thread B reads, before A has written
g = old_a + 0.25                     # A writes
g = old_b + 0.5                      # B writes, over A's result
print(f"two threads add 0.25 and 0.5 with a plain +=: the pixel holds {g}, not {0.25 + 0.5}")

# %% [markdown]
# `cuda.atomic.add(grad_input, (b, c, y, x), v)` makes the read-add-write one indivisible
# step, so every addition lands. The picture counts, for one channel, how many threads write
# each input pixel in our tiny example: every pixel above 1 is a collision that a plain `+=`
# could get wrong.

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
count = np.array([[len(w) for w in row] for row in writers])      # [6, 6]
fig, ax = plt.subplots(figsize=(6, 5.2))
im = ax.imshow(count, cmap="Reds", extent=(0, 6, 6, 0), vmin=0)
for i in range(6):
    for j in range(6):                                              # at pixel centres, which
        ax.text(j + 0.5, i + 0.5, count[i, j], ha="center", va="center",  # no RoI edge crosses
                color="white" if count[i, j] >= 3 else "black", fontsize=12)
for k, r in enumerate(rois):
    ax.add_patch(plt.Rectangle((r[1], r[2]), r[3] - r[1], r[4] - r[2], fill=False,
                               ec=("tab:blue", "tab:green")[k], lw=2.5, label=f"RoI {k}"))
ax.set_title("threads (bins) writing each input pixel, one channel")
ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=2, frameon=False)
plt.colorbar(im, ax=ax, fraction=0.046)
plt.show()
edges = np.concatenate([rois[:, [1, 3]].ravel(), rois[:, [2, 4]].ravel()])
assert np.abs((edges % 1) - 0.5).min() >= 0.25                    # digits stay off the outlines
print(f"{(count > 1).sum()} of 36 pixels are written by more than one thread (at most {count.max()})")
assert count.max() > 1

dx_gpu = roi_align_backward(np.ones_like(out_gpu), cache_gpu)
dx_ref = roi_align_backward(np.ones_like(out_ref), cache_ref)
print(f"max |cuda - numpy| in the gradient: {np.abs(dx_gpu - dx_ref).max():.1e}")
assert np.allclose(dx_gpu, dx_ref, atol=1e-6)

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
gap = abs(float(forward_order) - float(backward_order))
bound = len(vals) * np.finfo(np.float32).eps * np.abs(vals).sum()  # textbook bound: n eps sum|v|
print(f"sum in one order: {forward_order!r}, in the other: {backward_order!r}, "
      f"difference {gap:.2e} (the rounding bound n eps sum|v| is {bound:.1f})")
assert 0 < gap < bound

# %% [markdown]
# The difference is rounding, far inside its bound: harmless for training, but it means a GPU
# run is not bit-for-bit repeatable. Our CPU backends are deterministic (the numba backward
# gives each thread whole channel planes, so no two threads ever write the same pixel), and
# torchvision offers a deterministic pure-PyTorch RoIAlign for the same reason.
#
# ## 3. The bitmask: NMS in 64-bit words
#
# Greedy NMS (chapter 06) keeps the best box, drops everything that overlaps it by more than
# the threshold, and repeats. The loop is sequential, but the question it keeps asking,
# "does box i suppress box j?", can be answered for all pairs at once. Sorted by score, boxes
# are cut into **tiles of 64** (`nms_cuda.THREADS_PER_BLOCK`), the width of a `uint64`. GPU
# block `(col tile, row tile)` loads the 64 column boxes into shared memory; thread `t` takes
# row box `t` and sets bit `i` of one 64-bit word when its IoU with column box `i` is above the
# threshold. Box `i` can only suppress *later* boxes, so blocks below the diagonal return at
# once.

# %%
print(inspect.getsource(nms_kernels._nms_kernel))

# %% [markdown]
# A picture: 100 random boxes in 2 tiles (64 + 36), IoU threshold 0.3, so the mask is
# `[100, 2]` words. Each row is one box's words, unpacked into bits: a dark pixel at `(i, j)`
# means "box i suppresses box j". Only the upper triangle can be set.

# %%
n_boxes = 100
xy = rng.uniform(0, 60, (n_boxes, 2))
boxes = np.concatenate([xy, xy + rng.uniform(8, 30, (n_boxes, 2))], 1).astype(np.float32)
scores = rng.random(n_boxes).astype(np.float32)
order = np.argsort(-scores, kind="stable")
mask = nms_kernels.nms_mask_device(cuda.to_device(boxes[order]), 0.3).copy_to_host()  # [100, 2] uint64
j = np.arange(n_boxes)
bits = (mask[:, j // 64] >> (j % 64).astype(np.uint64)) & np.uint64(1)           # [100, 100]: bit j of row i
assert nms_kernels.THREADS_PER_BLOCK == 64 and mask.shape == (100, 2)
assert not np.tril(bits).any()                                                   # upper triangle only
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
assert np.array_equal(keep, keep_numpy)

# %% [markdown]
# ## 4. Speed: every measurement, with its date and machine
#
# `benchmarks/bench_roi.py --gpu` times our CUDA kernels against torchvision's CUDA ops in the
# same run; without `--gpu` it times our numba CPU kernels against torchvision's CPU ops. The
# figures are a record of the runs so far (rerun the script to get yours), as *ours / torchvision
# in ms = speed-up*. Input [1, 256, 200, 272], 512 proposal-like RoIs, 7x7, scale 1/4, sampling
# 2; ours: numba on 2 threads, the input's NCHW -> NHWC copy included; torchvision: its
# single-threaded CPU ops; medians of 5-7.
#
# | case | target | 2026-11-24, 2-core CPU, loaded (load 3.5-8) | 2026-11-24, 2-core CPU, quiet (load 1.5) |
# | --- | ---: | ---: | ---: |
# | `roi_align` forward (channels-last) | 5x | 55 / 269 = 4.9x | 40 / 267 = 6.7x |
# | `roi_align` backward | 5x | 104 / 605 = 5.8x | 85 / 617 = 7.3x |
# | `roi_pool` forward (channels-last) | 3x | 121 / 484 = 4.0x | 99 / 494 = 5.0x |
# | `roi_pool` backward | 3x | 30 / 145 = 4.8x | 98 / 153 = 1.6x |
# | `multi_scale_roi_align` fwd + bwd, 1000 RoIs on P2..P5 | 4x | 313 / 1469 = 4.7x | 251 / 1564 = 6.2x |
#
# **GPU**: not measured yet (no GPU machine has run `bench_roi.py --gpu`); the targets are
# within 1.5x of torchvision for RoIAlign and within 2x for NMS. Add a column when it runs.
#
# Two lessons hide in the table. Our kernels use both cores and torchvision's CPU ops use one, so a
# busy machine hurts us more: the RoIAlign forward misses its 5x under load and clears it when
# quiet (a third of its time is the copy to channels-last, which the timing counts). And the
# `roi_pool` backward is bimodal: in those runs it took about 22 ms timed alone, but about
# 124 ms whenever its freshly allocated 56 MB gradient buffer was touched for the first time
# (the operating system maps and zeroes each page on its first write). A benchmark that
# reports one median can land in either mode; measure more than once.
#
# ## Summary
#
# - **Threads.** A GPU kernel is the body of a loop; `cuda.grid(1)` says which iteration a
#   thread runs. RoIAlign's forward maps one thread to one output element and needs no
#   coordination.
# - **Atomics.** The backward scatters: many threads add into the same input pixels, so each
#   addition is a `cuda.atomic.add` into a zeroed gradient. Atomics are correct but not
#   ordered: GPU gradients may differ in the last bits from run to run.
# - **The bitmask.** NMS splits into a parallel part (every IoU, stored as bits: 64 boxes per
#   `uint64` word) and a tiny sequential part (a walk over the words).
# - The simulator (`NUMBA_ENABLE_CUDASIM=1`) runs the same kernels on a CPU, thread by thread:
#   slow, but enough to test them anywhere.
#
# ## Exercises
#
# Work each answer out first; the solution cell is collapsed (click to open it), and the cell
# after it checks your answer.

# %% [markdown]
# **1.** How many threads does the RoIAlign forward launch for 512 RoIs, 256 channels and a
# 7x7 output (before rounding up), and how many blocks of 256 threads is that? Put them in
# `answer_threads` and `answer_blocks`.

# %% jupyter={"source_hidden": true}
# a solution: one thread per output element, blocks rounded up
answer_threads = 512 * 256 * 7 * 7
answer_blocks = -(-answer_threads // 256)

# %%
assert answer_threads == np.empty((512, 256, 7, 7), np.float32).size    # output elements
assert answer_blocks == roi_align_cuda._blocks(answer_threads)          # what the launcher uses
assert (answer_blocks - 1) * 256 < answer_threads <= answer_blocks * 256
print(f"{answer_threads:,} threads in {answer_blocks:,} blocks")

# %% [markdown]
# **2.** Write `nms_work(n)`, returning `(words, busy_blocks)` for `n` boxes: how many
# `uint64` words the NMS mask holds (one per box and tile), and how many of the kernel's
# `tiles x tiles` blocks do any work (the others return at once). What is it for n = 1000?
# The check launches the kernel on a mask filled with a marker value and counts the blocks
# whose words changed.

# %% jupyter={"source_hidden": true}
# a solution: one word per (box, tile); the blocks on and above the diagonal work
def nms_work(n):
    tiles = -(-n // 64)
    return n * tiles, tiles * (tiles + 1) // 2


print(nms_work(1000))

# %%
MARK = np.uint64(2 ** 64 - 1)     # all 64 bits: no box here suppresses a whole tile, so none writes it
for n_check in (65, 100):
    tiles = -(-n_check // 64)
    d_mask = cuda.to_device(np.full((n_check, tiles), MARK))
    nms_kernels._nms_kernel(np.float32)[(tiles, tiles), 64](
        n_check, 0.3, cuda.to_device(boxes[order][:n_check]), d_mask)
    written = d_mask.copy_to_host() != MARK          # [n, tiles]
    busy = sum(written[r * 64:(r + 1) * 64, col].any() for r in range(tiles) for col in range(tiles))
    words = nms_kernels.nms_mask_device(cuda.to_device(boxes[order][:n_check]), 0.3).size
    assert nms_work(n_check) == (words, busy), (n_check, words, busy)

# %% [markdown]
# **3.** Thread `index = 37` of a forward launch on an output of shape `[R=2, C=3, 2, 4]`:
# which element `(n, c, ph, pw)` does it compute? Peel the dimensions off by hand and put the
# tuple in `answer_3`.

# %% jupyter={"source_hidden": true}
# pw = 37 % 4 = 1; ph = (37 // 4) % 2 = 9 % 2 = 1; c = (37 // 8) % 3 = 4 % 3 = 1; n = 37 // 24 = 1
answer_3 = (1, 1, 1, 1)

# %%
assert answer_3 == tuple(int(i) for i in np.unravel_index(37, (2, 3, 2, 4)))
