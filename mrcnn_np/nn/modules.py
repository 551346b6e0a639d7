"""Thin layer objects: they hold parameters and compose the ops of ``mrcnn_np.nn``.

A layer keeps no activations. ``forward(x) -> (out, cache)`` returns the cache explicitly and
``backward(dout, cache) -> dx`` takes it back, so a student can hold every array in hand.
Parameter gradients are *accumulated* into ``layer.grads`` (a layer such as the RPN head is
applied to five FPN levels, and each application adds its share); ``zero_grad()`` clears them.

Names of parameters and buffers follow torchvision's ``state_dict`` keys (``weight``, ``bias``,
``running_mean``, ...), and a parent's children are named as torchvision names its submodules,
so that importing torchvision weights is a table of renames, not a translation.
"""
import contextlib

import numpy as np

from ..ops._backend import DEFAULT_BACKEND
from . import init
from .conv import (conv2d_backward, conv2d_forward, conv_transpose2d_backward,
                   conv_transpose2d_forward)
from .layers import (batchnorm2d_backward, batchnorm2d_forward, frozen_batchnorm2d_backward,
                     frozen_batchnorm2d_forward, groupnorm_backward, groupnorm_forward,
                     linear_backward, linear_forward, relu_backward,
                     relu_forward)


class Module:
    """Base class: a tree of named parameters, buffers and children.

    params  : name -> ndarray, trained by the optimiser
    grads   : name -> ndarray, same shapes as params, accumulated by backward()
    buffers : name -> ndarray, state that is saved but not trained (BN running stats)
    """

    def __init__(self):
        object.__setattr__(self, "params", {})
        object.__setattr__(self, "grads", {})
        object.__setattr__(self, "buffers", {})
        object.__setattr__(self, "children", {})
        object.__setattr__(self, "training", True)
        # keep_cache=False (only inside ``with no_cache():``): forward returns no cache
        # (inference; a conv's cache holds its im2col matrix, hundreds of MB at 800 px).
        object.__setattr__(self, "keep_cache", True)
        object.__setattr__(self, "requires_grad", True)  # False: params frozen (see requires_grad_)

    def __setattr__(self, name, value):
        if isinstance(value, Module):
            self.children[name] = value
        object.__setattr__(self, name, value)

    def add_param(self, name, value):
        self.params[name] = np.asarray(value)
        self.grads[name] = np.zeros_like(self.params[name])

    def add_buffer(self, name, value):
        self.buffers[name] = np.asarray(value)

    def add_weight_and_bias(self, shape, bias, rng, init_fn):
        """``weight`` of ``shape`` (torch's default Kaiming-uniform unless ``init_fn``) and, if
        ``bias``, a zero ``bias`` with one entry per output channel."""
        rng = rng if rng is not None else np.random.default_rng(0)
        self.add_param("weight", init_fn(shape, rng) if init_fn is not None
                       else init.kaiming_uniform(shape, rng))
        if bias:
            n_out = shape[1] if isinstance(self, ConvTranspose2d) else shape[0]
            self.add_param("bias", np.zeros(n_out, np.float32))

    def accumulate(self, dw, db):
        """Add one application's weight and bias gradients (layers can be applied repeatedly)."""
        self.grads["weight"] += dw
        if "bias" in self.params:
            self.grads["bias"] += db

    # -- the tree ------------------------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self.children.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self):
        """Yield ``(qualified_name, param, grad)`` for every trainable parameter; the params of a
        module frozen with ``requires_grad_(False)`` are left out (they stay in ``state_dict``)."""
        for mname, m in self.named_modules():
            if not m.requires_grad:
                continue
            for pname, p in m.params.items():
                yield (f"{mname}.{pname}" if mname else pname), p, m.grads[pname]

    def zero_grad(self):
        for _, _, g in self.named_parameters():
            g[...] = 0

    def requires_grad_(self, flag=True):
        """Freeze (False) or unfreeze (True) this module and all below it, as torch's
        ``requires_grad_``: frozen params are not yielded by ``named_parameters`` (so the optimiser
        never sees them), and a frozen module's backward need not be called."""
        for _, m in self.named_modules():
            object.__setattr__(m, "requires_grad", bool(flag))
        return self

    def train(self, mode=True):
        for _, m in self.named_modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    @contextlib.contextmanager
    def no_cache(self):
        """``with model.no_cache(): ...``: inside, the weight layers below return ``None`` for
        their cache (as ``torch.no_grad``). For inference, where nothing runs backward: each
        layer's im2col matrix is freed as soon as the layer is done. The old settings come
        back on exit, also after an error."""
        saved = [(m, m.keep_cache) for _, m in self.named_modules()]
        for m, _ in saved:
            object.__setattr__(m, "keep_cache", False)
        try:
            yield self
        finally:
            for m, keep in saved:
                object.__setattr__(m, "keep_cache", keep)

    def set_backend(self, backend):
        """Which kernels every convolution below uses for its im2col/col2im copies: "numpy" |
        "numba" | "auto" (``cfg.backend``; the model sets it). The numbers are the same."""
        for _, m in self.named_modules():
            if isinstance(m, (Conv2d, ConvTranspose2d)):
                object.__setattr__(m, "backend", backend)
        return self

    def astype(self, dtype):
        """Cast every parameter, gradient and floating buffer (float64 for gradient checks)."""
        for _, m in self.named_modules():
            for k in m.params:
                m.params[k] = m.params[k].astype(dtype)
                m.grads[k] = np.zeros_like(m.params[k])
            for k, b in m.buffers.items():
                if np.issubdtype(b.dtype, np.floating):
                    m.buffers[k] = b.astype(dtype)
        return self

    # -- saving and loading ----------------------------------------------------------------
    def state_dict(self):
        """Flat ``{qualified_name: array}`` of parameters and buffers (copies)."""
        out = {}
        for mname, m in self.named_modules():
            for k, v in list(m.params.items()) + list(m.buffers.items()):
                out[f"{mname}.{k}" if mname else k] = v.copy()
        return out

    def load_state_dict(self, state, strict=True):
        """Copy arrays into this module. A missing, unexpected or mis-shaped tensor is an error
        that names every offending key (so loading weights of another architecture fails
        loudly, before anything is changed)."""
        own = {}
        for mname, m in self.named_modules():
            for store in (m.params, m.buffers):
                for k in store:
                    own[f"{mname}.{k}" if mname else k] = (store, k)
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        bad_shape = sorted(f"{k}: expected {own[k][0][own[k][1]].shape}, got {np.shape(state[k])}"
                           for k in set(own) & set(state)
                           if own[k][0][own[k][1]].shape != np.shape(state[k]))
        problems = []
        if bad_shape:
            problems.append("shape mismatch for " + "; ".join(bad_shape[:10])
                            + (f" (+{len(bad_shape) - 10} more)" if len(bad_shape) > 10 else ""))
        if strict and missing:
            problems.append(f"missing {len(missing)} tensors, e.g. {', '.join(missing[:5])}")
        if strict and unexpected:
            problems.append(f"unexpected {len(unexpected)} tensors, e.g. {', '.join(unexpected[:5])}")
        if problems:
            raise ValueError("state dict does not fit this model: " + " | ".join(problems))
        for k, (store, name) in own.items():
            if k in state:
                store[name] = np.array(state[k], dtype=store[name].dtype, copy=True)
        for _, m in self.named_modules():
            for k in m.params:
                if m.grads[k].shape != m.params[k].shape or m.grads[k].dtype != m.params[k].dtype:
                    m.grads[k] = np.zeros_like(m.params[k])


