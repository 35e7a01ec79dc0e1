"""Underlay path-MTU probes: a UDP echo responder and the driver of :class:`PmtuSearch`.

No raw sockets: the prober is a connected UDP socket with ``IP_MTU_DISCOVER=IP_PMTUDISC_PROBE``
(DF set, the kernel's cached path MTU ignored, so every size is really tried) and
``IP_RECVERR``, so ICMP "fragmentation needed" / "time exceeded" and local EMSGSIZE arrive on the
socket's error queue (``MSG_ERRQUEUE``) as ``struct sock_extended_err`` with the offender's
address. The IPv6 twins are ``IPV6_MTU_DISCOVER``/``IPV6_RECVERR``.

Datagrams: a probe is ``OVPM`` + id (u32) + padding up to its size; the responder answers with
``OVPR`` + id + the size it received (12 bytes), so the way back carries only small packets and
each ordered pair measures its own forward path (and a reply never amplifies). The responder
answers member VTEPs only.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from overlay_agent.core.pmtu import FRAG, HOP, PmtuSearch, Probe

MAGIC, REPLY = b"OVPM", b"OVPR"
_HEAD = struct.Struct("!4sI")
_REPLY = struct.Struct("!4sII")
_EE = struct.Struct("=IBBBBII")  # sock_extended_err
MSG_ERRQUEUE = 0x2000
IP_MTU_DISCOVER, IP_PMTUDISC_PROBE, IP_RECVERR, IP_PMTUDISC_DO = 10, 3, 11, 2
IP_PMTUDISC_DONT = 0
IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE, IPV6_RECVERR, IPV6_PMTUDISC_DO = 23, 3, 25, 2
SOL_IP, SOL_IPV6 = 0, 41
IP_MTU, IPV6_MTU = 14, 24
ORIGIN_LOCAL, ORIGIN_ICMP, ORIGIN_ICMP6 = 1, 2, 3


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def set_outer_df(sock: socket.socket) -> None:
    """The VTEP's outer packets: DF always set, never fragmented (``IP_PMTUDISC_DO``).

    A VXLAN packet larger than the path is dropped: by a router (which should answer with a
    PTB) or, once the kernel knows the path MTU, by our own send (EMSGSIZE, counted). The
    kernel default (``IP_PMTUDISC_WANT``) would set DF on single datagrams but not on UDP GSO
    runs (their skb is larger than the MTU), so the same inner packet would cross or vanish
    depending on batching; DO makes it deterministic. See docs/checks.md.
    """
    if sock.family == socket.AF_INET6:
        sock.setsockopt(SOL_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DO)
    else:
        sock.setsockopt(SOL_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)


def route_mtu(dest: Tuple[str, int]) -> Optional[int]:
    """The path MTU the kernel holds for ``dest`` (its cached PTB value, else the route's MTU),
    as a UDP socket connected there reads it (``IP_MTU`` / ``IPV6_MTU``); None if unknown."""
    family = _family(dest[0])
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect(dest)
            if family == socket.AF_INET6:
                return int(s.getsockopt(SOL_IPV6, IPV6_MTU))
            return int(s.getsockopt(SOL_IP, IP_MTU))
    except OSError:
        return None


class EchoResponder:
    """Answers probe datagrams on ``address:port`` of the underlay (a thread; :meth:`close`)."""

    def __init__(self, address: str, port: int,
                 allowed: Optional[Callable[[str], bool]] = None) -> None:
        #: who may probe (the member VTEPs); others are ignored and counted in ``refused``
        self.allowed = allowed
        self.refused = 0
        self.sock = socket.socket(_family(address), socket.SOCK_DGRAM)
        for opt in (33, socket.SO_RCVBUF):  # SO_RCVBUFFORCE (root), else what the limit allows
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
                break
            except OSError:
                continue
        try:
            self.sock.bind((address, port))
        except OSError as e:
            self.sock.close()
            raise OSError(e.errno, f"cannot bind the path-MTU responder to {address}:{port}: "
                                   f"{e.strerror} (choose another pmtu port)") from e
        self.address, self.port = address, self.sock.getsockname()[1]
        self.answered = 0
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, name="pmtu-echo", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            r, _, _ = select.select([self.sock.fileno(), self._stop_r], [], [])
            if self._stop_r in r:
                return
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                continue
            if self.allowed is not None and not self.allowed(addr[0]):
                self.refused += 1
                continue
            if len(data) >= _HEAD.size and data[:4] == MAGIC:
                (_, pid) = _HEAD.unpack_from(data)
                ip_len = len(data) + 8 + (40 if self.sock.family == socket.AF_INET6 else 20)
                try:
                    self.sock.sendto(_REPLY.pack(REPLY, pid, ip_len), addr)
                    self.answered += 1
                except OSError:
                    pass

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=2)
        self.sock.close()
        os.close(self._stop_r)
        os.close(self._stop_w)


def _local_mtu(sock: socket.socket, v6: bool) -> int:
    """The sending interface's MTU: an oversized send fails with EMSGSIZE and says it."""
    try:
        sock.send(b"\0" * 65000)
    except OSError as e:
        if e.errno != errno.EMSGSIZE:
            raise
    for err in _drain_errors(sock, v6):
        if err[0] == ORIGIN_LOCAL and err[3] > 0:
            return err[3]
    return 1500


def _drain_errors(sock: socket.socket, v6: bool) -> List[Tuple[int, int, int, int, Optional[str], int]]:
    """(origin, type, code, info, offender, probe id) for everything on the error queue."""
    out: List[Tuple[int, int, int, int, Optional[str], int]] = []
    level, kind = (SOL_IPV6, IPV6_RECVERR) if v6 else (SOL_IP, IP_RECVERR)
    while True:
        try:
            data, anc, _flags, _addr = sock.recvmsg(64, 512, MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return out
        except OSError:
            return out
        pid = _HEAD.unpack_from(data)[1] if len(data) >= _HEAD.size and data[:4] == MAGIC else -1
        for lvl, typ, blob in anc:
            if lvl != level or typ != kind or len(blob) < _EE.size:
                continue
            _errno, origin, etype, code, _pad, info, _data = _EE.unpack_from(blob)
            offender = _sockaddr(blob[_EE.size:], v6)
            out.append((origin, etype, code, info, offender, pid))


def _sockaddr(raw: bytes, v6: bool) -> Optional[str]:
    if v6 and len(raw) >= 24 and struct.unpack_from("=H", raw)[0] == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[8:24])
    if not v6 and len(raw) >= 8 and struct.unpack_from("=H", raw)[0] == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8])
    return None


