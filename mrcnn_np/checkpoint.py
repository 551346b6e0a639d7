"""Atomic ``.npz`` files: a checkpoint is either the old good one or the new good one.

A crash (or Ctrl-C) half-way through ``np.savez`` would leave a truncated file where a good
one was. So we write to a temporary file in the same directory, flush it to disk, and then
``os.replace`` it over the target, which POSIX guarantees is atomic.
"""
import os
import tempfile

import numpy as np


def save_npz_atomic(path, arrays):
    """Write ``arrays`` (name -> ndarray) to ``path`` atomically, without pickle."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file owner-only; give it the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_npz(path):
    """Read an ``.npz`` written by ``save_npz_atomic`` (``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
