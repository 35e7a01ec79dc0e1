"""What the kernel-overlays verdict says about a kernel VXLAN device whose MTU is too big for
the path, against what the kernel then does with full-size frames.

The war story's underlay (fixtures/war-story.yaml): h1 -> h3 crosses a 1400-byte core link and
the router eats the ICMP "fragmentation needed" addressed to h1. A kernel VXLAN device pair
h1 <-> h3 with MTU 1450 (1500 on the wire) sends a full-size DF ping and a 256 KiB TCP transfer
over it; the path is measured by the agents' ``pmtu_probe`` (what the pmtu check runs) and the
devices are read by the agent's scan, then judged by ``kernel_overlays.judge``:

* ``df set``: the outer packets carry DF, the router drops them and its ICMP never reaches h1:
  a blackhole, and the verdict says so (large payloads stall);
* the kernel's default (``df unset``): the router fragments the outer packets instead, the
  frames arrive, and the verdict says fragmented, not stalled;
* the same with IPv4 fragments dropped on the way (at r2): they stall, and the verdict says so
  from the search's probes without DF, which did not cross either.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, List

import pytest

from overlay_agent.io import netns
from overlay_agent.io.kernelvxlan import scan
from pytest_overlay.checks import kernel_overlays
from pytest_overlay.lab.topology import LabTopology
from tests.conftest import needs_root

pytestmark = needs_root

WAR = Path(__file__).resolve().parents[2] / "fixtures" / "war-story.yaml"
INNER = {"h1": "10.77.0.1", "h3": "10.77.0.3"}

_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7777)); s.listen(1); s.settimeout(5)
n = 0
try:
    c, _ = s.accept(); c.settimeout(4)
    while True:
        d = c.recv(65536)
        if not d:
            break
        n += len(d)
except OSError:
    pass  # stalled: what arrived so far
print(n)
"""

_CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], 7777), timeout=3); s.settimeout(4)
try:
    s.sendall(b"x" * 262144); s.shutdown(socket.SHUT_WR); s.recv(1)
except OSError as e:
    print(e)
"""


def _topology(extra_faults: List[dict]) -> LabTopology:
    topo = LabTopology.load(WAR)
    data = topo.model_dump()
    data["faults"] = data["faults"] + extra_faults
    return LabTopology.model_validate(data)


def _transfer(lab: Any) -> int:
    """Bytes of a 256 KiB TCP transfer h1 -> h3 through the kernel devices that arrived."""
    server = subprocess.Popen(["ip", "netns", "exec", lab.host_ns["h3"], "python3", "-c", _SERVER,
                               INNER["h3"]], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(50):  # until it listens
            if lab.run("h3", "ss", "-Hltn", "sport = :7777").stdout.strip():
                break
            subprocess.run(["sleep", "0.05"], check=True)
        lab.run("h1", "python3", "-c", _CLIENT, INNER["h3"], check=False, timeout=20)
        out, _ = server.communicate(timeout=20)
        return int(out.strip() or 0)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


@pytest.mark.parametrize(("df", "faults", "crosses"), [
    ("set", [], False),
    ("unset", [], True),
    ("unset", [{"at": "r2", "drop": "fragments"}], False),
], ids=["df-set-blackhole", "df-unset-fragmented", "df-unset-fragments-dropped"])
def test_the_verdict_says_what_the_kernel_does(make_lab: Any, df: str, faults: List[dict],
                                               crosses: bool) -> None:
    lab = make_lab(topology=_topology(faults))
    a1, a3 = lab.agent("h1"), lab.agent("h3")
    members = [lab.address("h1"), lab.address("h3")]
    for a in (a1, a3):
        a.call("set_members", vteps=members)
        a.call("pmtu_listen")
    path = a1.call("pmtu_probe", dsts=[lab.address("h3")])["results"][lab.address("h3")]
    assert (path["verdict"], path["pmtu"], path["local_mtu"]) == ("blackhole", 1400, 1500), path
    # the search's probes without DF: do IPv4 fragments cross this path?
    assert path["fragments"] is not faults, path

    for host, peer in (("h1", "h3"), ("h3", "h1")):
        ns = lab.host_ns[host]
        netns.ip("link", "add", "vx42", "mtu", "1450", "type", "vxlan", "id", "42", "dstport",
                 "4790", "local", lab.address(host), "remote", lab.address(peer), "df", df,
                 netns=ns)
        netns.ip("addr", "add", f"{INNER[host]}/24", "dev", "vx42", netns=ns)
        netns.ip("link", "set", "vx42", "up", netns=ns)
    with netns.inside(lab.host_ns["h1"]):
        devices = scan(docker_dirs=[])["devices"]
    assert [(d["name"], d["df"], d["mtu"]) for d in devices] == [("vx42", df, 1450)]

    small = lab.run("h1", "ping", "-c", "2", "-W", "1", "-s", "200", INNER["h3"], check=False)
    assert small.returncode == 0, small.stdout  # small requests work in every case
    full = lab.run("h1", "ping", "-c", "3", "-W", "1", "-M", "do", "-s", "1422", INNER["h3"],
                   check=False)
    received = _transfer(lab)
    assert (full.returncode == 0) == crosses, full.stdout
    assert (received == 262144) == crosses, received

    r = kernel_overlays.judge("h1", {"devices": devices, "errors": []},
                              {("h1", "h3"): path}, {42: ["h1", "h3"]}, ["h3"], 50)
    assert r.outcome == "fail", r.message
    dev = r.details["devices"][0]
    # the verdict says what the kernel did: stalled where the transfer stalled
    assert (dev["stalling_pairs"] == ["h1->h3"]) is not crosses, r.message
    assert ("stall while small requests work" in r.message) is not crosses, r.message
    if df == "set":
        assert "packets above 1350 are lost and nothing tells the sender" in r.message
    else:
        assert dev["fragmenting_pairs"] == ["h1->h3"]
        assert ("fragmented on the way instead of dropped and arrive" in r.message) is crosses
        assert ("the path drops the fragments" in r.message) is not crosses
    # without the fragment probes' answer the verdict names both outcomes
    unknown = kernel_overlays.judge("h1", {"devices": devices, "errors": []},
                                    {("h1", "h3"): {**path, "fragments": None}},
                                    {42: ["h1", "h3"]}, ["h3"], 50)
    if df == "unset":
        assert "stall where a firewall, NAT or load balancer drops fragments" in unknown.message