def probe_path(src: str, dst: str, port: int, timeout: float = 0.2, copies: int = 3,
               budget: float = 5.0, sport: int = 0) -> Dict[str, object]:
    """Search the path MTU from ``src`` to the responder at ``dst:port``; the search's result
    plus ``ms`` and the source port it used. ``sport`` fixes the source port (one flow of
    several, for multipath underlays); if it is taken, an ephemeral one serves. Runs in the
    caller's thread (the agent's probe pool)."""
    v6 = _family(dst) == socket.AF_INET6
    sock = socket.socket(_family(dst), socket.SOCK_DGRAM)
    started = time.monotonic()
    try:
        if v6:
            sock.setsockopt(SOL_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE)
            sock.setsockopt(SOL_IPV6, IPV6_RECVERR, 1)
        else:
            sock.setsockopt(SOL_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
            sock.setsockopt(SOL_IP, IP_RECVERR, 1)
        try:
            sock.bind((src, sport))
        except OSError:
            if not sport:
                raise
            sock.bind((src, 0))
        sock.connect((dst, port))
        search = PmtuSearch(local_mtu=_local_mtu(sock, v6), family=6 if v6 else 4,
                            copies=copies, timeout=timeout)
        prober = _Prober(sock, search, v6)
        prober.send(search.start(time.monotonic()))
        while not search.done and time.monotonic() - started < budget:
            select.select([sock], [], [], max(0.0, search.deadline() - time.monotonic()))
            prober.handle_errors()
            prober.read_echoes()
            prober.send(search.poll(time.monotonic()))
        res = search.result()
        res["ms"] = round((time.monotonic() - started) * 1000.0, 3)
        res["src"], res["dst"] = src, dst
        res["sport"] = sock.getsockname()[1]
        return res
    finally:
        sock.close()


class _Prober:
    """Moves the search's probes and their answers through one connected UDP socket."""

    def __init__(self, sock: socket.socket, search: PmtuSearch, v6: bool) -> None:
        self.sock, self.search, self.v6 = sock, search, v6
        self.hdr = 48 if v6 else 28
        self.ttl_opt = (SOL_IPV6, socket.IPV6_UNICAST_HOPS) if v6 else (SOL_IP, socket.IP_TTL)
        self.default_ttl = sock.getsockopt(*self.ttl_opt)

    def handle_errors(self) -> bool:
        """Feed the error queue to the search; True when it held a local EMSGSIZE."""
        local = False
        now = time.monotonic()
        for origin, etype, code, info, offender, pid in _drain_errors(self.sock, self.v6):
            if (origin == ORIGIN_ICMP and etype == 3 and code == 4) or (
                    origin == ORIGIN_ICMP6 and etype == 2):
                self.search.on_too_big(pid, info, offender, now)
            elif (origin == ORIGIN_ICMP and etype == 11) or (origin == ORIGIN_ICMP6 and etype == 3):
                if offender:
                    self.search.on_time_exceeded(pid, offender, now)
            elif origin == ORIGIN_LOCAL and info:
                self.search.on_local_limit(pid, info, now)
                local = True
        return local

    def read_echoes(self) -> None:
        now = time.monotonic()
        for _ in range(10000):
            try:
                data = self.sock.recv(64, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # the socket's pending ICMP error; the error queue has the details
            if len(data) >= _REPLY.size and data[:4] == REPLY:
                self.search.on_echo(_REPLY.unpack_from(data)[1], now)

    def send(self, probes: List[Probe]) -> None:
        for p in probes:
            if p.kind == HOP:
                self.sock.setsockopt(*self.ttl_opt, p.ttl)
            elif p.kind == FRAG:  # without DF, IPv4 only: routers fragment it
                self.sock.setsockopt(SOL_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
            payload = _HEAD.pack(MAGIC, p.id) + b"\xa5" * max(0, p.size - self.hdr - _HEAD.size)
            try:
                # A send fails once with the error of an ICMP that arrived since (the socket's
                # pending error): take the queue in, then send again.
                for _attempt in range(3):
                    try:
                        self.sock.send(payload)
                        break
                    except OSError:
                        if self.handle_errors():
                            break
            finally:
                if p.kind == HOP:
                    self.sock.setsockopt(*self.ttl_opt, self.default_ttl)
                elif p.kind == FRAG:
                    self.sock.setsockopt(SOL_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
