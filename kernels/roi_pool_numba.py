"""RoIPool CPU kernels (numba). Reference: ``mrcnn_np/ops/roi_pool.py``.

What each version bought (input [1, 256, 200, 272], 512 RoIs, 7x7; see benchmarks/bench_roi.py):

1. NumPy reference: a Python loop over R * S * S bins, all channels at once per bin -- slow
   (tens of thousands of small NumPy calls), but one readable function.
2. Loop kernel, NCHW, ``prange`` over channels: the bin ranges (``hstart .. wend``) are still
   computed by the NumPy reference (cheap [R, S] arrays, so the rounding cannot drift from
   it), the max loops run here. Per core it does what torchvision's loop does, so on 2 cores
   it was only ~2x faster.
3. Channels-last forward (this file): ``prange`` over RoIs, and for each pixel of a bin the
   innermost loop runs over the C contiguous channels, a compare-and-select that LLVM turns
   into SIMD. The NCHW -> NHWC copy of the input is counted. Output and ``argmax`` are written
   straight into NCHW. The backward stays NCHW with ``prange`` over channels: a thread owns
   whole gradient planes, so the scatter needs no atomics.

Tie rule: identical to the reference and torchvision (strict ``>``, so the first pixel in
row-major order keeps a tied maximum).
"""
import numba
import numpy as np

from kernels.roi_align_numba import nchw_to_nhwc

FLT_MAX = float(np.finfo(np.float32).max)


@numba.njit(parallel=True, cache=True)
def _forward_kernel(input_nhwc, roi_batch_ind, hstart, hend, wstart, wend, output, argmax):
    R, C, S_h, S_w = output.shape
    W = input_nhwc.shape[2]
    for n in numba.prange(R):                       # RoIs are independent
        b = roi_batch_ind[n]
        maxval = np.empty(C, output.dtype)
        maxidx = np.empty(C, np.int64)
        for ph in range(S_h):
            for pw in range(S_w):
                h0 = hstart[n, ph]
                h1 = hend[n, ph]
                w0 = wstart[n, pw]
                w1 = wend[n, pw]
                if h1 <= h0 or w1 <= w0:
                    continue                         # empty bin: stays 0, argmax -1
                maxval[:] = -FLT_MAX
                maxidx[:] = -1
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        for c in range(C):           # contiguous channels: SIMD compare/select
                            v = input_nhwc[b, h, w, c]
                            if v > maxval[c]:        # strict: first max in row-major order wins
                                maxval[c] = v
                                maxidx[c] = h * W + w
                for c in range(C):
                    output[n, c, ph, pw] = maxval[c]
                    argmax[n, c, ph, pw] = maxidx[c]


def roi_pool_forward_numba(input, roi_batch_ind, hstart, hend, wstart, wend, output, argmax):
    """Fill ``output`` and ``argmax`` [R, C, S_h, S_w] (preset to 0 and -1) in place.

    input: [N, C, H, W]; roi_batch_ind: [R]; hstart, hend: [R, S_h]; wstart, wend: [R, S_w].
    """
    _forward_kernel(nchw_to_nhwc(np.ascontiguousarray(input)), roi_batch_ind, hstart, hend,
                    wstart, wend, output, argmax)


@numba.njit(parallel=True, cache=True)
def roi_pool_backward_numba(dout, roi_batch_ind, argmax, dinput):
    """Add ``dout`` [R, C, S_h, S_w] at ``argmax`` into ``dinput`` [N, C, H*W] (zeroed)."""
    R, C, S_h, S_w = dout.shape
    for c in numba.prange(C):                       # one thread per channel plane: no races
        for n in range(R):
            b = roi_batch_ind[n]
            for ph in range(S_h):
                for pw in range(S_w):
                    i = argmax[n, c, ph, pw]
                    if i >= 0:
                        dinput[b, c, i] += dout[n, c, ph, pw]
