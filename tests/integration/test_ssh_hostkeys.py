"""Host keys are verified: unknown and changed keys are refused with the fingerprint and the
exact command to accept them; --overlay-accept-new-hostkeys records new ones (and says so)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from pytest_overlay.inventory import parse_inventory
from pytest_overlay.lab.sshd import _keygen
from pytest_overlay.runner import OverlayRun
from tests.conftest import needs_root
from tests.integration.sshlab import assert_no_trace, pytest_cmd, ssh_lab

pytestmark = [needs_root, pytest.mark.slow]
__all__ = ["ssh_lab"]


def _fingerprint(pub: str) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", "-"], input=pub, capture_output=True, text=True,
                         check=True).stdout
    return out.split()[1]


def _start(inventory: dict, accept_new: bool = False) -> OverlayRun:
    run = OverlayRun.from_inventory(parse_inventory(json.dumps(inventory)), accept_new=accept_new)
    run.start()
    return run


def test_unknown_key_refused_then_accepted_with_the_given_command(ssh_lab) -> None:  # type: ignore[no-untyped-def]
    sl = ssh_lab(2)
    sl.write_known_hosts(["h1"])  # h2's key is unknown
    run = _start(sl.inventory())
    report = run.teardown()
    assert report is not None
    h1, h2 = report.hosts
    assert h1.status == "ok" and h2.status == "error"
    fp = _fingerprint(sl.host_keys["h2"])
    assert f"host key of 198.18.0.2 is unknown ({fp}, not in {sl.known_hosts})" in (h2.error or "")
    assert "--overlay-accept-new-hostkeys" in (h2.error or "")
    assert "Accepted publickey" not in sl.log("h2"), "no log-in to a host with an unknown key"
    assert_no_trace(run.prefix, sl)
    # The hint's command, run as given, makes the next run pass.
    cmd = re.search(r"to accept it: (echo .*? >> \S+)", h2.error or "")
    assert cmd is not None, h2.error
    subprocess.run(["sh", "-c", cmd.group(1)], check=True)
    run = _start(sl.inventory())
    report = run.teardown()
    assert report is not None and [h.status for h in report.hosts] == ["ok", "ok"]


def test_changed_key_refused_even_with_accept_new(ssh_lab) -> None:  # type: ignore[no-untyped-def]
    sl = ssh_lab(2)
    # known_hosts pins another key for h2: the server's key "changed".
    other = _keygen(sl.dir / "other_key", "other")
    kind, key = other.split()[:2]
    sl.known_hosts.write_text(sl.known_hosts.read_text().splitlines()[0] + f"\n198.18.0.2 {kind} {key}\n")
    before = sl.known_hosts.read_text()
    run = _start(sl.inventory(), accept_new=True)
    report = run.teardown()
    assert report is not None
    h2 = report.hosts[1]
    assert h2.status == "error"
    assert "host key CHANGED for 198.18.0.2" in (h2.error or "")
    assert _fingerprint(sl.host_keys["h2"]) in (h2.error or "")
    assert "ssh-keygen -R 198.18.0.2" in (h2.error or "")
    assert sl.known_hosts.read_text() == before, "a changed key must never be written"
    assert_no_trace(run.prefix, sl)


def test_accept_new_records_the_key_and_the_report_says_so(ssh_lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sl = ssh_lab(2)
    sl.write_known_hosts(["h1"])
    inv = sl.write_inventory(tmp_path / "inv.yaml")
    report = tmp_path / "r.json"
    proc = subprocess.run(
        pytest_cmd(tmp_path, f"--overlay-hosts={inv}", "--overlay-audit", "--color=no",
                   "--overlay-accept-new-hostkeys", f"--overlay-report={report}"),
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fp = _fingerprint(sl.host_keys["h2"])
    assert f"host h2: new host key {fp}" in proc.stdout
    assert "(--overlay-accept-new-hostkeys)" in proc.stdout
    hosts = json.loads(report.read_text())["hosts"]
    assert [h["ssh"]["host_key"] for h in hosts] == ["known", "accepted-new"]
    assert hosts[1]["ssh"]["host_key_fingerprint"] == fp
    kind, key = sl.host_keys["h2"].split()[:2]
    assert f"198.18.0.2 {kind} {key}" in sl.known_hosts.read_text()
