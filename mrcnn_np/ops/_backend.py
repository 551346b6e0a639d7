"""The one backend switch for ops that have kernels.

``backend`` is one of:

- ``"numpy"``: the readable definition, in ``mrcnn_np/ops``; every other backend must agree with it.
- ``"numba"``: ``@numba.njit`` CPU kernels in ``kernels/``.
- ``"cuda"``: ``numba.cuda`` kernels in ``kernels/`` (a real GPU, or numba's CUDA simulator when
  ``NUMBA_ENABLE_CUDASIM=1`` is set before numba.cuda is first imported).
- ``"auto"``: the fastest CPU kernel the op has (``"numba"``), else ``"numpy"``. (Arrays here
  live in host memory; moving them to a GPU for one op costs more than the op, so "auto"
  never picks "cuda".)

Every op that takes ``backend`` defaults to ``DEFAULT_BACKEND`` and states which kernels it
has; asking an op for a kernel it lacks raises ``BackendUnavailable`` (a ``ValueError``), as
does ``"cuda"`` on a machine with neither a GPU nor the simulator. ``backend="numpy"`` runs
no kernel anywhere (``tests/test_backend.py`` checks that for a whole training step and a
prediction).
"""
BACKENDS = ("numpy", "numba", "cuda", "auto")
DEFAULT_BACKEND = "auto"
KERNELS = ("numba", "cuda")  # what a kernel may be written in


class BackendUnavailable(ValueError):
    """The op has no kernel for the backend asked for, or the kernel cannot run here."""


def resolve_backend(backend: str, op: str = "this op", kernels=KERNELS) -> str:
    """Validate ``backend`` for an op that has ``kernels`` and return a concrete name.

    ``"auto"`` becomes ``"numba"`` if the op has a numba kernel, else ``"numpy"``. A backend the
    op has no kernel for raises ``BackendUnavailable`` naming the op and what it does have.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "numba" if "numba" in kernels else "numpy"
    if backend != "numpy" and backend not in kernels:
        have = ", ".join(repr(b) for b in ("numpy",) + tuple(kernels))
        raise BackendUnavailable(f"{op} has no {backend.upper()} kernel; use backend={have} "
                                 f"or 'auto'")
    if backend == "cuda":
        cuda_available()  # raises a clear error when there is neither a GPU nor the simulator
    return backend


def cuda_available() -> bool:
    """True if numba.cuda can run kernels (a GPU, or the simulator); else BackendUnavailable."""
    try:
        from numba import cuda
    except ImportError as e:  # pragma: no cover
        raise BackendUnavailable(f"backend='cuda' needs numba-cuda: {e}") from e
    if not cuda.is_available():
        raise BackendUnavailable(
            "backend='cuda' needs an NVIDIA GPU, or numba's CUDA simulator "
            "(set NUMBA_ENABLE_CUDASIM=1 before importing numba)")
    return True
