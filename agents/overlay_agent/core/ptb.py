"""The ICMP a VTEP owes its endpoint when a frame is too big for the underlay path.

The VTEP sends every outer packet with DF set (``io/pmtu.py``, ``set_outer_df``). Once the
host's kernel has learned the path MTU to a member VTEP (from a router's PTB), a VXLAN datagram
larger than that is refused at the send (EMSGSIZE). Silently dropped, the frame inside would
leave its endpoint retransmitting the same size forever: the VTEP itself would be a PMTU
blackhole. So, as Linux's vxlan device does for bridged endpoints (since 5.9, with ``df set``),
the VTEP answers an oversized IPv4 packet that has DF set with ICMP "fragmentation needed"
(RFC 792, RFC 1191), written into the sender's TAP from the inner destination's MAC and
address, as if the far side had sent it, advertising what the path leaves for the inner packet
(path MTU - 50 over IPv4, - 70 over IPv6). The endpoint's kernel then caches that path MTU, and
its TCP cuts smaller segments at once.

Not answered (RFC 1122 3.2.2 / RFC 1812 4.3.2.7): packets without DF (the endpoint lets them be
fragmented, so the VTEP has nothing to say; they are lost), fragments other than the first, ICMP
errors, and packets from or to a group or unspecified address. At most one message per (VNI,
inner source, inner destination) per ``interval``, and a token bucket bounds them all: a TSO
frame fails as ~44 datagrams, and one message is enough.

Pure: bytes and ``now`` in, bytes out (the caller reads the path MTU from the kernel).
"""

from __future__ import annotations

import struct
from typing import Dict, Optional, Tuple

from overlay_agent.wire import icmp
from overlay_agent.wire.ethernet import ETH_P_IP
from overlay_agent.wire.ipaddr import ip_to_str
from overlay_agent.wire.ipv4 import FLAG_DF, PROTO_ICMP, IPv4Packet

#: outer Ethernet is not part of the path MTU: IP + UDP + VXLAN + inner Ethernet
OVERHEAD_V4 = 20 + 8 + 8 + 14
OVERHEAD_V6 = 40 + 8 + 8 + 14
#: the smallest MTU an IPv4 host must accept (RFC 791); below it no message is sent
MIN_MTU = 68
#: type of service of ICMP errors (precedence "internetwork control", as Linux sends them)
TOS_ICMP_ERROR = 0xC0
_ICMP_ERRORS = frozenset((3, 4, 5, 11, 12))
_VXLAN = 8
_ETH = 14
_IP_FIXED = struct.Struct("!BBHHHBBH4s4s")
_ETHERTYPE_IP = ETH_P_IP.to_bytes(2, "big")

Key = Tuple[int, bytes, bytes]


def inner_mtu(path_mtu: int, ipv6_underlay: bool) -> int:
    """The largest inner IP packet a path of ``path_mtu`` carries in VXLAN."""
    return path_mtu - (OVERHEAD_V6 if ipv6_underlay else OVERHEAD_V4)


def _unicast(addr: bytes) -> bool:
    return addr[0] != 0 and addr[0] < 224 and addr != b"\xff\xff\xff\xff"


def candidate(datagram: bytes) -> Optional[Key]:
    """(VNI, inner source, inner destination) if the VXLAN datagram holds an IPv4 packet that
    is owed a "fragmentation needed"; None if it is not (see the module's rules)."""
    head = bytes(datagram[:_VXLAN + _ETH + 24])
    if len(head) < _VXLAN + _ETH + 20 or head[_VXLAN + 12:_VXLAN + 14] != _ETHERTYPE_IP:
        return None
    if head[_VXLAN + 6] & 1 or head[_VXLAN] & 1:  # from or to an Ethernet group address
        return None
    (ver_ihl, _tos, _total, _ident, frag, _ttl, proto, _csum, src,
     dst) = _IP_FIXED.unpack_from(head, _VXLAN + _ETH)
    ihl = (ver_ihl & 0x0F) * 4
    if ver_ihl >> 4 != 4 or ihl < 20 or not frag & FLAG_DF or frag & 0x1FFF:
        return None
    if not (_unicast(src) and _unicast(dst)):
        return None
    if proto == PROTO_ICMP:
        at = _VXLAN + _ETH + ihl
        if len(datagram) <= at or datagram[at] in _ICMP_ERRORS:
            return None
    vni = int.from_bytes(head[4:7], "big")
    return (vni, src, dst)


def frag_needed_frame(datagram: bytes, mtu: int, ident: int = 0) -> Optional[bytes]:
    """The Ethernet frame to write into the sender's TAP for a VXLAN datagram that did not fit
    (``mtu``: what the path leaves for the inner IP packet), or None when none is owed: not a
    :func:`candidate`, an MTU below 68, or a packet that fits after all."""
    if candidate(datagram) is None or mtu < MIN_MTU:
        return None
    frame = bytes(datagram[_VXLAN:])
    total = int.from_bytes(frame[_ETH + 2:_ETH + 4], "big")
    if total <= mtu:
        return None
    original = frame[_ETH:_ETH + total]
    message = icmp.frag_needed(mtu, original).encode()
    packet = IPv4Packet(src=ip_to_str(frame[_ETH + 16:_ETH + 20]),
                        dst=ip_to_str(frame[_ETH + 12:_ETH + 16]), proto=PROTO_ICMP,
                        payload=message, ttl=64, ident=ident & 0xFFFF, tos=TOS_ICMP_ERROR)
    return frame[6:12] + frame[0:6] + _ETHERTYPE_IP + packet.encode()


class Limiter:
    """Whether a message is due now: one per key per ``interval`` seconds, and at most
    ``burst`` at once refilled at ``rate`` per second overall."""

    def __init__(self, interval: float = 0.1, rate: float = 1000.0, burst: int = 100,
                 keys: int = 4096) -> None:
        self.interval, self.rate, self.burst, self.keys = interval, rate, burst, keys
        self._last: Dict[Key, float] = {}
        self._tokens = float(burst)
        self._stamp: Optional[float] = None
        #: messages refused by the per-key interval, and by the bucket
        self.repeated = 0
        self.limited = 0

    def allow(self, key: Key, now: float) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self.repeated += 1
            return False
        if self._stamp is not None:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens < 1.0:
            self.limited += 1
            return False
        self._tokens -= 1.0
        if len(self._last) >= self.keys:
            self._last = {k: t for k, t in self._last.items() if now - t < self.interval}
            if len(self._last) >= self.keys:
                self._last.clear()
        self._last[key] = now
        return True


__all__ = ["Limiter", "candidate", "frag_needed_frame", "inner_mtu"]
