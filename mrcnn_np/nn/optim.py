"""Two optimisers, SGD with momentum and AdamW, and the detection learning-rate schedule.

``SGD.step()`` follows ``torch.optim.SGD`` line by line, so a run here and a run in torch
from the same weights and gradients take the same steps:

    g = grad + weight_decay * p                      # L2 penalty folded into the gradient
    buf = g                        on the first step # momentum buffer starts at the gradient
    buf = momentum * buf + (1 - dampening) * g       afterwards
    g = g + momentum * buf  (nesterov)   or   g = buf
    p = p - lr * g                                   # in place
"""
from bisect import bisect_right
from contextlib import contextmanager

import numpy as np


class SGD:
    """SGD over every parameter of ``module`` (a ``mrcnn_np.nn.modules.Module``).

    ``module.named_parameters()`` is re-read at every step, so parameters replaced by
    ``load_state_dict`` or ``astype`` are still the ones updated. ``lr`` is a plain attribute:
    the training loop sets it from :func:`warmup_multistep_lr` before each step.
    """

    def __init__(self, module, lr, momentum=0.0, weight_decay=0.0, dampening=0.0, nesterov=False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening 0 (as in torch)")
        self.module = module
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.dampening, self.nesterov = dampening, nesterov
        self.buffers = {}                                          # name -> momentum buffer
        self.steps = 0

    def step(self):
        """Update every parameter in place from its accumulated gradient."""
        for name, p, grad in self.module.named_parameters():
            g = grad.astype(p.dtype, copy=True)
            if self.weight_decay != 0:
                g += self.weight_decay * p
            if self.momentum != 0:
                buf = self.buffers.get(name)
                if buf is None:
                    buf = self.buffers[name] = g.copy()
                else:
                    buf *= self.momentum
                    buf += (1 - self.dampening) * g
                g = g + self.momentum * buf if self.nesterov else buf
            p -= self.lr * g
        self.steps += 1

    def zero_grad(self):
        self.module.zero_grad()

    def state_dict(self):
        """``{"steps": 0-d int array, "momentum_buffer.<param name>": array, ...}`` (copies),
        ready for ``np.savez``. Hyper-parameters are not saved: the caller sets them."""
        out = {"steps": np.asarray(self.steps, dtype=np.int64)}
        for name, buf in self.buffers.items():
            out["momentum_buffer." + name] = buf.copy()
        return out

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` saved, so training resumes exactly. A buffer for a
        parameter the module does not have is an error that names it."""
        names = {name: p for name, p, _ in self.module.named_parameters()}
        bufs = {}
        for key, value in state.items():
            if key == "steps":
                continue
            if not key.startswith("momentum_buffer."):
                raise ValueError(f"unexpected optimiser state key {key!r}")
            name = key[len("momentum_buffer."):]
            if name not in names or names[name].shape != np.shape(value):
                raise ValueError(f"momentum buffer {name!r} does not fit the module's parameters")
            bufs[name] = np.array(value, dtype=names[name].dtype, copy=True)
        self.buffers = bufs
        self.steps = int(state["steps"])


class AdamW:
    """AdamW over every parameter of ``module``, ``torch.optim.AdamW`` line by line (its
    default ``amsgrad=False``), with the same ``lr`` attribute and state dict shape as SGD::

        p = p * (1 - lr * weight_decay)                  # decoupled weight decay
        m = beta1 * m + (1 - beta1) * g                  # first moment
        v = beta2 * v + (1 - beta2) * g * g              # second moment
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Each parameter takes a step of about ``lr`` in the direction of its recent gradients,
    whatever the size of those gradients: layers whose gradients are small (the box
    classifier of a model trained from scratch) move as fast as the others. Chapter 10
    compares it with SGD on the demo.
    """

    def __init__(self, module, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 backend="numpy"):
        from ..ops._backend import resolve_backend
        self.module = module
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.buffers = {}                                  # "exp_avg.<name>", "exp_avg_sq.<name>"
        self.steps = 0
        # "numpy": the lines below; "numba"/"auto": the same lines fused into one loop per
        # parameter (kernels/optim_numba.py, the same bits, ~8 ms less a tiny step)
        self.backend = resolve_backend(backend, "AdamW", kernels=("numba",))

    def step(self):
        """Update every parameter in place from its accumulated gradient."""
        if self.backend == "numba":
            from kernels.optim_numba import adamw_step_numba
        b1, b2 = self.betas
        t = self.steps + 1
        step_size = self.lr / (1 - b1 ** t)
        root_bc2 = np.sqrt(1 - b2 ** t)
        for name, p, grad in self.module.named_parameters():
            g = grad.astype(p.dtype, copy=False)
            m = self.buffers.get("exp_avg." + name)
            if m is None:
                m = self.buffers["exp_avg." + name] = np.zeros_like(p)
                self.buffers["exp_avg_sq." + name] = np.zeros_like(p)
            v = self.buffers["exp_avg_sq." + name]
            if self.backend == "numba" and p.dtype == np.float32 and _contiguous(p, g, m, v):
                adamw_step_numba(p, g, m, v, self.lr, self.betas, self.eps, self.weight_decay, t)
                continue
            if self.weight_decay != 0:
                p *= p.dtype.type(1 - self.lr * self.weight_decay)
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            denom = np.sqrt(v) / p.dtype.type(root_bc2) + p.dtype.type(self.eps)
            p -= p.dtype.type(step_size) * m / denom
        self.steps = t

    def zero_grad(self):
        self.module.zero_grad()

    def state_dict(self):
        """``{"steps": 0-d int array, "exp_avg.<name>": m, "exp_avg_sq.<name>": v, ...}``."""
        out = {"steps": np.asarray(self.steps, dtype=np.int64)}
        out.update({k: b.copy() for k, b in self.buffers.items()})
        return out

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`; a key that fits no parameter is an error naming it."""
        names = {name: p for name, p, _ in self.module.named_parameters()}
        bufs = {}
        for key, value in state.items():
            if key == "steps":
                continue
            kind, _, name = key.partition(".")
            if kind not in ("exp_avg", "exp_avg_sq"):
                raise ValueError(f"unexpected optimiser state key {key!r}")
            if name not in names or names[name].shape != np.shape(value):
                raise ValueError(f"optimiser state {key!r} does not fit the module's parameters")
            bufs[key] = np.array(value, dtype=names[name].dtype, copy=True)
        self.buffers = bufs
        self.steps = int(state["steps"])


class WeightEMA:
    """An exponential moving average of a module's parameters (Polyak averaging), kept beside
    the weights that train. After every optimiser step::

        first update:  ema = p                           # the weights after step 1
        afterwards:    d = min(decay, (1 + n) / (10 + n)) # n: updates so far
                       ema = d * ema + (1 - d) * p

    With ``decay`` 0.998 the average remembers about the last 1 / (1 - 0.998) = 500 steps;
    the ramp ``(1 + n) / (10 + n)`` keeps it short at first, so that the random weights of
    step 1 do not linger in it. The average is what a run evaluates and saves: it smooths the
    step-to-step noise of the last few hundred steps, as a lower learning rate would, without
    slowing the training itself. ``torch.optim.swa_utils.AveragedModel`` with this ``d`` as
    its ``avg_fn`` computes the same numbers (tests/test_nn_optim.py).
    """

    def __init__(self, module, decay):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be between 0 and 1, got {decay}")
        self.module, self.decay = module, float(decay)
        self.averages = {}                                 # name -> the average (p's dtype)
        self.updates = 0

    def update(self):
        """Fold the module's current parameters into the average."""
        n = self.updates
        d = min(self.decay, (1 + n) / (10 + n))
        for name, p, _ in self.module.named_parameters():
            e = self.averages.get(name)
            if n == 0 or e is None:
                self.averages[name] = p.copy()
                continue
            e *= e.dtype.type(d)
            e += e.dtype.type(1 - d) * p
        self.updates = n + 1

    @contextmanager
    def applied(self):
        """``with ema.applied():`` the module holds the averages (for evaluating or saving);
        its training weights are put back on leaving, bit for bit."""
        swapped = []
        try:
            for name, p, _ in self.module.named_parameters():
                e = self.averages.get(name)
                if e is not None:
                    kept = p.copy()
                    p[...] = e
                    swapped.append((p, kept))
            yield self.module
        finally:
            for p, kept in swapped:
                p[...] = kept

    def state_dict(self):
        """``{"updates": 0-d int array, "<param name>": average, ...}`` (copies)."""
        out = {"updates": np.asarray(self.updates, dtype=np.int64)}
        out.update({k: e.copy() for k, e in self.averages.items()})
        return out

    def load_state_dict(self, state):
        """Restore :meth:`state_dict`; an average that fits no parameter is an error naming it."""
        names = {name: p for name, p, _ in self.module.named_parameters()}
        averages = {}
        for key, value in state.items():
            if key == "updates":
                continue
            if key not in names or names[key].shape != np.shape(value):
                raise ValueError(f"weight average {key!r} does not fit the module's parameters")
            averages[key] = np.array(value, dtype=names[key].dtype, copy=True)
        self.averages = averages
        self.updates = int(state["updates"])


def warmup_multistep_lr(iteration, base_lr, warmup_iters, warmup_factor, milestones, gamma=0.1):
    """Learning rate at ``iteration`` (0-based) for linear warm-up then step decay.

    Warm-up, as torchvision's detection reference script (``LinearLR(start_factor=
    warmup_factor, total_iters=warmup_iters)``): the factor goes linearly from
    ``warmup_factor`` at iteration 0 to 1 at ``warmup_iters``,
    ``factor = warmup_factor + (1 - warmup_factor) * iteration / warmup_iters``.
    Decay, as ``MultiStepLR``: multiply by ``gamma`` once for every milestone <= iteration.
    Here both count iterations (the reference counts milestones in epochs).
    """
    factor = 1.0
    if iteration < warmup_iters:
        factor = warmup_factor + (1 - warmup_factor) * iteration / warmup_iters
    return base_lr * factor * gamma ** bisect_right(sorted(milestones), iteration)


def _contiguous(*arrays):
    return all(a.flags.c_contiguous for a in arrays)
