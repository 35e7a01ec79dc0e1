"""VtepCore (core/vtep.py): forwarding decisions checked against exact bytes.

Frames are built with the agent's own wire codecs; scapy, where installed, is the oracle that
dissects what the VTEP produces (VXLAN header, ARP replies).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overlay_agent.core import vtep as vtep_mod
from overlay_agent.core.vtep import DELIVER, SEND, VtepCore
from overlay_agent.wire import ArpPacket, EthernetFrame, VxlanHeader, arp_reply_frame
from overlay_agent.wire.arp import ARP_REPLY, ARP_REQUEST
from overlay_agent.wire.ethernet import BROADCAST, ETH_P_ARP, ETH_P_IP
from overlay_agent.wire.ipaddr import ip_to_bytes
from overlay_agent.wire.vxlan import MAX_VNI

VNI_A = 100
VNI_B = 200

# VNI_A: local ports 1 and 2, remote endpoints R1 (behind VTEP1) and R2 (behind VTEP2), and a
# third VTEP with no endpoint yet that still takes part in flooding.
MAC_L1 = bytes.fromhex("02000000a001")
MAC_L2 = bytes.fromhex("02000000a002")
MAC_R1 = bytes.fromhex("02000000b001")
MAC_R2 = bytes.fromhex("02000000b002")
MAC_UNKNOWN = bytes.fromhex("02000000ffff")
IP_L1, IP_L2, IP_R1, IP_R2 = "10.0.0.1", "10.0.0.2", "10.0.0.11", "10.0.0.12"
VTEP1 = ("192.0.2.1", 4789)
VTEP2 = ("192.0.2.2", 4789)
VTEP3 = ("192.0.2.3", 4789)
MEMBERS = [VTEP1[0], VTEP2[0], VTEP3[0]]
NON_MEMBER = "198.51.100.7"
MCAST_V4 = bytes.fromhex("01005e000001")
MCAST_V6 = bytes.fromhex("333300000001")

Action = Tuple[int, Any, bytes]


def vxlan_header(vni: int) -> bytes:
    """The header spelled out by hand: I flag, 3 reserved zero bytes, VNI, reserved zero."""
    return b"\x08\x00\x00\x00" + vni.to_bytes(3, "big") + b"\x00"


def eth(dst: bytes, src: bytes, ethertype: int = ETH_P_IP, payload: bytes = b"") -> bytes:
    return EthernetFrame(dst, src, ethertype, payload or bytes(range(46))).encode()


def arp_frame(
    sender_mac: bytes,
    sender_ip: str,
    target_ip: str,
    *,
    op: int = ARP_REQUEST,
    dst: bytes = BROADCAST,
    pad: int = 0,
) -> bytes:
    body = ArpPacket(op, sender_mac, sender_ip, b"\x00" * 6, target_ip).encode()
    return EthernetFrame(dst, sender_mac, ETH_P_ARP, body + b"\x00" * pad).encode()


def build_core() -> VtepCore:
    core = VtepCore()
    core.add_network(VNI_A)
    core.add_port(1, VNI_A, MAC_L1, ip_to_bytes(IP_L1))
    core.add_port(2, VNI_A, MAC_L2, ip_to_bytes(IP_L2))
    core.set_remote(
        VNI_A,
        [(MAC_R1, ip_to_bytes(IP_R1), VTEP1), (MAC_R2, ip_to_bytes(IP_R2), VTEP2)],
        [VTEP1, VTEP2, VTEP3],
    )
    core.set_members(MEMBERS)
    return core


@pytest.fixture
def core() -> VtepCore:
    return build_core()


@pytest.fixture
def scapy_layers() -> Any:
    pytest.importorskip("scapy")
    from scapy.layers.l2 import ARP, Ether
    from scapy.layers.vxlan import VXLAN

    return ARP, Ether, VXLAN


def snapshot(core: VtepCore) -> Dict[str, Any]:
    return core.counters()


def all_drops(core: VtepCore) -> Dict[str, int]:
    return dict(snapshot(core)["drops"])


def vni_row(core: VtepCore, vni: int) -> Dict[str, Any]:
    return dict(snapshot(core)["vnis"][str(vni)])


def flood_actions(vni: int, frame: bytes, ports: List[int]) -> List[Action]:
    packet = vxlan_header(vni) + frame
    sends: List[Action] = [(SEND, v, packet) for v in (VTEP1, VTEP2, VTEP3)]
    return sends + [(DELIVER, p, frame) for p in ports]


# -- from a local port ------------------------------------------------------------------------


def test_unicast_to_remote_mac_is_one_send_with_exact_vxlan_header(core: VtepCore) -> None:
    frame = eth(MAC_R2, MAC_L1)
    actions = core.from_port(1, frame)
    assert actions == [(SEND, VTEP2, b"\x08\x00\x00\x00\x00\x00\x64\x00" + frame)]
    data = actions[0][2]
    assert data[:8] == VxlanHeader(VNI_A).encode()
    assert data[0] == 0x08 and data[1:4] == b"\x00\x00\x00" and data[7] == 0
    assert int.from_bytes(data[4:7], "big") == VNI_A
    row = vni_row(core, VNI_A)
    assert (row["tx_packets"], row["tx_bytes"]) == (1, len(frame))
    assert all_drops(core) == {}


@pytest.mark.parametrize("vni", [0, 1, 0x123456, MAX_VNI])
def test_vxlan_header_for_edge_vnis(vni: int) -> None:
    core = VtepCore()
    core.add_network(vni)
    core.add_port(1, vni, MAC_L1, None)
    core.set_remote(vni, [(MAC_R1, None, VTEP1)], [])
    frame = eth(MAC_R1, MAC_L1)
    assert core.from_port(1, frame) == [(SEND, VTEP1, vxlan_header(vni) + frame)]


def test_scapy_dissects_the_encapsulated_frame(core: VtepCore, scapy_layers: Any) -> None:
    _, Ether, VXLAN = scapy_layers
    frame = eth(MAC_R1, MAC_L1)
    [(_, _, data)] = core.from_port(1, frame)
    pkt = VXLAN(data)
    assert int(pkt.flags) == 0x08
    assert pkt.vni == VNI_A
    assert pkt.reserved1 == 0 and pkt.reserved2 == 0
    inner = pkt[Ether]
    assert bytes(inner) == frame
    assert inner.dst == "02:00:00:00:b0:01" and inner.src == "02:00:00:00:a0:01"


def test_unicast_to_local_port_is_delivered(core: VtepCore) -> None:
    frame = eth(MAC_L2, MAC_L1)
    assert core.from_port(1, frame) == [(DELIVER, 2, frame)]
    assert vni_row(core, VNI_A)["local_packets"] == 1
    assert vni_row(core, VNI_A)["tx_packets"] == 0


def test_hairpin_is_dropped_and_counted(core: VtepCore) -> None:
    assert core.from_port(1, eth(MAC_L1, MAC_L1)) == []
    assert all_drops(core) == {"hairpin": 1}
    assert vni_row(core, VNI_A)["drops"] == {"hairpin": 1}


def test_unknown_unicast_is_dropped_with_reason(core: VtepCore) -> None:
    assert core.from_port(1, eth(MAC_UNKNOWN, MAC_L1)) == []
    assert core.from_port(2, eth(MAC_UNKNOWN, MAC_L2)) == []
    assert all_drops(core) == {"unknown-destination": 2}
    assert vni_row(core, VNI_A)["drops"] == {"unknown-destination": 2}


@pytest.mark.parametrize("size", [0, 1, 13])
def test_runt_frame_from_port_is_dropped(core: VtepCore, size: int) -> None:
    assert core.from_port(1, (BROADCAST + MAC_L2 + b"\x08")[:size]) == []
    assert all_drops(core) == {"runt-frame": 1}


def test_frame_from_unknown_port_is_dropped(core: VtepCore) -> None:
    assert core.from_port(99, eth(MAC_L2, MAC_L1)) == []
    assert all_drops(core) == {"unknown-port": 1}
    assert vni_row(core, VNI_A)["drops"] == {}  # no VNI to blame


@pytest.mark.parametrize("dst", [BROADCAST, MCAST_V4, MCAST_V6], ids=["bcast", "mcast4", "mcast6"])
def test_broadcast_and_multicast_use_head_end_replication(core: VtepCore, dst: bytes) -> None:
    frame = eth(dst, MAC_L2)
    actions = core.from_port(2, frame)
    # One copy per remote VTEP of the VNI (including one with no endpoint), and every local
    # port except the sender.
    assert actions == flood_actions(VNI_A, frame, [1])
    row = vni_row(core, VNI_A)
    assert row["flooded"] == 1
    assert row["tx_packets"] == 3
    assert row["tx_bytes"] == 3 * len(frame)


def test_flood_without_remote_vteps_stays_local() -> None:
    core = VtepCore()
    core.add_network(VNI_A)
    for port in (1, 2, 3):
        core.add_port(port, VNI_A, bytes([2, 0, 0, 0, 0, port]), None)
    frame = eth(BROADCAST, bytes([2, 0, 0, 0, 0, 2]))
    assert core.from_port(2, frame) == [(DELIVER, 1, frame), (DELIVER, 3, frame)]
    assert vni_row(core, VNI_A)["flooded"] == 0


# -- ARP suppression ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target_ip", "answer"), [(IP_R1, MAC_R1), (IP_L2, MAC_L2)], ids=["remote", "local"]
)
@pytest.mark.parametrize("pad", [0, 18], ids=["42B", "60B-padded"])
def test_arp_request_for_known_ip_is_answered_locally(
    core: VtepCore, target_ip: str, answer: bytes, pad: int
) -> None:
    request = arp_frame(MAC_L1, IP_L1, target_ip, pad=pad)
    ethernet = MAC_L1 + answer + b"\x08\x06"  # to the asker, from the answer
    arp_head = b"\x00\x01\x08\x00\x06\x04\x00\x02"  # Ethernet/IPv4, op 2 (reply)
    sender = answer + ip_to_bytes(target_ip)  # the answer
    target = MAC_L1 + ip_to_bytes(IP_L1)  # the asker
    reply = ethernet + arp_head + sender + target
    assert core.from_port(1, request) == [(DELIVER, 1, reply)]
    assert reply == arp_reply_frame(request, answer)
    assert vni_row(core, VNI_A)["arp_suppressed"] == 1
    assert vni_row(core, VNI_A)["tx_packets"] == 0


def test_arp_reply_is_valid_for_scapy(core: VtepCore, scapy_layers: Any) -> None:
    ARP, Ether, _ = scapy_layers
    request = bytes(
        Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:a0:01")
        / ARP(op="who-has", hwsrc="02:00:00:00:a0:01", psrc=IP_L1, pdst=IP_R2)
    )
    [(kind, port, reply)] = core.from_port(1, request)
    assert (kind, port) == (DELIVER, 1)
    pkt = Ether(reply)
    assert pkt.dst == "02:00:00:00:a0:01" and pkt.src == "02:00:00:00:b0:02"
    assert pkt.type == 0x0806
    arp = pkt[ARP]
    assert arp.op == 2  # is-at
    assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen) == (1, 0x0800, 6, 4)
    assert arp.hwsrc == "02:00:00:00:b0:02" and arp.psrc == IP_R2
    assert arp.hwdst == "02:00:00:00:a0:01" and arp.pdst == IP_L1
    assert bytes(pkt) == reply  # nothing scapy would add or change
    assert arp.answers(ARP(request[14:]))


def test_arp_request_for_unknown_ip_is_flooded(core: VtepCore) -> None:
    request = arp_frame(MAC_L1, IP_L1, "10.0.0.99")
    assert core.from_port(1, request) == flood_actions(VNI_A, request, [2])
    assert vni_row(core, VNI_A)["arp_suppressed"] == 0


def test_gratuitous_arp_reply_is_flooded_not_answered(core: VtepCore) -> None:
    garp = arp_frame(MAC_L1, IP_L1, IP_L1, op=ARP_REPLY)
    assert core.from_port(1, garp) == flood_actions(VNI_A, garp, [2])


def test_truncated_arp_request_is_flooded_not_answered(core: VtepCore) -> None:
    request = arp_frame(MAC_L1, IP_L1, IP_R1)[:41]
    assert core.from_port(1, request) == flood_actions(VNI_A, request, [2])


def test_unicast_arp_request_follows_the_mac_table(core: VtepCore) -> None:
    request = arp_frame(MAC_L1, IP_L1, IP_R1, dst=MAC_R1)
    assert core.from_port(1, request) == [(SEND, VTEP1, vxlan_header(VNI_A) + request)]


# -- from the underlay ----------------------------------------------------------------------------


def test_decap_delivers_to_the_local_port(core: VtepCore) -> None:
    frame = eth(MAC_L2, MAC_R1)
    assert core.from_underlay(VTEP1[0], vxlan_header(VNI_A) + frame) == [(DELIVER, 2, frame)]
    row = vni_row(core, VNI_A)
    assert (row["rx_packets"], row["rx_bytes"]) == (1, len(frame))


def test_decap_accepts_only_member_vteps(core: VtepCore) -> None:
    datagram = vxlan_header(VNI_A) + eth(MAC_L1, MAC_R1)
    assert core.from_underlay(NON_MEMBER, datagram) == []
    assert all_drops(core) == {"non-member-vtep": 1}
    core.set_members([NON_MEMBER])
    assert core.from_underlay(NON_MEMBER, datagram) != []
    assert core.from_underlay(VTEP1[0], datagram) == []
    assert all_drops(core) == {"non-member-vtep": 2}


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (b"", "short-header"),
        (b"\x08\x00\x00\x00\x00\x00\x64", "short-header"),
        (b"\x00\x00\x00\x00\x00\x00\x64\x00" + eth(MAC_L1, MAC_R1), "no-i-flag"),
        (b"\xf7\xff\xff\xff\x00\x00\x64\xff" + eth(MAC_L1, MAC_R1), "no-i-flag"),
        (vxlan_header(101) + eth(MAC_L1, MAC_R1), "unknown-vni"),
        (vxlan_header(VNI_A), "runt-frame"),
        (vxlan_header(VNI_A) + eth(MAC_L1, MAC_R1)[:13], "runt-frame"),
        (vxlan_header(VNI_A) + eth(MAC_UNKNOWN, MAC_R1), "unknown-destination"),
        # A remote MAC must not come back in from the underlay: never reflected.
        (vxlan_header(VNI_A) + eth(MAC_R2, MAC_R1), "unknown-destination"),
    ],
    ids=[
        "empty",
        "7B",
        "no-I",
        "no-I-rest-set",
        "unknown-vni",
        "header-only",
        "13B-frame",
        "unknown-mac",
        "remote-mac",
    ],
)
def test_bad_datagrams_are_dropped_and_counted(
    core: VtepCore, datagram: bytes, reason: str
) -> None:
    assert core.from_underlay(VTEP1[0], datagram) == []
    assert all_drops(core) == {reason: 1}
    per_vni = vni_row(core, VNI_A)["drops"]
    # Drops before the VNI is known are only counted globally.
    if reason in ("runt-frame", "unknown-destination"):
        assert per_vni == {reason: 1}
    else:
        assert per_vni == {}
    assert vni_row(core, VNI_A)["rx_packets"] == 0


def test_reserved_bits_of_a_received_header_are_ignored(core: VtepCore) -> None:
    frame = eth(MAC_L1, MAC_R1)
    header = b"\xff\xff\xff\xff" + VNI_A.to_bytes(3, "big") + b"\xff"
    assert core.from_underlay(VTEP1[0], header + frame) == [(DELIVER, 1, frame)]
    assert all_drops(core) == {}


@pytest.mark.parametrize("dst", [BROADCAST, MCAST_V4], ids=["bcast", "mcast"])
def test_broadcast_from_underlay_reaches_every_local_port(core: VtepCore, dst: bytes) -> None:
    frame = eth(dst, MAC_R1)
    assert core.from_underlay(VTEP2[0], vxlan_header(VNI_A) + frame) == [
        (DELIVER, 1, frame),
        (DELIVER, 2, frame),
    ]


# -- isolation --------------------------------------------------------------------------------------


def two_tenants() -> VtepCore:
    """VNIs A and B reuse the same MACs and IPs: A has ports 1, 2; B has ports 3, 4."""
    core = VtepCore()
    for vni, (p, q), remote in ((VNI_A, (1, 2), VTEP1), (VNI_B, (3, 4), VTEP2)):
        core.add_network(vni)
        core.add_port(p, vni, MAC_L1, ip_to_bytes(IP_L1))
        core.add_port(q, vni, MAC_L2, ip_to_bytes(IP_L2))
        core.set_remote(vni, [(MAC_R1, ip_to_bytes(IP_R1), remote)], [remote])
    core.set_members(MEMBERS)
    return core


def test_overlapping_tenants_stay_isolated() -> None:
    core = two_tenants()
    frame = eth(MAC_L2, MAC_L1)
    assert core.from_port(1, frame) == [(DELIVER, 2, frame)]
    assert core.from_port(3, frame) == [(DELIVER, 4, frame)]
    # The same remote MAC sits behind a different VTEP in each VNI, with that VNI's header.
    to_r1 = eth(MAC_R1, MAC_L1)
    assert core.from_port(1, to_r1) == [(SEND, VTEP1, vxlan_header(VNI_A) + to_r1)]
    assert core.from_port(3, to_r1) == [(SEND, VTEP2, vxlan_header(VNI_B) + to_r1)]
    # Broadcasts stay in their VNI, both ways.
    bcast = eth(BROADCAST, MAC_L1)
    assert core.from_port(1, bcast) == [
        (SEND, VTEP1, vxlan_header(VNI_A) + bcast),
        (DELIVER, 2, bcast),
    ]
    assert core.from_underlay(VTEP1[0], vxlan_header(VNI_B) + bcast) == [
        (DELIVER, 3, bcast),
        (DELIVER, 4, bcast),
    ]
    inbound = eth(MAC_L1, MAC_R1)
    assert core.from_underlay(VTEP2[0], vxlan_header(VNI_A) + inbound) == [(DELIVER, 1, inbound)]
    assert core.from_underlay(VTEP2[0], vxlan_header(VNI_B) + inbound) == [(DELIVER, 3, inbound)]
    # ARP is answered from the asker's VNI only.
    core.set_remote(VNI_B, [(MAC_UNKNOWN, ip_to_bytes(IP_R2), VTEP2)], [VTEP2])
    ask = arp_frame(MAC_L1, IP_L1, IP_R2)
    assert core.from_port(1, ask) == [(SEND, VTEP1, vxlan_header(VNI_A) + ask), (DELIVER, 2, ask)]
    assert core.from_port(3, ask) == [(DELIVER, 3, arp_reply_frame(ask, MAC_UNKNOWN))]


def test_a_mac_known_only_in_another_vni_is_unknown() -> None:
    core = two_tenants()
    core.set_remote(VNI_B, [(MAC_R2, None, VTEP2)], [VTEP2])
    assert core.from_port(1, eth(MAC_R2, MAC_L1)) == []
    assert vni_row(core, VNI_A)["drops"] == {"unknown-destination": 1}
    assert vni_row(core, VNI_B)["drops"] == {}


# -- counters ---------------------------------------------------------------------------------------


def test_counters_snapshot_structure_and_totals(core: VtepCore) -> None:
    core.add_network(VNI_B)
    empty = snapshot(core)
    keys = set(vtep_mod.RX_KEYS + vtep_mod.TX_KEYS) | {"drops"}
    assert set(empty) == {"vnis", "drops"}
    assert set(empty["vnis"]) == {"100", "200"}
    for row in empty["vnis"].values():
        assert set(row) == keys
        assert all(row[k] == 0 for k in keys - {"drops"}) and row["drops"] == {}
    assert empty["drops"] == {}

    unicast = eth(MAC_R1, MAC_L1)
    bcast = eth(BROADCAST, MAC_L1)
    inbound = eth(MAC_L2, MAC_R1)
    core.from_port(1, unicast)  # 1 send
    core.from_port(1, bcast)  # 3 sends, 1 flood
    core.from_port(1, eth(MAC_L2, MAC_L1))  # 1 local
    core.from_port(1, arp_frame(MAC_L1, IP_L1, IP_R1))  # 1 ARP answered
    core.from_port(1, eth(MAC_L1, MAC_L1))  # hairpin
    core.from_port(7, unicast)  # unknown port
    core.from_underlay(VTEP1[0], vxlan_header(VNI_A) + inbound)  # 1 received
    core.from_underlay(VTEP1[0], vxlan_header(VNI_A) + inbound[:5])  # runt
    core.from_underlay(VTEP1[0], vxlan_header(999) + inbound)  # unknown VNI
    core.from_underlay(NON_MEMBER, vxlan_header(VNI_A) + inbound)  # non-member
    snap = snapshot(core)
    assert json.loads(json.dumps(snap)) == snap
    assert snap["vnis"]["100"] == {
        "rx_packets": 1,
        "rx_bytes": len(inbound),
        "tx_packets": 4,
        "tx_bytes": len(unicast) + 3 * len(bcast),
        "local_packets": 1,
        "flooded": 1,
        "arp_suppressed": 1,
        "ptb_relayed": 0,
        "drops": {"hairpin": 1, "runt-frame": 1},
    }
    assert snap["vnis"]["200"]["drops"] == {}
    assert snap["drops"] == {
        "hairpin": 1,
        "runt-frame": 1,
        "unknown-port": 1,
        "unknown-vni": 1,
        "non-member-vtep": 1,
    }
    # The snapshot is a copy: later traffic does not change it.
    core.from_port(1, unicast)
    assert snap["vnis"]["100"]["tx_packets"] == 4


def test_counters_of_rx_and_tx_drops_with_the_same_reason_add_up(core: VtepCore) -> None:
    core.from_port(1, b"\x00" * 5)
    core.from_underlay(VTEP1[0], vxlan_header(VNI_A) + b"\x00" * 5)
    assert all_drops(core) == {"runt-frame": 2}
    assert vni_row(core, VNI_A)["drops"] == {"runt-frame": 2}


# -- changing the configuration -------------------------------------------------------------------


def test_remove_port(core: VtepCore) -> None:
    core.remove_port(2)
    core.remove_port(2)  # twice is fine
    core.remove_port(42)  # never known: nothing happens
    assert core.from_port(1, eth(MAC_L2, MAC_L1)) == []
    assert all_drops(core) == {"unknown-destination": 1}
    bcast = eth(BROADCAST, MAC_L1)
    assert core.from_port(1, bcast) == flood_actions(VNI_A, bcast, [])
    ask = arp_frame(MAC_L1, IP_L1, IP_L2)
    assert core.from_port(1, ask) == flood_actions(VNI_A, ask, [])
    assert core.from_port(2, eth(MAC_L1, MAC_L2)) == []
    assert all_drops(core)["unknown-port"] == 1
    assert core.from_underlay(VTEP1[0], vxlan_header(VNI_A) + eth(BROADCAST, MAC_R1)) == [
        (DELIVER, 1, eth(BROADCAST, MAC_R1))
    ]


def test_set_remote_replaces_every_entry(core: VtepCore) -> None:
    mac_new = bytes.fromhex("02000000b003")
    vtep4 = ("192.0.2.4", 8472)
    core.set_remote(VNI_A, [(mac_new, ip_to_bytes("10.0.0.13"), vtep4)], [VTEP1])
    # The old entries are gone, MAC and ARP alike.
    assert core.from_port(1, eth(MAC_R1, MAC_L1)) == []
    ask_old = arp_frame(MAC_L1, IP_L1, IP_R1)
    flood = [(SEND, v, vxlan_header(VNI_A) + ask_old) for v in (VTEP1, vtep4)]
    assert core.from_port(1, ask_old) == [*flood, (DELIVER, 2, ask_old)]
    # The new ones are used, and the flood list is the VTEPs given plus the entries' VTEPs.
    frame = eth(mac_new, MAC_L1)
    assert core.from_port(1, frame) == [(SEND, vtep4, vxlan_header(VNI_A) + frame)]
    ask_new = arp_frame(MAC_L1, IP_L1, "10.0.0.13")
    assert core.from_port(1, ask_new) == [(DELIVER, 1, arp_reply_frame(ask_new, mac_new))]
    # An empty table leaves only the local ports.
    core.set_remote(VNI_A, [], [])
    bcast = eth(BROADCAST, MAC_L1)
    assert core.from_port(1, bcast) == [(DELIVER, 2, bcast)]


def test_set_remote_keeps_local_ports_authoritative(core: VtepCore) -> None:
    core.set_remote(VNI_A, [(MAC_L2, ip_to_bytes(IP_L2), VTEP1)], [])
    frame = eth(MAC_L2, MAC_L1)
    assert core.from_port(1, frame) == [(DELIVER, 2, frame)]


def test_configuring_an_unknown_vni_names_it() -> None:
    core = VtepCore()
    with pytest.raises(KeyError, match="VNI 7 is not configured"):
        core.set_remote(7, [], [])
    with pytest.raises(KeyError, match="VNI 7"):
        core.add_port(1, 7, MAC_L1, None)


def test_remove_network_forgets_its_ports(core: VtepCore) -> None:
    core.remove_network(VNI_A)
    assert core.from_port(1, eth(MAC_L2, MAC_L1)) == []
    assert core.from_underlay(VTEP1[0], vxlan_header(VNI_A) + eth(MAC_L1, MAC_R1)) == []
    assert all_drops(core) == {"unknown-port": 1, "unknown-vni": 1}
    core.add_network(VNI_A)  # and starts afresh
    assert core.from_underlay(VTEP1[0], vxlan_header(VNI_A) + eth(BROADCAST, MAC_R1)) == []


# -- property: arbitrary input never raises and is always accounted for ----------------------------

_known_macs = st.sampled_from([MAC_L1, MAC_L2, MAC_R1, MAC_R2, MAC_UNKNOWN, BROADCAST, MCAST_V6])
_macs = st.one_of(_known_macs, st.binary(min_size=6, max_size=6))
_ips = st.sampled_from([IP_L1, IP_L2, IP_R1, IP_R2, "10.0.0.99"])
_arp = st.builds(
    lambda src, sip, tip, op, pad: arp_frame(src, sip, tip, op=op, pad=pad),
    _macs,
    _ips,
    _ips,
    st.sampled_from([ARP_REQUEST, ARP_REPLY, 3]),
    st.integers(0, 20),
)
_frames = st.one_of(
    st.binary(max_size=80),
    st.builds(lambda d, s, rest: d + s + rest, _macs, _macs, st.binary(max_size=64)),
    _arp,
)
_vnis = st.one_of(st.sampled_from([VNI_A, VNI_B]), st.integers(0, MAX_VNI))
_headers = st.one_of(
    st.builds(
        lambda f, r, v, r2: bytes([f]) + r + v.to_bytes(3, "big") + bytes([r2]),
        st.integers(0, 255),
        st.binary(min_size=3, max_size=3),
        _vnis,
        st.integers(0, 255),
    ),
    st.builds(lambda v: vxlan_header(v), _vnis),
    st.binary(max_size=10),
)
_datagrams = st.one_of(st.binary(max_size=90), st.builds(bytes.__add__, _headers, _frames))
_inputs = st.lists(
    st.one_of(
        st.tuples(st.just("port"), st.sampled_from([1, 2, 3, 4, 9]), _frames),
        st.tuples(st.just("underlay"), st.sampled_from([*MEMBERS, NON_MEMBER]), _datagrams),
    ),
    max_size=30,
)
PORT_VNI = {1: VNI_A, 2: VNI_A, 3: VNI_B, 4: VNI_B}
VNI_PORTS = {VNI_A: {1, 2}, VNI_B: {3, 4}}


@given(_inputs)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_input_gives_actions_or_exactly_one_counted_drop(inputs: List[Any]) -> None:
    core = two_tenants()
    empty = sends = send_bytes = accepted = 0
    for direction, who, data in inputs:
        before = sum(all_drops(core).values())
        if direction == "port":
            actions = core.from_port(who, data)
        else:
            actions = core.from_underlay(who, data)
        dropped = sum(all_drops(core).values()) - before
        assert dropped == (0 if actions else 1), (direction, who, data, actions)
        if who == NON_MEMBER:
            assert all_drops(core)["non-member-vtep"] >= 1 and not actions
        if not actions:
            empty += 1
            continue
        if direction == "underlay":
            accepted += 1
            vni = int.from_bytes(data[4:7], "big")
        else:
            vni = PORT_VNI[who]
        for kind, where, out in actions:
            assert isinstance(out, bytes)
            if kind == SEND:
                assert direction == "port"
                assert where in (VTEP1, VTEP2)
                assert out == vxlan_header(vni) + data
                sends += 1
                send_bytes += len(data)
            else:
                assert kind == DELIVER
                assert where in VNI_PORTS[vni], "a frame crossed into another VNI"
                if direction == "underlay":
                    assert out == data[8:]
                elif where == who:
                    assert out == arp_reply_frame(data, out[6:12])  # only ARP comes back
                else:
                    assert out == data
    snap = snapshot(core)
    rows = snap["vnis"].values()
    assert sum(snap["drops"].values()) == empty
    assert sum(sum(r["drops"].values()) for r in rows) <= empty
    assert sum(r["tx_packets"] for r in rows) == sends
    assert sum(r["tx_bytes"] for r in rows) == send_bytes
    assert sum(r["rx_packets"] for r in rows) == accepted


def test_from_port_batch_equals_one_frame_at_a_time() -> None:
    frames = [
        eth(MAC_R1, MAC_L1),  # remote unicast
        eth(MAC_R2, MAC_L1, payload=bytes(100)),
        eth(MAC_L2, MAC_L1),  # local port
        eth(MAC_L1, MAC_L1),  # hairpin
        eth(MAC_UNKNOWN, MAC_L1),  # unknown unicast
        arp_frame(MAC_L1, IP_L1, IP_R1),  # answered locally
        eth(BROADCAST, MAC_L1),  # flooded
        MAC_R1 + MAC_L1,  # runt with a known destination
        b"",
        eth(MAC_R1, MAC_L1, payload=bytes(1400)),
    ]
    for port in (1, 2, 99):  # 99: no such port
        one, batch = build_core(), build_core()
        expected: List[Action] = []
        for f in frames:
            expected.extend(one.from_port(port, f))
        assert batch.from_port_batch(port, frames) == expected
        assert snapshot(batch) == snapshot(one)
    assert build_core().from_port_batch(1, []) == []
