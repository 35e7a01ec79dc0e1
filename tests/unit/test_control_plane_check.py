"""The control-plane check's judgement and table, and the voter choice (no agents needed)."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from pytest_overlay.checks import AUDIT, CHECKS
from pytest_overlay.checks.control_plane import _converged, _reference, judge
from pytest_overlay.controlplane import voter_count
from pytest_overlay.errors import AgentError
from pytest_overlay.models import Report
from pytest_overlay.report import render


def st(role: str, digest: str = "d1", applied: int = 7, commit: int = 7, leader: str = "x",
       term: int = 2) -> Dict[str, Any]:
    return {"role": role, "term": term, "leader": leader, "commit_index": commit,
            "last_applied": applied, "digest": digest, "connected": 2, "security": "hmac-sha256",
            "table_size": {"members": 3, "networks": 1, "endpoints": 3}, "rejected_frames": 0}


def test_identical_replicas_pass() -> None:
    statuses = {"h1": st("leader"), "h2": st("follower"), "h3": st("replica")}
    assert _converged(statuses)
    ref = _reference(statuses)
    results = [judge(h, s, ref) for h, s in statuses.items()]
    assert [r.outcome for r in results] == ["pass"] * 3
    assert results[0].details["lag"] == 0 and results[0].test_id == "h1"


def test_a_lagging_replica_fails_with_its_lag() -> None:
    statuses = {"h1": st("leader"), "h2": st("follower", applied=4)}
    assert not _converged(statuses)
    r = judge("h2", statuses["h2"], _reference(statuses))
    assert r.outcome == "fail" and "3 entries behind" in r.message and r.details["lag"] == 3


def test_a_different_table_fails_even_at_the_same_index() -> None:
    statuses = {"h1": st("leader"), "h2": st("follower", digest="zz")}
    r = judge("h2", statuses["h2"], _reference(statuses))
    assert r.outcome == "fail" and "differs from the leader's" in r.message


def test_no_leader_known_fails_with_what_to_check() -> None:
    statuses = {"h1": st("leader"), "h2": st("follower", leader=None)}
    r = judge("h2", statuses["h2"], _reference(statuses))
    assert r.outcome == "fail" and "knows no Raft leader" in r.message and "underlay" in r.message


def test_an_agent_error_is_an_error() -> None:
    r = judge("h9", AgentError("h9", "gone"), {"commit_index": 1, "digest": "d1", "leaders": 1})
    assert r.outcome == "error" and "h9" in r.message


@pytest.mark.parametrize(("n", "voters"), [(1, 1), (2, 2), (3, 3), (4, 3), (6, 3), (7, 5),
                                           (250, 5)])
def test_voter_count_stays_small_and_odd(n: int, voters: int) -> None:
    assert voter_count(n) == voters


def test_registered_in_the_audit_before_reachability() -> None:
    assert "control-plane" in CHECKS
    assert AUDIT.index("control-plane") < AUDIT.index("reachability")


def _rendered(statuses: Dict[str, Any], width: int) -> str:
    """The terminal summary of a report holding only these replicas' judgements."""
    ref = _reference(statuses)
    results = [judge(h, s, ref) for h, s in statuses.items()]
    summary = {k: sum(r.outcome == k for r in results) for k in ("pass", "fail")}
    return render(Report(tool_version="0", run_prefix="ov000000", mode="local", started_at="t",
                         finished_at="t", hosts=[], networks=[], results=results,
                         summary=summary), width=width)


def test_report_table_shows_role_term_commit_lag_and_security() -> None:
    text = _rendered({"h1": st("leader"), "h2": st("follower", applied=5)}, width=140)
    assert "Control plane (Raft)" in text and "authentication: hmac-sha256" in text
    row = next(line for line in text.splitlines() if "h2" in line and "follower" in line)
    assert " 2 " in row and " 7 " in row  # term and commit index; lag 2 too


def test_report_table_fits_80_columns_with_every_outcome_shown() -> None:
    """pytest's width without a terminal (CI logs) is 80: no cell may be cut to an ellipsis."""
    text = _rendered({"h1": st("leader"), "h2": st("follower", applied=5), "h3": st("replica")},
                     width=80)
    table = text[text.index("Control plane (Raft)"):text.index("authentication:")]
    assert "\u2026" not in table, table
    assert max(len(line) for line in table.splitlines()) <= 80
    rows = {line.split()[1]: line for line in table.splitlines() if line[2:4] in ("h1", "h2", "h3")}
    assert "follower" in rows["h2"] and rows["h2"].rstrip(" │").endswith("fail"), rows
    assert rows["h1"].rstrip(" │").endswith("pass") and " 3/3 " in rows["h1"]
