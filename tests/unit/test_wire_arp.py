"""Ethernet/IPv4 ARP: exact bytes, replies, errors."""

from __future__ import annotations

import pytest

from overlay_agent.wire import DecodeError
from overlay_agent.wire.arp import (
    ARP_REPLY,
    ARP_REQUEST,
    ArpPacket,
    arp_reply_frame,
    reply_to,
)
from overlay_agent.wire.ethernet import BROADCAST, ETH_P_ARP, ETH_P_IP, EthernetFrame

REQ_MAC = b"\x02\x00\x00\x00\x00\x01"
ANS_MAC = b"\x02\x00\x00\x00\x00\x02"
ZERO_MAC = b"\x00" * 6

REQUEST = ArpPacket(
    op=ARP_REQUEST,
    sender_mac=REQ_MAC,
    sender_ip="10.0.0.1",
    target_mac=ZERO_MAC,
    target_ip="10.0.0.2",
)
REQUEST_BYTES = (
    b"\x00\x01"  # htype Ethernet
    b"\x08\x00"  # ptype IPv4
    b"\x06\x04"  # hlen, plen
    b"\x00\x01"  # op request
    b"\x02\x00\x00\x00\x00\x01"  # sender MAC
    b"\x0a\x00\x00\x01"  # sender IP
    b"\x00\x00\x00\x00\x00\x00"  # target MAC
    b"\x0a\x00\x00\x02"  # target IP
)
REQUEST_FRAME = BROADCAST + REQ_MAC + b"\x08\x06" + REQUEST_BYTES


def test_exact_bytes() -> None:
    assert REQUEST.encode() == REQUEST_BYTES
    assert ArpPacket.decode(REQUEST_BYTES) == REQUEST


def test_decode_ignores_ethernet_padding() -> None:
    assert ArpPacket.decode(REQUEST_BYTES + b"\x00" * 18) == REQUEST


def test_reply_to() -> None:
    reply = reply_to(REQUEST, ANS_MAC)
    assert reply == ArpPacket(ARP_REPLY, ANS_MAC, "10.0.0.2", REQ_MAC, "10.0.0.1")
    assert reply.encode() == (
        b"\x00\x01\x08\x00\x06\x04\x00\x02"
        + ANS_MAC
        + b"\x0a\x00\x00\x02"
        + REQ_MAC
        + b"\x0a\x00\x00\x01"
    )


def test_reply_to_rejects_reply() -> None:
    with pytest.raises(ValueError, match="request"):
        reply_to(reply_to(REQUEST, ANS_MAC), ANS_MAC)


def test_arp_reply_frame_exact_bytes() -> None:
    expected = (
        REQ_MAC
        + ANS_MAC
        + b"\x08\x06"
        + b"\x00\x01\x08\x00\x06\x04\x00\x02"
        + ANS_MAC
        + b"\x0a\x00\x00\x02"
        + REQ_MAC
        + b"\x0a\x00\x00\x01"
    )
    assert arp_reply_frame(REQUEST_FRAME, ANS_MAC) == expected
    # padded to the 60-byte Ethernet minimum, as a NIC would deliver it
    assert arp_reply_frame(REQUEST_FRAME + b"\x00" * 18, ANS_MAC) == expected


def test_arp_reply_frame_rejects_other_ethertype() -> None:
    frame = EthernetFrame(BROADCAST, REQ_MAC, ETH_P_IP, REQUEST_BYTES).encode()
    with pytest.raises(DecodeError) as info:
        arp_reply_frame(frame, ANS_MAC)
    assert (info.value.layer, info.value.reason) == ("arp", "not-arp")


def test_arp_reply_frame_rejects_reply() -> None:
    reply = reply_to(REQUEST, ANS_MAC)
    frame = EthernetFrame(REQ_MAC, ANS_MAC, ETH_P_ARP, reply.encode()).encode()
    with pytest.raises(DecodeError) as info:
        arp_reply_frame(frame, ANS_MAC)
    assert info.value.reason == "not-request"


@pytest.mark.parametrize("size", [0, 8, 27])
def test_short(size: int) -> None:
    with pytest.raises(DecodeError) as info:
        ArpPacket.decode(REQUEST_BYTES[:size])
    assert (info.value.layer, info.value.reason) == ("arp", "short")
    assert str(info.value) == f"arp: short packet ({size} bytes, need 28)"


@pytest.mark.parametrize(
    "prefix",
    [
        b"\x00\x06\x08\x00\x06\x04",  # htype IEEE 802
        b"\x00\x01\x86\xdd\x06\x10",  # IPv6 (not ARP's business)
        b"\x00\x01\x08\x00\x08\x04",  # hlen 8
        b"\x00\x01\x08\x00\x06\x10",  # plen 16
    ],
)
def test_unsupported(prefix: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        ArpPacket.decode(prefix + REQUEST_BYTES[6:])
    assert (info.value.layer, info.value.reason) == ("arp", "unsupported")
    assert "Ethernet/IPv4" in str(info.value)


@pytest.mark.parametrize(
    "packet",
    [
        ArpPacket(1, b"\x00" * 5, "10.0.0.1", ZERO_MAC, "10.0.0.2"),
        ArpPacket(1, REQ_MAC, "10.0.0.1", b"", "10.0.0.2"),
        ArpPacket(1, REQ_MAC, "10.0.0.256", ZERO_MAC, "10.0.0.2"),
        ArpPacket(1, REQ_MAC, "10.0.0.1", ZERO_MAC, "fe80::1"),
        ArpPacket(0x10000, REQ_MAC, "10.0.0.1", ZERO_MAC, "10.0.0.2"),
    ],
)
def test_encode_rejects(packet: ArpPacket) -> None:
    with pytest.raises(ValueError):
        packet.encode()
