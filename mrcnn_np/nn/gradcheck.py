"""Central finite differences for gradient checks (float64): one definition for the tests
and the chapters.

``numerical_grad(f, x, dout)`` estimates ``d sum(dout * f(x)) / dx`` one entry at a time:

    (sum(dout * f(x + h e_i)) - sum(dout * f(x - h e_i))) / (2 h)

Its error is O(h^2) from the Taylor series plus O(eps / h) from rounding; h = 1e-6 in float64
leaves about 1e-8 relative error on smooth functions. ``x`` is perturbed in place and restored,
so ``f`` must read ``x`` each time it is called (a closure over the array is fine).
"""
import numpy as np


def numerical_grad(f, x, dout, h=1e-6):
    """Return an array like ``x``: the finite-difference gradient of ``sum(dout * f(x))``."""
    assert x.dtype == np.float64, "gradient checks run in float64"
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)  # views: writing flat changes x
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = np.sum(dout * f(x))
        flat[i] = old - h
        fm = np.sum(dout * f(x))
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * h)
    return grad


def rel_error(a, b):
    """``max|a - b| / max(max|a|, max|b|, 1e-12)``: the worst entry's error relative to the
    largest gradient entry (entry-wise ratios blow up where a gradient is nearly 0)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-12))
