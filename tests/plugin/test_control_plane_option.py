"""--overlay-control-plane and the control-plane audit items (no root: nothing is built)."""

from __future__ import annotations

import pytest


def test_unknown_control_plane_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--overlay-local=3", "--overlay-control-plane=gossip")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--overlay-control-plane=gossip: expected one of raft, static*"])
    assert "Traceback" not in result.stderr.str()


def test_audit_has_one_control_plane_item_per_host(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--overlay-local=3", "--overlay-audit", "--collect-only", "-q")
    lines = [ln for ln in result.stdout.str().splitlines() if ln.startswith("overlay-audit::")]
    cp = [ln for ln in lines if ln.startswith("overlay-audit::control-plane::")]
    assert cp == [f"overlay-audit::control-plane::h{i}" for i in (1, 2, 3)]
    # the control plane is judged before the pairs that depend on it
    first_reach = next(i for i, ln in enumerate(lines) if "::reachability::" in ln)
    assert lines.index(cp[-1]) < first_reach


def test_help_shows_the_control_plane_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--overlay-control-plane=raft|static*"])


def test_bad_raft_port_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--overlay-local=3", "--overlay-raft-port=70000")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--overlay-raft-port=70000: not a TCP port*"])
