"""The agent's path-MTU RPCs on real namespaces: member-only responder, local-limit, IPv6 PTB."""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any

import pytest

from pytest_overlay.lab.topology import LabHost, LabTopology, Segment
from tests.conftest import needs_root

pytestmark = needs_root


def _flat(mtu: int) -> LabTopology:
    seg = Segment(name="ul0", subnet="198.18.0.0/24", mtu=mtu)
    return LabTopology(segments=[seg], hosts=[LabHost(name="h1", segment="ul0", address="198.18.0.1"),
                                              LabHost(name="h2", segment="ul0", address="198.18.0.2")])


def test_responder_answers_member_vteps_only(make_lab: Any) -> None:
    lab = make_lab(topology=_flat(1500))
    a1, a2 = lab.agent("h1"), lab.agent("h2")
    a2.call("set_members", vteps=["198.18.0.2"])  # h1 is no member of h2's overlay
    a2.call("pmtu_listen")
    res = a1.call("pmtu_probe", dsts=["198.18.0.2"])["results"]["198.18.0.2"]
    assert res["verdict"] == "unreachable" and res["pmtu"] is None
    assert a2.call("pmtu_listen")["refused"] >= 3
    a2.call("set_members", vteps=["198.18.0.1", "198.18.0.2"])
    res = a1.call("pmtu_probe", dsts=["198.18.0.2"])["results"]["198.18.0.2"]
    assert (res["verdict"], res["pmtu"], res["rounds"]) == ("ok", 1500, 1)


def test_small_own_interface_is_a_local_limit(make_lab: Any) -> None:
    lab = make_lab(topology=_flat(1420))
    a1, a2 = lab.agent("h1"), lab.agent("h2")
    for a in (a1, a2):
        a.call("set_members", vteps=["198.18.0.1", "198.18.0.2"])
        a.call("pmtu_listen")
    res = a1.call("pmtu_probe", dsts=["198.18.0.2"])["results"]["198.18.0.2"]
    assert (res["verdict"], res["pmtu"], res["local_mtu"]) == ("local-limit", 1420, 1420)


def _v6_flat() -> LabTopology:
    seg = Segment(name="ul0", subnet="2001:2:0:9::/64")
    return LabTopology(segments=[seg], hosts=[LabHost(name="h1", segment="ul0", address="2001:2:0:9::1"),
                                              LabHost(name="h2", segment="ul0", address="2001:2:0:9::2")])


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
@pytest.mark.parametrize(("v6", "inner"), [(False, 1450), (True, 1430)], ids=["ipv4", "ipv6"])
def test_outer_packet_of_a_full_size_inner_packet(make_lab: Any, v6: bool, inner: int) -> None:
    """What the overhead check reports as `outer` (inner MTU + 50 / + 70) is what the wire
    carries: tshark on h2's underlay sees a 1500-byte outer IP packet for a full-size inner one."""
    lab = make_lab(topology=_v6_flat() if v6 else _flat(1500))
    a1, a2 = lab.agent("h1"), lab.agent("h2")
    eps = {"h1": ("10.10.0.2", "02:42:0a:0a:00:02"), "h2": ("10.10.0.3", "02:42:0a:0a:00:03")}
    for host, agent in (("h1", a1), ("h2", a2)):
        agent.call("create_network", name="ov", vni=4096, subnet="10.10.0.0/16", mtu=inner)
        agent.call("add_endpoint", network="ov", name="e0", ip=eps[host][0], mac=eps[host][1])
    entries = [{"mac": m, "ip": ip, "vtep": [lab.address(h), 4789]} for h, (ip, m) in eps.items()]
    for agent in (a1, a2):
        agent.call("set_members", vteps=[lab.address("h1"), lab.address("h2")])
        agent.call("set_mappings", vni=4096, entries=entries,
                   vteps=[[lab.address(h), 4789] for h in eps])
    field = "ipv6.plen" if v6 else "ip.len"
    cap = subprocess.Popen(
        ["ip", "netns", "exec", lab.host_ns["h2"], "tshark", "-n", "-i", "eth0", "-c", "1",
         "-a", "duration:40", "-f", "udp dst port 4789 and greater 1300", "-T", "fields",
         "-e", field], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 40
        while cap.poll() is None and time.monotonic() < deadline:
            got = a1.call("ping", endpoint="e0", dst="10.10.0.3", count=1, size=inner - 28,
                          dont_fragment=True)
            assert got["received"] == 1, got
            time.sleep(0.3)
        out, _ = cap.communicate(timeout=10)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.communicate()
    values = [int(v) for v in out.split()[0].split(",")]  # outer, then (IPv4) the inner ip.len
    outer = values[0] + (40 if v6 else 0)
    assert outer == inner + (70 if v6 else 50) == 1500
    if not v6:
        assert values[1] == inner


def test_random_loss_is_lossy_not_a_small_mtu(make_lab: Any) -> None:
    topo = LabTopology.model_validate({
        "segments": [{"name": "ul0", "subnet": "198.18.0.0/24"}],
        "hosts": [{"name": "h1", "segment": "ul0", "address": "198.18.0.1"},
                  {"name": "h2", "segment": "ul0", "address": "198.18.0.2"}],
        "faults": [{"at": "h2", "drop": "loss", "percent": 30, "src": "h1"}],
    })
    lab = make_lab(topology=topo)
    a1, a2 = lab.agent("h1"), lab.agent("h2")
    for a in (a1, a2):
        a.call("set_members", vteps=["198.18.0.1", "198.18.0.2"])
        a.call("pmtu_listen")
    res = a1.call("pmtu_probe", dsts=["198.18.0.2"])["results"]["198.18.0.2"]
    assert res["verdict"] == "lossy", res
    sent, back = res["controls"]
    # Something came back (a control, or sizes: a search that its first round decides can lose
    # all three of its controls, about one time in 37 at 30 % loss), and the loss is counted.
    assert back > 0 or res["pmtu"], res
    assert (sent - back) + res["lost_below_pmtu"][1] >= 2, res
