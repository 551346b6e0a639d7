"""RoIAlign on the GPU (numba.cuda). Reference: ``mrcnn_np/ops/roi_align.py``, which computes
each RoI's geometry (``roi_align_params``) and hands it in; this file imports nothing from
``mrcnn_np``.

What each version bought:

1. The NumPy reference computes a RoI's output as ``Ay @ input @ Ax.T``: few, large steps,
   right for a CPU, wrong for a GPU (one RoI at a time is a few thousand threads' worth).
2. These kernels: **one thread per output element** ``(n, c, ph, pw)``; R * C * S_h * S_w
   threads (512 * 256 * 7 * 7 = 6.4 M for the benchmark case), each recomputing its RoI's
   geometry (a few flops; cheaper than reading a table) and summing its bin's bilinear
   samples. Neighbouring threads (consecutive ``pw``) read neighbouring pixels, so the reads
   coalesce. No shared memory, no tables: the arithmetic is the reference's, line by line.
3. The backward keeps the same mapping, so one thread still owns one output element -- but now
   it *writes* to up to 4 * grid_h * grid_w input pixels, and the pixels of neighbouring bins,
   samples and overlapping RoIs coincide. Each write is therefore ``cuda.atomic.add`` into a
   zeroed gradient. Atomics make the result correct but not bit-for-bit reproducible: float
   additions arrive in a different order on each run, so the last bits may change (the CPU
   backends are deterministic).

Arithmetic note: numba promotes ``int * float32`` to float64, so sample positions are computed
in float64 from the float32 RoI geometry; results agree with the reference to float32 rounding.
"""

import numpy as np
from numba import cuda

THREADS_PER_BLOCK = 256


@cuda.jit(device=True)
def bilinear_weights(height, width, y, x):
    """The four corners and weights of one bilinear sample at (y, x), with torchvision's
    out-of-map rules. Returns (valid, y_low, y_high, x_low, x_high, hy, hx, ly, lx); a sample
    more than one pixel off the map is not valid (it reads 0 and passes no gradient)."""
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return False, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0
    if y <= 0:
        y = 0.0
    if x <= 0:
        x = 0.0
    y_low = int(y)
    x_low = int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly = y - y_low
    lx = x - x_low
    return True, y_low, y_high, x_low, x_high, 1.0 - ly, 1.0 - lx, ly, lx


@cuda.jit(device=True)
def bilinear_interpolate(input, b, c, height, width, y, x):
    """One bilinear sample of input[b, c] at (y, x)."""
    valid, y_low, y_high, x_low, x_high, hy, hx, ly, lx = bilinear_weights(height, width, y, x)
    if not valid:
        return 0.0                                       # beyond one pixel off the map: empty
    return (hy * hx * input[b, c, y_low, x_low] + hy * lx * input[b, c, y_low, x_high]
            + ly * hx * input[b, c, y_high, x_low] + ly * lx * input[b, c, y_high, x_high])


