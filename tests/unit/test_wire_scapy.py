"""scapy as the oracle: it dissects what we build, and we parse what it builds."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("scapy")

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN

from overlay_agent.wire import (
    ArpPacket,
    EthernetFrame,
    IcmpMessage,
    IPv4Packet,
    UdpDatagram,
    VxlanHeader,
    arp_reply_frame,
    decap,
    encap,
    mac_to_bytes,
    mac_to_str,
)
from overlay_agent.wire.arp import ARP_REQUEST
from overlay_agent.wire.ethernet import BROADCAST, ETH_P_ARP, ETH_P_IP
from overlay_agent.wire.icmp import echo_request, frag_needed
from overlay_agent.wire.ipv4 import PROTO_ICMP, PROTO_UDP
from overlay_agent.wire.vxlan import MAX_VNI, VXLAN_PORT

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"
VTEP_MAC_1 = "02:00:00:00:01:01"
VTEP_MAC_2 = "02:00:00:00:01:02"
ORACLE = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ips = st.ip_addresses(v=4).map(str)


def rebuilt_with_fresh_checksum(pkt: Any, layer: Any) -> bytes:
    """scapy's own bytes for ``pkt`` after dropping the checksum it dissected in ``layer``."""
    clone = pkt.copy()
    del clone[layer].chksum
    return bytes(clone)


# -- VXLAN ---------------------------------------------------------------------------


@given(st.integers(0, MAX_VNI))
@ORACLE
def test_scapy_reads_our_vxlan_header(vni: int) -> None:
    parsed = VXLAN(VxlanHeader(vni).encode())
    assert parsed.vni == vni
    assert int(parsed.flags) == 0x08
    assert parsed.reserved1 == 0
    assert parsed.reserved2 == 0


def test_scapy_reads_our_encap() -> None:
    inner = EthernetFrame(mac_to_bytes(MAC_B), mac_to_bytes(MAC_A), ETH_P_IP, b"\x00" * 46)
    parsed = VXLAN(encap(4096, inner.encode()))
    assert parsed.vni == 4096
    assert parsed[Ether].dst == MAC_B
    assert parsed[Ether].src == MAC_A


@given(st.integers(0, MAX_VNI))
@ORACLE
def test_we_read_scapy_vxlan(vni: int) -> None:
    raw = bytes(VXLAN(vni=vni))
    assert VxlanHeader.decode(raw) == VxlanHeader(vni)
    assert decap(raw) == (vni, b"")


def test_we_read_scapy_gpe_style_flags() -> None:
    # scapy sets NextProtocol (0x04) and fills reserved bytes for VXLAN/Ether; we ignore them
    raw = bytes(VXLAN(vni=77) / Ether(dst=MAC_B, src=MAC_A))
    assert raw[0] == 0x0C
    header = VxlanHeader.decode(raw)
    assert (header.vni, header.flags, header.reserved_flags) == (77, 0x0C, 0x04)
    vni, frame = decap(raw)
    assert vni == 77
    assert EthernetFrame.decode(frame).dst == mac_to_bytes(MAC_B)


# -- Ethernet and ARP ---------------------------------------------------------------------


def test_scapy_reads_our_ethernet() -> None:
    frame = EthernetFrame(BROADCAST, mac_to_bytes(MAC_A), 0x88B5, b"hello")
    parsed = Ether(frame.encode())
    assert (parsed.dst, parsed.src, parsed.type) == ("ff:ff:ff:ff:ff:ff", MAC_A, 0x88B5)
    assert bytes(parsed.payload) == b"hello"


def test_scapy_reads_our_arp_reply_frame() -> None:
    request = Ether(dst="ff:ff:ff:ff:ff:ff", src=MAC_A) / ARP(
        op=1, hwsrc=MAC_A, psrc="10.0.0.1", hwdst="00:00:00:00:00:00", pdst="10.0.0.2"
    )
    reply = Ether(arp_reply_frame(bytes(request), mac_to_bytes(MAC_B)))
    assert (reply.dst, reply.src, reply.type) == (MAC_A, MAC_B, ETH_P_ARP)
    arp = reply[ARP]
    assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen, arp.op) == (1, 0x0800, 6, 4, 2)
    assert (arp.hwsrc, arp.psrc) == (MAC_B, "10.0.0.2")
    assert (arp.hwdst, arp.pdst) == (MAC_A, "10.0.0.1")
    assert reply[ARP].answers(request[ARP])


