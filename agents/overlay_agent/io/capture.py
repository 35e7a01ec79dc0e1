"""Packet captures with AF_PACKET sockets (no tcpdump or tshark needed on the host).

* :class:`MarkerCapture` watches one interface (an endpoint's ``eth0``) for incoming frames that
  carry a run token followed by a marker, and counts markers: the isolation check's proof that
  traffic sent on one VNI never reached an endpoint of another.
* :class:`PcapCapture` keeps the frames to or from one peer address on an underlay interface and
  writes them as a classic pcap file (what ``--overlay-evidence`` saves).

Both read only when asked (the kernel buffers meanwhile), so no thread is needed.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from typing import Dict, List, Optional, Tuple

from overlay_agent.io import netns

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_TIMESTAMP = 29
_TIMEVAL = struct.Struct("@ll")
_BUF = 4 << 20
_SNAP = 65535


def _packet_socket(ns: Optional[str], ifname: Optional[str]) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            s.setsockopt(socket.SOL_SOCKET, 33, _BUF)  # SO_RCVBUFFORCE
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUF)
        if ifname:
            s.bind((ifname, ETH_P_ALL))
        s.setblocking(False)
        return s

    if ns:
        with netns.inside(ns):
            return make()
    return make()


class MarkerCapture:
    """Counts markers ``token + b":" + marker + b";"`` in frames arriving on ``ifname``."""

    def __init__(self, ns: str, ifname: str, token: str) -> None:
        self.token = token.encode("ascii") + b":"
        self.seen: Dict[str, int] = {}
        self.frames = 0
        self.sock = _packet_socket(ns, ifname)

    def read(self) -> Dict[str, int]:
        """Drain what the kernel holds; returns every marker seen so far with its count."""
        while True:
            try:
                data, addr = self.sock.recvfrom(_SNAP)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if len(addr) > 2 and addr[2] == PACKET_OUTGOING:
                continue
            self.frames += 1
            at = data.find(self.token)
            while at >= 0:
                start = at + len(self.token)
                end = data.find(b";", start, start + 96)
                if end < 0:
                    break
                marker = data[start:end].decode("ascii", "replace")
                self.seen[marker] = self.seen.get(marker, 0) + 1
                at = data.find(self.token, end)
        return dict(self.seen)

    def close(self) -> None:
        self.sock.close()


class PcapCapture:
    """Frames on the host's interfaces to or from ``peer`` (IPv4 or IPv6), as pcap bytes."""

    def __init__(self, peer: str, ns: Optional[str] = None, ifname: Optional[str] = None,
                 limit: int = 2000, max_bytes: int = 8 << 20) -> None:
        self.peer = ipaddress.ip_address(peer).packed
        self.limit = limit
        #: frame bytes kept at most (the pcap travels base64-encoded in one answer line)
        self.max_bytes = max_bytes
        self.kept = 0
        #: frames of the peer seen after the limits were reached
        self.dropped = 0
        self.frames: List[Tuple[float, bytes]] = []
        self.sock = _packet_socket(ns, ifname)
        try:  # the kernel's arrival time, not the time we got round to reading
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
        except OSError:
            pass

    def read(self) -> int:
        space = socket.CMSG_SPACE(_TIMEVAL.size)
        while True:
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(_SNAP, space)
            except (BlockingIOError, InterruptedError, OSError):
                break
            if not self._involves_peer(data):
                continue
            if len(self.frames) >= self.limit or self.kept + len(data) > self.max_bytes:
                self.dropped += 1
                continue
            self.kept += len(data)
            ts = time.time()
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP and len(raw) >= _TIMEVAL.size:
                    sec, usec = _TIMEVAL.unpack_from(raw)
                    ts = sec + usec / 1e6
            self.frames.append((ts, data))
        return len(self.frames)

    def _involves_peer(self, frame: bytes) -> bool:
        etype = frame[12:14]
        if etype == b"\x08\x00" and len(frame) >= 34:
            return self.peer in (frame[26:30], frame[30:34])
        if etype == b"\x86\xdd" and len(frame) >= 54:
            return self.peer in (frame[22:38], frame[38:54])
        return False

    def pcap(self) -> bytes:
        """The frames as a pcap file (LINKTYPE_ETHERNET), readable by tshark and wireshark."""
        self.read()
        out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, _SNAP, 1)]
        for ts, data in self.frames:
            sec = int(ts)
            out.append(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(data), len(data)))
            out.append(data)
        return b"".join(out)

    def close(self) -> None:
        self.sock.close()
