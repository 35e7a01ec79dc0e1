"""The clock check over SSH, with one host's clock 30 s ahead.

A namespace host shares this machine's clock, and setting the machine's clock would move every
host at once. So h2's inventory entry names a wrapper as its ``python`` that starts the agent
with ``time.time`` 30 s ahead: everything in that agent that reads the wall clock (its answer
to the controller, the timestamps of its Raft HELLOs) sees a host whose clock has wandered.
(libfaketime, the usual tool, cannot stand in here: under it CPython 3.11's ``time.sleep``
fails with EINVAL.) The audit must fail ``clock::h2`` with the skew and pass h1 and h3, and
nothing else may notice: no other check may depend on the hosts' clocks agreeing within 30 s.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Tuple

import pytest
import yaml

from pytest_overlay.checks import clock
from tests.conftest import needs_root
from tests.integration.sshlab import all_pass_but_lab_host_skips, pytest_cmd, ssh_lab

pytestmark = [needs_root, pytest.mark.slow]
__all__ = ["ssh_lab"]

#: the wrapper: python3 running its script argument with the wall clock SKEW s ahead
WRAPPER = """#!/bin/sh
exec /usr/bin/python3 -c 'import runpy, sys, time
real = time.time
time.time = lambda: real() + SKEW
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")' "$@"
"""


def _audit(sl: Any, tmp_path: Path, skew: float) -> Tuple[subprocess.CompletedProcess, dict]:
    """The audit over SSH with h2's agent ``skew`` s ahead: pytest's run and the report."""
    wrapdir = Path(tempfile.mkdtemp(prefix="ovclock-"))
    try:
        wrapdir.chmod(0o755)
        wrapper = wrapdir / "python3"
        wrapper.write_text(WRAPPER.replace("SKEW", repr(float(skew))))
        wrapper.chmod(0o755)
        # The wrapper itself is the clock that is off: check that it is.
        probe = wrapdir / "now.py"
        probe.write_text("import time\nprint(time.time())\n")
        probe.chmod(0o644)
        shown = subprocess.run([str(wrapper), str(probe)], capture_output=True, text=True,
                               check=True).stdout
        real = subprocess.run(["/usr/bin/python3", str(probe)], capture_output=True, text=True,
                              check=True).stdout
        assert abs(float(shown) - float(real) - skew) < 5
        data = sl.inventory()
        data["hosts"][1]["python"] = str(wrapper)
        inv = tmp_path / "inv.yaml"
        inv.write_text(yaml.safe_dump(data, sort_keys=False))
        report = tmp_path / "report.json"
        proc = subprocess.run(pytest_cmd(tmp_path, f"--overlay-hosts={inv}", "--overlay-audit",
                                         "--color=no", "-v", f"--overlay-report={report}"),
                              cwd=tmp_path, capture_output=True, text=True, timeout=240)
    finally:
        shutil.rmtree(wrapdir)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc, json.loads(report.read_text())


def test_a_host_30_s_ahead_fails_the_clock_check_alone(ssh_lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc, data = _audit(ssh_lab(3), tmp_path, 30.0)
    out = proc.stdout
    assert "overlay-audit::clock::h2 FAILED" in out, out[-3000:]
    results = data["results"]
    h2 = next(r for r in results if r["check"] == "clock" and r["src"] == "h2")
    assert 29 < h2["details"]["skew_s"] < 31, h2
    assert h2["message"].startswith("h2: clock 30.0 s ahead of the others (the median of 4 "
                                    "clocks; tolerance 1 s"), h2["message"]
    assert clock.FIX in h2["message"] and "Raft control plane refuses" not in h2["message"]
    for r in results:
        if r["check"] == "clock" and r["src"] != "h2":
            assert r["outcome"] == "pass" and abs(r["details"]["skew_s"]) < clock.TOLERANCE, r
    # Nothing else depends on the hosts' clocks agreeing.
    rest = [r for r in results if not (r["check"] == "clock" and r["src"] == "h2")]
    assert all_pass_but_lab_host_skips(rest) == []
    assert "Clocks" in out


def test_a_host_too_far_off_for_raft_is_told_why(ssh_lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # 300 s: beyond what the Raft transport accepts (a replayed HELLO looks the same), so h2
    # cannot join the control plane. Its failure must name the clock, not the network.
    proc, data = _audit(ssh_lab(3), tmp_path, 300.0)
    h2 = next(h for h in data["hosts"] if h["name"] == "h2")
    assert h2["status"] == "error", h2
    assert "Raft" in h2["error"] and "its clock is 300 s ahead of the other hosts'" in h2["error"]
    clk = next(r for r in data["results"] if r["check"] == "clock" and r["src"] == "h2")
    assert clk["outcome"] == "fail", clk
    assert "refuses peers more than 120 s apart" in clk["message"]
    assert "overlay-audit::clock::h2 FAILED" in proc.stdout
    # h1 and h3 form the quorum without it and pass among themselves.
    pair = next(r for r in data["results"] if r["check"] == "reachability"
                and r["src"] == "h1" and r["dst"] == "h3")
    assert pair["outcome"] == "pass", pair
