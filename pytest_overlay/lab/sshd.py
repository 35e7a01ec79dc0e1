"""Real OpenSSH servers in lab host namespaces, and a controller namespace to reach them from.

For tests and benchmarks of the SSH transport (and later Ansible): each host namespace of a built
:class:`~pytest_overlay.lab.netlab.NetLab` gets its own ``sshd`` with its own host key and config,
all files in one temp dir named with the run prefix (which is also on every sshd command line, so
the keeper and ``pytest-overlay cleanup`` find them).

``sshd`` needs ``/run/sshd``. ``ip netns exec`` gives the server a private mount namespace, in
which a tmpfs is mounted over ``/run`` (with the machine's ``/run/netns`` bound back in, so agents
can still make namespaces): the machine's own ``/run`` is never touched.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from overlay_agent.io import netns
from pytest_overlay.errors import LabError
from pytest_overlay.lab.netlab import NetLab

SSHD = "/usr/sbin/sshd"
CONTROLLER_ADDRESS = "198.18.0.254"
LAB_USER = "ovlab"
LAB_UID = 4242

_CONFIG = """\
Port {port}
ListenAddress {address}
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
MaxStartups 100:30:200
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""


def _keygen(path: Path, comment: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True, timeout=30)
    return path.with_name(path.name + ".pub").read_text().strip()


def attach_controller(lab: NetLab, address: str = CONTROLLER_ADDRESS) -> str:
    """Add namespace ``<prefix>-ctl`` on the lab's first underlay segment; returns its name.

    The controller's SSH sockets are opened in it: the root namespace routes off the machine.
    It carries the prefix, so ``NetLab.destroy`` removes it with the rest.
    """
    ns = f"{lab.prefix}-ctl"
    seg = lab.topology.segments[0]
    plen = ipaddress.ip_network(seg.subnet).prefixlen
    port = f"{lab.prefix}pc"
    try:
        netns.add(ns)
        netns.ip("link", "set", "lo", "up", netns=ns)
        netns.ip("link", "add", port, "mtu", str(seg.mtu), "type", "veth", "peer", "name", "eth0",
                 "mtu", str(seg.mtu), "netns", ns, netns=lab.switch_ns)
        netns.ip("link", "set", port, "master", f"br-{seg.name}", "up", netns=lab.switch_ns)
        netns.ip("addr", "add", f"{address}/{plen}", "dev", "eth0", netns=ns)
        netns.ip("link", "set", "eth0", "up", netns=ns)
    except netns.NetnsError as e:
        raise LabError(f"cannot add the controller namespace {ns}: {e}") from e
    return ns


