"""The run prefix: every namespace, link, TAP, process, nft table and temp file of a run carries it.

A prefix is ``ov`` and six hex digits (``ov3fa9c1``): short enough that ``<prefix>t12`` fits a
Linux interface name (15 bytes), and unlikely to meet another run's.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
from typing import Iterable, List, Optional

PREFIX_RE = re.compile(r"^ov[0-9a-f]{6}$")
ANY_PREFIX_RE = re.compile(r"^(ov[0-9a-f]{6})-")


def new_prefix() -> str:
    return "ov" + secrets.token_hex(3)


def check_prefix(prefix: str) -> str:
    if not PREFIX_RE.match(prefix):
        raise ValueError(f"run prefix {prefix!r} must look like 'ov' + 6 hex digits")
    return prefix


def namespaces(prefix: str) -> List[str]:
    """Network namespaces of the run (``/run/netns/<prefix>-*``)."""
    try:
        return sorted(n for n in os.listdir("/run/netns")
                      if n.startswith(prefix + "-" if prefix else ""))
    except OSError:
        return []


def processes(prefix: str) -> List[int]:
    """Processes whose command line names the run prefix (agents, sshd, iperf3 of the run)."""
    found = []
    me = os.getpid()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if prefix.encode() in cmd:
            found.append(int(pid))
    return found


def kill_processes(prefix: str, spare: Iterable[Optional[int]] = ()) -> List[int]:
    """SIGKILL the run's processes, except ``spare`` (e.g. the controller, whose command line
    names the prefix when it was given with ``--overlay-prefix``)."""
    keep = set(spare)
    pids = [p for p in processes(prefix) if p not in keep]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return pids
