"""Weight initialisation, as torch and torchvision do it, through an explicit numpy Generator.

Every function returns a float32 array. ``fan_in`` of a weight ``[F, C, kh, kw]`` is
``C*kh*kw`` (the inputs each output sums over) and ``fan_out`` is ``F*kh*kw``; for a linear
weight ``[F, D]`` they are D and F. torch computes them from the shape alone, always reading
axis 1 as "in" (so for a transposed-conv weight ``[C, F, kh, kw]`` fan_in is ``F*kh*kw``);
so do we, which keeps our initial weights distributed exactly as torch's.
"""
import math

import numpy as np


def fans(shape):
    """``(fan_in, fan_out)`` of a weight of ``shape`` (at least 2 axes), torch's rule."""
    if len(shape) < 2:
        raise ValueError(f"fan in/out need a weight with at least 2 axes, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def gain(nonlinearity, a=0.0):
    """torch.nn.init.calculate_gain for the cases used here."""
    if nonlinearity in ("linear", "conv2d", "sigmoid"):
        return 1.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + a * a))
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def kaiming_uniform(shape, rng, a=math.sqrt(5)):
    """torch's default conv/linear weight init: ``kaiming_uniform_(w, a=sqrt(5))``
    (``torch.nn.Conv2d.reset_parameters``). Uniform on [-bound, bound] with
    ``bound = sqrt(3) * gain / sqrt(fan_in)``, gain = sqrt(2 / (1 + a^2)); for a = sqrt(5)
    that is ``bound = 1 / sqrt(fan_in)``."""
    fan_in, _ = fans(shape)
    bound = math.sqrt(3.0) * gain("leaky_relu", a) / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def kaiming_normal(shape, rng, mode="fan_out", nonlinearity="relu"):
    """He et al. 2015 normal init, ``std = gain / sqrt(fan)``; torchvision's ResNet uses
    mode="fan_out", nonlinearity="relu" for its convolutions (``resnet.py``)."""
    fan_in, fan_out = fans(shape)
    fan = {"fan_in": fan_in, "fan_out": fan_out}[mode]
    std = gain(nonlinearity) / math.sqrt(fan)
    return (rng.standard_normal(size=shape) * std).astype(np.float32)


def uniform_bias(fan_in, size, rng):
    """torch's default bias init for conv/linear: uniform on ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``."""
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=size).astype(np.float32)


def normal(shape, rng, std=0.01, mean=0.0):
    """Gaussian init; torchvision's RPN head and box predictor use std 0.01 / 0.001."""
    return (mean + std * rng.standard_normal(size=shape)).astype(np.float32)


def zeros(shape):
    """All zeros, float32 (biases in torchvision's detection heads)."""
    return np.zeros(shape, dtype=np.float32)
