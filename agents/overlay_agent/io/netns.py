"""Network namespaces: create, enter (per thread), delete, and run iproute2 in them.

A thread can enter another network namespace with setns(2); a socket keeps the namespace it was
created in for its whole life. So the agent opens the sockets of an endpoint by entering its
namespace for the length of the ``socket()`` call and coming straight back.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import subprocess
from typing import Iterator, List, Optional

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

_libc: Optional[ctypes.CDLL] = None


class NetnsError(RuntimeError):
    """A namespace or iproute2 operation failed; the message says which and why."""


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns failed: {os.strerror(err)}")


def netns_path(name: str) -> str:
    return os.path.join(NETNS_RUN_DIR, name)


def enter(name_or_path: str) -> None:
    """Move the calling thread (and what it starts later) into a namespace for good."""
    path = name_or_path if "/" in name_or_path else netns_path(name_or_path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise NetnsError(f"cannot open network namespace {path}: {e.strerror}") from e
    try:
        _setns(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the body with the calling thread inside namespace ``name``, then come back."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        enter(name)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def ip(*args: str, netns: Optional[str] = None, check: bool = True) -> str:
    """Run ``ip [-n NETNS] ARGS`` and return its output; :class:`NetnsError` says what failed."""
    cmd: List[str] = ["ip"]
    if netns:
        cmd += ["-n", netns]
    cmd += list(args)
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
        )
    except FileNotFoundError as e:
        raise NetnsError("iproute2 ('ip') is not installed on this host") from e
    except subprocess.TimeoutExpired as e:
        raise NetnsError(f"'{' '.join(cmd)}' timed out") from e
    if check and proc.returncode != 0:
        raise NetnsError(f"'{' '.join(cmd)}' failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def add(name: str) -> None:
    ip("netns", "add", name)


def delete(name: str) -> bool:
    """Delete a namespace if it exists; True when it did."""
    if not os.path.exists(netns_path(name)):
        return False
    ip("netns", "delete", name, check=False)
    return True


def write_sysctl(key: str, value: str, netns: Optional[str] = None) -> None:
    """Set a sysctl (``net.ipv4.ip_forward``) in this thread's namespace or in ``netns``."""
    path = "/proc/sys/" + key.replace(".", "/")
    ctx = inside(netns) if netns else contextlib.nullcontext()
    with ctx, open(path, "w") as f:
        f.write(value)
