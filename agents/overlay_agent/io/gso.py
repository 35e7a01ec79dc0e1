"""UDP segmentation offload for the underlay socket: many VXLAN datagrams per system call.

* GSO (``UDP_SEGMENT``, Linux 4.18): one ``sendmsg`` carries a buffer of datagrams of equal
  size (the last may be shorter); the kernel cuts it, and usually not before the receiving
  socket, so the whole batch crosses the stack as one packet.
* GRO (``UDP_GRO``, Linux 5.0): one ``recvmsg`` returns several datagrams of one sender
  back to back, with a control message giving their size.

Both are probed at run time on the socket itself; anything missing leaves the portable
one-datagram-per-call path in place.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Callable, Dict, List, Optional, Tuple

from overlay_agent.io import pmtu

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
#: The kernel's limit on segments per GSO send (UDP_MAX_SEGMENTS).
MAX_SEGMENTS = 64
#: Payload bytes of one GSO send: what fits in one IPv4/IPv6 datagram's length field.
MAX_GSO_BYTES = 65000
_U16 = struct.Struct("=H")


def segments_per_send(mtu: int) -> int:
    """How many VXLAN datagrams of an inner ``mtu`` one GSO send carries (44 at 1450)."""
    return max(1, min(MAX_SEGMENTS, MAX_GSO_BYTES // (mtu + 14 + 8)))
_INT = struct.Struct("=i")
CMSG_SPACE = socket.CMSG_SPACE(_INT.size) if hasattr(socket, "CMSG_SPACE") else 24


def enable(sock: socket.socket) -> Dict[str, bool]:
    """Turn on what the kernel offers on ``sock``; returns ``{"gso": ..., "gro": ...}``."""
    feats = {"gso": False, "gro": False}
    if not hasattr(sock, "sendmsg"):
        return feats
    try:
        sock.getsockopt(SOL_UDP, UDP_SEGMENT)
        feats["gso"] = True
    except OSError:
        pass
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
        feats["gro"] = True
    except OSError:
        pass
    return feats


def gro_size(ancdata: List[Tuple[int, int, bytes]]) -> int:
    """The segment size from ``recvmsg``'s control messages, or 0 if it holds one datagram."""
    for level, kind, data in ancdata:
        if level == SOL_UDP and kind == UDP_GRO and len(data) >= 2:
            if len(data) >= 4:
                return _INT.unpack_from(data)[0]
            return _U16.unpack_from(data)[0]
    return 0


class GsoSender:
    """Collects datagrams for the underlay and sends runs of them with one ``sendmsg`` each.

    A run is datagrams to one destination, all of the first one's size except possibly a
    shorter last one. :meth:`add` queues (and sends what a new datagram cannot join);
    :meth:`flush` sends the rest: the caller flushes when the source has nothing more to read.
    """

    def __init__(self, sock: socket.socket, on_error: Callable[[str, OSError], None],
                 enabled: bool = True,
                 too_big: Optional[Callable[[Tuple[str, int], bytes], None]] = None,
                 path_mtu: Optional[Callable[[Tuple[str, int]], Optional[int]]] = None) -> None:
        self.sock = sock
        self.enabled = enabled
        self._error = on_error
        #: called with each datagram the kernel refused as larger than the path MTU
        self._too_big = too_big
        self._path_mtu = path_mtu or pmtu.route_mtu
        self._dest: Optional[Tuple[str, int]] = None
        self._size = 0
        self._parts: List[bytes] = []
        self._bytes = 0
        #: sends made / datagrams sent, for the benchmark and the tests
        self.calls = 0
        self.datagrams = 0

    def add(self, dest: Tuple[str, int], data: bytes) -> None:
        n = len(data)
        if self._parts:
            if (dest == self._dest and n <= self._size and self._bytes + n <= MAX_GSO_BYTES
                    and len(self._parts) < MAX_SEGMENTS):
                self._parts.append(data)
                self._bytes += n
                if n < self._size:
                    self.flush()  # a shorter datagram ends the run
                return
            self.flush()
        if not self.enabled:
            self._send_one(dest, data)
            return
        self._dest, self._size, self._parts, self._bytes = dest, n, [data], n

    def add_run(self, dest: Tuple[str, int], datagrams: List[bytes]) -> None:
        """Datagrams to ``dest``, all of the first one's size but a shorter last one (a TSO
        frame's segments): whole GSO sends at once, the rest left open for what follows."""
        size = len(datagrams[0])
        per = min(MAX_SEGMENTS, MAX_GSO_BYTES // size) if self.enabled and size else 0
        if per < 2 or len(datagrams) < 2:
            for d in datagrams:
                self.add(dest, d)
            return
        self.flush()
        i, n = 0, len(datagrams)
        while n - i > per:  # a full chunk, all of ``size`` bytes (the short one is the last)
            self._dest, self._size, self._parts = dest, size, datagrams[i:i + per]
            self._bytes = size * per
            self.flush()
            i += per
        rest = datagrams[i:]
        self._dest, self._size, self._parts = dest, size, rest
        self._bytes = sum(map(len, rest))
        if len(rest[-1]) < size:
            self.flush()  # a shorter datagram ends the run

    def flush(self) -> None:
        parts = self._parts
        if not parts:
            return
        dest = self._dest
        assert dest is not None
        self._parts = []
        self._bytes = 0
        if len(parts) == 1:
            self._send_one(dest, parts[0])
            return
        self.calls += 1
        self.datagrams += len(parts)
        try:
            # The datagrams as an iovec: the kernel gathers them, no joined copy here.
            self.sock.sendmsg(parts, [(SOL_UDP, UDP_SEGMENT, _U16.pack(self._size))], 0, dest)
        except OSError as e:
            if e.errno == errno.EMSGSIZE or (e.errno == errno.EINVAL
                                             and self._beyond_path(dest, self._size)):
                # Segments larger than the known path MTU (DF is always set): each one is
                # refused on its own and counted; a shorter last one may still fit. (Kernels
                # before 6.x say EINVAL for a GSO send whose segments exceed the path MTU.)
                for p in parts:
                    self._send_one(dest, p)
            elif e.errno in (errno.EIO, errno.EINVAL, errno.EOPNOTSUPP):
                # The route's device cannot do it (no checksum offload, say): stop trying.
                self.enabled = False
                self._error("gso-off", e)
                for p in parts:
                    self._send_one(dest, p)
            else:
                self._error("send", e)

    def _beyond_path(self, dest: Tuple[str, int], size: int) -> bool:
        """Whether UDP datagrams of ``size`` bytes exceed the path MTU the kernel holds for
        ``dest`` (so a refused GSO send says nothing about the device's offloads)."""
        mtu = self._path_mtu(dest)
        header = 48 if ":" in dest[0] else 28
        return mtu is not None and size + header > mtu

    def _send_one(self, dest: Tuple[str, int], data: bytes) -> None:
        self.calls += 1
        self.datagrams += 1
        try:
            self.sock.sendto(data, dest)
        except OSError as e:
            self._error("send", e)
            if e.errno == errno.EMSGSIZE and self._too_big is not None:
                self._too_big(dest, data)
