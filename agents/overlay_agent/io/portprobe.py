"""Underlay port probes from the host namespace: UDP probe datagrams, TCP connects, listeners.

The agent runs in its host's network namespace, so these sockets see exactly the underlay path
the VTEP's traffic takes. The bytes of a UDP probe come from :mod:`overlay_agent.core.probelog`.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from typing import Any, Dict, List, Optional, Tuple

from overlay_agent.core import probelog

#: connect() outcomes, from the strongest evidence of a working path to the weakest
OPEN = "open"              # handshake completed: the port is reachable and something listens
REFUSED = "refused"        # a RST came back: the host (or a reject rule) answered, nobody listens
TIMEOUT = "timeout"        # no answer at all: a firewall drops the SYN (filtered) or the path
UNREACHABLE = "unreachable"  # an ICMP error came back (host/network unreachable, prohibited)
ERROR = "error"            # our own side failed (no route, bad address)

_UNREACH = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM}


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def send_udp(src: str, dst: str, port: int, probe_id: str, kind: str, count: int = 3,
             interval: float = 0.01, size: int = 96) -> Dict[str, Any]:
    """Send ``count`` probes of ``kind`` (``vxlan`` or ``udp``) from ``src`` to ``dst:port``.

    The socket is bound to ``src`` (the VTEP's underlay address) so the receiver sees a member
    VTEP as the sender; the source port is ephemeral, as a kernel VTEP's is.
    """
    build = probelog.vxlan_probe if kind == probelog.KIND_VXLAN else probelog.raw_probe
    if kind not in (probelog.KIND_VXLAN, probelog.KIND_RAW):
        raise ValueError(f"probe kind {kind!r} is not 'vxlan' or 'udp'")
    sock = socket.socket(_family(dst), socket.SOCK_DGRAM)
    sent = 0
    errors: List[str] = []
    try:
        sock.bind((src, 0))
        for seq in range(count):
            head = build(probe_id, seq)
            data = head + os.urandom(max(0, size - len(head)))
            try:
                sock.sendto(data, (dst, port))
                sent += 1
            except OSError as e:
                errors.append(f"seq {seq}: {e.strerror or e}")
            if interval > 0 and seq + 1 < count:
                time.sleep(interval)
    finally:
        sock.close()
    return {"kind": kind, "id": probe_id, "sent": sent, "errors": errors}


def tcp_connect(src: str, dst: str, port: int, timeout: float = 1.0) -> Dict[str, Any]:
    """Try a TCP handshake ``src -> dst:port``; ``state`` is one of the constants above."""
    sock = socket.socket(_family(dst), socket.SOCK_STREAM)
    started = time.monotonic()
    res: Dict[str, Any] = {"port": port}
    try:
        sock.settimeout(timeout)
        try:
            sock.bind((src, 0))
            sock.connect((dst, port))
            res["state"] = OPEN
        except socket.timeout:
            res["state"] = TIMEOUT
            res["error"] = f"no answer within {timeout:g} s"
        except ConnectionRefusedError:
            res["state"] = REFUSED
        except OSError as e:
            res["state"] = UNREACHABLE if e.errno in _UNREACH else ERROR
            res["error"] = e.strerror or str(e)
    finally:
        sock.close()
    res["ms"] = round((time.monotonic() - started) * 1000.0, 3)
    return res


def bind_listener(address: str, port: int, kind: int) -> Tuple[Optional[socket.socket], str]:
    """A TCP (listening) or UDP (non-blocking) socket on ``address:port``, and its state:
    ``ours``, ``in-use`` (someone else holds the port: the probe reaches them) or ``error: ...``."""
    s = socket.socket(_family(address), kind)
    try:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        if kind == socket.SOCK_STREAM:
            s.listen(64)
        else:
            s.setblocking(False)
    except OSError as e:
        s.close()
        return None, "in-use" if e.errno == errno.EADDRINUSE else f"error: {e.strerror}"
    return s, "ours"


class Listeners:
    """Short-lived TCP listeners so a connect has something to reach (closed after the audit).

    A port already bound by someone else (sshd, the Raft node) is left to its owner: the probe
    then reaches the real service, which is just as good.
    """

    def __init__(self) -> None:
        self.socks: Dict[int, socket.socket] = {}

    def open(self, address: str, ports: List[int]) -> Dict[str, str]:
        out: Dict[str, str] = {}
        for port in ports:
            if port in self.socks:
                out[str(port)] = "ours"
                continue
            s, out[str(port)] = bind_listener(address, port, socket.SOCK_STREAM)
            if s is not None:
                self.socks[port] = s
        return out

    def close(self) -> int:
        n = len(self.socks)
        for s in self.socks.values():
            s.close()
        self.socks = {}
        return n
