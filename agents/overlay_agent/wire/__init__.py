"""Sans-IO wire codecs: bytes <-> frozen dataclasses, no I/O, no clock.

One module per layer: ``vxlan``, ``ethernet``, ``arp``, ``ipv4``, ``udp``,
``icmp``, plus ``checksum``.  Every ``decode`` raises only ``DecodeError`` on
malformed input; every ``encode`` raises ``ValueError`` on out-of-range fields.
Constants that clash between layers (``HEADER_LEN``) stay in their modules.
"""

from __future__ import annotations

from .arp import ArpPacket, arp_reply_frame, reply_to
from .checksum import internet_checksum
from .errors import DecodeError
from .ethernet import EthernetFrame, is_multicast, mac_to_bytes, mac_to_str
from .icmp import IcmpMessage, echo_reply, echo_request, frag_needed
from .ipv4 import IPv4Packet
from .udp import UdpDatagram
from .vxlan import VxlanHeader, decap, encap, header_bytes

__all__ = [
    "ArpPacket",
    "DecodeError",
    "EthernetFrame",
    "IPv4Packet",
    "IcmpMessage",
    "UdpDatagram",
    "VxlanHeader",
    "arp_reply_frame",
    "decap",
    "echo_reply",
    "echo_request",
    "encap",
    "frag_needed",
    "header_bytes",
    "internet_checksum",
    "is_multicast",
    "mac_to_bytes",
    "mac_to_str",
    "reply_to",
]
