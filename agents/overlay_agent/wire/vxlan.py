"""VXLAN header (RFC 7348, section 5).

::

    0                   1                   2                   3
    |R|R|R|R|I|R|R|R|            Reserved                           |
    |                VXLAN Network Identifier (VNI) |   Reserved    |

On send the I flag is set and every reserved bit is zero.  On receive the
reserved bits are ignored (RFC 7348: "MUST be ignored on receipt"), so headers
from extensions such as GPE or GBP still decode; only a missing I flag is an error.

The data plane's one extension, Remote Checksum Offload between VTEPs agreed on it
(R flag and checksum start in reserved bits), lives in ``core/offload.py``; this codec
and every VTEP not agreed on RCO see only RFC 7348.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Tuple

from .errors import DecodeError, need

VXLAN_PORT = 4789
HEADER_LEN = 8
FLAG_I = 0x08
MAX_VNI = 0xFFFFFF

_LAYER = "vxlan"
# flags byte, 3 reserved bytes, then VNI (24 bits) and a reserved byte as one word
_HEADER = struct.Struct("!B3xI")


def _check_vni(vni: int) -> None:
    if not 0 <= vni <= MAX_VNI:
        raise ValueError(f"VXLAN VNI {vni} out of range 0..{MAX_VNI}")


@dataclass(frozen=True)
class VxlanHeader:
    """One VXLAN header.

    ``flags`` is the first byte as received; ``decode`` keeps reserved flag bits
    so that a dissector can report them.  ``encode`` writes ``flags`` as given
    (the default sets only the I flag), which lets a test craft odd headers.
    """

    vni: int
    flags: int = FLAG_I

    def encode(self) -> bytes:
        """The 8 header bytes; ValueError if the VNI or flags are out of range."""
        _check_vni(self.vni)
        if not 0 <= self.flags <= 0xFF:
            raise ValueError(f"VXLAN flags {self.flags:#x} do not fit in one byte")
        return _HEADER.pack(self.flags, self.vni << 8)

    @classmethod
    def decode(cls, data: bytes) -> VxlanHeader:
        """Parse the first 8 bytes of ``data`` (the UDP payload); the rest is ignored."""
        if len(data) < HEADER_LEN:
            raise need(_LAYER, "header", len(data), HEADER_LEN)
        flags, word = _HEADER.unpack_from(data)
        if not flags & FLAG_I:
            raise _no_i_flag(flags)
        return cls(vni=word >> 8, flags=flags)

    @property
    def reserved_flags(self) -> int:
        """Flag bits other than I (0 in anything we send)."""
        return self.flags & ~FLAG_I & 0xFF


def _no_i_flag(flags: int) -> DecodeError:
    return DecodeError(
        _LAYER,
        "no-i-flag",
        f"I flag (0x08) not set in flags byte {flags:#04x}: not a valid VXLAN header",
    )


@lru_cache(maxsize=65536)
def header_bytes(vni: int) -> bytes:
    """The 8-byte header for ``vni`` (I flag, reserved zero), cached per VNI."""
    _check_vni(vni)
    return _HEADER.pack(FLAG_I, vni << 8)


def encap(vni: int, frame: bytes) -> bytes:
    """Prefix an Ethernet ``frame`` with the VXLAN header: the UDP payload to send."""
    return header_bytes(vni) + frame


def decap(datagram: bytes) -> Tuple[int, bytes]:
    """Split a received UDP payload into ``(vni, inner_frame)``.

    Raises DecodeError exactly as ``VxlanHeader.decode`` does.
    """
    if len(datagram) < HEADER_LEN:
        raise need(_LAYER, "header", len(datagram), HEADER_LEN)
    flags = datagram[0]
    if not flags & FLAG_I:
        raise _no_i_flag(flags)
    return int.from_bytes(datagram[4:7], "big"), datagram[HEADER_LEN:]
