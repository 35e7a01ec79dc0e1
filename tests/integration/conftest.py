"""Fixtures for integration tests: lab namespaces and agents driven synchronously.

Everything made here carries a fresh run prefix and is removed after the test, whatever happens.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

from pytest_overlay.lab.netlab import NetLab
from pytest_overlay.lab.topology import LabTopology
from pytest_overlay.naming import kill_processes, namespaces, new_prefix

AGENTS_DIR = Path(__file__).resolve().parents[2] / "agents"


class AgentProc:
    """An agent started with ``python -m overlay_agent --netns NS``, called synchronously."""

    def __init__(self, netns: str, log: Path) -> None:
        self.netns = netns
        self._log = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "overlay_agent", "--netns", netns],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            cwd=str(AGENTS_DIR), start_new_session=True,
        )
        self._id = 0

    def call(self, method: str, **params: Any) -> Any:
        """One request, one answer (no concurrency); raises RuntimeError on an agent error."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._id += 1
        self.proc.stdin.write((json.dumps({"id": self._id, "method": method, "params": params}) + "\n").encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"agent in {self.netns} exited (code {self.proc.poll()})")
        msg = json.loads(line)
        if "error" in msg:
            raise RuntimeError(f"{method}: {msg['error']}")
        return msg["result"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("shutdown")
            except Exception:
                pass
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            except Exception:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Lab:
    """A built :class:`NetLab` plus the agents started in it."""

    def __init__(self, netlab: NetLab, host_ns: Dict[str, str], tmp: Path) -> None:
        self.netlab = netlab
        self.prefix = netlab.prefix
        self.host_ns = host_ns
        self.tmp = tmp
        self.agents: List[AgentProc] = []

    def address(self, host: str) -> str:
        return next(h.address for h in self.netlab.topology.hosts if h.name == host)

    def agent(self, host: str, configure: bool = True) -> AgentProc:
        a = AgentProc(self.host_ns[host], self.tmp / f"agent-{host}.log")
        self.agents.append(a)
        a.call("hello", protocol=1)
        if configure:
            a.call("configure", host=host, prefix=self.prefix, underlay=self.address(host))
        return a

    def run(self, host: str, *cmd: str, check: bool = True, timeout: float = 60,
            netns: Optional[str] = None) -> subprocess.CompletedProcess:
        """Run a command inside a host's (or any run) namespace."""
        ns = netns or self.host_ns[host]
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], check=check, timeout=timeout,
                              capture_output=True, text=True)


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    """Factory: ``make_lab(n)`` or ``make_lab(topology=...)`` builds a lab; all removed after."""
    labs: List[Lab] = []

    def factory(n: int = 2, topology: Optional[LabTopology] = None) -> Lab:
        netlab = NetLab(topology or LabTopology.flat(n), new_prefix())
        lab = Lab(netlab, netlab.build(), tmp_path)
        labs.append(lab)
        return lab

    yield factory
    for lab in labs:
        for a in lab.agents:
            a.close()
        kill_processes(lab.prefix)
        lab.netlab.destroy()
        assert not namespaces(lab.prefix), f"namespaces of {lab.prefix} left behind"
