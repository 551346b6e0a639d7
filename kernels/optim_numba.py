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
