"""The audit with mappings learned only through Raft (default) and with pushed ones (static).

In raft mode the controller never calls set_mappings/set_members: every agent derives its
tables from its own replica; the control-plane check shows one identical replica per host.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import needs_root

pytestmark = needs_root


@pytest.mark.parametrize("mode", ["raft", "static"])
def test_audit_passes_in_both_control_plane_modes(pytester: pytest.Pytester, tmp_path: Path,
                                                  mode: str) -> None:
    report = tmp_path / "report.json"
    result = pytester.runpytest("--overlay-local=4", "--overlay-audit",
                                f"--overlay-control-plane={mode}", f"--overlay-report={report}",
                                "--overlay-raft-port=4799", "-p", "no:cacheprovider")
    data = json.loads(report.read_text())
    cp = [r for r in data["results"] if r["check"] == "control-plane"]
    reach = [r for r in data["results"] if r["check"] == "reachability"]
    assert len(cp) == 4 and len(reach) == 12
    assert all(r["outcome"] == "pass" for r in reach), [r["message"] for r in reach]
    if mode == "raft":
        assert result.ret == 0, result.stdout.str()
        assert all(r["outcome"] == "pass" for r in cp), [r["message"] for r in cp]
        roles = sorted(r["details"]["role"] for r in cp)
        assert roles == ["follower", "follower", "leader", "replica"]
        assert {r["details"]["digest"] for r in cp} != {None} and len(
            {r["details"]["digest"] for r in cp}) == 1
        assert all(r["details"]["table_size"]["endpoints"] == 4 for r in cp)
        assert all(r["details"]["security"].startswith("hmac-sha256") for r in cp)
        result.stdout.fnmatch_lines(["*Control plane (Raft)*", "*authentication: hmac-sha256*"])
    else:
        assert all(r["outcome"] == "skip" for r in cp)
