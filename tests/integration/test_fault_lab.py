"""The fault lab itself: routers, per-segment MTUs, computed routes and every nftables fault
kind, over IPv4 and IPv6 (no agents: the kernel's own tools probe it, inside lab namespaces)."""

from __future__ import annotations

import subprocess
from typing import List

import pytest

from pytest_overlay.lab.netlab import mac_of
from pytest_overlay.lab.topology import LabTopology
from tests.conftest import needs_root

pytestmark = needs_root


def _topology(v6: bool, faults: List[dict]) -> LabTopology:
    if v6:
        nets = ["2001:2:0:1::/64", "2001:2:0:2::/64", "2001:2:0:3::/64"]
        addr = {"h1": "2001:2:0:1::1", "r1a": "2001:2:0:1::fe", "r1b": "2001:2:0:2::1",
                "r2a": "2001:2:0:2::2", "r2b": "2001:2:0:3::fe", "h2": "2001:2:0:3::2"}
    else:
        nets = ["198.18.1.0/24", "198.18.2.0/24", "198.18.3.0/24"]
        addr = {"h1": "198.18.1.1", "r1a": "198.18.1.254", "r1b": "198.18.2.1",
                "r2a": "198.18.2.2", "r2b": "198.18.3.254", "h2": "198.18.3.2"}
    return LabTopology.model_validate({
        "segments": [{"name": "lan1", "subnet": nets[0]},
                     {"name": "core", "subnet": nets[1], "mtu": 1400},
                     {"name": "lan2", "subnet": nets[2]}],
        "routers": [{"name": "r1", "interfaces": {"lan1": addr["r1a"], "core": addr["r1b"]}},
                    {"name": "r2", "interfaces": {"core": addr["r2a"], "lan2": addr["r2b"]}}],
        "hosts": [{"name": "h1", "segment": "lan1", "address": addr["h1"]},
                  {"name": "h2", "segment": "lan2", "address": addr["h2"]}],
        "faults": faults,
    })


def _ping(lab, host: str, dst: str, size: int, count: int = 3) -> int:  # type: ignore[no-untyped-def]
    """Echo replies received (DF set, so sizes above the path MTU fail)."""
    fam = "-6" if ":" in dst else "-4"
    r = lab.run(host, "ping", fam, "-n", "-q", "-M", "do", "-c", str(count), "-i", "0.05",
                "-W", "1", "-s", str(size), dst, check=False)
    for line in r.stdout.splitlines():
        if "received" in line:
            return int(line.split(",")[1].split()[0])
    return 0


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_routed_lab_with_every_fault_kind(make_lab, v6: bool) -> None:  # type: ignore[no-untyped-def]
    faults = [{"at": "r1", "drop": "ptb", "dst": "h1"},
              {"at": "r2", "drop": "fragments"},
              # never matches (h2 -> h2 crosses no router): the rule's syntax, both forms
              {"at": "r2", "drop": "loss", "percent": 100, "src": "h2", "dst": "h2"},
              {"at": "r1", "drop": "loss", "percent": 1, "src": "h2", "dst": "h2"},
              {"at": "h2", "drop": "port", "proto": "udp", "port": 4789}]
    topo = _topology(v6, faults)
    lab = make_lab(topology=topo)
    h2 = topo.address_of("h2")
    addr_r1 = topo.segments_of("r1")["lan1"]
    hdr = 48 if v6 else 28
    # Routes were computed: small packets cross two routers; the 1400 core link is real.
    assert _ping(lab, "h1", h2, 100) == 3
    assert _ping(lab, "h1", h2, 1400 - hdr) == 3
    assert _ping(lab, "h1", h2, 1401 - hdr, count=2) == 0
    # Underlay neighbours are static (they do not use up the kernel's shared table of dynamic
    # ones): h1 knows r1's MAC from the start, as r1 knows h1's and r2's.
    neigh = lab.run("h1", "ip", fam6 := ("-6" if v6 else "-4"), "neigh", "show", "dev", "eth0").stdout
    assert f"{addr_r1} lladdr {mac_of(addr_r1)} PERMANENT" in neigh, neigh
    r1_neigh = lab.run("h1", "ip", fam6, "neigh", netns=f"{lab.prefix}-r1").stdout
    assert r1_neigh.count("PERMANENT") == 2 and "REACHABLE" not in r1_neigh, r1_neigh
    # r1 eats the PTB meant for h1: h1's kernel never learns the path MTU.
    route = lab.run("h1", "ip", "-6" if v6 else "-4", "route", "get", h2).stdout
    assert "mtu 1400" not in route
    # The faults are nftables rules in a table named after the run, inside the namespaces.
    r1 = lab.run("h1", "nft", "list", "table", "inet", lab.prefix, netns=f"{lab.prefix}-r1").stdout
    assert "frag-needed" in r1 and "packet-too-big" in r1 and "chain forward" in r1
    r2 = lab.run("h1", "nft", "list", "table", "inet", lab.prefix, netns=f"{lab.prefix}-r2").stdout
    assert "frag" in r2 and "daddr" in r2  # 100 % loss is a plain drop
    h2_rules = lab.run("h2", "nft", "list", "table", "inet", lab.prefix).stdout
    assert "udp dport 4789" in h2_rules and "chain input" in h2_rules
    assert "numgen random mod 100 < 1" in r1
    # Fragments die on r2: a 2000-byte echo without DF leaves h1 in fragments and never returns.
    fam = "-6" if v6 else "-4"
    frag = lab.run("h1", "ping", fam, "-n", "-q", "-M", "dont", "-c", "2", "-i", "0.05", "-W", "1",
                   "-s", "2000", h2, check=False).stdout
    assert " 0 received" in frag, frag
    r2_after = lab.run("h1", "nft", "list", "table", "inet", lab.prefix,
                       netns=f"{lab.prefix}-r2").stdout
    frag_lines = [ln for ln in r2_after.splitlines() if "frag" in ln and "counter" in ln]
    assert any("packets 0 " not in ln for ln in frag_lines), r2_after
    # And nothing of it exists in the root namespace.
    root = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert lab.prefix not in root
