"""``parallel.keep_freed_memory``: the one-process trainer's malloc settings.

Each case runs in a fresh interpreter, since mallopt changes the whole process and glibc reads
the MALLOC_* variables only when a process starts.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mrcnn_np.parallel import WORKER_MALLOC

ROOT = Path(__file__).resolve().parents[1]
GLIBC = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None

# glibc's own account of its memory (mallinfo2, or mallinfo before glibc 2.33): hblkhd, the
# bytes in chunks mapped on their own; fordblks, the free bytes it keeps in its heap. A 20 MiB
# array is over glibc's default threshold (128 KiB): it gets its own mapping, handed back to
# the system when freed. With the settings (threshold 32 MiB) it comes from the heap, and once
# freed the heap keeps it (trim threshold 256 MiB), ready for the next step's arrays.
PROBE = """
import ctypes, json, sys
import numpy as np
from mrcnn_np.parallel import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else {}
libc = ctypes.CDLL("libc.so.6")
info, field = (libc.mallinfo2, ctypes.c_size_t) if hasattr(libc, "mallinfo2") else \
    (libc.mallinfo, ctypes.c_int)
class Info(ctypes.Structure):
    _fields_ = [(n, field) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                     "fsmblks", "uordblks", "fordblks", "keepcost")]
info.restype = Info
a = np.ones(5 << 20, np.float32)          # 20 MiB, touched
mapped = info().hblkhd
del a
print(json.dumps({"applied": applied, "mapped": mapped, "kept_free": info().fordblks}))
"""


def probe(mode, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, env=dict(clean, **env),
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's; elsewhere the function does nothing")
def test_applies_the_worker_settings_and_the_freed_memory_is_reused():
    default = probe("plain")
    kept = probe("keep")
    assert kept["applied"] == WORKER_MALLOC
    mib = 1 << 20
    assert default["mapped"] >= 20 * mib and default["kept_free"] < 20 * mib  # mapped, returned
    assert kept["mapped"] < 20 * mib and kept["kept_free"] >= 20 * mib      # heap, kept


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's; elsewhere the function does nothing")
def test_a_variable_the_user_set_is_left_alone():
    r = probe("keep", MALLOC_TOP_PAD_="0")
    assert r["applied"] == {k: v for k, v in WORKER_MALLOC.items() if k != "MALLOC_TOP_PAD_"}
