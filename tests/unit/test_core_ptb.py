"""The ICMP "fragmentation needed" a VTEP writes into an endpoint whose frame did not fit the
underlay path (core/ptb.py, VtepCore.too_big / relay_too_big): exact bytes, scapy as the oracle,
the cases that are owed nothing, and the rate limit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overlay_agent.core import ptb
from overlay_agent.core.vtep import DELIVER, VtepCore
from overlay_agent.wire.checksum import internet_checksum
from overlay_agent.wire.ethernet import ETH_P_ARP, ETH_P_IP, EthernetFrame
from overlay_agent.wire.icmp import IcmpMessage, echo_request, frag_needed
from overlay_agent.wire.ipaddr import ip_to_bytes
from overlay_agent.wire.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, IPv4Packet

VNI = 4096
MAC_SRC = bytes.fromhex("02420a0a0002")
MAC_DST = bytes.fromhex("02420a0a0003")
IP_SRC, IP_DST = "10.10.0.2", "10.10.0.3"
VXLAN = b"\x08\x00\x00\x00" + VNI.to_bytes(3, "big") + b"\x00"


def tcp_segment(payload_len: int = 1398) -> bytes:
    """A TCP header (ports 40000 -> 5201, seq 0x01020304) and payload: checksums do not matter
    to what is quoted."""
    header = (40000).to_bytes(2, "big") + (5201).to_bytes(2, "big") + bytes.fromhex(
        "01020304000000005010ffff00000000")
    return header + bytes(i & 0xFF for i in range(payload_len))


def datagram(payload: bytes = b"", proto: int = PROTO_TCP, df: bool = True, frag_offset: int = 0,
             src: str = IP_SRC, dst: str = IP_DST, dst_mac: bytes = MAC_DST,
             vxlan: bytes = VXLAN) -> bytes:
    packet = IPv4Packet(src=src, dst=dst, proto=proto, payload=payload or tcp_segment(),
                        ttl=64, ident=0x1234, dont_fragment=df, frag_offset=frag_offset)
    return vxlan + EthernetFrame(dst_mac, MAC_SRC, ETH_P_IP, packet.encode()).encode()


def test_inner_mtu_is_path_mtu_less_the_vxlan_overhead() -> None:
    assert ptb.inner_mtu(1400, False) == 1350
    assert ptb.inner_mtu(1400, True) == 1330
    assert ptb.inner_mtu(1500, False) == 1450


def test_frag_needed_exact_bytes() -> None:
    d = datagram()
    inner = d[8 + 14:]  # the IPv4 packet that did not fit (1438 bytes)
    frame = ptb.frag_needed_frame(d, 1350, ident=7)
    assert frame is not None
    want_icmp = frag_needed(1350, inner).encode()
    assert want_icmp[:8] == bytes.fromhex("0304") + want_icmp[2:4] + bytes.fromhex("00000546")
    assert want_icmp[8:] == inner[:548]  # RFC 1812: as much as fits in 576 bytes of IP
    want_ip = IPv4Packet(src=IP_DST, dst=IP_SRC, proto=PROTO_ICMP, payload=want_icmp, ttl=64,
                         ident=7, tos=0xC0).encode()
    assert frame == MAC_SRC + MAC_DST + b"\x08\x00" + want_ip
    assert len(frame) == 14 + 576
    ip = frame[14:34]
    assert internet_checksum(ip) == 0 and internet_checksum(frame[34:]) == 0
    msg = IcmpMessage.decode(frame[34:])
    assert (msg.type, msg.code, msg.next_hop_mtu) == (3, 4, 1350)


def test_scapy_reads_it_as_frag_needed_quoting_the_tcp_segment() -> None:
    pytest.importorskip("scapy")
    from scapy.layers.inet import ICMP, IP, IPerror, TCPerror
    from scapy.layers.l2 import Ether

    frame = ptb.frag_needed_frame(datagram(), 1350, ident=9)
    assert frame is not None
    pkt = Ether(frame)
    assert (pkt.src, pkt.dst) == ("02:42:0a:0a:00:03", "02:42:0a:0a:00:02")
    assert (pkt[IP].src, pkt[IP].dst, pkt[IP].proto, pkt[IP].tos) == (IP_DST, IP_SRC, 1, 0xC0)
    assert (pkt[ICMP].type, pkt[ICMP].code, pkt[ICMP].nexthopmtu) == (3, 4, 1350)
    assert (pkt[IPerror].src, pkt[IPerror].dst, pkt[IPerror].len) == (IP_SRC, IP_DST, 1438)
    assert (pkt[TCPerror].sport, pkt[TCPerror].dport, pkt[TCPerror].seq) == (40000, 5201,
                                                                            0x01020304)
    # scapy's own checksums over the same fields are ours
    again = Ether(frame)
    del again[IP].chksum
    del again[ICMP].chksum
    rebuilt = Ether(bytes(again))
    assert rebuilt[IP].chksum == pkt[IP].chksum and rebuilt[ICMP].chksum == pkt[ICMP].chksum


def test_a_short_packet_is_quoted_whole() -> None:
    ping = echo_request(1, 2, b"x" * 1400).encode()
    frame = ptb.frag_needed_frame(datagram(ping, proto=PROTO_ICMP), 1350)
    assert frame is not None
    assert frame[14 + 20 + 8:14 + 20 + 8 + 20 + 8] == datagram(ping, proto=PROTO_ICMP)[22:50]
    small = ptb.frag_needed_frame(datagram(b"y" * 300, proto=PROTO_UDP), 68)
    assert small is not None and small[14 + 20 + 8:] == datagram(b"y" * 300, proto=PROTO_UDP)[22:][:548]


@pytest.mark.parametrize("case,d", [
    ("no DF: the sender allows fragments", datagram(df=False)),
    ("a later fragment", datagram(frag_offset=1400)),
    ("an ICMP error is never answered", datagram(frag_needed(1400, b"\x45" + bytes(27)).encode()
                                                 + bytes(1400), proto=PROTO_ICMP)),
    ("to a group address", datagram(dst="224.0.0.5")),
    ("to the broadcast address", datagram(dst="255.255.255.255")),
    ("from 0.0.0.0", datagram(src="0.0.0.0")),
    ("to a group MAC", datagram(dst_mac=bytes.fromhex("01005e000005"))),
    ("not IPv4", VXLAN + EthernetFrame(MAC_DST, MAC_SRC, ETH_P_ARP, bytes(1400)).encode()),
    ("too short for an IPv4 header", datagram()[:8 + 14 + 10]),
])
def test_nothing_is_owed(case: str, d: bytes) -> None:
    assert ptb.candidate(d) is None, case
    assert ptb.frag_needed_frame(d, 1350) is None, case


def test_an_echo_request_is_owed_and_a_packet_that_fits_is_not() -> None:
    ping = datagram(echo_request(1, 1, b"p" * 1400).encode(), proto=PROTO_ICMP)
    assert ptb.candidate(ping) == (VNI, ip_to_bytes(IP_SRC), ip_to_bytes(IP_DST))
    assert ptb.frag_needed_frame(ping, 1500) is None  # 1428 bytes fit 1500
    assert ptb.frag_needed_frame(ping, 67) is None  # below the IPv4 minimum


def test_limiter_one_per_flow_per_interval_and_a_bucket_for_all() -> None:
    lim = ptb.Limiter(interval=0.1, rate=2.0, burst=3)
    a, b = (1, b"a", b"b"), (1, b"a", b"c")
    assert lim.allow(a, 0.0) and not lim.allow(a, 0.05) and lim.allow(a, 0.1)
    assert lim.repeated == 1
    assert lim.allow(b, 0.1)  # the third token (0.2 refilled: 0.2 left)
    assert not lim.allow((2, b"x", b"y"), 0.1)  # the bucket is empty
    assert lim.limited == 1
    assert lim.allow((2, b"x", b"y"), 0.5)  # 0.4 s more at 2/s: a whole token again


def test_limiter_forgets_old_flows_when_full() -> None:
    lim = ptb.Limiter(interval=0.1, rate=1e9, burst=10**9, keys=4)
    for i in range(4):
        assert lim.allow((i, b"", b""), 0.0)
    assert lim.allow((9, b"", b""), 1.0)  # the four are stale: dropped, not kept forever
    assert len(lim._last) == 1


def _core() -> VtepCore:
    core = VtepCore()
    core.add_network(VNI)
    core.add_port(5, VNI, MAC_SRC, ip_to_bytes(IP_SRC))
    core.set_remote(VNI, [(MAC_DST, ip_to_bytes(IP_DST), ("198.18.0.3", 4789))],
                    [("198.18.0.3", 4789)])
    core.set_members(["198.18.0.3"])
    return core


def test_core_counts_the_drop_and_relays_to_the_sending_port() -> None:
    core = _core()
    d = datagram()
    assert core.too_big(d, now=10.0)
    actions = core.relay_too_big(d, 1350)
    assert [(k, w) for k, w, _ in actions] == [(DELIVER, 5)]
    assert actions[0][2] == ptb.frag_needed_frame(d, 1350, ident=1)
    # the rest of the same TSO frame, at once: counted, not answered again
    assert not core.too_big(d, now=10.001)
    row = core.counters()["vnis"][str(VNI)]
    assert row["ptb_relayed"] == 1 and row["drops"] == {"too-big": 2}  # type: ignore[index]


def test_core_relays_nothing_for_an_unknown_sender_or_a_fitting_mtu() -> None:
    core = _core()
    d = datagram()
    other = d[:14] + bytes.fromhex("02000000beef") + d[20:]  # source MAC not a local port
    assert core.relay_too_big(other, 1350) == []
    assert core.relay_too_big(d, 1450) == []  # 1438 bytes fit
    assert not core.too_big(datagram(df=False), now=0.0)
    assert core.counters()["vnis"][str(VNI)]["ptb_relayed"] == 0  # type: ignore[index]
    assert core.too_big(b"\x08", now=0.0) is False  # garbage is counted, never a crash
    assert core.counters()["drops"]["too-big"] == 2  # type: ignore[index]


@settings(max_examples=400, deadline=None)
@given(head=st.binary(min_size=0, max_size=80), mtu=st.integers(0, 70000))
def test_any_bytes_give_a_frame_or_none_never_an_error(head: bytes, mtu: int) -> None:
    # an IPv4 frame's first bytes at random, behind a VXLAN header, and raw random bytes
    for d in (VXLAN + MAC_DST + MAC_SRC + b"\x08\x00" + head + bytes(1500), head):
        frame = ptb.frag_needed_frame(d, mtu)
        assert frame is None or (frame[12:14] == b"\x08\x00"
                                 and internet_checksum(frame[14:34]) == 0
                                 and internet_checksum(frame[34:]) == 0)
        core = _core()
        core.too_big(d, now=0.0)
        core.relay_too_big(d, mtu)


@settings(max_examples=400, deadline=None)
@given(ihl=st.integers(0, 15), total=st.integers(0, 0xFFFF), frag=st.integers(0, 0xFFFF),
       proto=st.sampled_from([1, 6, 17, 0xFF]), src=st.binary(min_size=4, max_size=4),
       dst=st.binary(min_size=4, max_size=4), tail=st.binary(max_size=40),
       length=st.integers(0, 1600), mtu=st.integers(0, 2000))
def test_odd_ipv4_headers_give_a_frame_or_none(ihl: int, total: int, frag: int, proto: int,
                                               src: bytes, dst: bytes, tail: bytes, length: int,
                                               mtu: int) -> None:
    ip = (bytes([0x40 | ihl, 0]) + total.to_bytes(2, "big") + b"\x00\x01"
          + frag.to_bytes(2, "big") + bytes([64, proto]) + b"\x00\x00" + src + dst + tail)
    d = (VXLAN + MAC_DST + MAC_SRC + b"\x08\x00" + ip + bytes(length))
    frame = ptb.frag_needed_frame(d, mtu)
    if frame is not None:
        assert frame[12:14] == b"\x08\x00" and internet_checksum(frame[14:34]) == 0
        msg = IcmpMessage.decode(frame[34:])
        assert (msg.type, msg.code, msg.next_hop_mtu) == (3, 4, mtu)
        assert frag & 0x4000 and not frag & 0x1FFF and total > mtu >= 68