class Conv2d(Module):
    """2-D convolution, weight ``[F, C, kh, kw]`` as torch stores it."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 rng=None, init_fn=None):
        super().__init__()
        self.add_weight_and_bias((out_channels, in_channels, kernel_size, kernel_size), bias, rng,
                                 init_fn)
        self.stride, self.padding = stride, padding
        self.backend = DEFAULT_BACKEND  # who copies im2col/col2im (set_backend); same numbers

    def forward(self, x):
        out, cache = conv2d_forward(x, self.params["weight"], self.params.get("bias"),
                                    self.stride, self.padding, self.backend,
                                    keep_cols=self.keep_cache)
        return out, (cache if self.keep_cache else None)

    def backward(self, dout, cache, need_dx=True):
        """Accumulates dw, db; returns dx (None with ``need_dx=False``: nothing below uses it)."""
        dx, dw, db = conv2d_backward(dout, cache, need_dx=need_dx)
        self.accumulate(dw, db)
        return dx


class ConvTranspose2d(Module):
    """Transposed convolution, weight ``[C, F, kh, kw]`` as torch stores it."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 rng=None, init_fn=None):
        super().__init__()
        self.add_weight_and_bias((in_channels, out_channels, kernel_size, kernel_size), bias, rng,
                                 init_fn)
        self.stride, self.padding = stride, padding
        self.backend = DEFAULT_BACKEND  # who does col2im (set_backend); same numbers

    def forward(self, x):
        out, cache = conv_transpose2d_forward(x, self.params["weight"], self.params.get("bias"),
                                              self.stride, self.padding, self.backend)
        return out, (cache if self.keep_cache else None)

    def backward(self, dout, cache):
        dx, dw, db = conv_transpose2d_backward(dout, cache)
        self.accumulate(dw, db)
        return dx


