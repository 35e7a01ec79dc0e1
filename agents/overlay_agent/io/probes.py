"""Probes that run inside endpoint namespaces: ICMP echo, TCP transfer, and the responder.

Every socket here is opened inside the endpoint's namespace (see :func:`netns.inside`), so its
packets start in the overlay, cross the VTEP and arrive in another endpoint's kernel stack.
"""

from __future__ import annotations

import hashlib
import os
import random
import select
import socket
import struct
import threading
import time
from typing import Dict, List, Optional

from overlay_agent.io import netns
from overlay_agent.wire.checksum import internet_checksum

IP_MTU_DISCOVER = 10
IP_PMTUDISC_DO = 2
_LEN = struct.Struct("!Q")
TCP_INFO = 11
#: struct tcp_info (linux/tcp.h): the fields the transfer reports, by byte offset
_TCP_INFO_FIELDS = {"snd_mss": 16, "pmtu": 60, "rtt_us": 68, "retransmits": 100}
_TCP_INFO_LEN = 104
#: tcpi_bytes_acked (u64, Linux 4.1 and later): stream bytes the receiver acknowledged
_BYTES_ACKED = 120
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")


def tcp_info(sock: socket.socket) -> Optional[Dict[str, int]]:
    """What the sender's kernel knows of a TCP connection (``TCP_INFO``): the path MTU it uses
    (lowered by any "fragmentation needed" it got), its MSS, smoothed RTT, segments
    retransmitted in all, and (where the kernel has it) the bytes the receiver acknowledged;
    None where the kernel has no such option."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, _BYTES_ACKED + _U64.size)
    except OSError:
        return None
    if len(raw) < _TCP_INFO_LEN:
        return None
    info = {k: int(_U32.unpack_from(raw, off)[0]) for k, off in _TCP_INFO_FIELDS.items()}
    if len(raw) >= _BYTES_ACKED + _U64.size:
        info["bytes_acked"] = int(_U64.unpack_from(raw, _BYTES_ACKED)[0])
    return info


def _stall(timeout: float, nbytes: int, sent: int, info: Optional[Dict[str, int]]) -> str:
    """Why a transfer timed out, in bytes: how far it got, as the receiver acknowledged it
    (``sent`` only says what the sending socket took)."""
    if sent <= 0:
        return f"timed out after {timeout:g} s"
    if info is not None and "bytes_acked" in info:
        # The stream starts with the 8-byte length; the SYN counts as one acknowledged byte.
        acked = min(nbytes, max(0, info["bytes_acked"] - 1 - _LEN.size))
        got = f"{acked} of {nbytes} bytes acknowledged by the receiver"
    else:
        got = f"{sent} of {nbytes} bytes handed to the sending socket"
    return f"timed out after {timeout:g} s, {got}"


def _socket_in(ns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    with netns.inside(ns):
        return socket.socket(family, kind, proto)


def ping(ns: str, dst: str, count: int = 3, size: int = 56, timeout: float = 1.0,
         interval: float = 0.05, dont_fragment: bool = False) -> Dict[str, object]:
    """ICMP echo from namespace ``ns`` to ``dst``: ``count`` requests of ``size`` payload bytes.

    Returns sent/received counts and the round-trip times in milliseconds.
    """
    sock = _socket_in(ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = random.randrange(1, 0xFFFF)
    rtts: List[float] = []
    errors: List[str] = []
    try:
        if dont_fragment:
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        payload = (bytes(range(256)) * (size // 256 + 1))[:size]
        for seq in range(1, count + 1):
            header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            csum = internet_checksum(header + payload)
            packet = struct.pack("!BBHHH", 8, 0, csum, ident, seq) + payload
            sent_at = time.monotonic()
            try:
                sock.sendto(packet, (dst, 0))
            except OSError as e:
                errors.append(f"seq {seq}: {e.strerror}")
                continue
            deadline = sent_at + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                r, _, _ = select.select([sock], [], [], left)
                if not r:
                    break
                data, addr = sock.recvfrom(65535)
                ihl = (data[0] & 0x0F) * 4
                icmp = data[ihl:ihl + 8]
                if len(icmp) < 8 or addr[0] != dst:
                    continue
                typ, _code, _c, rid, rseq = struct.unpack("!BBHHH", icmp)
                if typ == 0 and rid == ident and rseq == seq:
                    rtts.append((time.monotonic() - sent_at) * 1000.0)
                    break
            if seq < count and interval > 0:
                time.sleep(interval)
    finally:
        sock.close()
    return {"sent": count, "received": len(rtts), "rtts_ms": rtts, "errors": errors}


def tcp_transfer(ns: str, dst: str, port: int, nbytes: int, timeout: float = 5.0) -> Dict[str, object]:
    """Send ``nbytes`` over TCP from ``ns`` to the responder at ``dst``; check its SHA-256."""
    sock = _socket_in(ns, socket.AF_INET, socket.SOCK_STREAM)
    data = random.getrandbits(nbytes * 8).to_bytes(nbytes, "big") if nbytes else b""
    started = time.monotonic()
    result: Dict[str, object] = {"bytes": nbytes, "sent": 0, "ok": False}
    try:
        sock.settimeout(timeout)
        try:
            sock.connect((dst, port))
        except OSError as e:
            result["error"] = f"connect to {dst}:{port} failed: {e.strerror or e}"
            return result
        result["connect_ms"] = round((time.monotonic() - started) * 1000.0, 3)
        view = memoryview(_LEN.pack(nbytes) + data)
        sent = 0
        try:
            while sent < len(view):
                left = started + timeout - time.monotonic()
                if left <= 0:
                    raise socket.timeout()
                sock.settimeout(left)
                sent += sock.send(view[sent:])
            result["sent"] = max(0, sent - _LEN.size)
            sock.settimeout(max(0.001, started + timeout - time.monotonic()))
            digest = b""
            while len(digest) < 32:
                chunk = sock.recv(32 - len(digest))
                if not chunk:
                    break
                digest += chunk
        except socket.timeout:
            data_sent = result["sent"] = max(0, sent - _LEN.size)
            result["error"] = _stall(timeout, nbytes, data_sent, tcp_info(sock))
            result["stalled"] = data_sent > 0
            return result
        except OSError as e:
            result["error"] = f"transfer failed: {e.strerror or e}"
            return result
        ok = digest == hashlib.sha256(data).digest()
        result["ok"] = ok
        if not ok:
            result["error"] = "the responder saw different bytes than were sent"
        seconds = time.monotonic() - started
        result["ms"] = round(seconds * 1000.0, 3)
        result["mbit_s"] = round(nbytes * 8 / seconds / 1e6, 3) if seconds > 0 else None
        return result
    finally:
        # Also after a stall: the path MTU the sender used and what it retransmitted say why.
        info = tcp_info(sock) if result.get("connect_ms") is not None else None
        if info is not None:
            result["tcp_info"] = info
        sock.close()


class Responder:
    """Answers probes in one endpoint namespace: TCP (length, bytes) -> SHA-256, UDP echo."""

    def __init__(self, ns: str, port: int) -> None:
        self.ns = ns
        self.port = port
        self.tcp = _socket_in(ns, socket.AF_INET, socket.SOCK_STREAM)
        self.udp = _socket_in(ns, socket.AF_INET, socket.SOCK_DGRAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("0.0.0.0", port))
        self.tcp.listen(128)
        self.udp.bind(("0.0.0.0", port))
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, name=f"responder-{ns}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=2)
        self.tcp.close()
        self.udp.close()
        os.close(self._stop_r)
        os.close(self._stop_w)

    def _serve(self) -> None:
        while True:
            r, _, _ = select.select([self.tcp, self.udp, self._stop_r], [], [])  # type: ignore[type-var]
            if self._stop_r in r:
                return
            if self.udp in r:
                try:
                    data, addr = self.udp.recvfrom(65535)
                    self.udp.sendto(data, addr)
                except OSError:
                    pass
            if self.tcp in r:
                try:
                    conn, _ = self.tcp.accept()
                except OSError:
                    continue
                threading.Thread(target=_sink, args=(conn,), daemon=True).start()


def _sink(conn: socket.socket) -> None:
    """Read a length-prefixed payload, answer with its SHA-256."""
    try:
        conn.settimeout(30)
        head = _recv_exact(conn, _LEN.size)
        if head is None:
            return
        (n,) = _LEN.unpack(head)
        h = hashlib.sha256()
        left = n
        while left > 0:
            chunk = conn.recv(min(left, 1 << 16))
            if not chunk:
                return
            h.update(chunk)
            left -= len(chunk)
        conn.sendall(h.digest())
    except OSError:
        pass
    finally:
        conn.close()


def _recv_exact(conn: socket.socket, n: int) -> Optional[bytes]:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf
