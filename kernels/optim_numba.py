"""The AdamW update as one fused ``@numba.njit`` loop (reference: ``AdamW.step`` in
``mrcnn_np/nn/optim.py``).

What each version bought
------------------------
1. NumPy (``AdamW.step``, the definition): seven array operations per parameter, each a pass
   through memory with a temporary (``(1 - b1) * g``, ``g * g``, ``sqrt(v)``, ...): about
   8 ms a step for the tiny preset's 1.79 million parameters on one core, while the
   DataParallel workers wait.
2. This kernel: one pass, each element's four numbers read once and updated in registers.
   The arithmetic is the reference's operation for operation, in the parameters' dtype and
   with the constants rounded to it first, as NumPy does with a Python float beside a
   float32 array; no ``fastmath``, so no fused multiply-add: the same bits (tested).

Single-threaded on purpose: it runs in the master process while the workers' cores are
about to be busy again, and numba's thread pool would only compete with them.
"""
import numba
import numpy as np


@numba.njit(cache=True, error_model="numpy")  # x / 0 gives inf, as NumPy; no zero checks,
def _adamw_kernel(p, g, m, v, decay, b1, one_minus_b1, b2, one_minus_b2, step_size,  # so
                  root_bc2, eps):                                           # LLVM vectorises
    for i in range(p.size):
        gi = g[i]
        pi = p[i] * decay                                     # p *= 1 - lr * weight_decay
        mi = m[i] * b1 + one_minus_b1 * gi                    # m = b1 m + (1 - b1) g
        vi = v[i] * b2 + (one_minus_b2 * gi) * gi             # v = b2 v + (1 - b2) g g
        m[i] = mi
        v[i] = vi
        p[i] = pi - (step_size * mi) / (np.sqrt(vi) / root_bc2 + eps)


def adamw_step_numba(p, g, m, v, lr, betas, eps, weight_decay, t):
    """One AdamW step of parameter ``p`` in place (``m``, ``v``: its moments, updated in
    place; ``g``: its gradient; ``t``: the step number, from 1). Every array C-contiguous and
    of ``p``'s dtype. Same numbers as ``AdamW.step``'s NumPy lines."""
    b1, b2 = betas
    f = p.dtype.type
    _adamw_kernel(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
                  f(1 - lr * weight_decay), f(b1), f(1 - b1), f(b2), f(1 - b2),
                  f(lr / (1 - b1 ** t)), f(np.sqrt(1 - b2 ** t)), f(eps))


# numpy's pairwise summation (numpy/_core/src/umath/loops_utils.h.src, ``pairwise_sum``),
# step for step: below 8 numbers a plain loop; up to 128, eight running sums combined as
# ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), then the rest one by one; above 128,
# the two halves (the first a multiple of 8 long) summed on their own and added.
@numba.njit(cache=True)
def _pairwise_sum_of_squares(g, start, n):
    if n < 8:
        res = 0.0
        for i in range(start, start + n):
            x = np.float64(g[i])
            res += x * x
        return res
    if n <= 128:
        r0 = np.float64(g[start]) ** 2
        r1 = np.float64(g[start + 1]) ** 2
        r2 = np.float64(g[start + 2]) ** 2
        r3 = np.float64(g[start + 3]) ** 2
        r4 = np.float64(g[start + 4]) ** 2
        r5 = np.float64(g[start + 5]) ** 2
        r6 = np.float64(g[start + 6]) ** 2
        r7 = np.float64(g[start + 7]) ** 2
        i = 8
        while i < n - (n % 8):
            j = start + i
            r0 += np.float64(g[j]) ** 2
            r1 += np.float64(g[j + 1]) ** 2
            r2 += np.float64(g[j + 2]) ** 2
            r3 += np.float64(g[j + 3]) ** 2
            r4 += np.float64(g[j + 4]) ** 2
            r5 += np.float64(g[j + 5]) ** 2
            r6 += np.float64(g[j + 6]) ** 2
            r7 += np.float64(g[j + 7]) ** 2
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += np.float64(g[start + i]) ** 2
            i += 1
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return (_pairwise_sum_of_squares(g, start, n2)
            + _pairwise_sum_of_squares(g, start + n2, n - n2))


def sum_of_squares(g):
    """``float(np.sum(np.square(g, dtype=np.float64)))`` bit for bit, without the float64
    temporary: each square of a float32 is exact in float64, and the sums are added in
    numpy's pairwise order. ``g`` C-contiguous, float32 or float64. (The gradient norm of
    every training step: 1.8 million numbers, checked before the optimiser step.)"""
    return _pairwise_sum_of_squares(g.reshape(-1), 0, g.size)