class SshdLab:
    """``sshd`` in every host namespace of ``lab`` (built), plus a client key and known_hosts."""

    def __init__(self, lab: NetLab, host_ns: Dict[str, str], port: int = 22,
                 sudoers: Optional[str] = None) -> None:
        """``sudoers``: rules that replace ``/etc/sudoers.d`` for the servers (their private mount
        namespaces only), e.g. ``"ovlab ALL=(root) NOPASSWD: /usr/bin/python3"``."""
        self.lab = lab
        self.prefix = lab.prefix
        self.host_ns = host_ns
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-sshd-"))
        self.dir.chmod(0o711)  # sshd reads authorized_keys as the logging-in user
        self.client_key = self.dir / "client_key"
        self.known_hosts = self.dir / "known_hosts"
        self.authorized_keys = self.dir / "authorized_keys"
        self.host_keys: Dict[str, str] = {}
        self.procs: Dict[str, subprocess.Popen] = {}
        self.controller_ns: Optional[str] = None
        self.sudoers = sudoers

    def address(self, host: str) -> str:
        return next(h.address for h in self.lab.topology.hosts if h.name == host)

    def start(self, hosts: Optional[List[str]] = None, timeout: float = 30.0) -> SshdLab:
        """Make keys, start the servers and wait until each accepts connections."""
        try:
            self._start(hosts or list(self.host_ns), timeout)
        except Exception:
            self.stop()
            raise
        return self

    def _start(self, hosts: List[str], timeout: float) -> None:
        pub = _keygen(self.client_key, f"{self.prefix}-client")
        self.authorized_keys.write_text(pub + "\n")
        self.authorized_keys.chmod(0o644)
        for host in hosts:
            self.host_keys[host] = _keygen(self.dir / f"host_key_{host}", f"{self.prefix}-{host}")
        self.write_known_hosts(hosts)
        self._user_files()
        self.controller_ns = attach_controller(self.lab)
        for host in hosts:
            self._start_one(host)
        deadline = time.monotonic() + timeout
        for host in hosts:
            self._wait_listening(host, deadline)

    def _user_files(self) -> None:
        """User database with an extra unprivileged user, :data:`LAB_USER`, bound over /etc in the
        servers' private mount namespaces only (for tests of sudo and of missing root)."""
        for name, line in (("passwd", f"{LAB_USER}:x:{LAB_UID}:{LAB_UID}::/tmp:/bin/sh\n"),
                           ("shadow", f"{LAB_USER}:*:20000:0:99999:7:::\n"),
                           ("group", f"{LAB_USER}:x:{LAB_UID}:\n")):
            src = Path("/etc") / ("passwd" if name == "shadow" else name)
            text = src.read_text()
            if name == "shadow":  # no password hashes copied: every account key-only
                text = "".join(f"{ln.split(':')[0]}:*:20000:0:99999:7:::\n"
                               for ln in text.splitlines() if ln and ":" in ln)
            dst = self.dir / name
            dst.write_text(text + ("" if text.endswith("\n") else "\n") + line)
            dst.chmod(0o640 if name == "shadow" else 0o644)

        if self.sudoers is not None:
            sd = self.dir / "sudoers.d"
            sd.mkdir(mode=0o755)
            (sd / "overlay").write_text(self.sudoers.rstrip("\n") + "\n")
            (sd / "overlay").chmod(0o440)

    def write_known_hosts(self, hosts: List[str]) -> None:
        """known_hosts with the given hosts' keys (the others are then unknown)."""
        lines = []
        for host in hosts:
            kind, key = self.host_keys[host].split()[:2]
            name = self.address(host) if self.port == 22 else f"[{self.address(host)}]:{self.port}"
            lines.append(f"{name} {kind} {key}\n")
        self.known_hosts.write_text("".join(lines))

    def _start_one(self, host: str) -> None:
        d = self.dir
        cfg = d / f"sshd_config_{host}"
        cfg.write_text(_CONFIG.format(port=self.port, address=self.address(host),
                                      host_key=d / f"host_key_{host}", pid_file=d / f"sshd_{host}.pid",
                                      authorized_keys=self.authorized_keys))
        keep = d / f"netns_{host}"
        keep.mkdir()
        users = "".join(f" mount --bind {d / name} /etc/{name};" for name in ("passwd", "shadow", "group"))
        if self.sudoers is not None:
            users += f" mount --bind {d / 'sudoers.d'} /etc/sudoers.d;"
        script = (f"set -e; mount --rbind /run/netns {keep}; mount -t tmpfs -o mode=0755 tmpfs /run;"
                  f" mkdir -m 0755 /run/sshd /run/netns; mount --rbind {keep} /run/netns;{users}"
                  f" exec {SSHD} -D -f {cfg} -E {d / f'sshd_{host}.log'}")
        self.procs[host] = subprocess.Popen(
            ["ip", "netns", "exec", self.host_ns[host], "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)

    def _wait_listening(self, host: str, deadline: float) -> None:
        addr = (self.address(host), self.port)
        while True:
            proc = self.procs[host]
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise LabError(f"sshd on {host} exited ({proc.returncode}): {err.strip()}"
                               f" {self.log(host).strip()}")
            with netns.inside(self.host_ns[host]):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.settimeout(1.0)
                s.connect(addr)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise LabError(f"sshd on {host} does not listen on {addr}") from None
                time.sleep(0.05)
            finally:
                s.close()

    def log(self, host: str) -> str:
        try:
            return (self.dir / f"sshd_{host}.log").read_text()
        except OSError:
            return ""

    def stop_host(self, host: str) -> None:
        """Stop one host's sshd (its running sessions go on, as with a real sshd restart)."""
        proc = self.procs.pop(host, None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        for host in list(self.procs):
            self.stop_host(host)
        shutil.rmtree(self.dir, ignore_errors=True)

    def inventory(self, hosts: Optional[List[str]] = None, **overrides: Any) -> Dict[str, Any]:
        """An inventory (as data) for these servers; ``overrides`` go into ``defaults``."""
        defaults: Dict[str, Any] = {"user": "root", "port": self.port,
                                    "identity": str(self.client_key),
                                    "known_hosts": str(self.known_hosts),
                                    "python": "/usr/bin/python3", "connect_timeout": 10}
        defaults.update(overrides)
        return {
            "defaults": defaults,
            "hosts": [{"name": h, "address": self.address(h)} for h in (hosts or list(self.host_ns))],
            "controller": {"netns": self.controller_ns},
        }

    def write_inventory(self, path: Path, hosts: Optional[List[str]] = None, **overrides: Any) -> Path:
        path.write_text(yaml.safe_dump(self.inventory(hosts, **overrides), sort_keys=False))
        return path
