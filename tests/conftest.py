"""Shared test set-up for mrcnn-np.

The oracle rule
---------------
torch and torchvision are the test oracle, never a run-time dependency. A test that needs
them calls ``oracle()`` (or uses the ``torch`` / ``torchvision`` fixtures). When they are
not installed the test is skipped -- unless ``MRCNN_REQUIRE_ORACLE=1`` (set by ``.ci/run``),
in which case it fails, so CI can never pass by skipping.

CUDA kernels
------------
On a machine without an NVIDIA GPU the numba.cuda kernels run in numba's CUDA simulator.
The switch must be made before numba.cuda is first imported, so it happens here, at the top
of the test session. Set ``MRCNN_CUDA=real`` to insist on a real GPU (the device machine).
"""
import os
import shutil

import numpy as np
import pytest

if os.environ.get("MRCNN_CUDA", "") != "real" and shutil.which("nvidia-smi") is None:
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

from hypothesis import HealthCheck, settings  # noqa: E402

# CI draws a fixed sequence of examples (no flaky runs); locally hypothesis explores freely.
settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("ci" if os.environ.get("CI") or os.environ.get("MRCNN_REQUIRE_ORACLE") else "dev")

REQUIRE_ORACLE = os.environ.get("MRCNN_REQUIRE_ORACLE", "") == "1"


def oracle():
    """Return ``(torch, torchvision)``; skip the test if they are missing (fail in CI)."""
    try:
        import torch
        import torchvision
    except ImportError as e:  # pragma: no cover - depends on the machine
        msg = f"oracle (torch/torchvision) not installed: {e}"
        if REQUIRE_ORACLE:
            pytest.fail(msg + " -- MRCNN_REQUIRE_ORACLE=1 forbids skipping", pytrace=False)
        pytest.skip(msg)
    torch.set_num_threads(1)
    return torch, torchvision


@pytest.fixture
def torch():
    return oracle()[0]


@pytest.fixture
def torchvision():
    return oracle()[1]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def cuda_simulated():
    """True when numba.cuda kernels run in the simulator (no GPU here)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "") == "1"
