"""Keep the C heap's free top for the next burst instead of handing it back after each one.

glibc gives memory at the top of a heap back to the kernel once more than ``M_TRIM_THRESHOLD``
(128 KiB) of it is free, and grows a heap ``M_TOP_PAD`` (128 KiB) at a time. The data thread's
working set breathes by about that much with every TSO frame (a 64 KiB read, then its ~44
datagrams of ~1.5 KiB each), so with the defaults each frame gave pages back and faulted fresh
ones in again: 10 000-56 000 page faults a second on a TCP sender's agent, in ``sysmalloc``
and in the TAP read's copy. A trim threshold of 8 MiB and a pad of 1 MiB make that 150-300 a
second, and TCP 6-7 % faster (docs/benchmarks.md, "The heap"). The heap then keeps up to a few
MiB it could have returned; the agents' peak RSS did not grow.

Set for the whole agent process at start-up through ``mallopt`` (``ctypes``: stdlib);
``OVERLAY_HEAP_KEEP=0`` leaves the C library's defaults. Anything but glibc on Linux (no
``mallopt``, or no ``ctypes``) keeps its defaults too.
"""

from __future__ import annotations

import os
import sys

#: mallopt(3) parameters (glibc <malloc.h>)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
TRIM_THRESHOLD = 8 << 20
TOP_PAD = 1 << 20

#: whether :func:`keep` took effect in this process
kept = False


def keep(trim: int = TRIM_THRESHOLD, pad: int = TOP_PAD) -> bool:
    """Raise the heap's trim threshold and top pad; returns whether the C library took both."""
    global kept
    if os.environ.get("OVERLAY_HEAP_KEEP", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    kept = bool(mallopt(M_TRIM_THRESHOLD, trim)) and bool(mallopt(M_TOP_PAD, pad))
    return kept
