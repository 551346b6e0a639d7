"""RoIAlign CPU kernels (numba). Reference: ``mrcnn_np/ops/roi_align.py``.

What each version bought (input [1, 256, 200, 272], 512 RoIs, 7x7, scale 1/4, sampling 2;
numbers from benchmarks/bench_roi.py on the development machine):

1. NumPy reference: per RoI, two small matrix products ``Ay @ input @ Ax.T``. Readable, and
   BLAS does the work, but each RoI pays for Python and for building ``Ay``, ``Ax``.
2. Loop kernels (this file): the sample tables (``y_low, y_high, w_low, w_high``, the
   reference's ``bilinear_axis``) are computed once, vectorized, in the input's dtype, by
   ``mrcnn_np/ops/roi_align.py`` (``sample_tables``) and handed in -- so rounding and the
   out-of-map rules are *the reference's own*, and this file imports nothing from
   ``mrcnn_np`` -- and the kernel only does the weighted gathers. The backward runs
   ``prange`` over channels: each thread owns whole channel planes of the gradient, so it
   needs no atomics and no per-thread copies, and one
   [H, W] plane (200 x 272 float32 = 218 kB) stays in cache while every RoI scatters into it.
   An NCHW forward written the same way was about 2x faster than torchvision's single-threaded
   CPU op on 2 cores.
3. Channels-last forward: ``prange`` over RoIs, and the innermost loop runs over the C
   channels of one pixel, contiguous in NHWC, so each tap is one SIMD multiply-add over
   channels. The NCHW -> NHWC copy of the input (14 M floats, ~20 ms) is counted in every
   timing, and the output is written straight into NCHW (one RoI's C x S x S block, so the
   strided stores stay in cache). Even with the copy the forward was faster than the NCHW
   loop; a separable NCHW variant (interpolate rows over the RoI's column window with SIMD,
   then columns) measured no better. Measured: forward
   ~55 ms against torchvision's ~270 ms (4.7x to 4.9x), backward ~100 ms against ~600 ms
   (~5.8x), on 2 busy cores. The copy is about a third of the forward's time; the gathers
   (16 taps x C per bin, from an array larger than the caches) are the rest.

   No ``fastmath``. It used to let LLVM fuse the multiply-adds, but then the kernel gave other
   bits when numba compiled it than when it loaded it from its cache (2026-12-02, the Intel
   Xeon machine: a [200, 64, 7, 7] forward differed in the last bit), so a run's first process
   and a later one (``train --resume``, the second ``make demo``) computed different numbers.
   Without it the two agree (``tests/test_kernel_cache.py``), the forward is as fast (1.44 vs
   1.40 ms for that case, one thread), and it is closer to the reference (3.6e-7 vs 4.8e-7).
"""
import numba
import numpy as np


def nchw_to_nhwc(x):
    """[N, C, H, W] -> a fresh channels-last copy [N, H, W, C]. NumPy's strided copy; tiled
    numba transposes (8 x 8 to 64 x 64 tiles, on 2 threads) measured 2x slower than it here."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


@numba.njit(parallel=True, cache=True)
def _forward_kernel(input_nhwc, roi_batch_ind, roi_bin_grid_h, roi_bin_grid_w, count,
                    y_low, y_high, wy_low, wy_high, x_low, x_high, wx_low, wx_high, output):
    """input_nhwc [N, H, W, C] (channels last) -> output [R, C, S_h, S_w] (NCHW)."""
    R, C, S_h, S_w = output.shape
    for n in numba.prange(R):                      # RoIs are independent: one writer per bin
        b = roi_batch_ind[n]
        output_val = np.empty(C, output.dtype)     # one bin, all channels
        for ph in range(S_h):
            for pw in range(S_w):
                output_val[:] = 0
                for iy in range(roi_bin_grid_h[n]):
                    yl = y_low[n, ph, iy]
                    yh = y_high[n, ph, iy]
                    hy = wy_low[n, ph, iy]
                    ly = wy_high[n, ph, iy]
                    for ix in range(roi_bin_grid_w[n]):
                        xl = x_low[n, pw, ix]
                        xh = x_high[n, pw, ix]
                        w1 = hy * wx_low[n, pw, ix]
                        w2 = hy * wx_high[n, pw, ix]
                        w3 = ly * wx_low[n, pw, ix]
                        w4 = ly * wx_high[n, pw, ix]
                        for c in range(C):         # contiguous in channels-last: SIMD
                            output_val[c] += (w1 * input_nhwc[b, yl, xl, c] + w2 * input_nhwc[b, yl, xh, c]
                                              + w3 * input_nhwc[b, yh, xl, c] + w4 * input_nhwc[b, yh, xh, c])
                for c in range(C):                 # stays inside RoI n's C*S*S block
                    output[n, c, ph, pw] = output_val[c] / count[n]


@numba.njit(parallel=True, cache=True)
def _backward_kernel(grad_output, roi_batch_ind, roi_bin_grid_h, roi_bin_grid_w, count,
                     y_low, y_high, wy_low, wy_high, x_low, x_high, wx_low, wx_high, grad_input):
    R, C, S_h, S_w = grad_output.shape
    for c in numba.prange(C):                      # one thread per channel plane: no races
        for n in range(R):
            b = roi_batch_ind[n]
            for ph in range(S_h):
                for pw in range(S_w):
                    grad_output_this_bin = grad_output[n, c, ph, pw] / count[n]
                    for iy in range(roi_bin_grid_h[n]):
                        yl = y_low[n, ph, iy]
                        yh = y_high[n, ph, iy]
                        gy_low = grad_output_this_bin * wy_low[n, ph, iy]
                        gy_high = grad_output_this_bin * wy_high[n, ph, iy]
                        for ix in range(roi_bin_grid_w[n]):
                            xl = x_low[n, pw, ix]
                            xh = x_high[n, pw, ix]
                            hx = wx_low[n, pw, ix]
                            lx = wx_high[n, pw, ix]
                            grad_input[b, c, yl, xl] += gy_low * hx
                            grad_input[b, c, yl, xh] += gy_low * lx
                            grad_input[b, c, yh, xl] += gy_high * hx
                            grad_input[b, c, yh, xh] += gy_high * lx


def roi_align_forward_numba(input, tables, S_h, S_w):
    """RoIAlign forward. input [N, C, H, W]; ``tables``: the 12 per-RoI sample tables of
    ``mrcnn_np.ops.roi_align.sample_tables`` (batch index, grid sizes, count, y and x taps and
    weights), in that order -> output [R, C, S_h, S_w]."""
    C = input.shape[1]
    R = len(tables[0])
    input_nhwc = nchw_to_nhwc(np.ascontiguousarray(input))              # [N, H, W, C]
    output = np.empty((R, C, S_h, S_w), input.dtype)                     # [R, C, S_h, S_w]
    _forward_kernel(input_nhwc, *tables, output)
    return output


def roi_align_backward_numba(grad_output, tables, input_shape):
    """RoIAlign backward. grad_output [R, C, S_h, S_w], ``tables`` as for the forward ->
    grad_input [N, C, H, W] (fresh)."""
    grad_input = np.zeros(tuple(input_shape), grad_output.dtype)        # [N, C, H, W]
    _backward_kernel(np.ascontiguousarray(grad_output), *tables, grad_input)
    return grad_input