@given(op=st.integers(1, 2), sip=ips, tip=ips, smac=st.binary(min_size=6, max_size=6))
@ORACLE
def test_arp_both_ways(op: int, sip: str, tip: str, smac: bytes) -> None:
    ours = ArpPacket(op, smac, sip, b"\x00" * 6, tip)
    parsed = ARP(ours.encode())
    assert (parsed.op, parsed.hwsrc, parsed.psrc, parsed.pdst) == (op, mac_to_str(smac), sip, tip)
    theirs = ARP(op=op, hwsrc=mac_to_str(smac), psrc=sip, hwdst="00:00:00:00:00:00", pdst=tip)
    assert ArpPacket.decode(bytes(theirs)) == ours


# -- IPv4, UDP, ICMP ----------------------------------------------------------------------


@given(
    src=ips,
    dst=ips,
    ttl=st.integers(0, 255),
    ident=st.integers(0, 0xFFFF),
    df=st.booleans(),
    mf=st.booleans(),
    frag=st.integers(0, 0x1FFF),
    tos=st.integers(0, 255),
    payload=st.binary(max_size=64),
)
@ORACLE
def test_scapy_reads_our_ipv4(
    src: str,
    dst: str,
    ttl: int,
    ident: int,
    df: bool,
    mf: bool,
    frag: int,
    tos: int,
    payload: bytes,
) -> None:
    ours = IPv4Packet(src, dst, 253, payload, ttl, ident, df, mf, frag * 8, tos)
    raw = ours.encode()
    parsed = IP(raw)
    assert (parsed.version, parsed.ihl, parsed.len) == (4, 5, 20 + len(payload))
    assert (parsed.src, parsed.dst, parsed.proto, parsed.ttl) == (src, dst, 253, ttl)
    assert (parsed.id, parsed.frag, parsed.tos) == (ident, frag, tos)
    assert bool(parsed.flags.DF) is df
    assert bool(parsed.flags.MF) is mf
    assert rebuilt_with_fresh_checksum(parsed, IP) == raw  # scapy agrees on the checksum


def test_scapy_reads_our_ipv4_options() -> None:
    raw = IPv4Packet("10.0.0.1", "10.0.0.2", 17, b"", options=b"\x01\x01\x01\x00").encode()
    parsed = IP(raw)
    assert parsed.ihl == 6
    assert rebuilt_with_fresh_checksum(parsed, IP) == raw


@given(
    src=ips,
    dst=ips,
    ttl=st.integers(1, 255),
    ident=st.integers(0, 0xFFFF),
    df=st.booleans(),
    payload=st.binary(max_size=64),
)
@ORACLE
def test_we_read_scapy_ipv4(
    src: str, dst: str, ttl: int, ident: int, df: bool, payload: bytes
) -> None:
    raw = bytes(
        IP(src=src, dst=dst, ttl=ttl, id=ident, flags="DF" if df else 0, proto=99) / payload
    )
    assert IPv4Packet.decode(raw) == IPv4Packet(src, dst, 99, payload, ttl, ident, df)


@given(sport=st.integers(0, 0xFFFF), dport=st.integers(0, 0xFFFF), payload=st.binary(max_size=64))
@ORACLE
def test_udp_checksum_agrees_with_scapy(sport: int, dport: int, payload: bytes) -> None:
    dgram = UdpDatagram(sport, dport, payload)
    segment = dgram.encode("192.0.2.1", "198.51.100.7")
    raw = IPv4Packet("192.0.2.1", "198.51.100.7", PROTO_UDP, segment).encode()
    parsed = IP(raw)
    assert (parsed[UDP].sport, parsed[UDP].dport, parsed[UDP].len) == (
        sport,
        dport,
        8 + len(payload),
    )
    assert rebuilt_with_fresh_checksum(parsed, UDP) == raw
    theirs = bytes(
        IP(src="192.0.2.1", dst="198.51.100.7") / UDP(sport=sport, dport=dport) / payload
    )
    ip = IPv4Packet.decode(theirs)
    assert UdpDatagram.decode(ip.payload, ip.src, ip.dst) == dgram
    assert ip.payload == segment


@given(ident=st.integers(0, 0xFFFF), seq=st.integers(0, 0xFFFF), payload=st.binary(max_size=64))
@ORACLE
def test_icmp_echo_agrees_with_scapy(ident: int, seq: int, payload: bytes) -> None:
    raw = echo_request(ident, seq, payload).encode()
    parsed = ICMP(raw)
    assert (parsed.type, parsed.code, parsed.id, parsed.seq) == (8, 0, ident, seq)
    assert rebuilt_with_fresh_checksum(parsed, ICMP) == raw
    theirs = bytes(ICMP(type=0, id=ident, seq=seq) / payload)
    msg = IcmpMessage.decode(theirs)
    assert (msg.type, msg.ident, msg.seq, msg.payload) == (0, ident, seq, payload)


