"""The one backend switch for ops that have kernels.

``backend`` is one of:

- ``"numpy"``: the readable definition, in ``mrcnn_np/ops``; every other backend must agree with it.
- ``"numba"``: ``@numba.njit`` CPU kernels in ``kernels/``.
- ``"cuda"``: ``numba.cuda`` kernels in ``kernels/`` (a real GPU, or numba's CUDA simulator when
  ``NUMBA_ENABLE_CUDASIM=1`` is set before numba.cuda is first imported).
- ``"auto"``: the fastest CPU path, ``"numba"``. (Arrays here live in host memory; moving them
  to a GPU for one op costs more than the op, so "auto" never picks "cuda".)
"""
BACKENDS = ("numpy", "numba", "cuda", "auto")


def resolve_backend(backend: str) -> str:
    """Validate ``backend`` and turn ``"auto"`` into a concrete backend name."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "numba"
    if backend == "cuda":
        cuda_available()  # raises a clear error when there is neither a GPU nor the simulator
    return backend


def cuda_available() -> bool:
    """True if numba.cuda can run kernels (a GPU, or the simulator); otherwise a clear error."""
    try:
        from numba import cuda
    except ImportError as e:  # pragma: no cover
        raise RuntimeError(f"backend='cuda' needs numba-cuda: {e}") from e
    if not cuda.is_available():
        raise RuntimeError(
            "backend='cuda' needs an NVIDIA GPU, or numba's CUDA simulator "
            "(set NUMBA_ENABLE_CUDASIM=1 before importing numba)")
    return True
