"""Two agents, one endpoint each, mappings pushed by hand: the VTEP carries real traffic."""

from __future__ import annotations

from tests.conftest import needs_root

pytestmark = needs_root


def test_two_agents_ping_and_transfer(make_lab):
    lab = make_lab(2)
    a1, a2 = lab.agent("h1"), lab.agent("h2")
    eps = {"h1": ("10.10.0.2", "02:42:0a:0a:00:02"), "h2": ("10.10.0.3", "02:42:0a:0a:00:03")}
    for host, agent in (("h1", a1), ("h2", a2)):
        agent.call("create_network", name="ov", vni=4096, subnet="10.10.0.0/16", mtu=1450)
        ip, mac = eps[host]
        agent.call("add_endpoint", network="ov", name="e0", ip=ip, mac=mac)
    entries = [{"mac": mac, "ip": ip, "vtep": [lab.address(h), 4789]} for h, (ip, mac) in eps.items()]
    vteps = [[lab.address(h), 4789] for h in eps]
    for agent in (a1, a2):
        agent.call("set_members", vteps=[lab.address("h1"), lab.address("h2")])
        agent.call("set_mappings", vni=4096, entries=entries, vteps=vteps)
    ping = a1.call("ping", endpoint="e0", dst="10.10.0.3", count=3)
    assert ping["received"] == 3
    tcp = a2.call("tcp_transfer", endpoint="e0", dst="10.10.0.2", nbytes=1 << 20)
    assert tcp["ok"], tcp
    c1 = a1.call("counters")
    v = c1["vnis"]["4096"]
    assert v["tx_packets"] > 0 and v["rx_packets"] > 0
    # ARP for the peer was answered locally, never flooded over the underlay
    assert v["arp_suppressed"] >= 1