def test_icmp_frag_needed_agrees_with_scapy() -> None:
    original = IPv4Packet(
        "10.0.0.1", "10.0.0.2", PROTO_UDP, b"\x00" * 1472, dont_fragment=True
    ).encode()
    raw = frag_needed(1450, original).encode()
    packet = IPv4Packet("10.0.0.254", "10.0.0.1", PROTO_ICMP, raw).encode()
    parsed = IP(packet)
    icmp = parsed[ICMP]
    assert (icmp.type, icmp.code, icmp.nexthopmtu) == (3, 4, 1450)
    assert rebuilt_with_fresh_checksum(parsed, ICMP) == packet
    theirs = bytes(ICMP(type=3, code=4, nexthopmtu=1300) / original[:28])
    msg = IcmpMessage.decode(theirs)
    assert (msg.type, msg.code, msg.next_hop_mtu, msg.payload) == (3, 4, 1300, original[:28])


# -- full stacks ------------------------------------------------------------------------------


@pytest.mark.parametrize("vni", [1, 100, 4096, MAX_VNI])
def test_we_parse_scapy_full_vxlan_stack(vni: int) -> None:
    pkt = (
        Ether(dst=VTEP_MAC_2, src=VTEP_MAC_1)
        / IP(src="192.0.2.1", dst="192.0.2.2", flags="DF")
        / UDP(sport=49152, dport=4789)
        / VXLAN(vni=vni)
        / Ether(dst="ff:ff:ff:ff:ff:ff", src=MAC_A)
        / ARP(op=1, hwsrc=MAC_A, psrc="10.0.0.1", pdst="10.0.0.2")
    )
    outer = EthernetFrame.decode(bytes(pkt))
    assert (outer.dst, outer.src, outer.ethertype) == (
        mac_to_bytes(VTEP_MAC_2),
        mac_to_bytes(VTEP_MAC_1),
        ETH_P_IP,
    )
    ip = IPv4Packet.decode(outer.payload)
    assert (ip.src, ip.dst, ip.proto, ip.dont_fragment) == ("192.0.2.1", "192.0.2.2", 17, True)
    udp = UdpDatagram.decode(ip.payload, ip.src, ip.dst)
    assert (udp.sport, udp.dport) == (49152, VXLAN_PORT)
    got_vni, inner_raw = decap(udp.payload)
    assert got_vni == vni
    inner = EthernetFrame.decode(inner_raw)
    assert (inner.dst, inner.src, inner.ethertype) == (BROADCAST, mac_to_bytes(MAC_A), ETH_P_ARP)
    arp = ArpPacket.decode(inner.payload)
    assert arp == ArpPacket(ARP_REQUEST, mac_to_bytes(MAC_A), "10.0.0.1", b"\x00" * 6, "10.0.0.2")


def test_scapy_parses_our_full_vxlan_stack() -> None:
    arp = ArpPacket(ARP_REQUEST, mac_to_bytes(MAC_A), "10.0.0.1", b"\x00" * 6, "10.0.0.2")
    inner = EthernetFrame(BROADCAST, mac_to_bytes(MAC_A), ETH_P_ARP, arp.encode()).encode()
    udp = UdpDatagram(49152, VXLAN_PORT, encap(4096, inner)).encode("192.0.2.1", "192.0.2.2")
    ip = IPv4Packet("192.0.2.1", "192.0.2.2", PROTO_UDP, udp, dont_fragment=True).encode()
    raw = EthernetFrame(mac_to_bytes(VTEP_MAC_2), mac_to_bytes(VTEP_MAC_1), ETH_P_IP, ip).encode()
    pkt = Ether(raw)
    assert pkt[IP].src == "192.0.2.1"
    assert pkt[UDP].dport == VXLAN_PORT
    assert pkt[VXLAN].vni == 4096
    assert int(pkt[VXLAN].flags) == 0x08
    assert pkt[VXLAN].payload.src == MAC_A
    assert pkt[ARP].psrc == "10.0.0.1"
    assert pkt[ARP].pdst == "10.0.0.2"
    # both checksums as scapy would compute them
    clone = pkt.copy()
    del clone[IP].chksum
    del clone[UDP].chksum
    assert bytes(clone) == raw
