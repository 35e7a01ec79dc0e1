"""The port audit's verdicts and messages (pure functions; the lab test drives the real thing)."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from pytest_overlay.checks import ports
from pytest_overlay.models import HostPlan, NetworkSpec, RunPlan
from pytest_overlay.report import ports as ports_report
from pytest_overlay.report import render


def probes(**verdicts: str) -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    for kind in ports.KINDS:
        v = verdicts.get(kind, "pass")
        if kind in ports.UDP_KINDS:
            got = {"pass": 3, "lossy": 1}.get(v, 0)
            out[kind] = {"port": 4789, "sent": 3, "received": got, "verdict": v}
        else:
            out[kind] = {"port": 7946 if kind == "raft" else 22, "verdict": v}
    return out


@pytest.mark.parametrize("sent,got,verdict", [(3, 3, "pass"), (3, 2, "lossy"), (3, 0, "blocked"),
                                              (0, 0, "error"), (3, 4, "pass")])
def test_udp_verdict(sent: int, got: int, verdict: str) -> None:
    assert ports.udp_verdict(sent, got) == verdict


@pytest.mark.parametrize("state,listener,verdict", [
    ("open", "ours", "pass"), ("refused", "ours", "rejected"), ("refused", "in-use", "rejected"),
    ("refused", "error: Permission denied", "closed"), ("refused", None, "closed"),
    ("timeout", "ours", "filtered"), ("unreachable", "ours", "unreachable"), ("error", None, "error"),
])
def test_tcp_verdict(state: str, listener: Any, verdict: str) -> None:
    assert ports.tcp_verdict(state, listener) == verdict


def test_all_pass() -> None:
    assert ports.judge("h1", "h2", probes(), probes())[0] == "pass"


def test_vxlan_eaten_other_udp_passes_asymmetric() -> None:
    out, msg, asym = ports.judge("h1", "h2", probes(vxlan="blocked"), probes())
    assert out == "fail" and asym == ["vxlan"]
    assert msg.startswith("h1->h2: VXLAN 4789/udp blocked (0 of 3 probes arrived)")
    assert "asymmetric: h2->h1 passes" in msg and "drops VXLAN by content" in msg


def test_symmetric_failure_is_not_called_asymmetric() -> None:
    out, msg, asym = ports.judge("h1", "h2", probes(raft="filtered"), probes(raft="filtered"))
    assert out == "fail" and asym == [] and "asymmetric" not in msg
    assert "Raft 7946/tcp filtered" in msg


def test_lossy_port_is_open_and_the_loss_is_named() -> None:
    out, msg, asym = ports.judge("h1", "h2", probes(vxlan="lossy"), probes())
    assert out == "pass" and asym == []
    assert "VXLAN 4789/udp lossy (1 of 3 probes arrived)" in msg
    out, msg, _ = ports.judge("h1", "h2", probes(vxlan="lossy", ssh="filtered"), probes())
    assert out == "fail" and "SSH 22/tcp filtered" in msg and "lossy" in msg
    # A lossy reverse direction still makes a blocked one asymmetric.
    assert ports.judge("h1", "h2", probes(udp="blocked"), probes(udp="lossy"))[2] == ["udp"]


def test_udp_blocked_but_vxlan_passes_is_explained() -> None:
    _, msg, _ = ports.judge("h1", "h2", probes(udp="blocked"), None)
    assert "admits only VXLAN" in msg


def test_test_ids_are_ordered_host_pairs() -> None:
    hosts = [HostPlan(name=n, underlay=f"198.18.0.{i}") for i, n in enumerate(("a", "b", "c"), 1)]
    plan = RunPlan(hosts=hosts, networks=[NetworkSpec()], endpoints=[])
    assert ports.test_ids(plan) == ["a->b", "a->c", "b->a", "b->c", "c->a", "c->b"]
    assert ports.tcp_ports(plan) == {"raft": ports.RAFT_PORT, "ssh": 22}

    class Session:
        raft_port = 8300

    assert ports.tcp_ports(plan, Session()) == {"raft": 8300, "ssh": 22}


def test_table_puts_failures_first_and_marks_asymmetry() -> None:
    from pytest_overlay.models import CheckResult, Report

    ok = CheckResult(check="ports", src="a", dst="b", outcome="pass",
                     details={"probes": probes(), "asymmetric": []})
    bad = CheckResult(check="ports", src="b", dst="a", outcome="fail", message="x",
                      details={"probes": probes(vxlan="blocked"), "asymmetric": ["vxlan"]})
    report = Report(tool_version="0", run_prefix="ov000000", mode="local", started_at="",
                    finished_at="", hosts=[], networks=[], results=[ok, bad], summary={})
    text = render(report, width=140)
    assert "Underlay ports" in text and "blocked 0/3 (asym)" in text
    assert text.index("blocked 0/3") < text.index("│ a   │ b ")
    assert ports_report.section(report)


def _swarm(**verdicts: str) -> Dict[str, Dict[str, Any]]:
    out = probes()
    for key in ("2377/tcp", "7946/tcp", "7946/udp"):
        v = verdicts.get(key, "pass")
        port, proto = key.split("/")
        entry: Dict[str, Any] = {"port": int(port), "proto": proto, "verdict": v}
        if proto == "udp":
            entry.update(sent=5, received={"pass": 5, "lossy": 2}.get(v, 0), listener="ours")
        out[key] = entry
    return out


def test_extra_ports_pass_are_listed() -> None:
    outcome, message, asym = ports.judge("a", "b", _swarm(), _swarm())
    assert (outcome, asym) == ("pass", [])
    assert message.endswith("all open; also 2377/tcp, 7946/tcp, 7946/udp")


def test_extra_udp_blocked_one_way_is_named_and_asymmetric() -> None:
    outcome, message, asym = ports.judge("h1", "h3", _swarm(**{"7946/udp": "blocked"}), _swarm())
    assert outcome == "fail" and asym == ["7946/udp"]
    assert message == ("h1->h3: 7946/udp blocked (0 of 5 probes arrived); "
                       "asymmetric: h3->h1 passes")


def test_extra_tcp_filtered_both_ways_is_not_asymmetric() -> None:
    both = _swarm(**{"2377/tcp": "filtered"})
    outcome, message, asym = ports.judge("a", "b", both, both)
    assert outcome == "fail" and asym == []
    assert "2377/tcp filtered (no answer to the SYN (dropped on the path))" in message


def test_extra_udp_held_by_another_program_is_unverified_not_failed() -> None:
    p = _swarm()
    p["7946/udp"] = {"port": 7946, "proto": "udp", "verdict": "unverified", "sent": 5,
                     "received": 0, "error": "held by serf"}
    outcome, message, _ = ports.judge("a", "b", p, None)
    assert outcome == "pass" and "7946/udp unverified (held by serf)" in message


def test_extra_udp_seen_at_the_interface_is_judged_and_says_where() -> None:
    from pytest_overlay.checks import ports_extra

    def verdict(sent: int, received: int) -> str:
        return "pass" if received == sent else "lossy" if received else "blocked"

    seen = ports_extra.udp_result(7946, {"sent": 5}, 5, "capture", verdict)
    assert (seen["verdict"], seen["observed"]) == ("pass", "interface")
    missed = ports_extra.udp_result(7946, {"sent": 5}, 0, "capture", verdict)
    assert missed["verdict"] == "blocked"  # watched, and nothing came: a real failure
    unseen = ports_extra.udp_result(7946, {"sent": 5}, 0, "in-use", verdict)
    assert unseen["verdict"] == "unverified" and "observed" not in unseen

    p = _swarm()
    p["7946/udp"] = seen
    outcome, message, _ = ports.judge("a", "b", p, None)
    assert outcome == "pass"
    assert "7946/udp pass at the receiver's interface (5 of 5 probes reached it" in message
    assert "firewall and that program were not tested" in message
    p["7946/udp"] = missed
    outcome, message, asym = ports.judge("a", "b", p, _swarm())
    assert outcome == "fail" and asym == ["7946/udp"]
    assert message.count("7946/udp blocked at the receiver's interface") == 1


def test_table_has_a_column_per_extra_port() -> None:
    from pytest_overlay.models import CheckResult, Report

    bad = CheckResult(check="ports", src="h1", dst="h3", outcome="fail", message="x",
                      details={"probes": _swarm(**{"7946/udp": "blocked"}),
                               "asymmetric": ["7946/udp"]})
    report = Report(tool_version="0", run_prefix="ov000000", mode="local", started_at="",
                    finished_at="", hosts=[], networks=[], results=[bad], summary={})
    text = render(report, width=200)
    assert "2377 tcp" in text and "7946 udp" in text
    assert "blocked 0/5 (asym)" in text


def test_a_port_watched_on_the_interface_is_marked_in_the_table() -> None:
    from pytest_overlay.models import CheckResult, Report

    probes = _swarm()
    probes["7946/udp"] = {**probes["7946/udp"], "listener": "capture", "observed": "interface"}
    ok = CheckResult(check="ports", src="h1", dst="h2", outcome="pass", message="x",
                     details={"probes": probes})
    report = Report(tool_version="0", run_prefix="ov000000", mode="local", started_at="",
                    finished_at="", hosts=[], networks=[], results=[ok], summary={})
    text = " ".join(render(report, width=200).split())  # the caption wraps
    assert "ok*" in text and "*: seen arriving on the receiver's interface" in text
    plain = render(report.model_copy(update={"results": [ok.model_copy(
        update={"details": {"probes": _swarm()}})]}), width=200)
    assert "ok*" not in plain and "*: seen" not in plain
