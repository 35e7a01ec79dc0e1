"""--overlay-ports in the port audit against real nftables faults, and its clean-up.

Three hosts; in h3 a rule drops TCP/2377 from h1 only and UDP/7946 from everyone. The audit
must fail exactly h1->h3 (2377/tcp filtered, asymmetric; 7946/udp blocked) and h2->h3
(7946/udp blocked), pass the rest, and leave no extra listener behind.
"""

from __future__ import annotations

import subprocess
from typing import Callable

import pytest

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
