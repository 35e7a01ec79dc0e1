"""Ethernet II frames (no 802.1Q tags) and MAC address helpers."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import need

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
BROADCAST = b"\xff" * 6
HEADER_LEN = 14

_LAYER = "ethernet"
_HEADER = struct.Struct("!6s6sH")
_HEX = frozenset("0123456789abcdefABCDEF")


def mac_to_bytes(mac: str) -> bytes:
    """``"02:00:00:00:00:01"`` (or ``-`` separated) -> 6 bytes; ValueError otherwise."""
    if not isinstance(mac, str):
        raise ValueError(f"MAC address must be a str, got {type(mac).__name__}")
    sep = "-" if "-" in mac else ":"
    parts = mac.split(sep)
    if len(parts) != 6 or any(len(p) != 2 or not _HEX.issuperset(p) for p in parts):
        raise ValueError(f"not a MAC address: {mac!r} (want six hex pairs like 02:00:00:00:00:01)")
    return bytes(int(p, 16) for p in parts)


def mac_to_str(mac: bytes) -> str:
    """6 bytes -> lowercase colon form ``"02:00:00:00:00:01"``; ValueError otherwise."""
    if not isinstance(mac, (bytes, bytearray, memoryview)) or len(mac) != 6:
        raise ValueError(f"a MAC address is 6 bytes, got {mac!r}")
    return ":".join(f"{b:02x}" for b in bytes(mac))


def is_multicast(mac: bytes) -> bool:
    """True for group addresses (I/G bit set), which includes broadcast."""
    return bool(mac[0] & 0x01)


def _check_mac(name: str, mac: bytes) -> None:
    if len(mac) != 6:
        raise ValueError(f"Ethernet {name} MAC must be 6 bytes, got {len(mac)}")


@dataclass(frozen=True)
class EthernetFrame:
    """An Ethernet II frame without FCS; ``payload`` may include padding."""

    dst: bytes
    src: bytes
    ethertype: int
    payload: bytes

    def encode(self) -> bytes:
        """Header + payload (no padding to 60 bytes, no FCS)."""
        _check_mac("destination", self.dst)
        _check_mac("source", self.src)
        if not 0 <= self.ethertype <= 0xFFFF:
            raise ValueError(f"ethertype {self.ethertype:#x} out of range 0..0xffff")
        return _HEADER.pack(self.dst, self.src, self.ethertype) + self.payload

    @classmethod
    def decode(cls, data: bytes) -> EthernetFrame:
        """Parse a frame; everything after the 14-byte header is the payload."""
        if len(data) < HEADER_LEN:
            raise need(_LAYER, "header", len(data), HEADER_LEN)
        dst, src, ethertype = _HEADER.unpack_from(data)
        return cls(dst=dst, src=src, ethertype=ethertype, payload=bytes(data[HEADER_LEN:]))
