"""core/gro.py: which VXLAN datagrams of a UDP-GRO batch merge, and the superframe's bytes.

Segments are built with scapy (the oracle also dissects the superframe); the rules checked are
those of the kernel's TCP GRO that the module follows.
"""

from __future__ import annotations

import struct
from typing import List

import pytest

from overlay_agent.core import gro
from overlay_agent.core.vtep import DELIVER, VtepCore

scapy_all = pytest.importorskip("scapy.all")
Ether, IP, TCP, UDP, Raw = (scapy_all.Ether, scapy_all.IP, scapy_all.TCP, scapy_all.UDP,
                            scapy_all.Raw)

VXLAN = bytes((0x08, 0, 0, 0)) + struct.pack("!I", 4096 << 8)
MAC_A, MAC_B = "02:42:0a:0a:00:02", "02:42:0a:0a:00:03"
MSS = 1386
TS = [("NOP", None), ("NOP", None), ("Timestamp", (1000, 2000))]


def seg(seq: int, n: int = MSS, flags: str = "A", **kw) -> bytes:
    ip_kw = {"src": "10.10.0.2", "dst": "10.10.0.3", "flags": "DF", "id": seq & 0xFFFF}
    ip_kw.update({k[3:]: v for k, v in kw.items() if k.startswith("ip_")})
    tcp_kw = {"sport": 40000, "dport": 5201, "seq": seq, "ack": 77, "flags": flags,
              "window": 512, "options": TS}
    tcp_kw.update({k: v for k, v in kw.items() if not k.startswith("ip_")})
    payload = bytes((seq + i) & 0xFF for i in range(n))
    return VXLAN + bytes(Ether(src=MAC_A, dst=MAC_B) / IP(**ip_kw) / TCP(**tcp_kw) / payload)


def batch(segs: List[bytes]) -> bytes:
    size = len(segs[0])
    assert all(len(s) <= size for s in segs) and all(len(s) == size for s in segs[:-1])
    return b"".join(segs)


def runs(segs: List[bytes]) -> List[int]:
    return [packets for _, packets, _, _ in gro.coalesce(batch(segs), len(segs[0]))]


def test_consecutive_segments_merge_into_one_superframe():
    segs = [seg(1000 + i * MSS) for i in range(5)] + [seg(1000 + 5 * MSS, 301, "PA")]
    out = gro.coalesce(batch(segs), len(segs[0]))
    assert len(out) == 1
    data, packets, extra, vnet = out[0]
    assert packets == 6
    hlen = 20 + 12  # TCP with timestamps
    assert extra == 5 * (14 + 20 + hlen)
    assert data[:8] == VXLAN
    flags, gso_type, hdr_len, gso_size, cstart, coff = gro.VNET.unpack(vnet)
    assert (flags, gso_type, hdr_len, gso_size, cstart, coff) == (
        gro.F_NEEDS_CSUM, gro.GSO_TCPV4, 14 + 20 + hlen, MSS, 34, 16)
    frame = Ether(data[8:])
    total = 5 * MSS + 301
    assert frame[IP].len == 20 + hlen + total
    assert frame[TCP].seq == 1000 and frame[TCP].ack == 77
    assert frame[TCP].flags == "PA"  # the last segment's PSH
    assert bytes(frame[TCP].payload) == b"".join(s[8 + 14 + 20 + hlen:] for s in segs)
    # The IP checksum is complete and valid.
    ip_head = data[8 + 14:8 + 34]
    assert sum(struct.unpack("!10H", ip_head)) % 0xFFFF == 0
    # The TCP checksum field holds the pseudo-header sum (not complemented) for the new length.
    pseudo = sum(struct.unpack("!4H", ip_head[12:20])) + 6 + hlen + total
    while pseudo > 0xFFFF:
        pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
    assert frame[TCP].chksum == pseudo
    # Completed as the kernel does (fold the sum over the TCP segment, field included, and
    # complement), it is the checksum scapy computes for the same segment.
    tcp = data[8 + 34:]
    s = sum(struct.unpack(f"!{len(tcp) // 2}H", tcp[:len(tcp) & ~1]))
    if len(tcp) & 1:
        s += tcp[-1] << 8
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    again = frame.copy()
    del again[TCP].chksum
    assert Ether(bytes(again))[TCP].chksum == 0xFFFF - s


def test_single_datagram_and_non_gro_buffers_pass_through():
    one = seg(1)
    assert gro.coalesce(one, len(one)) == [(one, 1, 0, gro.PLAIN)]
    assert gro.coalesce(one, 0) == [(one, 1, 0, gro.PLAIN)]


@pytest.mark.parametrize("second, why", [
    (lambda s: seg(s + 1), "sequence gap"),
    (lambda s: seg(s, sport=40001), "other flow"),
    (lambda s: seg(s, ack=78), "other ack"),
    (lambda s: seg(s, window=513), "other window"),
    (lambda s: seg(s, options=[("NOP", None), ("NOP", None), ("Timestamp", (1001, 2000))]),
     "other timestamp"),
    (lambda s: seg(s, ip_tos=4), "other tos"),
    (lambda s: seg(s, ip_ttl=63), "other ttl"),
    (lambda s: seg(s, flags="FA"), "FIN"),
    (lambda s: seg(s, flags="RA"), "RST"),
    (lambda s: seg(s, flags="UA"), "URG"),
    (lambda s: seg(s, flags="CA"), "CWR"),
    (lambda s: seg(s, ip_flags=0), "DF clear"),
])
def test_segments_that_differ_do_not_merge(second, why):
    segs = [seg(1000), second(1000 + MSS)]
    assert runs(segs) == [1, 1], why