class Linear(Module):
    """Fully connected layer, weight ``[F, D]`` as torch stores it: ``out = x @ W.T + b``."""

    def __init__(self, in_features, out_features, bias=True, rng=None, init_fn=None):
        super().__init__()
        self.add_weight_and_bias((out_features, in_features), bias, rng, init_fn)

    def forward(self, x):
        out, cache = linear_forward(x, self.params["weight"], self.params.get("bias"))
        return out, (cache if self.keep_cache else None)

    def backward(self, dout, cache):
        dx, dw, db = linear_backward(dout, cache)
        self.accumulate(dw, db)
        return dx


class Identity(Module):
    """Passes its input through (the "no normalization" choice of a norm slot)."""

    def forward(self, x):
        return x, None

    def backward(self, dout, cache):
        return dout


class ReLU(Module):
    def forward(self, x):
        return relu_forward(x, self.keep_cache)

    def backward(self, dout, cache):
        return relu_backward(dout, cache)


class BatchNorm2d(Module):
    """Trainable batch norm; batch statistics in training, running statistics in eval."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.add_param("weight", np.ones(num_features, np.float32))
        self.add_param("bias", np.zeros(num_features, np.float32))
        self.add_buffer("running_mean", np.zeros(num_features, np.float32))
        self.add_buffer("running_var", np.ones(num_features, np.float32))
        self.eps, self.momentum = eps, momentum

    def forward(self, x):
        return batchnorm2d_forward(x, self.params["weight"], self.params["bias"],
                                   self.buffers["running_mean"], self.buffers["running_var"],
                                   training=self.training, momentum=self.momentum, eps=self.eps)

    def backward(self, dout, cache):
        dx, dgamma, dbeta = batchnorm2d_backward(dout, cache)
        self.grads["weight"] += dgamma
        self.grads["bias"] += dbeta
        return dx


class FrozenBatchNorm2d(Module):
    """Batch norm with fixed statistics and affine parameters (torchvision.ops.FrozenBatchNorm2d).

    Detection backbones freeze BN because a detection batch (1-2 images per GPU) is too small
    to estimate statistics. Everything here is a buffer: nothing is trained, only dx flows.
    """

    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.add_buffer("weight", np.ones(num_features, np.float32))
        self.add_buffer("bias", np.zeros(num_features, np.float32))
        self.add_buffer("running_mean", np.zeros(num_features, np.float32))
        self.add_buffer("running_var", np.ones(num_features, np.float32))
        self.eps = eps

    def forward(self, x):
        b = self.buffers
        return frozen_batchnorm2d_forward(x, b["weight"], b["bias"], b["running_mean"],
                                          b["running_var"], eps=self.eps)

    def backward(self, dout, cache):
        return frozen_batchnorm2d_backward(dout, cache)


class GroupNorm(Module):
    """Group norm (torch.nn.GroupNorm with ``affine=True``): per image, over groups of channels.

    ``num_channels`` = C split into ``num_groups`` = G groups; params ``weight`` (ones) and
    ``bias`` (zeros), [C] each, as torch initialises and names them; no buffers. The same
    computation in training and evaluation, so small batches do no harm (Wu & He, 2018).
    """

    def __init__(self, num_groups, num_channels, eps=1e-5):
        super().__init__()
        if num_groups < 1 or num_channels % num_groups:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups})")
        self.add_param("weight", np.ones(num_channels, np.float32))
        self.add_param("bias", np.zeros(num_channels, np.float32))
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps

    def forward(self, x):
        return groupnorm_forward(x, self.params["weight"], self.params["bias"], self.num_groups,
                                 eps=self.eps)

    def backward(self, dout, cache):
        dx, dgamma, dbeta = groupnorm_backward(dout, cache)
        self.grads["weight"] += dgamma
        self.grads["bias"] += dbeta
        return dx


class Sequential(Module):
    """Children named "0", "1", ... as torch.nn.Sequential names them."""

    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            setattr(self, str(i), layer)

    def __iter__(self):
        return iter(self.children.values())

    def __getitem__(self, i):
        return self.children[str(i)]

    def __len__(self):
        return len(self.children)

    def forward(self, x):
        caches = []
        for layer in self:
            x, c = layer.forward(x)
            caches.append(c)
        return x, caches

    def backward(self, dout, caches):
        for layer, c in zip(reversed(list(self)), reversed(caches)):
            dout = layer.backward(dout, c)
        return dout
