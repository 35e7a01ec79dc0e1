"""Fixtures for integration tests: lab namespaces and agents driven synchronously.

Everything made here carries a fresh run prefix and is removed after the test, whatever happens.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

from pytest_overlay.lab.agentproc import AgentProc
from pytest_overlay.lab.netlab import NetLab
from pytest_overlay.lab.topology import LabTopology
from pytest_overlay.models import NetworkSpec
from pytest_overlay.naming import kill_processes, namespaces, new_prefix
from pytest_overlay.runner import OverlayRun

AGENTS_DIR = Path(__file__).resolve().parents[2] / "agents"


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

    def agent(self, host: str, configure: bool = True,
              env: Optional[Dict[str, str]] = None) -> AgentProc:
        a = AgentProc(self.host_ns[host], self.tmp / f"agent-{host}.log", env=env)
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


@pytest.fixture
def local_run() -> Iterator[Callable[..., OverlayRun]]:
    """Factory: ``local_run(topology=None, **attrs)`` is an :class:`OverlayRun` of a local lab
    (3 flat hosts by default; ``attrs`` set on the run, e.g. ``evidence_dir``), torn down after
    the test with no namespace of its prefix left."""
    runs: List[OverlayRun] = []

    def factory(topology: Optional[LabTopology] = None, **attrs: Any) -> OverlayRun:
        r = OverlayRun.local(topology or LabTopology.flat(3), NetworkSpec(), prefix=new_prefix())
        for k, v in attrs.items():
            setattr(r, k, v)
        runs.append(r)
        return r

    yield factory
    for r in runs:
        r.teardown()
        assert not namespaces(r.prefix), f"namespaces of {r.prefix} left behind"
