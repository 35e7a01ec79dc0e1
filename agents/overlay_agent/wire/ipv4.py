"""IPv4 packets (RFC 791): header with options, fragmentation fields, checksum."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .checksum import internet_checksum
from .errors import DecodeError, need
from .ipaddr import ip_to_bytes, ip_to_str

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
MIN_HEADER_LEN = 20
MAX_OPTIONS_LEN = 40
FLAG_DF = 0x4000
FLAG_MF = 0x2000

_LAYER = "ipv4"
# ver/ihl, tos, total length, ident, flags/fragment offset, ttl, proto, checksum, src, dst
_HEADER = struct.Struct("!BBHHHBBH4s4s")


@dataclass(frozen=True)
class IPv4Packet:
    """An IPv4 packet; ``frag_offset`` is in bytes (a multiple of 8)."""

    src: str
    dst: str
    proto: int
    payload: bytes
    ttl: int = 64
    ident: int = 0
    dont_fragment: bool = False
    more_fragments: bool = False
    frag_offset: int = 0
    tos: int = 0
    options: bytes = b""

    @property
    def header_len(self) -> int:
        return MIN_HEADER_LEN + len(self.options)

    @property
    def total_len(self) -> int:
        return self.header_len + len(self.payload)

    def encode(self) -> bytes:
        """Header (checksum and total length filled in) + payload."""
        if len(self.options) > MAX_OPTIONS_LEN or len(self.options) % 4:
            raise ValueError(
                f"IPv4 options must be a multiple of 4 bytes, at most 40, got {len(self.options)}"
            )
        total = self.total_len
        if total > 0xFFFF:
            raise ValueError(f"IPv4 packet of {total} bytes exceeds 65535")
        if self.frag_offset % 8 or not 0 <= self.frag_offset <= 0x1FFF * 8:
            raise ValueError(
                f"IPv4 fragment offset {self.frag_offset} must be a multiple of 8 in 0..65528"
            )
        for name, value, top in (
            ("ttl", self.ttl, 0xFF),
            ("proto", self.proto, 0xFF),
            ("tos", self.tos, 0xFF),
            ("ident", self.ident, 0xFFFF),
        ):
            if not 0 <= value <= top:
                raise ValueError(f"IPv4 {name} {value} out of range 0..{top}")
        frag = self.frag_offset >> 3
        if self.dont_fragment:
            frag |= FLAG_DF
        if self.more_fragments:
            frag |= FLAG_MF
        header = (
            _HEADER.pack(
                0x40 | (self.header_len >> 2),
                self.tos,
                total,
                self.ident,
                frag,
                self.ttl,
                self.proto,
                0,
                ip_to_bytes(self.src),
                ip_to_bytes(self.dst),
            )
            + self.options
        )
        csum = internet_checksum(header)
        return header[:10] + csum.to_bytes(2, "big") + header[12:] + self.payload

    @classmethod
    def decode(cls, data: bytes, verify_checksum: bool = True) -> IPv4Packet:
        """Parse a packet; bytes past the total length (Ethernet padding) are dropped."""
        if len(data) < MIN_HEADER_LEN:
            raise need(_LAYER, "header", len(data), MIN_HEADER_LEN)
        ver_ihl, tos, total, ident, frag, ttl, proto, _csum, src, dst = _HEADER.unpack_from(data)
        version = ver_ihl >> 4
        if version != 4:
            raise DecodeError(_LAYER, "bad-version", f"version field is {version}, not 4")
        hlen = (ver_ihl & 0x0F) * 4
        if hlen < MIN_HEADER_LEN:
            raise DecodeError(
                _LAYER, "bad-ihl", f"header length {hlen} bytes is below the minimum 20"
            )
        if len(data) < hlen:
            raise need(_LAYER, "header with options", len(data), hlen)
        if not hlen <= total <= len(data):
            raise DecodeError(
                _LAYER,
                "bad-length",
                f"total length field {total} is outside {hlen}..{len(data)} "
                f"(header length..bytes received)",
            )
        if verify_checksum and internet_checksum(data[:hlen]) != 0:
            raise DecodeError(
                _LAYER,
                "bad-checksum",
                f"header checksum {_csum:#06x} does not match the header "
                f"({ip_to_str(src)} -> {ip_to_str(dst)})",
            )
        return cls(
            src=ip_to_str(src),
            dst=ip_to_str(dst),
            proto=proto,
            payload=bytes(data[hlen:total]),
            ttl=ttl,
            ident=ident,
            dont_fragment=bool(frag & FLAG_DF),
            more_fragments=bool(frag & FLAG_MF),
            frag_offset=(frag & 0x1FFF) << 3,
            tos=tos,
            options=bytes(data[MIN_HEADER_LEN:hlen]),
        )
