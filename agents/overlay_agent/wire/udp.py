"""UDP datagrams (RFC 768) with the optional IPv4 pseudo-header checksum."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

from .checksum import internet_checksum, ipv4_pseudo_header
from .errors import DecodeError, need
from .ipv4 import PROTO_UDP

HEADER_LEN = 8

_LAYER = "udp"
_HEADER = struct.Struct("!HHHH")


def _check_pair(src_ip: Optional[str], dst_ip: Optional[str]) -> None:
    if (src_ip is None) != (dst_ip is None):
        raise ValueError("UDP checksum needs both src_ip and dst_ip (or neither)")


@dataclass(frozen=True)
class UdpDatagram:
    """A UDP datagram (header + payload)."""

    sport: int
    dport: int
    payload: bytes

    def encode(self, src_ip: Optional[str] = None, dst_ip: Optional[str] = None) -> bytes:
        """Header + payload; checksummed over the pseudo-header when both IPs are given,
        otherwise the checksum field is 0 ("none", allowed over IPv4)."""
        for name, port in (("sport", self.sport), ("dport", self.dport)):
            if not 0 <= port <= 0xFFFF:
                raise ValueError(f"UDP {name} {port} out of range 0..65535")
        length = HEADER_LEN + len(self.payload)
        if length > 0xFFFF:
            raise ValueError(f"UDP datagram of {length} bytes exceeds 65535")
        header = _HEADER.pack(self.sport, self.dport, length, 0)
        _check_pair(src_ip, dst_ip)
        if src_ip is None or dst_ip is None:
            return header + self.payload
        pseudo = ipv4_pseudo_header(src_ip, dst_ip, PROTO_UDP, length)
        csum = internet_checksum(pseudo + header + self.payload) or 0xFFFF
        return header[:6] + csum.to_bytes(2, "big") + self.payload

    @classmethod
    def decode(
        cls, data: bytes, src_ip: Optional[str] = None, dst_ip: Optional[str] = None
    ) -> UdpDatagram:
        """Parse a datagram; bytes past the length field are dropped.  A non-zero
        checksum is verified when both IPs are given."""
        _check_pair(src_ip, dst_ip)
        if len(data) < HEADER_LEN:
            raise need(_LAYER, "header", len(data), HEADER_LEN)
        sport, dport, length, csum = _HEADER.unpack_from(data)
        if not HEADER_LEN <= length <= len(data):
            raise DecodeError(
                _LAYER,
                "bad-length",
                f"length field {length} is outside 8..{len(data)} (bytes received)",
            )
        if csum and src_ip is not None and dst_ip is not None:
            pseudo = ipv4_pseudo_header(src_ip, dst_ip, PROTO_UDP, length)
            if internet_checksum(pseudo + bytes(data[:length])) != 0:
                raise DecodeError(
                    _LAYER,
                    "bad-checksum",
                    f"checksum {csum:#06x} is wrong for {src_ip}:{sport} -> {dst_ip}:{dport}",
                )
        return cls(sport=sport, dport=dport, payload=bytes(data[HEADER_LEN:length]))
