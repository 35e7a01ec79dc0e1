"""ICMP for IPv4 (RFC 792): echo, and the errors a PMTU probe meets."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .checksum import internet_checksum
from .errors import DecodeError, need

ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11
CODE_FRAG_NEEDED = 4
HEADER_LEN = 8
# RFC 1812 4.3.2.3: quote as much of the original as fits in a 576-byte datagram
MAX_QUOTE = 576 - 20 - HEADER_LEN

_LAYER = "icmp"
_HEADER = struct.Struct("!BBH4s")
_PAIR = struct.Struct("!HH")


@dataclass(frozen=True)
class IcmpMessage:
    """An ICMP message; ``rest`` is the 4 bytes after the checksum
    (identifier + sequence for echo, unused + next-hop MTU for frag-needed)."""

    type: int
    code: int
    rest: bytes
    payload: bytes

    @property
    def ident(self) -> int:
        """Echo identifier (first half of ``rest``)."""
        return int(_PAIR.unpack(self.rest)[0])

    @property
    def seq(self) -> int:
        """Echo sequence number (second half of ``rest``)."""
        return int(_PAIR.unpack(self.rest)[1])

    @property
    def next_hop_mtu(self) -> int:
        """Next-hop MTU of a "fragmentation needed" message (RFC 1191)."""
        return int(_PAIR.unpack(self.rest)[1])

    def encode(self) -> bytes:
        """The message with its checksum filled in."""
        if not (0 <= self.type <= 0xFF and 0 <= self.code <= 0xFF):
            raise ValueError(f"ICMP type {self.type} / code {self.code} out of range 0..255")
        if len(self.rest) != 4:
            raise ValueError(f"ICMP rest-of-header must be 4 bytes, got {len(self.rest)}")
        body = _HEADER.pack(self.type, self.code, 0, self.rest) + self.payload
        csum = internet_checksum(body)
        return body[:2] + csum.to_bytes(2, "big") + body[4:]

    @classmethod
    def decode(cls, data: bytes, verify_checksum: bool = True) -> IcmpMessage:
        """Parse a message (the whole IPv4 payload: the checksum covers all of it)."""
        if len(data) < HEADER_LEN:
            raise need(_LAYER, "header", len(data), HEADER_LEN)
        typ, code, csum, rest = _HEADER.unpack_from(data)
        if verify_checksum and internet_checksum(data) != 0:
            raise DecodeError(
                _LAYER,
                "bad-checksum",
                f"checksum {csum:#06x} does not match the message (type {typ} code {code})",
            )
        return cls(type=typ, code=code, rest=rest, payload=bytes(data[HEADER_LEN:]))


def echo_request(ident: int, seq: int, payload: bytes = b"") -> IcmpMessage:
    """An echo request ("ping") with the given identifier and sequence number."""
    return IcmpMessage(ICMP_ECHO_REQUEST, 0, _PAIR.pack(ident, seq), payload)


def echo_reply(request: IcmpMessage) -> IcmpMessage:
    """The echo reply to ``request`` (same identifier, sequence and payload)."""
    if request.type != ICMP_ECHO_REQUEST:
        raise ValueError(f"can only reply to an echo request (type 8), got type {request.type}")
    return IcmpMessage(ICMP_ECHO_REPLY, 0, request.rest, request.payload)


def frag_needed(mtu: int, original: bytes) -> IcmpMessage:
    """Destination unreachable / fragmentation needed, advertising ``mtu``.

    ``original`` is the IPv4 packet that did not fit; at most ``MAX_QUOTE``
    bytes of it (its header and the start of its payload) are quoted.
    """
    if not 0 <= mtu <= 0xFFFF:
        raise ValueError(f"next-hop MTU {mtu} out of range 0..65535")
    return IcmpMessage(
        ICMP_DEST_UNREACH, CODE_FRAG_NEEDED, _PAIR.pack(0, mtu), bytes(original[:MAX_QUOTE])
    )
