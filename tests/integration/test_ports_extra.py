"""--overlay-ports in the port audit against real nftables faults, and its clean-up.

Three hosts; in h3 a rule drops TCP/2377 from h1 only and UDP/7946 from everyone. The audit
must fail exactly h1->h3 (2377/tcp filtered, asymmetric; 7946/udp blocked) and h2->h3
(7946/udp blocked), pass the rest, and leave no extra listener behind.
"""

from __future__ import annotations

import socket
import subprocess
from typing import Callable

import pytest

from overlay_agent.io import netns
from pytest_overlay.portspec import parse_ports
from pytest_overlay.runner import OverlayRun
from tests.conftest import needs_root

pytestmark = needs_root


@pytest.fixture
def run(local_run: Callable[..., OverlayRun]) -> OverlayRun:
    return local_run(extra_ports=parse_ports("swarm,5353/udp"))


def test_extra_ports_name_the_blocked_ones_and_close_their_listeners(run: OverlayRun) -> None:
    run.start()
    assert run.start_error is None, run.start_error
    p = run.prefix
    h1 = next(h.underlay for h in run.plan.hosts if h.name == "h1")
    h2 = next(h.underlay for h in run.plan.hosts if h.name == "h2")
    subprocess.run(["ip", "netns", "exec", f"{p}-h3", "nft", "-f", "-"], check=True, text=True,
                   capture_output=True, timeout=30, input=f"""
table inet {p}_fault {{
  chain input {{
    type filter hook input priority 0; policy accept;
    ip saddr {h1} tcp dport 2377 counter drop
    udp dport 7946 counter drop
  }}
}}""")
    res = run.check("ports")
    extra = ("2377/tcp", "7946/tcp", "7946/udp", "5353/udp")
    got = {tid: {k: r.details["probes"][k]["verdict"] for k in extra} for tid, r in res.items()}
    ok = dict.fromkeys(extra, "pass")
    assert got == {
        "h1->h2": ok, "h2->h1": ok, "h3->h1": ok, "h3->h2": ok,
        "h1->h3": {**ok, "2377/tcp": "filtered", "7946/udp": "blocked"},
        "h2->h3": {**ok, "7946/udp": "blocked"},
    }
    assert {t for t, r in res.items() if r.outcome != "pass"} == {"h1->h3", "h2->h3"}
    r13 = res["h1->h3"]
    assert r13.details["asymmetric"] == ["2377/tcp", "7946/udp"]
    assert "2377/tcp filtered" in r13.message and "asymmetric: h3->h1 passes" in r13.message
    assert r13.details["probes"]["7946/udp"]["received"] == 0
    assert res["h1->h2"].details["probes"]["5353/udp"]["received"] == 5
    assert res["h1->h2"].details["probes"]["7946/udp"]["listener"] == "ours"
    # the audit's listeners are gone: nothing logs UDP any more, and 2377/tcp is closed again
    for host in ("h1", "h2", "h3"):
        assert run.call(host, "udp_probe_log") == {"ports": {}, "ignored": 0}
    assert run.call("h1", "tcp_connect", dst=h2, port=2377, timeout=3.0)["state"] == "refused"


def test_a_udp_port_another_program_holds_is_watched_on_the_interface(run: OverlayRun) -> None:
    """h2's 5353/udp is held (as dockerd holds 7946/udp on a Swarm node): the probes go to the
    holder and the receiving agent sees them arrive on its interface; the underlay's switch
    drops them from h1 to h2, which must read as blocked, not as unverified."""
    run.start()
    assert run.start_error is None, run.start_error
    p = run.prefix
    h2 = next(h.underlay for h in run.plan.hosts if h.name == "h2")
    with netns.inside(f"{p}-h2"):
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        holder.bind((h2, 5353))
        holder.setblocking(False)
    try:
        h1 = next(h.underlay for h in run.plan.hosts if h.name == "h1")
        subprocess.run(["ip", "netns", "exec", f"{p}-_ul", "nft", "-f", "-"], check=True,
                       text=True, capture_output=True, timeout=30, input=f"""
table bridge {p}_fault {{
  chain forward {{
    type filter hook forward priority 0; policy accept;
    ip saddr {h1} ip daddr {h2} udp dport 5353 counter drop
  }}
}}""")
        res = run.check("ports")
        held = {tid: r.details["probes"]["5353/udp"] for tid, r in res.items()
                if tid.endswith("->h2")}
        assert {t: (x["listener"], x.get("observed"), x["verdict"]) for t, x in held.items()} == {
            "h1->h2": ("capture", "interface", "blocked"),
            "h3->h2": ("capture", "interface", "pass"),
        }
        assert held["h3->h2"]["received"] == 5
        assert res["h3->h2"].outcome == "pass"
        assert "5353/udp pass at the receiver's interface" in res["h3->h2"].message
        assert res["h1->h2"].outcome == "fail"
        assert res["h1->h2"].message.count("5353/udp blocked at the receiver's interface") == 1
        n = 0
        while True:  # the probes went to the holder, as they would to dockerd
            try:
                holder.recv(2048)
            except BlockingIOError:
                break
            n += 1
        assert n >= 5
        # the other hosts' own 5353/udp is still ours to listen on
        assert res["h2->h1"].details["probes"]["5353/udp"]["listener"] == "ours"
    finally:
        holder.close()


def test_kubernetes_and_flannel_presets_find_a_node_that_drops_flannels_vxlan(
        local_run: Callable[..., OverlayRun]) -> None:
    # A Kubernetes node whose firewall lets the API server in from h3 only and drops flannel's
    # VXLAN port (8472/udp, not IANA's 4789): the presets probe exactly those ports.
    run = local_run(extra_ports=parse_ports("kubernetes,flannel"))
    run.start()
    assert run.start_error is None, run.start_error
    p = run.prefix
    h3 = next(h.underlay for h in run.plan.hosts if h.name == "h3")
    subprocess.run(["ip", "netns", "exec", f"{p}-h2", "nft", "-f", "-"], check=True, text=True,
                   capture_output=True, timeout=30, input=f"""
table inet {p}_fault {{
  chain input {{
    type filter hook input priority 0; policy accept;
    tcp dport 6443 ip saddr != {h3} counter drop
    udp dport 8472 counter drop
  }}
}}""")
    res = run.check("ports")
    extra = ("6443/tcp", "2379/tcp", "2380/tcp", "10250/tcp", "8472/udp")
    assert set(extra) <= set(res["h1->h2"].details["probes"])
    bad = {t: sorted(k for k in extra if r.details["probes"][k]["verdict"] != "pass")
           for t, r in res.items()}
    assert bad == {"h1->h2": ["6443/tcp", "8472/udp"], "h3->h2": ["8472/udp"],
                   "h1->h3": [], "h2->h1": [], "h2->h3": [], "h3->h1": []}, bad
    assert {t for t, r in res.items() if r.outcome != "pass"} == {"h1->h2", "h3->h2"}
    assert "6443/tcp filtered" in res["h1->h2"].message
