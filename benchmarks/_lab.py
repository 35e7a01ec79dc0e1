"""Shared helpers for the benchmarks: a namespace lab, agents driven over stdio, clean-up.

Every namespace, device and process made here carries the run prefix and is removed by
:meth:`BenchLab.close`, which the scripts call from ``finally`` (also on Ctrl-C). Nothing is
created in the root namespace: all addresses and routes live in lab namespaces, and every
packet starts inside one of them.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
AGENTS_DIR = ROOT / "agents"
for _p in (str(ROOT), str(AGENTS_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from overlay_agent.io import netns  # noqa: E402
from pytest_overlay.lab.agentproc import AgentProc  # noqa: E402
from pytest_overlay.lab.netlab import NetLab  # noqa: E402
from pytest_overlay.lab.topology import LabTopology  # noqa: E402
from pytest_overlay.naming import kill_processes, namespaces, new_prefix  # noqa: E402


class BenchLab:
    """A flat lab of ``n`` hosts with a fresh prefix; agents and kernel devices made on demand."""

    def __init__(self, n: int, tmp: Path) -> None:
        self.prefix = new_prefix()
        self.tmp = tmp
        self.netlab = NetLab(LabTopology.flat(n), self.prefix)
        self.agents: Dict[str, AgentProc] = {}
        self.host_ns = self.netlab.build()

    def address(self, host: str) -> str:
        return next(h.address for h in self.netlab.topology.hosts if h.name == host)

    def start_agent(self, host: str, env: Optional[Dict[str, str]] = None) -> AgentProc:
        a = AgentProc(self.host_ns[host], self.tmp / f"agent-{host}.log", env)
        self.agents[host] = a
        a.call("hello", protocol=1)
        a.call("configure", host=host, prefix=self.prefix, underlay=self.address(host))
        return a

    def stop_agents(self) -> None:
        for a in self.agents.values():
            a.close()
        self.agents.clear()

    def exec(self, ns: str, *cmd: str, timeout: float = 120) -> str:
        """Run ``cmd`` inside lab namespace ``ns`` (never in the root namespace)."""
        if not ns.startswith(self.prefix + "-"):
            raise ValueError(f"{ns} is not a namespace of run {self.prefix}")
        r = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} in {ns} failed ({r.returncode}): {r.stderr}")
        return r.stdout

    def popen(self, ns: str, *cmd: str) -> subprocess.Popen[str]:
        if not ns.startswith(self.prefix + "-"):
            raise ValueError(f"{ns} is not a namespace of run {self.prefix}")
        return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)

    def add_ns(self, name: str) -> str:
        ns = f"{self.prefix}-{name}"
        netns.add(ns)
        for key in ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"):
            netns.write_sysctl(key, "1", netns=ns)
        netns.ip("link", "set", "lo", "up", netns=ns)
        return ns

    def close(self) -> List[str]:
        self.stop_agents()
        kill_processes(self.prefix)
        removed = self.netlab.destroy()
        left = namespaces(self.prefix)
        if left:
            raise RuntimeError(f"namespaces of {self.prefix} left behind: {left}")
        return removed


def machine() -> str:
    """What the figures were measured on (they move a lot between CPUs: docs/benchmarks.md,
    "Machine"): CPU model, CPU count, kernel release, Python version."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} CPUs, kernel {platform.release()}, "
            f"Python {platform.python_version()}")
