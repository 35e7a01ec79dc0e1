"""ansible/ for real: ansible-core provisions namespace hosts over their real sshd, a second run
changes nothing, the audit runs through the provisioned user from the same (Ansible) inventory,
and the teardown playbook removes it all.

Each lab host's sshd has a private copy-on-write /etc, /usr/local, /home and /root (see
``SshdLab(private_root=True)``), so provisioning changes that host only, never this machine.
Ansible runs inside the lab's controller namespace: the root namespace routes off the machine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from pytest_overlay.ansible_inventory import ansible_tool
from pytest_overlay.deploy import agent_digest, bundle_for
from pytest_overlay.lab.sshd import SshdLab
from tests.conftest import needs_root
from tests.integration.sshlab import (  # noqa: F401 (fixture)
    all_pass_but_lab_host_skips,
    assert_no_trace,
    ssh_lab,
)

pytestmark = [
    needs_root, pytest.mark.slow,
    pytest.mark.skipif(ansible_tool("ansible-playbook") is None,
                       reason="ansible-core is not installed (pip install ansible-core)"),
]

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = ROOT / "ansible"


def _env(sl: SshdLab) -> Dict[str, str]:
    home = sl.dir / "ansible-home"
    home.mkdir(exist_ok=True)
    return dict(
        os.environ, ANSIBLE_CONFIG=str(ANSIBLE / "ansible.cfg"), ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
        # One connection per host and task: pipelining, and masters whose ControlPath carries
        # the run prefix (the lab's clean-up ends them with the rest of the run).
        ANSIBLE_PIPELINING="1", ANSIBLE_SSH_ARGS="-o ControlMaster=auto -o ControlPersist=60s",
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(sl.dir / "cp"),
    )


def _playbook(sl: SshdLab, playbook: str, inventory: Path, extra: Path) -> Dict[str, Dict[str, int]]:
    cmd = ["ip", "netns", "exec", str(sl.controller_ns), ansible_tool("ansible-playbook") or "",
           "-i", str(inventory), "-e", f"@{extra}", str(ANSIBLE / playbook)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=_env(sl))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    recap: Dict[str, Dict[str, int]] = {}
    for m in re.finditer(r"^(\S+)\s+: ((?:\w+=\d+\s*)+)$", proc.stdout, re.M):
        recap[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    assert recap, proc.stdout[-2000:]
    return recap


def _ini(path: Path, sl: SshdLab, hosts: List[str], group_vars: Dict[str, str]) -> Path:
    lines = ["[fleet]"] + [f"{h} ansible_host={sl.address(h)}" for h in hosts]
    lines += ["", "[fleet:vars]"] + [f"{k}={v}" for k, v in group_vars.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_provision_audit_teardown(ssh_lab, tmp_path: Path) -> None:  # noqa: F811
    sl: SshdLab = ssh_lab(3, private_root=True)
    hosts = sorted(sl.host_ns)
    audit_key = sl.dir / "audit_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{sl.prefix}-audit",
                    "-f", str(audit_key)], check=True, timeout=30)
    ssh_args = f"'-o UserKnownHostsFile={sl.known_hosts} -o StrictHostKeyChecking=yes'"
    admin = _ini(tmp_path / "admin.ini", sl, hosts, {
        "ansible_user": "root", "ansible_ssh_private_key_file": str(sl.client_key),
        "ansible_ssh_common_args": ssh_args, "ansible_python_interpreter": "/usr/bin/python3",
    })
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps({
        "overlay_audit_pubkey": Path(f"{audit_key}.pub").read_text().strip(),
        # what `pytest-overlay agent-digest` prints: the archive this controller deploys
        "overlay_agent_sha256": [agent_digest(bundle_for("raft"))],
        "overlay_manage_firewall": True,
        "overlay_peers": ["198.18.0.0/24"],
    }))

    first = _playbook(sl, "prepare.yml", admin, extra)
    assert set(first) == set(hosts)
    assert all(r["failed"] == 0 and r["unreachable"] == 0 and r["changed"] > 0 for r in first.values())
    second = _playbook(sl, "prepare.yml", admin, extra)
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in second.values()), second
    for h in hosts:
        changed = sl.changed(h)
        assert "/etc/sudoers.d/pytest-overlay" in changed
        assert "/usr/local/libexec/pytest-overlay-agent" in changed
        tables = subprocess.run(["ip", "netns", "exec", sl.host_ns[h], "nft", "list", "table",
                                 "inet", "pytest_overlay"], capture_output=True, text=True)
        assert "udp dport 4789 accept" in tables.stdout

    # The audit, through the provisioned user and its key, with the Ansible inventory.
    audit_inv = _ini(tmp_path / "audit.ini", sl, hosts, {
        "ansible_user": "overlay-audit", "ansible_ssh_private_key_file": str(audit_key),
        "ansible_become": "true", "overlay_python": "/usr/local/libexec/pytest-overlay-agent",
        "overlay_known_hosts": str(sl.known_hosts), "overlay_controller_netns": str(sl.controller_ns),
    })
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         f"--overlay-hosts={audit_inv}", "--overlay-group=fleet", "--overlay-audit",
         f"--overlay-report={report}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, (
        proc.stdout[-3000:] + proc.stderr[-2000:]
        + json.dumps([h.get("error") for h in json.loads(report.read_text())["hosts"]]))
    data = json.loads(report.read_text())
    assert all(h["status"] == "ok" for h in data["hosts"])
    assert all_pass_but_lab_host_skips(data["results"]) == []
    assert len([r for r in data["results"] if r["check"] == "reachability"]) == 6

    # Teardown removes it all, and is idempotent too.
    _playbook(sl, "teardown.yml", admin, extra)
    again = _playbook(sl, "teardown.yml", admin, extra)
    assert all(r["changed"] == 0 for r in again.values()), again
    for h in hosts:
        changed = sl.changed(h)
        assert "/etc/sudoers.d/pytest-overlay" not in changed
        assert "/usr/local/libexec/pytest-overlay-agent" not in changed
        passwd = (sl._upper(h, "/etc") / "passwd")
        assert "overlay-audit" not in (passwd.read_text() if passwd.exists() else "")
        tables = subprocess.run(["ip", "netns", "exec", sl.host_ns[h], "nft", "list", "tables"],
                                capture_output=True, text=True).stdout
        assert "pytest_overlay" not in tables
