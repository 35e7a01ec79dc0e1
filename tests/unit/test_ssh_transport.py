"""SSH transport pieces that need no server: host-key decisions, the remote command, errors."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import asyncssh
import pytest

from pytest_overlay.errors import AgentError
from pytest_overlay.inventory import parse_inventory
from pytest_overlay.transport.ssh import HostKeyCheck, SshTransport

INV = parse_inventory("hosts:\n  - {name: a, address: 192.0.2.1}\n  - {name: b, address: 192.0.2.2}\n")


def _key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519").convert_to_public()


def test_unknown_key_refused_with_fingerprint_and_command(tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    check = HostKeyCheck(kh, "192.0.2.1", accept_new=False)
    key = _key()
    assert check.unknown_key(check.load(), "192.0.2.1", "192.0.2.1", 22, key) is False
    assert check.status == "unknown" and not kh.exists()
    err = check.refusal("a")
    assert key.get_fingerprint("sha256") in err.message
    assert err.hint is not None and "--overlay-accept-new-hostkeys" in err.hint
    # The hint's command writes exactly the line that makes the key known.
    cmd = err.hint.split("to accept it: ")[1].split("   (or")[0]
    subprocess.run(["sh", "-c", cmd], check=True)
    known = HostKeyCheck(kh, "192.0.2.1", accept_new=False).load()
    assert key in known.match("192.0.2.1", "192.0.2.1", None)[0]


def test_accept_new_writes_the_key_but_never_a_changed_one(tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    check = HostKeyCheck(kh, "[192.0.2.1]:2222", accept_new=True)
    key = _key()
    assert check.unknown_key(check.load(), "192.0.2.1", "192.0.2.1", 2222, key) is True
    assert check.status == "accepted-new"
    assert kh.read_text().startswith("[192.0.2.1]:2222 ssh-ed25519 ")
    assert oct(kh.stat().st_mode & 0o777) == "0o600"
    other = HostKeyCheck(kh, "[192.0.2.1]:2222", accept_new=True)
    assert other.unknown_key(other.load(), "192.0.2.1", "192.0.2.1", 2222, _key()) is False
    assert other.status == "changed"
    assert "ssh-keygen -R '[192.0.2.1]:2222'" in (other.refusal("a").hint or "")
    assert len(kh.read_text().splitlines()) == 1


def test_remote_command_removes_its_dir_and_checks_python(tmp_path: Path) -> None:
    t = SshTransport.__new__(SshTransport)
    d = tmp_path / "ov123456-a-0000"
    d.mkdir()
    (d / "agent.pyz").write_text("print('agent ran')\n")
    s = INV.settings("a")
    ok = subprocess.run(shlex.split(t._command(str(d), {**s, "python": "python3"})),
                        capture_output=True, text=True)
    assert ok.stdout == "agent ran\n" and not d.exists()
    d.mkdir()
    bad = subprocess.run(shlex.split(t._command(str(d), {**s, "python": "/nope/python3"})),
                         capture_output=True, text=True)
    assert bad.returncode == 127 and "overlay: no /nope/python3" in bad.stderr and not d.exists()
    assert "sudo -n " in t._command("/tmp/x", {**s, "sudo": True})


def test_why_the_agent_did_not_start() -> None:
    t = SshTransport.__new__(SshTransport)
    s = {**INV.settings("a"), "sudo": True, "user": "ops"}
    assert t._why("a", s, 127, "overlay: no python3 here").code == "no-python"
    e = t._why("a", s, 1, "sudo: a password is required")
    assert e.code == "sudo" and "would ask for a password" in e.message and "NOPASSWD" in (e.hint or "")
    e = t._why("a", s, 1, "sudo: ops is not in the sudoers file")
    assert e.code == "sudo" and "not in the sudoers file" in e.message
    e = t._why("a", {**s, "sudo": False}, 1, "SyntaxError: invalid syntax")
    assert e.code == "no-python" and "3.8+" in (e.hint or "")
    assert "exit status 3" in t._why("a", {**s, "sudo": False}, 3, "boom").message


def test_identity_file_errors(tmp_path: Path) -> None:
    (tmp_path / "agent.pyz").write_bytes(b"x")
    t = SshTransport(tmp_path / "agent.pyz", "ov123456", INV)
    missing = tmp_path / "nokey"
    with pytest.raises(AgentError) as e:
        t._identity("a", str(missing))
    assert e.value.message == f"host a: identity file {missing}: No such file or directory"
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(locked)],
                   check=True, capture_output=True)
    with pytest.raises(AgentError) as e:
        t._identity("b", str(locked))
    assert e.value.message.startswith(f"host b: identity file {locked} cannot be used")
    assert "ssh-agent" in (e.value.hint or "")
    good = tmp_path / "good"
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(good))
    assert t._identity("a", str(good)).public_data == key.public_data
