"""Atomic files: a checkpoint (or a log, a picture, a results file) is either the old good one
or the new good one, never half of each.

A crash (or Ctrl-C) half-way through writing would leave a truncated file where a good one
was. So every file is written to a temporary file in the same folder, flushed to disk, and
then ``os.replace``-d over the target, which POSIX guarantees is atomic. ``atomic_path`` is
that one mechanism; the writers below (``.npz``, bytes, JSON, PNG) all go through it.

A folder that cannot be written raises ``CannotWrite`` (an ``OSError``) whose message names
the file the user asked for, not the temporary one.
"""
import io
import json
import os
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np


class CannotWrite(OSError):
    """The target of a write cannot be created; ``str(e)`` is one line naming it."""

    def __str__(self):
        return self.strerror


class BadNpzFile(ValueError):
    """An ``.npz`` that cannot be read safely; the message is one line and names the file."""


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; when the block ends without an exception the
    temporary file is flushed to disk and renamed over ``path``, else it is removed.

        with atomic_path("runs/r1/gallery.png") as tmp:
            save_gallery(items, tmp)
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    except OSError as e:
        raise CannotWrite(e.errno, f"{path}: cannot write there ({e.strerror})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the bytes are on disk before the name points at them
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_writable(folder, name=None):
    """Create ``folder`` if needed and make sure a file can be written in it (a command checks
    its ``--out`` before the work, not after). Raises CannotWrite naming the folder, or
    ``name`` (the file the user asked for) when given."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
        os.close(fd)
        os.remove(tmp)
    except OSError as e:
        raise CannotWrite(e.errno, f"{name or folder}: cannot write there ({e.strerror})") from None


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` atomically. Returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_json(path, obj):
    return atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def atomic_save_png(path, image_or_figure):
    """Save a matplotlib Figure, or a uint8 [H, W, 3] array, as a PNG, atomically."""
    buf = io.BytesIO()
    if hasattr(image_or_figure, "savefig"):
        image_or_figure.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    else:
        from PIL import Image
        Image.fromarray(np.asarray(image_or_figure, np.uint8)).save(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


def save_npz_atomic(path, arrays):
    """Write ``arrays`` (name -> ndarray) to ``path`` atomically, without pickle."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})


def load_npz(path):
    """Read an ``.npz`` written by ``save_npz_atomic`` (``allow_pickle=False``).

    Raises BadNpzFile, naming the file and what is wrong, for a file that is not a zip, is
    truncated or damaged, or holds an object array (which only pickle can read)."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            zip_start = f.read(4) == b"PK\x03\x04"
        raise BadNpzFile(f"{path}: truncated .npz (the end of the zip archive is missing)"
                         if zip_start else f"{path}: not an .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:
        if "pickle" in str(e).lower() or "object" in str(e).lower():
            raise BadNpzFile(f"{path}: holds an object array, which only pickle can read; "
                             f"refused") from None
        raise BadNpzFile(f"{path}: damaged .npz ({' '.join(str(e).split())})") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as e:
        raise BadNpzFile(f"{path}: truncated or damaged .npz ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:120]})") from None
