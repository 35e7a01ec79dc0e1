"""Crafted VXLAN (scapy) at a running VTEP: dropped, counted by reason, never delivered, no crash.

h1 and h2 run agents (members of each other) with endpoint e0 on VNI 4096; h3 runs none, so
its address is a non-member. Every crafted datagram carries an inner UDP packet to h1's e0 with
a marker; an AF_PACKET capture on e0 records which markers arrived. A well-formed datagram from
the member h2 is the positive control (it must arrive), so the capture is shown to work.
"""

from __future__ import annotations

import secrets
from typing import Dict

import pytest

from tests.conftest import needs_root
from tests.integration._vtep_lab import EPS, VNI, rx_accounted, sender_in, two_vteps, wait_for

pytestmark = needs_root

scapy_all = pytest.importorskip("scapy.all")
vxlan_layer = pytest.importorskip("scapy.layers.vxlan")

COPIES = 5


def inner(token: str, marker: str) -> bytes:
    """An Ethernet frame from h2's e0 to h1's e0: UDP to the echo port, marked."""
    (dst_ip, dst_mac), (src_ip, src_mac) = EPS["h1"], EPS["h2"]
    pkt = (scapy_all.Ether(dst=dst_mac, src=src_mac)
           / scapy_all.IP(src=src_ip, dst=dst_ip)
           / scapy_all.UDP(sport=40000, dport=7)
           / scapy_all.Raw(f"{token}:{marker};".encode()))
    return bytes(pkt)


def vxlan(vni: int, frame: bytes, flags: int = 0x08) -> bytes:
    data = bytes(vxlan_layer.VXLAN(vni=vni) / scapy_all.Raw(frame))
    # The flags byte is set by hand: scapy lays out extension fields (GBP, GPE) for some bits.
    return bytes((flags,)) + data[1:]


def test_crafted_frames_are_dropped_counted_and_never_delivered(make_lab) -> None:  # type: ignore[no-untyped-def]
    lab = make_lab(3)
    a1, a2 = two_vteps(lab)
    token = "cr" + secrets.token_hex(4)
    a1.call("capture_start", endpoint="e0", token=token)
    h1 = (lab.address("h1"), 4789)
    member, stranger = sender_in(lab, "h2"), sender_in(lab, "h3")
    good = vxlan(VNI, inner(token, "good"))
    assert good[:8] == b"\x08\x00\x00\x00\x00\x10\x00\x00"  # scapy built what we meant
    crafted: Dict[str, tuple] = {
        # name: (socket, datagram, drop reason it must be counted under)
        "unknown-vni": (member, vxlan(VNI + 1, inner(token, "unknown-vni")), "unknown-vni"),
        "non-member": (stranger, vxlan(VNI, inner(token, "non-member")), "non-member-vtep"),
        "flags-00": (member, vxlan(VNI, inner(token, "flags-00"), flags=0x00), "no-i-flag"),
        "flags-f7": (member, vxlan(VNI, inner(token, "flags-f7"), flags=0xF7), "no-i-flag"),
        "truncated-5": (member, vxlan(VNI, inner(token, "truncated-5"))[:5], "short-header"),
        "truncated-0": (member, b"", "short-header"),
        "runt-inner": (member, vxlan(VNI, inner(token, "runt"))[:8 + 13], "runt-frame"),
    }
    before = a1.call("vtep_stats")
    for sock, data, _ in crafted.values():
        for _ in range(COPIES):
            sock.sendto(data, h1)
    expected = {}
    for _, _, reason in crafted.values():
        expected[reason] = expected.get(reason, 0) + COPIES
    total = COPIES * len(crafted)
    assert wait_for(lambda: rx_accounted(a1.call("vtep_stats")) - rx_accounted(before) >= total)
    after = a1.call("vtep_stats")
    # Positive control after the bad ones: the same path, well formed, is delivered.
    member.sendto(good, h1)
    assert wait_for(lambda: "good" in a1.call("capture_read", endpoint="e0")["markers"])
    markers = a1.call("capture_stop", endpoint="e0")["markers"]
    member.close()
    stranger.close()

    assert set(markers) == {"good"}, f"crafted frames reached the endpoint: {markers}"
    moved = {k: v - before["rx_drops"].get(k, 0) for k, v in after["rx_drops"].items()}
    assert {k: v for k, v in moved.items() if v} == expected
    assert after["rx_packets"] == before["rx_packets"]  # none of the crafted was delivered
    assert after["probes"] == before["probes"]
    # Still alive and forwarding both ways.
    assert a1.call("hello", protocol=1)["pid"]
    assert a1.call("ping", endpoint="e0", dst=EPS["h2"][0], count=3)["received"] == 3
    assert a2.call("ping", endpoint="e0", dst=EPS["h1"][0], count=3)["received"] == 3