def test_unmergeable_first_segments_pass_through():
    assert runs([seg(1000, flags="S"), seg(1000 + MSS)]) == [1, 1]
    assert runs([seg(1000, flags="PA"), seg(1000 + MSS)]) == [1, 1]  # PSH ends a run
    s = seg(1000)
    assert runs([s, dgram(1410)]) == [1, 1]  # TCP, then UDP
    opt = VXLAN + bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src="10.10.0.2", dst="10.10.0.3",
                        flags="DF", options=[scapy_all.IPOption_NOP()] * 4)
                        / TCP(seq=1000, flags="A", options=TS) / Raw(bytes(MSS - 4)))
    assert len(opt) == len(s)
    assert runs([opt, opt]) == [1, 1]  # IP options


def dgram(n: int, **kw) -> bytes:
    ip_kw = {"src": "10.10.0.2", "dst": "10.10.0.3", "flags": "DF"}
    ip_kw.update({k[3:]: v for k, v in kw.items() if k.startswith("ip_")})
    udp_kw = {"sport": 40000, "dport": 5201}
    udp_kw.update({k: v for k, v in kw.items() if not k.startswith("ip_")})
    return VXLAN + bytes(Ether(src=MAC_A, dst=MAC_B) / IP(**ip_kw) / UDP(**udp_kw)
                         / Raw(bytes((n + i) & 0xFF for i in range(n))))


def test_udp_datagrams_of_one_flow_merge_into_a_udp_l4_superframe():
    segs = [dgram(1400) for _ in range(4)] + [dgram(999)]
    out = gro.coalesce(batch(segs), len(segs[0]))
    assert len(out) == 1
    data, packets, extra, vnet = out[0]
    assert packets == 5 and extra == 4 * (14 + 20 + 8)
    assert gro.VNET.unpack(vnet) == (gro.F_NEEDS_CSUM, gro.GSO_UDP_L4, 14 + 20 + 8, 1400,
                                     34, 6)
    frame = Ether(data[8:])
    total = 4 * 1400 + 999
    assert frame[IP].len == 20 + 8 + total and frame[UDP].len == 8 + total
    assert bytes(frame[UDP].payload) == b"".join(s[8 + 42:] for s in segs)
    assert sum(struct.unpack("!10H", data[8 + 14:8 + 34])) % 0xFFFF == 0
    pseudo = sum(struct.unpack("!4H", data[8 + 26:8 + 34])) + 17 + 8 + total
    while pseudo > 0xFFFF:
        pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
    assert frame[UDP].chksum == pseudo


@pytest.mark.parametrize("second, why", [
    (lambda: dgram(1400, dport=5202), "other flow"),
    (lambda: dgram(1400, ip_ttl=1), "other ttl"),
    (lambda: dgram(1400, ip_flags=0), "DF clear"),
])
def test_udp_datagrams_that_differ_do_not_merge(second, why):
    assert runs([dgram(1400), second()]) == [1, 1], why


def test_psh_in_the_middle_ends_the_run_and_a_new_one_starts():
    segs = [seg(1000), seg(1000 + MSS, flags="PA"), seg(1000 + 2 * MSS), seg(1000 + 3 * MSS)]
    assert runs(segs) == [2, 2]


def test_a_superframe_stays_within_the_ip_length_limit():
    segs = [seg(i * MSS) for i in range(60)]
    out = gro.coalesce(batch(segs), len(segs[0]))
    assert sum(p for _, p, _, _ in out) == 60
    assert all(len(d) - 8 - 14 <= gro.MAX_IP_LEN for d, _, _, _ in out)
    assert [p for _, p, _, _ in out] == [47, 13]  # 47 * 1386 + 52 <= 65535 < 48 * 1386 + 52


def test_sequence_numbers_wrap():
    start = 0xFFFFFFFF - 100
    segs = [seg(start), seg((start + MSS) & 0xFFFFFFFF)]
    assert runs(segs) == [2]


def test_vtep_counts_a_merged_datagram_as_its_segments():
    core = VtepCore()
    core.add_network(4096)
    mac_b = bytes.fromhex(MAC_B.replace(":", ""))
    core.add_port(1, 4096, mac_b, bytes([10, 10, 0, 3]))
    core.set_members(["192.0.2.1"])
    segs = [seg(1000 + i * MSS) for i in range(4)]
    ((data, packets, extra, _),) = gro.coalesce(batch(segs), len(segs[0]))
    actions = core.from_underlay("192.0.2.1", data, packets, extra)
    assert actions == [(DELIVER, 1, data[8:])]
    c = core.counters()["vnis"]["4096"]
    assert c["rx_packets"] == 4
    assert c["rx_bytes"] == sum(len(s) - 8 for s in segs)
