"""Losses of Mask R-CNN. All take logits (never probabilities) and return ``(loss, cache)``;
``*_backward(dloss, cache)`` returns the gradient for the first input only.

Reductions, as in torch: ``"mean"`` (a 0-d array), ``"sum"`` (a 0-d array) or ``"none"``
(one loss per element). ``dloss`` has the shape of the loss: a scalar for "mean"/"sum".

Empty inputs (the rule)
-----------------------
A mean over nothing is 0/0. torch returns nan there, and by default so do we, so the two
libraries agree number by number. A detector often has nothing to average (an image with no
RoIs, a batch with no positive anchors) and needs a finite loss with zero gradient instead.
Pass ``zero_if_empty=True`` for that: the mean over an empty set is then 0, and its gradient
is an empty (or all-zero) array. "sum" over nothing is 0 in both libraries.
Targets and labels are constants: they receive no gradient.
"""
import numpy as np

from .layers import sigmoid

REDUCTIONS = ("mean", "sum", "none")


def _reduce(per, count, reduction, zero_if_empty):
    """Reduce the per-element losses ``per`` (zeros where ignored) over ``count`` elements."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if reduction == "none":
        return per
    total = per.sum(dtype=per.dtype)
    if reduction == "sum":
        return total
    if count == 0:
        return per.dtype.type(0.0 if zero_if_empty else np.nan)
    return total / per.dtype.type(count)


def _scale(dloss, count, reduction, zero_if_empty, dtype):
    """d(reduced loss) / d(per-element loss): broadcastable against the per-element array."""
    dloss = np.asarray(dloss, dtype=dtype)
    if reduction in ("none", "sum"):
        return dloss
    if count == 0:  # nothing contributed to the loss, so nothing gets a gradient (as in torch)
        return np.zeros_like(dloss)
    return dloss / dtype.type(count)


# -- softmax cross entropy -----------------------------------------------------------------
def cross_entropy_forward(logits, labels, ignore_index=-100, reduction="mean", zero_if_empty=False):
    """Softmax cross entropy (torch's ``F.cross_entropy`` without class weights or smoothing).

    Inputs
        logits : [R, K] float;  labels : [R] int in [0, K) or ``ignore_index``
    Returns
        loss : scalar for "mean"/"sum"; [R] for "none" (0 at ignored rows);  cache
    per-row loss = logsumexp(logits[r]) - logits[r, labels[r]], computed with the max
    subtracted so exp never overflows. "mean" divides by the number of rows that are not
    ignored (torch's rule); with no such rows see the module docstring (nan, or 0).
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels).astype(np.int64)
    R, K = logits.shape
    keep = labels != ignore_index                                  # [R]
    safe = np.where(keep, labels, 0)                               # [R]
    if np.any((safe < 0) | (safe >= K)):
        raise ValueError(f"labels must lie in [0, {K}) or equal ignore_index={ignore_index}")
    m = logits.max(axis=1, keepdims=True) if K else np.zeros((R, 1), logits.dtype)  # [R, 1]
    z = logits - m                                                 # [R, K], max entry 0
    ez = np.exp(z)                                                 # [R, K]
    sez = ez.sum(axis=1, keepdims=True)                            # [R, 1]
    logp = z - np.log(sez)                                         # [R, K] log-softmax
    per = -logp[np.arange(R), safe] * keep                         # [R]
    count = int(keep.sum())
    loss = _reduce(per, count, reduction, zero_if_empty)
    cache = (ez / sez, safe, keep, count, reduction, zero_if_empty)
    return loss, cache


def cross_entropy_backward(dloss, cache):
    """``dlogits[r] = (softmax(logits[r]) - onehot(labels[r])) * dloss_r``, 0 on ignored rows,
    with ``dloss_r = dloss / count`` for "mean". Returns dlogits : [R, K]."""
    p, safe, keep, count, reduction, zero_if_empty = cache
    R = p.shape[0]
    d = p.copy()                                                   # [R, K]
    d[np.arange(R), safe] -= 1
    d *= keep[:, None]
    s = _scale(dloss, count, reduction, zero_if_empty, p.dtype)
    return d * (s[:, None] if np.ndim(s) == 1 else s)


# -- sigmoid binary cross entropy ------------------------------------------------------------
def bce_with_logits_forward(logits, targets, weight=None, reduction="mean", zero_if_empty=False):
    """Binary cross entropy on logits (``F.binary_cross_entropy_with_logits``, no pos_weight).

    Inputs
        logits : any shape;  targets : same shape, in [0, 1];  weight : broadcastable, or None
    Returns
        loss : scalar for "mean"/"sum", logits' shape for "none";  cache
    per-element loss = w * (max(x, 0) - x*y + log(1 + exp(-|x|))), which equals
    ``-w * (y log s(x) + (1 - y) log(1 - s(x)))`` but never takes the log of 0 nor overflows.
    "mean" divides by the number of elements of ``logits`` (weights do not change the count).
    """
    x = np.asarray(logits)
    y = np.asarray(targets, dtype=x.dtype)
    per = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))  # same shape as x
    if weight is not None:
        per = per * np.asarray(weight, dtype=x.dtype)
    per = np.broadcast_to(per, x.shape).astype(x.dtype, copy=False)
    loss = _reduce(per, x.size, reduction, zero_if_empty)
    return loss, (x, y, weight, reduction, zero_if_empty)


