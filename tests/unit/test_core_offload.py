"""core/offload.py: cutting TSO frames, finishing checksums, and VXLAN Remote Checksum Offload.

scapy is the oracle: it builds the frames a TAP with offloads hands over (a 64 KiB TCP frame,
checksums unfinished: the field holds the pseudo-header sum) and checks what comes out. The
RCO datagrams are checked the way a receiver uses them: the checksum finished from the RCO
fields alone (``rco_vnet`` + ``finish``) must be the one scapy computes.
"""

from __future__ import annotations

import struct
from typing import List, Optional, Tuple

import pytest

from overlay_agent.core import gro, offload
from overlay_agent.core.vtep import DELIVER, DELIVER_VNET, SEND, SEND_RUN, VtepCore
from overlay_agent.wire.vxlan import VxlanHeader

scapy_all = pytest.importorskip("scapy.all")
Ether, IP, TCP, UDP, Raw = (scapy_all.Ether, scapy_all.IP, scapy_all.TCP, scapy_all.UDP,
                            scapy_all.Raw)

VNI = 4096
BASE = VxlanHeader(VNI).encode()
MAC_A, MAC_B, MAC_C = "02:42:0a:0a:00:02", "02:42:0a:0a:00:03", "02:42:0a:0a:00:04"
IP_A, IP_B = "10.10.0.2", "10.10.0.3"
MSS = 1386
TS = [("NOP", None), ("NOP", None), ("Timestamp", (1000, 2000))]


def pseudo_sum(src: str, dst: str, proto: int, length: int) -> int:
    """What a kernel leaves in the checksum field of a frame with an unfinished checksum."""
    words = struct.unpack("!4H", bytes(map(int, src.split("."))) + bytes(map(int, dst.split("."))))
    s = sum(words) + proto + length
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def tcp_frame(payload: bytes, flags: str = "PA", seq: int = 5000, dst: str = MAC_B) -> bytes:
    """A TCP/IPv4 frame as the endpoint's kernel hands it to a TAP with TSO: one frame of any
    size, the IP header for the whole, the TCP checksum field holding the pseudo-header sum."""
    pkt = Ether(src=MAC_A, dst=dst) / IP(src=IP_A, dst=IP_B, flags="DF", id=777) / TCP(
        sport=40000, dport=5201, seq=seq, ack=99, flags=flags, window=1000, options=TS) / payload
    raw = bytearray(bytes(pkt))
    tcp_len = len(raw) - 34
    struct.pack_into("!H", raw, 34 + 16, pseudo_sum(IP_A, IP_B, 6, tcp_len))
    return bytes(raw)


def vnet(gso: bool, start: int = 34, offset: int = 16, mss: int = MSS) -> bytes:
    return offload.VNET.pack(offload.F_NEEDS_CSUM, offload.GSO_TCPV4 if gso else offload.GSO_NONE,
                             34 + 32 if gso else 0, mss if gso else 0, start, offset)


def data(n: int) -> bytes:
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


def finished(datagram: bytes) -> bytes:
    """The inner frame of an RCO datagram with its checksum finished as a receiver would."""
    head = offload.rco_vnet(datagram)
    assert head is not None and head != offload.PLAIN
    return offload.finish(head, datagram[8:])


def check_valid(frame: bytes) -> None:
    """scapy recomputes every checksum of ``frame`` and finds what is in it."""
    pkt = Ether(frame)
    ip = pkt[IP]
    l4 = pkt[TCP] if TCP in pkt else pkt[UDP]
    got_ip, got_l4 = ip.chksum, l4.chksum
    del ip.chksum, l4.chksum
    again = Ether(bytes(pkt))
    assert again[IP].chksum == got_ip, "IPv4 header checksum"
    if UDP in pkt and got_l4 == 0:
        return  # UDP over IPv4 without a checksum: allowed (RFC 768), and what finishing does
    assert (again[TCP] if TCP in again else again[UDP]).chksum == got_l4, "L4 checksum"


# -- RCO header fields ---------------------------------------------------------------------------
def test_rco_header_sets_the_r_flag_and_start_and_keeps_the_vni() -> None:
    tcp = offload.rco_header(BASE, 34, 16)
    udp = offload.rco_header(BASE, 34, 6)
    assert tcp is not None and udp is not None
    assert tcp[0] == 0x08 and tcp[1] == 0x20 and tcp[7] == 17  # start 34 in units of 2
    assert udp[7] == 17 | 0x80  # the UDP bit
    assert VxlanHeader.decode(tcp).vni == VNI and VxlanHeader.decode(udp).vni == VNI
    assert tcp[2:7] == BASE[2:7]


@pytest.mark.parametrize("start,offset", [(35, 16), (256, 16), (0, 16), (34, 10)])
def test_rco_header_refuses_what_rco_cannot_say(start: int, offset: int) -> None:
    assert offload.rco_header(BASE, start, offset) is None


