"""Path-MTU discovery through the VTEP: on the war story's routed lab (a 1400-byte core link),
a frame too big for the underlay path is answered with ICMP "fragmentation needed" into its
endpoint (core/ptb.py), so the endpoint's TCP learns the overlay path MTU and a large transfer
completes where the router's PTB reaches the VTEP's host; behind the blackhole (r1 eats the
PTBs to h1) nothing is learnt and the transfer stalls, also once the far endpoint has learnt
the path MTU of the way back. The oracle is the endpoints' own kernels: the route cache holds
the advertised MTU."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import pytest

from pytest_overlay.lab.topology import LabTopology
from tests.conftest import needs_root
from tests.integration._vtep_lab import VNI, vteps

pytestmark = [needs_root, pytest.mark.slow]
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
EPS = {"h1": ("10.10.0.2", "02:42:0a:0a:00:02"), "h2": ("10.10.0.3", "02:42:0a:0a:00:03"),
       "h3": ("10.10.0.4", "02:42:0a:0a:00:04")}


def _vni_row(agent: Any) -> Dict[str, Any]:
    return dict(agent.call("counters")["vnis"][str(VNI)])


# The overlay MTU is the most the hosts' own 1500-byte links carry (1450 over IPv4, 1430 over
# IPv6); the 1400-byte core link leaves 1350 / 1330.
@pytest.mark.parametrize("topology,mtu,inner", [("war-story.yaml", 1450, 1350),
                                                ("war-story-ipv6.yaml", 1430, 1330)],
                         ids=["ipv4", "ipv6"])
def test_pmtud_works_through_the_vtep_unless_the_underlay_eats_the_ptb(
        make_lab: Any, topology: str, mtu: int, inner: int) -> None:
    lab = make_lab(topology=LabTopology.load(str(FIXTURES / topology)))
    agents = vteps(lab, EPS, mtu)
    dst = EPS["h3"][0]

    # h2 -> h3: the router's PTB reaches h2, the VTEP's next oversized send fails with
    # EMSGSIZE, and the endpoint is told; TCP retransmits smaller and the transfer completes.
    ok = agents["h2"].call("tcp_transfer", endpoint="e0", dst=dst, nbytes=256 * 1024,
                           timeout=15.0)
    assert ok["ok"], ok
    assert ok["tcp_info"]["pmtu"] == inner, ok  # the sender's TCP took the relayed MTU
    assert ok["tcp_info"]["bytes_acked"] == 1 + 8 + 256 * 1024, ok  # SYN, length, payload
    row = _vni_row(agents["h2"])
    assert row["ptb_relayed"] >= 1 and row["drops"].get("too-big", 0) >= 1, row
    route = lab.run("h2", "ip", "route", "get", dst,
                    netns=f"{lab.prefix}-h2-e0").stdout
    assert f"mtu {inner}" in route, route  # the endpoint's kernel took our ICMP
    # Full-size frames now fail at the endpoint itself, before they reach the VTEP:
    ping = lab.run("h2", "ping", "-n", "-M", "do", "-c", "1", "-W", "1", "-s", str(mtu - 28), dst,
                   netns=f"{lab.prefix}-h2-e0", check=False)
    assert ping.returncode != 0 and f"mtu={inner}" in (ping.stdout + ping.stderr), ping
    # ... and sizes that fit the path cross.
    fits = lab.run("h2", "ping", "-n", "-M", "do", "-c", "2", "-W", "2", "-s", str(inner - 28),
                   dst, netns=f"{lab.prefix}-h2-e0", check=False)
    assert fits.returncode == 0, fits.stdout + fits.stderr

    # h1 -> h3: r1 eats the PTB, h1's kernel never learns the path MTU, the VTEP's sends
    # succeed into the blackhole: nothing to relay, and the transfer stalls.
    stalled = agents["h1"].call("tcp_transfer", endpoint="e0", dst=dst, nbytes=64 * 1024,
                                timeout=3.0)
    assert not stalled["ok"], stalled
    assert stalled["tcp_info"]["pmtu"] == mtu and stalled["tcp_info"]["retransmits"] > 0
    # The kernel's own count: nothing but the SYN was acknowledged (every data segment was
    # full-size), and the error says so in bytes.
    assert stalled["stalled"] and stalled["tcp_info"]["bytes_acked"] == 1, stalled
    assert "0 of 65536 bytes acknowledged" in stalled["error"], stalled
    assert _vni_row(agents["h1"])["ptb_relayed"] == 0
    route = lab.run("h1", "ip", "route", "get", dst, netns=f"{lab.prefix}-h1-e0").stdout
    assert "mtu" not in route, route

    # h3 -> h1 works (r2's PTB reaches h3), and h3's endpoint now holds the path MTU towards
    # h1's. Linux would advertise the MSS of that path MTU in h3's SYN-ACKs, so h1's next
    # connection would send small segments and the blackhole would hide; the endpoints
    # advertise the MSS of their own MTU instead, and h1 -> h3 still stalls.
    back = agents["h3"].call("tcp_transfer", endpoint="e0", dst=EPS["h1"][0],
                             nbytes=256 * 1024, timeout=15.0)
    assert back["ok"], back
    h3_route = lab.run("h3", "ip", "route", "get", EPS["h1"][0],
                       netns=f"{lab.prefix}-h3-e0").stdout
    assert f"mtu {inner}" in h3_route, h3_route
    assert f"advmss {mtu - 40}" in lab.run("h3", "ip", "route", "show",
                                           netns=f"{lab.prefix}-h3-e0").stdout
    again = agents["h1"].call("tcp_transfer", endpoint="e0", dst=dst, nbytes=64 * 1024,
                              timeout=3.0)
    assert not again["ok"], again
