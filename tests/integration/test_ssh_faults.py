"""Faults on some hosts are reported on their rows; their pairs are errors, the rest completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pytest_overlay.inventory import parse_inventory
from pytest_overlay.lab.sshd import LAB_USER, _keygen
from pytest_overlay.naming import namespaces, new_prefix, processes
from pytest_overlay.runner import OverlayRun
from tests.conftest import needs_root
from tests.integration.sshlab import assert_no_trace, pytest_cmd, session_pids, ssh_lab, wait_for

pytestmark = [needs_root, pytest.mark.slow]
__all__ = ["ssh_lab"]


def test_each_fault_on_its_row_and_the_rest_completes(ssh_lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sl = ssh_lab(7)
    sl.stop_host("h3")                                      # unreachable: nothing listens
    _keygen(sl.dir / "stranger", "stranger")                # a key sshd does not know
    data = sl.inventory(connect_timeout=5)
    hosts = {h["name"]: h for h in data["hosts"]}
    hosts["h4"]["identity"] = str(sl.dir / "stranger")
    hosts["h5"]["python"] = "/nonexistent/python3"          # no such interpreter
    hosts["h6"].update(user=LAB_USER, sudo=True)            # sudo -n would ask a password
    hosts["h7"].update(user=LAB_USER)                       # logs in, but is not root
    data["hosts"].append({"name": "ghost", "address": "198.18.0.200",  # nobody answers
                          "connect_timeout": 1})
    inv = tmp_path / "inv.json"
    inv.write_text(json.dumps(data))
    report = tmp_path / "r.json"
    prefix = new_prefix()
    proc = subprocess.run(
        pytest_cmd(tmp_path, f"--overlay-hosts={inv}", "--overlay-audit", "--color=no",
                   f"--overlay-report={report}", f"--overlay-prefix={prefix}"),
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
        env={**os.environ, "COLUMNS": "400"})  # table rows on one line each
    assert proc.returncode == 1, proc.stdout + proc.stderr
    table = {ln.split()[1]: ln for ln in proc.stdout.splitlines() if "│ ssh " in ln}
    rows = {h["name"]: h for h in json.loads(report.read_text())["hosts"]}
    assert rows["h1"]["status"] == rows["h2"]["status"] == "ok"
    expect = {
        "h3": "cannot connect to root@198.18.0.3:22: connection refused",
        "h4": "SSH log-in to root@198.18.0.4:22 refused with",
        "h5": "no Python interpreter '/nonexistent/python3' on the host",
        "h6": "`sudo -n` would ask for a password",
        "h7": "missing capabilities: root",
        "ghost": "no SSH connection to 198.18.0.200:22 within 1 s",
    }
    for host, text in expect.items():
        assert rows[host]["status"] == "error", rows[host]
        assert text in rows[host]["error"], rows[host]["error"]
        assert "error" in table[host] and text in table[host], f"hosts table row of {host}"
    every = json.loads(report.read_text())["results"]
    results = [r for r in every if r["check"] == "reachability"]
    by_pair = {(r["src"], r["dst"]): r for r in results}
    assert len(results) == 56
    assert by_pair[("h1", "h2")]["outcome"] == by_pair[("h2", "h1")]["outcome"] == "pass"
    for (src, dst), r in by_pair.items():
        if {src, dst} != {"h1", "h2"}:
            bad = src if src in expect else dst
            # A host lacking a capability (h7: not root) skips its checks; other faults: errors.
            assert r["outcome"] == ("skip" if bad == "h7" else "error"), r
            assert f"host {bad} is not available" in r["message"]
    assert _all_checks(every) in proc.stdout
    # Every other check (ports, isolation, ...) treats the broken hosts the same way.
    for r in every:
        if r["check"] == "reachability" or r["src"] == "counters" or r["dst"] is None:
            continue
        if {r["src"], r["dst"]} != {"h1", "h2"}:
            bad = r["src"] if r["src"] in expect else r["dst"]
            assert r["outcome"] == ("skip" if bad == "h7" else "error"), r
    assert_no_trace(prefix, sl)


def _all_checks(results: list) -> str:
    """pytest's summary line for these results (errors are failed tests)."""
    n = {k: sum(1 for r in results if r["outcome"] in k) for k in (("fail", "error"), ("pass",),
                                                                     ("skip",))}
    return f"{n[('fail', 'error')]} failed, {n[('pass',)]} passed, {n[('skip',)]} skipped"


def test_connection_cut_mid_run(ssh_lab) -> None:  # type: ignore[no-untyped-def]
    """h2's SSH connection is cut after the overlay is up: its agent cleans up by itself, its
    pairs are errors, h1<->h3 still pass."""
    sl = ssh_lab(3)
    run = OverlayRun.from_inventory(parse_inventory(json.dumps(sl.inventory())))
    try:
        run.start()
        assert run.start_error is None and run._session is not None
        remote_dir = run._session.hosts["h2"].handle.info["remote_dir"]  # type: ignore[union-attr]
        pids = session_pids(sl, "h2")
        assert pids, "h2's sshd has a session process"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)  # the connection is gone, as if the network cut it
        # The agent saw EOF: it removed its endpoint namespace, then the wrapper the upload.
        wait_for(lambda: not Path(remote_dir).exists(), 15, "h2's upload dir to be removed")
        wait_for(lambda: not [n for n in namespaces(run.prefix) if "h2" in n], 15,
                 "h2's namespaces to be removed")
        res = run.check("reachability")
    finally:
        report = run.teardown()
    assert res["h1->h3[vni=4096]"].outcome == res["h3->h1[vni=4096]"].outcome == "pass"
    for tid in ("h1->h2[vni=4096]", "h2->h1[vni=4096]", "h3->h2[vni=4096]", "h2->h3[vni=4096]"):
        assert res[tid].outcome == "error" and "host h2 is not available" in res[tid].message
    assert report is not None
    h2 = next(h for h in report.hosts if h.name == "h2")
    assert h2.status == "error" and "gone mid-run" in (h2.error or "")
    assert "the SSH connection to root@198.18.0.2:22 was cut" in (h2.error or "")
    assert not processes(run.prefix)
    assert_no_trace(run.prefix, sl)


def _slow_run(sl, tmp_path: Path, prefix: str, **popen: Any) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    """pytest with the plugin on ``sl``'s hosts and one test that sleeps two minutes."""
    inv = sl.write_inventory(tmp_path / "inv.yaml")
    (tmp_path / "test_slow.py").write_text(
        "import time\n\ndef test_slow(overlay):\n    time.sleep(120)\n")
    return subprocess.Popen(
        pytest_cmd(tmp_path, f"--overlay-hosts={inv}", f"--overlay-prefix={prefix}",
                   "test_slow.py"), cwd=tmp_path, **popen)


def test_sigint_mid_run_leaves_nothing(ssh_lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sl = ssh_lab(2)
    prefix = new_prefix()
    proc = _slow_run(sl, tmp_path, prefix, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                     text=True)
    try:
        wait_for(lambda: len([p for p in os.listdir("/tmp") if p.startswith(f"{prefix}-h")]) == 2
                 and len(namespaces(prefix)) == 2, 60, "both agents to be up with endpoints")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "KeyboardInterrupt" in out, out
    assert_no_trace(prefix, sl)


def test_sigkill_of_the_controller_leaves_nothing(ssh_lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sl = ssh_lab(2)
    prefix = new_prefix()
    proc = _slow_run(sl, tmp_path, prefix, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(namespaces(prefix)) == 2, 60, "both agents to be up with endpoints")
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_no_trace(prefix, sl)