def bce_with_logits_backward(dloss, cache):
    """``dlogits = w * (sigmoid(x) - y) * dloss_elem``. Returns dlogits (logits' shape)."""
    x, y, weight, reduction, zero_if_empty = cache
    d = sigmoid(x) - y
    if weight is not None:
        d = d * np.asarray(weight, dtype=x.dtype)
    return (d * _scale(dloss, x.size, reduction, zero_if_empty, x.dtype)).astype(x.dtype, copy=False)


# -- smooth L1 and L1 --------------------------------------------------------------------------
def smooth_l1_forward(input, target, beta=1.0, reduction="mean", zero_if_empty=False):
    """Smooth L1 (Huber-like) loss, ``F.smooth_l1_loss`` semantics.

    With d = input - target:  0.5 * d**2 / beta  where |d| < beta,  |d| - 0.5 * beta elsewhere.
    ``beta = 0`` is plain L1. torchvision's RPN and box head use beta = 1/9 (Fast R-CNN's
    smooth L1 scaled down, ``rpn.py``/``roi_heads.py``).
    Inputs   input, target : same shape.  Returns loss, cache.
    """
    x = np.asarray(input)
    d = x - np.asarray(target, dtype=x.dtype)
    ad = np.abs(d)
    if beta == 0:
        per = ad
    else:
        per = np.where(ad < beta, 0.5 * d * d / x.dtype.type(beta), ad - x.dtype.type(0.5 * beta))
    per = per.astype(x.dtype, copy=False)
    loss = _reduce(per, x.size, reduction, zero_if_empty)
    return loss, (d, beta, reduction, zero_if_empty)


def smooth_l1_backward(dloss, cache):
    """``d/dinput = d / beta`` where |d| < beta, ``sign(d)`` elsewhere (sign(0) = 0).
    Returns dinput (input's shape); the target gets no gradient."""
    d, beta, reduction, zero_if_empty = cache
    if beta == 0:
        g = np.sign(d)
    else:
        g = np.where(np.abs(d) < beta, d / d.dtype.type(beta), np.sign(d))
    return (g * _scale(dloss, d.size, reduction, zero_if_empty, d.dtype)).astype(d.dtype, copy=False)


def l1_forward(input, target, reduction="mean", zero_if_empty=False):
    """``|input - target|`` (``F.l1_loss``). Returns loss, cache."""
    x = np.asarray(input)
    d = x - np.asarray(target, dtype=x.dtype)
    loss = _reduce(np.abs(d), x.size, reduction, zero_if_empty)
    return loss, (d, reduction, zero_if_empty)


def l1_backward(dloss, cache):
    """``sign(input - target) * dloss`` with sign(0) = 0, torch's subgradient at a tie."""
    d, reduction, zero_if_empty = cache
    return (np.sign(d) * _scale(dloss, d.size, reduction, zero_if_empty, d.dtype)).astype(
        d.dtype, copy=False)
