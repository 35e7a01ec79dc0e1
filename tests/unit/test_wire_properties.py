"""Property tests: decode(encode(x)) == x, and garbage only ever raises DecodeError."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from overlay_agent.wire import (
    ArpPacket,
    DecodeError,
    EthernetFrame,
    IcmpMessage,
    IPv4Packet,
    UdpDatagram,
    VxlanHeader,
    arp_reply_frame,
    decap,
    encap,
)
from overlay_agent.wire.vxlan import FLAG_I, MAX_VNI

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
macs = st.binary(min_size=6, max_size=6)
ips = st.ip_addresses(v=4).map(str)
payloads = st.binary(max_size=1600)

vxlan_headers = st.builds(
    VxlanHeader, vni=st.integers(0, MAX_VNI), flags=u8.map(lambda f: f | FLAG_I)
)
ethernet_frames = st.builds(EthernetFrame, dst=macs, src=macs, ethertype=u16, payload=payloads)
arp_packets = st.builds(
    ArpPacket, op=u16, sender_mac=macs, sender_ip=ips, target_mac=macs, target_ip=ips
)
ipv4_packets = st.builds(
    IPv4Packet,
    src=ips,
    dst=ips,
    proto=u8,
    payload=payloads,
    ttl=u8,
    ident=u16,
    dont_fragment=st.booleans(),
    more_fragments=st.booleans(),
    frag_offset=st.integers(0, 0x1FFF).map(lambda n: n * 8),
    tos=u8,
    options=st.integers(0, 10).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
)
udp_datagrams = st.builds(UdpDatagram, sport=u16, dport=u16, payload=payloads)
icmp_messages = st.builds(
    IcmpMessage, type=u8, code=u8, rest=st.binary(min_size=4, max_size=4), payload=payloads
)


# -- round trips ------------------------------------------------------------------------


@given(vxlan_headers)
def test_vxlan_roundtrip(header: VxlanHeader) -> None:
    assert VxlanHeader.decode(header.encode()) == header


@given(st.integers(0, MAX_VNI), payloads)
def test_encap_decap_roundtrip(vni: int, frame: bytes) -> None:
    assert decap(encap(vni, frame)) == (vni, frame)


@given(ethernet_frames)
def test_ethernet_roundtrip(frame: EthernetFrame) -> None:
    assert EthernetFrame.decode(frame.encode()) == frame


@given(arp_packets)
def test_arp_roundtrip(packet: ArpPacket) -> None:
    assert ArpPacket.decode(packet.encode()) == packet


@given(ipv4_packets)
def test_ipv4_roundtrip(packet: IPv4Packet) -> None:
    raw = packet.encode()
    assert len(raw) == packet.total_len
    assert IPv4Packet.decode(raw) == packet


@given(udp_datagrams, ips, ips)
def test_udp_roundtrip(dgram: UdpDatagram, src: str, dst: str) -> None:
    assert UdpDatagram.decode(dgram.encode()) == dgram
    raw = dgram.encode(src, dst)
    assert raw[6:8] != b"\x00\x00"  # a checksum is always sent when IPs are known
    assert UdpDatagram.decode(raw, src, dst) == dgram


@given(icmp_messages)
def test_icmp_roundtrip(msg: IcmpMessage) -> None:
    assert IcmpMessage.decode(msg.encode()) == msg


# -- malformed input ----------------------------------------------------------------------

DECODERS: dict[str, Callable[[bytes], object]] = {
    "vxlan": VxlanHeader.decode,
    "decap": decap,
    "ethernet": EthernetFrame.decode,
    "arp": ArpPacket.decode,
    "arp_reply_frame": lambda data: arp_reply_frame(data, b"\x02\x00\x00\x00\x00\x01"),
    "ipv4": IPv4Packet.decode,
    "ipv4-nocheck": lambda data: IPv4Packet.decode(data, verify_checksum=False),
    "udp": UdpDatagram.decode,
    "udp-checked": lambda data: UdpDatagram.decode(data, "10.0.0.1", "10.0.0.2"),
    "icmp": IcmpMessage.decode,
    "icmp-nocheck": lambda data: IcmpMessage.decode(data, verify_checksum=False),
}


def _decode_or_decode_error(name: str, data: bytes) -> None:
    try:
        DECODERS[name](data)
    except DecodeError as e:
        assert e.reason
        assert str(e).startswith(f"{e.layer}: ")
    # any other exception type propagates and fails the test


@pytest.mark.parametrize("name", sorted(DECODERS))
@given(data=st.binary(max_size=128))
def test_random_bytes_raise_only_decode_error(name: str, data: bytes) -> None:
    _decode_or_decode_error(name, data)


def _valid_samples() -> st.SearchStrategy[bytes]:
    arp_frames = st.builds(
        lambda p, src: EthernetFrame(b"\xff" * 6, src, 0x0806, p.encode()).encode(),
        arp_packets,
        macs,
    )
    return st.one_of(
        vxlan_headers.map(lambda h: h.encode()),
        ethernet_frames.map(lambda f: f.encode()),
        arp_packets.map(lambda p: p.encode()),
        arp_frames,
        ipv4_packets.map(lambda p: p.encode()),
        udp_datagrams.map(lambda d: d.encode("10.0.0.1", "10.0.0.2")),
        icmp_messages.map(lambda m: m.encode()),
    )


@st.composite
def mutated(draw: Callable[[st.SearchStrategy[Any]], Any]) -> bytes:
    """A valid encoding, then truncated and/or with a few bytes overwritten."""
    data = bytearray(draw(_valid_samples()))
    for _ in range(draw(st.integers(0, 4))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(u8)
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) if draw(st.booleans()) else bytes(data)


@pytest.mark.parametrize("name", sorted(DECODERS))
@given(data=mutated())
def test_mutated_packets_raise_only_decode_error(name: str, data: bytes) -> None:
    _decode_or_decode_error(name, data)


@given(data=st.binary(max_size=64))
def test_decode_error_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        VxlanHeader.decode(b"\x00" + data[:6])
