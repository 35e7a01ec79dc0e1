"""The local-mode audit end to end, as a user runs it: a pytest process with the plugin."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

from pytest_overlay.cli import leftovers
from pytest_overlay.models import Report
from pytest_overlay.naming import new_prefix, processes
from tests.conftest import needs_root

pytestmark = [needs_root, pytest.mark.slow]


def _pytest(tmp: Path, *args: str) -> List[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(tmp), *args]


def _assert_no_trace(prefix: str) -> None:
    assert leftovers(prefix) == {}, f"run {prefix} left things behind: {leftovers(prefix)}"
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert prefix not in links, "a link with the run prefix exists in the root namespace"
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert prefix not in tables


def test_audit_three_hosts_report_and_tables(tmp_path: Path) -> None:
    prefix = new_prefix()
    report = tmp_path / "report.json"
    proc = subprocess.run(
        _pytest(tmp_path, "--overlay-local=3", "--overlay-audit", f"--overlay-report={report}",
                f"--overlay-prefix={prefix}", "--color=no", "-v"),
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    # pytest's own summary: passes only (no failed, error, skipped or xfailed count)
    summary = out.strip().splitlines()[-1]
    assert re.fullmatch(r"=+ \d+ passed in [\d.]+s( \(\S+\))? =+", summary), summary
    for pair in ("h1->h2", "h1->h3", "h2->h1", "h2->h3", "h3->h1", "h3->h2"):
        assert f"overlay-audit::reachability::{pair}[vni=4096] PASSED" in out
        assert f"overlay-audit::ports::{pair} PASSED" in out
        assert f"overlay-audit::isolation::{pair}[vni=4097] PASSED" in out
    assert "Reachability VNI 4096" in out and "Hosts" in out
    assert "\x1b[" not in out, "ANSI colours with --color=no"
    data = json.loads(report.read_text())
    parsed = Report.model_validate(data)
    assert parsed.schema_version == 1 and parsed.run_prefix == prefix
    assert {h.name for h in parsed.hosts} == {"h1", "h2", "h3"}
    assert all(h.status == "ok" for h in parsed.hosts)
    assert [(n.vni, n.subnet, n.mtu) for n in parsed.networks] == [(4096, "10.10.0.0/16", 1450)]
    assert all(r["outcome"] == "pass" for r in data["results"])
    assert {r["check"] for r in data["results"]} >= {"ports", "pmtu", "overhead", "control-plane",
                                                     "reachability", "isolation", "mtu",
                                                     "neighbours"}
    # The lab's hosts share this machine's kernel, which the controller reads for all of them.
    for r in (r for r in data["results"] if r["check"] == "neighbours"):
        assert r["details"]["shared"] is True and "arp" in r["details"]["tables"], r
        assert r["details"]["tables"]["arp"]["table_fulls_during_audit"] == 0, r
    reach = [r for r in data["results"] if r["check"] == "reachability"]
    assert len(reach) == 6
    for r in reach:
        assert {"check", "src", "dst", "vni", "outcome", "details"} <= set(r)
        assert r["outcome"] == "pass" and r["details"]["tcp"]["ok"] is True
        assert r["details"]["ping"]["received"] >= 1
    # Counters came back from every VTEP, with traffic on the VNI and nothing dropped.
    for h in parsed.hosts:
        vni = h.counters["vnis"]["4096"]
        assert vni["rx_packets"] > 0 and vni["tx_packets"] > 0
    _assert_no_trace(prefix)


def test_color_yes_renders_ansi(tmp_path: Path) -> None:
    proc = subprocess.run(_pytest(tmp_path, "--overlay-local=2", "--overlay-audit", "--color=yes"),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert "\x1b[" in proc.stdout


def _wait_for(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


_HOLD = '''
import os, time
def test_hold(overlay):
    open(os.environ["OVERLAY_TEST_READY"], "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(os.environ["OVERLAY_TEST_GO"]) and time.monotonic() < deadline:
        time.sleep(0.05)
'''


def _start_held_run(tmp_path: Path, prefix: str, n: int = 3) -> subprocess.Popen:
    (tmp_path / "test_hold.py").write_text(_HOLD)
    env = dict(os.environ, OVERLAY_TEST_READY=str(tmp_path / "ready"),
               OVERLAY_TEST_GO=str(tmp_path / "go"))
    return subprocess.Popen(
        _pytest(tmp_path, f"--overlay-local={n}", "--overlay-audit", f"--overlay-prefix={prefix}",
                f"--overlay-report={tmp_path / 'report.json'}", "test_hold.py", "-v"),
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_sigint_mid_run_leaves_no_trace(tmp_path: Path) -> None:
    prefix = new_prefix()
    proc = _start_held_run(tmp_path, prefix)
    try:
        _wait_for(lambda: (tmp_path / "ready").exists(), 60, "the overlay to come up")
        assert processes(prefix), "agents should be running mid-run"
        assert leftovers(prefix)[prefix]["namespaces"]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    _assert_no_trace(prefix)


def test_sigterm_mid_run_leaves_no_trace(tmp_path: Path) -> None:
    prefix = new_prefix()
    proc = _start_held_run(tmp_path, prefix)
    try:
        _wait_for(lambda: (tmp_path / "ready").exists(), 60, "the overlay to come up")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    _assert_no_trace(prefix)


def test_sigkill_one_agent_mid_run(tmp_path: Path) -> None:
    """A dead host is reported, its pairs are errors, the others still pass, nothing is left."""
    prefix = new_prefix()
    proc = _start_held_run(tmp_path, prefix, n=3)
    try:
        _wait_for(lambda: (tmp_path / "ready").exists(), 60, "the overlay to come up")
        victims = [pid for pid in processes(prefix)
                   if f"--netns {prefix}-h2".encode() in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")]
        assert len(victims) == 1, victims
        os.kill(victims[0], signal.SIGKILL)
        (tmp_path / "go").touch()
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, out
    data = json.loads((tmp_path / "report.json").read_text())
    by_pair = {(r["src"], r["dst"]): r for r in data["results"]}
    for (src, dst), r in by_pair.items():
        if "h2" in (src, dst):
            assert r["outcome"] == "error", r
            assert "h2" in r["message"]
        else:
            assert r["outcome"] == "pass", r
    h2 = next(h for h in data["hosts"] if h["name"] == "h2")
    assert h2["status"] == "error" and h2["error"]
    assert "test_hold.py::test_hold PASSED" in out
    _assert_no_trace(prefix)


def test_sigkill_of_pytest_itself_is_swept_by_the_keeper(tmp_path: Path) -> None:
    """Even a controller killed with SIGKILL leaves nothing: the keeper and the agents clean up."""
    prefix = new_prefix()
    proc = _start_held_run(tmp_path, prefix)
    try:
        _wait_for(lambda: (tmp_path / "ready").exists(), 60, "the overlay to come up")
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    _wait_for(lambda: leftovers(prefix) == {}, 20, "the keeper to sweep the run")
    _assert_no_trace(prefix)


def test_lab_that_cannot_be_built_gives_errors_not_a_crash(tmp_path: Path) -> None:
    """A namespace name already taken: every pair is an error with the reason; exit 1."""
    prefix = new_prefix()
    subprocess.run(["ip", "netns", "add", f"{prefix}-_ul"], check=True)
    try:
        proc = subprocess.run(
            _pytest(tmp_path, "--overlay-local=2", "--overlay-audit", f"--overlay-prefix={prefix}",
                    f"--overlay-report={tmp_path / 'r.json'}"),
            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run(["ip", "netns", "delete", f"{prefix}-_ul"], check=False)
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout
    assert "Traceback" not in proc.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    assert {r["outcome"] for r in data["results"]} == {"error"}
    reach = [r for r in data["results"] if r["check"] == "reachability"]
    assert len(reach) == 2
    assert "the overlay did not start" in reach[0]["message"]
    assert "File exists" in reach[0]["message"] or "exists" in reach[0]["message"]
    assert all(h["status"] == "error" for h in data["hosts"])
    _assert_no_trace(prefix)