@cuda.jit
def roi_align_forward_kernel(input, roi_batch_ind, roi_start_h, roi_start_w, bin_size_h,
                             bin_size_w, roi_bin_grid_h, roi_bin_grid_w, count, output):
    index = cuda.grid(1)                                 # one thread per output element
    R, C, pooled_height, pooled_width = output.shape
    if index >= R * C * pooled_height * pooled_width:
        return
    pw = index % pooled_width
    ph = (index // pooled_width) % pooled_height
    c = (index // pooled_width // pooled_height) % C
    n = index // pooled_width // pooled_height // C
    height = input.shape[2]
    width = input.shape[3]
    b = roi_batch_ind[n]
    output_val = 0.0
    for iy in range(roi_bin_grid_h[n]):
        y = roi_start_h[n] + ph * bin_size_h[n] + (iy + 0.5) * bin_size_h[n] / roi_bin_grid_h[n]
        for ix in range(roi_bin_grid_w[n]):
            x = roi_start_w[n] + pw * bin_size_w[n] + (ix + 0.5) * bin_size_w[n] / roi_bin_grid_w[n]
            output_val += bilinear_interpolate(input, b, c, height, width, y, x)
    output[n, c, ph, pw] = output_val / count[n]


@cuda.jit
def roi_align_backward_kernel(grad_output, roi_batch_ind, roi_start_h, roi_start_w, bin_size_h,
                              bin_size_w, roi_bin_grid_h, roi_bin_grid_w, count, grad_input):
    index = cuda.grid(1)                                 # the forward's mapping
    R, C, pooled_height, pooled_width = grad_output.shape
    if index >= R * C * pooled_height * pooled_width:
        return
    pw = index % pooled_width
    ph = (index // pooled_width) % pooled_height
    c = (index // pooled_width // pooled_height) % C
    n = index // pooled_width // pooled_height // C
    height = grad_input.shape[2]
    width = grad_input.shape[3]
    b = roi_batch_ind[n]
    grad_output_this_bin = grad_output[n, c, ph, pw] / count[n]
    for iy in range(roi_bin_grid_h[n]):
        y = roi_start_h[n] + ph * bin_size_h[n] + (iy + 0.5) * bin_size_h[n] / roi_bin_grid_h[n]
        for ix in range(roi_bin_grid_w[n]):
            x = roi_start_w[n] + pw * bin_size_w[n] + (ix + 0.5) * bin_size_w[n] / roi_bin_grid_w[n]
            valid, y_low, y_high, x_low, x_high, hy, hx, ly, lx = bilinear_weights(
                height, width, y, x)
            if not valid:
                continue                                 # empty sample: no gradient
            # Other threads (other bins, samples, RoIs) may hit the same pixels: atomics.
            cuda.atomic.add(grad_input, (b, c, y_low, x_low), grad_output_this_bin * hy * hx)
            cuda.atomic.add(grad_input, (b, c, y_low, x_high), grad_output_this_bin * hy * lx)
            cuda.atomic.add(grad_input, (b, c, y_high, x_low), grad_output_this_bin * ly * hx)
            cuda.atomic.add(grad_input, (b, c, y_high, x_high), grad_output_this_bin * ly * lx)


def _to_device(geometry):
    """The 8 per-RoI geometry arrays (``mrcnn_np.ops.roi_align.GEOMETRY_FIELDS``: batch index,
    roi_start_h, roi_start_w, bin_size_h, bin_size_w, roi_bin_grid_h, roi_bin_grid_w, count,
    each [R], computed by the reference) moved to the device."""
    return [cuda.to_device(np.ascontiguousarray(a)) for a in geometry]


def _blocks(n):
    return max((n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK, 1)


def roi_align_forward_device(d_input, geometry, S_h, S_w):
    """Device in, device out: d_input [N, C, H, W] on the GPU -> d_output [R, C, S_h, S_w]."""
    C = d_input.shape[1]
    d_output = cuda.device_array((len(geometry[0]), C, S_h, S_w), d_input.dtype)
    roi_align_forward_kernel[_blocks(d_output.size), THREADS_PER_BLOCK](
        d_input, *_to_device(geometry), d_output)
    return d_output


def roi_align_backward_device(d_grad_output, geometry, input_shape):
    """Device in, device out: d_grad_output [R, C, S_h, S_w] -> d_grad_input [N, C, H, W]."""
    d_grad_input = cuda.to_device(np.zeros(input_shape, d_grad_output.dtype))   # zeroed
    roi_align_backward_kernel[_blocks(d_grad_output.size), THREADS_PER_BLOCK](
        d_grad_output, *_to_device(geometry), d_grad_input)
    return d_grad_input


def roi_align_forward_cuda(input, geometry, S_h, S_w):
    """Host in, host out: input [N, C, H, W] -> output [R, C, S_h, S_w] (copies both ways)."""
    d_input = cuda.to_device(np.ascontiguousarray(input))
    return roi_align_forward_device(d_input, geometry, S_h, S_w).copy_to_host()


def roi_align_backward_cuda(grad_output, geometry, input_shape):
    """Host in, host out: grad_output [R, C, S_h, S_w] -> grad_input [N, C, H, W]."""
    d_grad_output = cuda.to_device(np.ascontiguousarray(grad_output))
    return roi_align_backward_device(d_grad_output, geometry, tuple(input_shape)).copy_to_host()
