"""ARP for Ethernet/IPv4 (RFC 826), enough for a VTEP to answer requests locally."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import DecodeError, need
from .ethernet import ETH_P_ARP, ETH_P_IP, EthernetFrame
from .ipaddr import ip_to_bytes, ip_to_str

ARP_REQUEST = 1
ARP_REPLY = 2
HTYPE_ETHERNET = 1
PACKET_LEN = 28

_LAYER = "arp"
# htype, ptype, hlen, plen, op, sha, spa, tha, tpa
_PACKET = struct.Struct("!HHBBH6s4s6s4s")


@dataclass(frozen=True)
class ArpPacket:
    """An Ethernet/IPv4 ARP packet; MACs are 6 bytes, IPs dotted-quad strings."""

    op: int
    sender_mac: bytes
    sender_ip: str
    target_mac: bytes
    target_ip: str

    def encode(self) -> bytes:
        """The 28-byte ARP body; ValueError on bad MACs, IPs or op."""
        if not 0 <= self.op <= 0xFFFF:
            raise ValueError(f"ARP op {self.op} out of range 0..65535")
        for name, mac in (("sender", self.sender_mac), ("target", self.target_mac)):
            if len(mac) != 6:
                raise ValueError(f"ARP {name} MAC must be 6 bytes, got {len(mac)}")
        return _PACKET.pack(
            HTYPE_ETHERNET,
            ETH_P_IP,
            6,
            4,
            self.op,
            self.sender_mac,
            ip_to_bytes(self.sender_ip),
            self.target_mac,
            ip_to_bytes(self.target_ip),
        )

    @classmethod
    def decode(cls, data: bytes) -> ArpPacket:
        """Parse an ARP body (trailing Ethernet padding is ignored)."""
        if len(data) < PACKET_LEN:
            raise need(_LAYER, "packet", len(data), PACKET_LEN)
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _PACKET.unpack_from(data)
        if (htype, ptype, hlen, plen) != (HTYPE_ETHERNET, ETH_P_IP, 6, 4):
            raise DecodeError(
                _LAYER,
                "unsupported",
                f"only Ethernet/IPv4 ARP is supported, got htype={htype} "
                f"ptype={ptype:#06x} hlen={hlen} plen={plen}",
            )
        return cls(
            op=op,
            sender_mac=sha,
            sender_ip=ip_to_str(spa),
            target_mac=tha,
            target_ip=ip_to_str(tpa),
        )


def reply_to(request: ArpPacket, answer_mac: bytes) -> ArpPacket:
    """The reply saying "``request.target_ip`` is at ``answer_mac``"."""
    if request.op != ARP_REQUEST:
        raise ValueError(f"can only reply to an ARP request (op 1), got op {request.op}")
    return ArpPacket(
        op=ARP_REPLY,
        sender_mac=answer_mac,
        sender_ip=request.target_ip,
        target_mac=request.sender_mac,
        target_ip=request.sender_ip,
    )


def arp_reply_frame(request_frame: bytes, answer_mac: bytes) -> bytes:
    """The whole Ethernet frame answering the ARP request in ``request_frame``.

    Raises DecodeError if the frame is not a well-formed Ethernet/IPv4 ARP
    request (reason "not-arp" for another ethertype, "not-request" for other ops).
    """
    frame = EthernetFrame.decode(request_frame)
    if frame.ethertype != ETH_P_ARP:
        raise DecodeError(
            _LAYER, "not-arp", f"ethertype {frame.ethertype:#06x} is not ARP (0x0806)"
        )
    request = ArpPacket.decode(frame.payload)
    if request.op != ARP_REQUEST:
        raise DecodeError(_LAYER, "not-request", f"ARP op {request.op} is not a request (1)")
    reply = reply_to(request, answer_mac)
    return EthernetFrame(
        dst=request.sender_mac, src=answer_mac, ethertype=ETH_P_ARP, payload=reply.encode()
    ).encode()
