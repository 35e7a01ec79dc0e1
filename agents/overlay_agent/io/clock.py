"""The host's wall clock and whether the kernel considers it synchronised (``adjtimex``).

Cluster members compare wall-clock times: TLS between them (Swarm's mutual TLS, Kubernetes,
etcd) checks certificate validity against it, etcd warns about clock drift between peers past
a second, and this run's own Raft transport refuses a peer whose HELLO is more than 120 s
away from its clock. The controller compares each agent's :func:`now` with its own.

:func:`sync_state` reads the kernel's NTP state read-only (``adjtimex`` with no modes, what
``timedatectl`` shows as "System clock synchronized"): an NTP daemon (chrony, ntpd,
systemd-timesyncd) that disciplines the clock clears ``STA_UNSYNC``; without one the clock
drifts, seconds a day on many machines.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Dict

#: adjtimex(2) status bit: the clock is not synchronised
STA_UNSYNC = 0x0040
#: adjtimex(2) return value: the clock is not synchronised
TIME_ERROR = 5


def now() -> float:
    """Seconds since the epoch by this host's clock."""
    return time.time()


def sync_state() -> Dict[str, Any]:
    """``{"synchronised": bool, "maxerror_ms": float, "esterror_ms": float}`` from the kernel,
    or ``{"error": ...}`` where it cannot be read (not Linux, no libc)."""
    if not sys.platform.startswith("linux"):
        return {"error": f"adjtimex is Linux-only (this is {sys.platform})"}
    try:
        import ctypes

        class Timex(ctypes.Structure):  # struct timex, <sys/timex.h>
            _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long),
                        ("freq", ctypes.c_long), ("maxerror", ctypes.c_long),
                        ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                        ("constant", ctypes.c_long), ("precision", ctypes.c_long),
                        ("tolerance", ctypes.c_long), ("time_sec", ctypes.c_long),
                        ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
                        ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long),
                        ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
                        ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
                        ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long),
                        ("tai", ctypes.c_int), ("_reserved", ctypes.c_int * 11)]

        tx = Timex()  # modes 0: read only
        state = ctypes.CDLL(None, use_errno=True).adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError, ImportError) as e:
        return {"error": f"adjtimex: {e}"}
    if state < 0:
        return {"error": f"adjtimex failed (errno {ctypes.get_errno()})"}
    return {"synchronised": state != TIME_ERROR and not tx.status & STA_UNSYNC,
            "maxerror_ms": tx.maxerror / 1000.0, "esterror_ms": tx.esterror / 1000.0}
