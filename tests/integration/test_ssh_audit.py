"""The audit over SSH against real sshd servers in namespace hosts: same results as local mode."""

from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path

import pytest

from pytest_overlay.inventory import parse_inventory
from pytest_overlay.lab.sshd import LAB_UID, LAB_USER
from pytest_overlay.lab.topology import LabTopology
from pytest_overlay.models import NetworkSpec, Report
from pytest_overlay.naming import new_prefix, processes
from pytest_overlay.runner import OverlayRun
from tests.conftest import needs_root
from tests.integration.sshlab import (
    all_pass_but_lab_host_skips,
    assert_no_trace,
    pytest_cmd,
    ssh_lab,
)

pytestmark = [needs_root, pytest.mark.slow]
__all__ = ["ssh_lab"]


def test_audit_over_ssh_equals_local_mode(ssh_lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sl = ssh_lab(3)
    inv = sl.write_inventory(tmp_path / "inv.yaml")
    # The controller namespace comes from the command line here (real users leave it unset).
    inv.write_text(inv.read_text().replace(f"netns: {sl.controller_ns}", "netns: null"))
    assert sl.controller_ns not in inv.read_text()
    prefix = new_prefix()
    report = tmp_path / "report.json"
    proc = subprocess.run(
        pytest_cmd(tmp_path, f"--overlay-hosts={inv}", "--overlay-audit", "--color=no", "-v",
                   f"--overlay-report={report}", f"--overlay-prefix={prefix}",
                   f"--overlay-ssh-netns={sl.controller_ns}"),
        cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # pytest's own summary: passes, and per namespace host a neighbours and a kernel-overlays skip
    summary = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"=+ \d+ passed, 6 skipped in [\d.]+s( \(\S+\))? =+", summary), summary
    assert "Hosts" in proc.stdout
    assert "overlay-audit::reachability::h1->h2[vni=4096] PASSED" in proc.stdout
    parsed = Report.model_validate(json.loads(report.read_text()))
    assert parsed.mode == "ssh" and parsed.run_prefix == prefix
    assert all_pass_but_lab_host_skips(parsed.results) == []
    for h in parsed.hosts:
        assert h.status == "ok" and h.transport == "ssh", h
        assert h.ssh["host_key"] == "known" and h.ssh["host_key_fingerprint"].startswith("SHA256:")
        assert h.ssh["remote_dir"].startswith(f"/tmp/{prefix}-{h.name}-")
        assert h.capabilities["root"] is True
    ssh_outcomes = {f"{r.src}->{r.dst}[vni={r.vni}]": r.outcome for r in parsed.results
                    if r.check == "reachability"}
    assert_no_trace(prefix, sl)

    local = OverlayRun.local(LabTopology.flat(3), NetworkSpec())
    try:
        local_outcomes = {k: r.outcome for k, r in local.check("reachability").items()}
    finally:
        local.teardown()
    assert ssh_outcomes == local_outcomes
    assert set(ssh_outcomes.values()) == {"pass"}


def test_upload_is_private_and_gone_after_the_run(ssh_lab) -> None:  # type: ignore[no-untyped-def]
    sl = ssh_lab(2)
    run = OverlayRun.from_inventory(parse_inventory(json.dumps(sl.inventory())))
    try:
        run.start()
        assert run.start_error is None
        assert run._session is not None
        dirs = [st.handle.info["remote_dir"] for st in run._session.hosts.values()]  # type: ignore[union-attr]
        for d in dirs:
            st_ = Path(d).lstat()
            assert stat.S_ISDIR(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o700
            assert stat.S_IMODE((Path(d) / "agent.pyz").stat().st_mode) == 0o600
        assert processes(run.prefix), "the agents' command lines carry the run prefix"
    finally:
        run.teardown()
    for d in dirs:
        assert not Path(d).exists()
    assert_no_trace(run.prefix, sl)


def test_jump_host(ssh_lab) -> None:  # type: ignore[no-untyped-def]
    """h2 and h3 are reached through h1, like ``ssh -J root@h1``."""
    sl = ssh_lab(3)
    data = sl.inventory()
    for h in data["hosts"][1:]:
        h["jump"] = f"root@{sl.address('h1')}"
    run = OverlayRun.from_inventory(parse_inventory(json.dumps(data)))
    try:
        outcomes = {r.outcome for r in run.check("reachability").values()}
    finally:
        report = run.teardown()
    assert report is not None
    assert outcomes == {"pass"}, [h.error for h in report.hosts]
    assert [h.ssh["jump"] for h in report.hosts] == [None, "root@198.18.0.1", "root@198.18.0.1"]
    # h2's sshd saw the connection come from h1, not from the controller.
    assert "from 198.18.0.1 " in sl.log("h2")
    assert_no_trace(run.prefix, sl)


def test_unprivileged_user_with_sudo(ssh_lab) -> None:  # type: ignore[no-untyped-def]
    """h1 logs in as an ordinary user and starts the agent with ``sudo -n`` (NOPASSWD rule)."""
    sl = ssh_lab(2, sudoers=f"{LAB_USER} ALL=(root) NOPASSWD: /usr/bin/python3")
    data = sl.inventory()
    data["hosts"][0].update(user=LAB_USER, sudo=True)
    run = OverlayRun.from_inventory(parse_inventory(json.dumps(data)))
    try:
        outcomes = {r.outcome for r in run.check("reachability").values()}
        assert run._session is not None
        d = Path(run._session.hosts["h1"].handle.info["remote_dir"])  # type: ignore[union-attr]
        assert d.stat().st_uid == LAB_UID, "the upload belongs to the login user"
    finally:
        report = run.teardown()
    assert report is not None
    assert outcomes == {"pass"}, [h.error for h in report.hosts]
    h1 = report.hosts[0]
    assert h1.ssh["sudo"] is True and h1.ssh["address"] == f"{LAB_USER}@198.18.0.1:22"
    assert h1.capabilities["root"] is True, "the agent runs as root through sudo"
    assert not d.exists()
    assert_no_trace(run.prefix, sl)
