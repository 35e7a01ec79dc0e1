"""A lab fleet that outlives one command: namespace hosts with real sshds, to provision with
Ansible and audit over SSH, the way a real fleet is (``pytest-overlay lab up|exec|down``).

``up`` writes into its directory everything the next steps need:

* ``inventory.ini``: Ansible inventory to provision the hosts as root (lab client key);
* ``prepare-vars.json``: the role's variables (the audit user's public key, the agent's SHA-256);
* ``audit.ini``: Ansible inventory for the audit: the provisioned user, its key, sudo through
  the role's wrapper, the lab controller namespace;
* ``audit_key``, ``known_hosts``, ``fleet.json`` (the run prefix and the hosts).

Each host's sshd has a private copy-on-write /etc, /usr/local, /home and /root, so what Ansible
does to a lab host never touches this machine. Commands that reach the hosts (ansible-playbook,
ssh) run inside the lab's controller namespace with ``lab exec``: the root namespace routes off
the machine. ``down`` removes everything, like ``pytest-overlay cleanup PREFIX``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, List

from pytest_overlay.errors import LabError
from pytest_overlay.lab.netlab import NetLab
from pytest_overlay.lab.sshd import SshdLab
from pytest_overlay.lab.topology import LabTopology
from pytest_overlay.naming import new_prefix

STATE = "fleet.json"
WRAPPER = "/usr/local/libexec/pytest-overlay-agent"


def _ini(hosts: Dict[str, str], group_vars: Dict[str, str]) -> str:
    lines = ["[fleet]"] + [f"{h} ansible_host={a}" for h, a in sorted(hosts.items())]
    lines += ["", "[fleet:vars]"] + [f"{k}={v}" for k, v in group_vars.items()]
    return "\n".join(lines) + "\n"


def up(directory: Path, hosts: int = 3) -> Dict[str, Any]:
    from pytest_overlay.deploy import agent_digest, bundle_for

    directory.mkdir(parents=True, exist_ok=True)
    if (directory / STATE).exists():
        raise LabError(f"{directory} already holds a fleet",
                       f"pytest-overlay lab down {directory} first, or use another directory")
    lab = NetLab(LabTopology.flat(hosts), new_prefix())
    sl = SshdLab(lab, lab.build(), private_root=True)
    try:
        sl.start()
        key = directory / "audit_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        f"{lab.prefix}-audit", "-f", str(key)], check=True, timeout=30)
        known = directory / "known_hosts"
        known.write_text(sl.known_hosts.read_text())
        addresses = {h: sl.address(h) for h in sl.host_ns}
        (directory / "inventory.ini").write_text(_ini(addresses, {
            "ansible_user": "root", "ansible_ssh_private_key_file": str(sl.client_key),
            "ansible_ssh_common_args": f"'-o UserKnownHostsFile={known.resolve()} "
                                       "-o StrictHostKeyChecking=yes'",
            "ansible_python_interpreter": "/usr/bin/python3",
        }))
        (directory / "prepare-vars.json").write_text(json.dumps({
            "overlay_audit_pubkey": Path(f"{key}.pub").read_text().strip(),
            "overlay_agent_sha256": [agent_digest(bundle_for("raft"))],
            "overlay_manage_firewall": True,
            "overlay_peers": [str(lab.topology.segments[0].subnet)],
        }, indent=2) + "\n")
        (directory / "audit.ini").write_text(_ini(addresses, {
            "ansible_user": "overlay-audit", "ansible_ssh_private_key_file": str(key.resolve()),
            "ansible_become": "true", "overlay_python": WRAPPER,
            "overlay_known_hosts": str(known.resolve()),
            "overlay_controller_netns": str(sl.controller_ns),
        }))
        state = {"prefix": lab.prefix, "hosts": addresses, "controller_netns": sl.controller_ns,
                 "sshd_dir": str(sl.dir)}
        (directory / STATE).write_text(json.dumps(state, indent=2) + "\n")
        return state
    except BaseException:
        sl.stop()
        lab.destroy()
        raise


def _state(directory: Path) -> Dict[str, Any]:
    try:
        return dict(json.loads((directory / STATE).read_text()))
    except OSError:
        raise LabError(f"{directory} holds no fleet ({STATE} is missing)",
                       f"make one with `pytest-overlay lab up {directory}`") from None


def exec_in(directory: Path, argv: List[str]) -> int:
    """Run ``argv`` in the fleet's controller namespace (Ansible set up to leave nothing behind)."""
    state = _state(directory)
    env = dict(os.environ, ANSIBLE_PIPELINING="1", ANSIBLE_NOCOLOR="1",
               ANSIBLE_SSH_ARGS="-o ControlMaster=auto -o ControlPersist=60s",
               # ssh masters live under the run's directory, so `down` finds and ends them
               ANSIBLE_SSH_CONTROL_PATH_DIR=str(Path(state["sshd_dir"]) / "cp"))
    return subprocess.call(["ip", "netns", "exec", state["controller_netns"], *argv], env=env)


def down(directory: Path) -> Dict[str, Any]:
    from pytest_overlay.cli import cleanup

    state = _state(directory)
    removed = cleanup(state["prefix"])
    for name in ("inventory.ini", "audit.ini", "prepare-vars.json", "audit_key", "audit_key.pub",
                 "known_hosts", STATE):
        try:
            (directory / name).unlink()
        except OSError:
            pass
    return {"prefix": state["prefix"], "removed": removed.get(state["prefix"], {})}