def test_rco_vnet_reads_the_fields_back_and_refuses_bad_ones() -> None:
    frame = tcp_frame(data(100), flags="A")
    dgram = offload.rco_header(BASE, 34, 16) + frame  # type: ignore[operator]
    assert offload.VNET.unpack(offload.rco_vnet(dgram)) == (  # type: ignore[arg-type]
        offload.F_NEEDS_CSUM, offload.GSO_NONE, 0, 0, 34, 16)
    assert offload.rco_vnet(BASE + frame) == offload.PLAIN
    # A start inside the Ethernet/IP headers, or a field past the end, cannot be finished.
    assert offload.rco_vnet(offload.rco_header(BASE, 20, 16) + frame) is None  # type: ignore[operator]
    assert offload.rco_vnet(offload.rco_header(BASE, 34, 16) + frame[:40]) is None  # type: ignore[operator]
    assert offload.rco_vnet(b"\x08\x20") == offload.PLAIN  # too short: the VTEP drops it


# -- TSO frames cut into RCO datagrams -------------------------------------------------------------
@pytest.mark.parametrize("size", [44 * MSS, 44 * MSS - 7, MSS + 1, 2 * MSS])
def test_a_tso_frame_becomes_rco_segments_whose_checksums_finish_right(size: int) -> None:
    payload = data(size)
    frame = tcp_frame(payload)
    out = offload.encap_rco(BASE, vnet(True) + frame)
    assert out is not None
    assert len(out) == -(-size // MSS)
    got = b""
    for i, dgram in enumerate(out):
        assert dgram[:8] == offload.rco_header(BASE, 34, 16)
        inner = Ether(dgram[8:])
        last = i == len(out) - 1
        assert inner[IP].len == len(dgram) - 8 - 14
        assert inner[IP].id == 777 and inner[IP].flags == "DF"
        assert inner[TCP].seq == 5000 + i * MSS
        assert inner[TCP].ack == 99 and inner[TCP].window == 1000
        assert inner[TCP].options == TS
        assert str(inner[TCP].flags) == ("PA" if last else "A")
        n = len(inner[TCP].payload)
        assert n == (MSS if not last else size - i * MSS)
        # on the wire: the pseudo-header sum for this segment, as RCO says
        assert inner[TCP].chksum == pseudo_sum(IP_A, IP_B, 6, 32 + n)
        check_valid(finished(dgram))
        got += bytes(inner[TCP].payload)
    assert got == payload


def test_a_plain_fallback_finishes_every_checksum() -> None:
    """For a VTEP without RCO: ordinary frames, checksums done, reserved bits untouched."""
    payload = data(3 * MSS + 11)
    frames = offload.segment(vnet(True), tcp_frame(payload, flags="FPA"))
    assert len(frames) == 4
    for i, f in enumerate(frames):
        check_valid(f)
        assert str(Ether(f)[TCP].flags) == ("FPA" if i == 3 else "A")
    assert b"".join(bytes(Ether(f)[TCP].payload) for f in frames) == payload


def test_cwr_only_on_the_first_segment() -> None:
    out = offload.encap_rco(BASE, vnet(True) + tcp_frame(data(3 * MSS), flags="CA"))
    assert out is not None
    assert [str(Ether(d[8:])[TCP].flags) for d in out] == ["AC", "A", "A"]


def test_an_unfinished_udp_checksum_travels_with_the_udp_bit() -> None:
    pkt = Ether(src=MAC_A, dst=MAC_B) / IP(src=IP_A, dst=IP_B) / UDP(sport=5, dport=6) / data(333)
    raw = bytearray(bytes(pkt))
    struct.pack_into("!H", raw, 34 + 6, pseudo_sum(IP_A, IP_B, 17, 8 + 333))
    out = offload.encap_rco(BASE, vnet(False, 34, 6) + bytes(raw))
    assert out is not None and len(out) == 1
    assert out[0][1] == 0x20 and out[0][7] == 17 | 0x80
    check_valid(finished(out[0]))


def test_frames_rco_cannot_carry_are_left_to_the_fallback() -> None:
    frame = tcp_frame(data(10), flags="A")
    assert offload.encap_rco(BASE, vnet(False, 35, 16) + frame) is None  # odd start
    assert offload.encap_rco(BASE, offload.PLAIN + frame) == [BASE + frame]


def test_a_malformed_tso_frame_is_an_error_not_a_crash() -> None:
    frame = tcp_frame(b"", flags="A")
    with pytest.raises(ValueError):
        offload.encap_rco(BASE, vnet(True) + frame)


# -- the VTEP: who gets RCO ---------------------------------------------------------------------
VTEP_RCO, VTEP_PLAIN = ("198.18.0.2", 4789), ("198.18.0.3", 4789)


@pytest.fixture
def core() -> VtepCore:
    c = VtepCore()
    c.add_network(VNI)
    c.add_port(1, VNI, bytes.fromhex(MAC_A.replace(":", "")), None)
    c.add_port(2, VNI, bytes.fromhex("02420a0a00ff"), None)
    c.set_members([VTEP_RCO[0], VTEP_PLAIN[0]], remcsum=[VTEP_RCO[0], "198.18.9.9"])
    entries: List[Tuple[bytes, Optional[bytes], Tuple[str, int]]] = [
        (bytes.fromhex(MAC_B.replace(":", "")), None, VTEP_RCO),
        (bytes.fromhex(MAC_C.replace(":", "")), None, VTEP_PLAIN),
    ]
    c.set_remote(VNI, entries, [VTEP_RCO, VTEP_PLAIN])
    return c


def test_rco_only_for_members_agreed_on_it(core: VtepCore) -> None:
    assert core.remcsum == frozenset({VTEP_RCO[0]})  # the stranger is no member


def test_tso_to_an_rco_peer_is_one_run_of_rco_datagrams(core: VtepCore) -> None:
    payload = data(10 * MSS)
    actions = core.from_port_vnet(1, vnet(True) + tcp_frame(payload))
    assert len(actions) == 1
    kind, where, dgrams = actions[0]
    assert kind == SEND_RUN and where == VTEP_RCO
    assert len(dgrams) == 10 and all(d[1] & offload.RCO_FLAG for d in dgrams)  # type: ignore[index]
    assert core.offload["tso_frames"] == 1 and core.offload["rco_datagrams"] == 10
    assert core.offload["csum_finished"] == 0
    assert core.tx.per_vni[VNI]["tx_packets"] == 10


def test_tso_to_a_plain_peer_is_finished_frames_without_rco(core: VtepCore) -> None:
    actions = core.from_port_vnet(1, vnet(True) + tcp_frame(data(3 * MSS), dst=MAC_C))
    assert [a[0] for a in actions] == [SEND] * 3
    for _, where, dgram in actions:
        assert where == VTEP_PLAIN and dgram[:8] == BASE  # reserved bits zero
        check_valid(dgram[8:])  # type: ignore[arg-type]
    assert core.offload["csum_finished"] == 3 and core.offload["rco_datagrams"] == 0


def test_local_delivery_keeps_the_offloads(core: VtepCore) -> None:
    buf = vnet(True) + tcp_frame(data(3 * MSS), dst="02:42:0a:0a:00:ff")
    assert core.from_port_vnet(1, buf) == [(DELIVER_VNET, 2, buf)]


def test_the_batch_path_matches_one_by_one(core: VtepCore) -> None:
    bufs = [vnet(False) + tcp_frame(data(50), flags="A"),
            offload.PLAIN + tcp_frame(data(60), flags="A", dst=MAC_C),
            vnet(False) + tcp_frame(data(70), flags="A", dst=MAC_C),
            vnet(True) + tcp_frame(data(2 * MSS))]
    batch = core.from_port_vnet_batch(1, bufs)
    other = VtepCore()
    other.add_network(VNI)
    other.add_port(1, VNI, bytes.fromhex(MAC_A.replace(":", "")), None)
    other.set_members([VTEP_RCO[0], VTEP_PLAIN[0]], remcsum=[VTEP_RCO[0]])
    other.set_remote(VNI, [(bytes.fromhex(MAC_B.replace(":", "")), None, VTEP_RCO),
                           (bytes.fromhex(MAC_C.replace(":", "")), None, VTEP_PLAIN)], [])
    single = [a for b in bufs for a in other.from_port_vnet(1, b)]
    assert batch == single
    assert batch[0][2][1] & offload.RCO_FLAG  # type: ignore[index]
    assert batch[1][2][:8] == BASE and batch[2][2][:8] == BASE
    check_valid(batch[2][2][8:])  # type: ignore[arg-type]


def test_received_rco_from_a_peer_agreed_on_it(core: VtepCore) -> None:
    frame = tcp_frame(data(40), flags="A", dst=MAC_A)
    good = offload.rco_header(BASE, 34, 16) + frame  # type: ignore[operator]
    assert core.from_underlay(VTEP_RCO[0], good) == [(DELIVER, 1, frame)]
    assert core.offload["rco_received"] == 1
    bad = offload.rco_header(BASE, 34, 16)[:7] + b"\x7f" + frame  # type: ignore[index]
    assert core.from_underlay(VTEP_RCO[0], bad) == []
    assert core.counters()["drops"] == {"bad-rco": 1}
    # From a member not agreed on RCO the same bits are reserved, and ignored (RFC 7348).
    assert core.from_underlay(VTEP_PLAIN[0], bad) == [(DELIVER, 1, frame)]
    assert core.offload["rco_received"] == 1


def test_coalescing_hands_single_rco_frames_on_unfinished() -> None:
    frame = tcp_frame(data(40), flags="PA")
    dgram = offload.rco_header(BASE, 34, 16) + frame  # type: ignore[operator]
    buf = dgram + dgram[:60]
    with_rco = gro.coalesce(buf, len(dgram), rco=True)
    without = gro.coalesce(buf, len(dgram), rco=False)
    assert with_rco[0][3] == offload.rco_vnet(dgram) != offload.PLAIN
    assert without[0][3] == offload.PLAIN
