"""Helpers for the SSH tests: a namespace lab with a real sshd per host (imported as a fixture)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import pytest

from pytest_overlay.cli import leftovers
from pytest_overlay.lab.netlab import NetLab
from pytest_overlay.lab.sshd import SshdLab
from pytest_overlay.lab.topology import LabTopology
from pytest_overlay.naming import kill_processes, namespaces, new_prefix


@pytest.fixture
def ssh_lab() -> Iterator[Callable[..., SshdLab]]:
    """Factory: ``ssh_lab(n)`` builds n namespace hosts, each running sshd; all removed after."""
    made: List[SshdLab] = []
    labs: List[NetLab] = []

    def factory(n: int = 3, topology: Optional[LabTopology] = None, **kw: Any) -> SshdLab:
        lab = NetLab(topology or LabTopology.flat(n), new_prefix())
        labs.append(lab)
        sl = SshdLab(lab, lab.build(), **kw).start()
        made.append(sl)
        return sl

    yield factory
    for sl in made:
        sl.stop()
    for lab in labs:
        kill_processes(lab.prefix)
        lab.destroy()
        assert not namespaces(lab.prefix), f"namespaces of {lab.prefix} left behind"


def pytest_cmd(tmp: Path, *args: str) -> List[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(tmp), *args]


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def assert_no_trace(prefix: str, hosts: Optional[SshdLab] = None) -> None:
    """No process, temp file or upload dir, namespace, link or nft table of run ``prefix``, on
    this machine and (``hosts``) inside every lab host's namespace."""
    wait_for(lambda: not leftovers(prefix), 15, f"run {prefix} to leave nothing behind")
    where = [None] + (list(hosts.host_ns.values()) if hosts is not None else [])
    for ns in where:
        pre = ["ip", "netns", "exec", ns] if ns else []
        links = subprocess.run([*pre, "ip", "-o", "link"], capture_output=True, text=True,
                               check=True).stdout
        assert prefix not in links, f"a link of run {prefix} is left in {ns or 'the root namespace'}"
        tables = subprocess.run([*pre, "nft", "list", "tables"], capture_output=True, text=True).stdout
        assert prefix not in tables, f"an nft table of run {prefix} is left in {ns or 'root'}"
    assert not [p for p in os.listdir("/tmp") if p.startswith(prefix)]


def session_pids(sl: SshdLab, host: str) -> List[int]:
    """sshd's per-connection processes on ``host`` (children of its listener)."""
    proc = sl.procs[host]
    out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def all_pass_but_lab_host_skips(results: List[Any]) -> List[str]:
    """What keeps an SSH lab audit from "everything passed": the lab's hosts are namespaces,
    where no agent can read the kernel's neighbour tables and no cluster runs a kernel VXLAN
    device, so those results are skips that say so, and every other result passes. Returns the
    offending results (empty when all is well); takes report dicts or CheckResults."""
    why = {"neighbours": "initial network namespace", "kernel-overlays": "no overlay runs here"}
    bad = []
    for r in results:
        d = r if isinstance(r, dict) else r.model_dump()
        if d["check"] in why:
            if d["outcome"] != "skip" or why[d["check"]] not in d["message"]:
                bad.append(f"{d['check']} {d['src']}: {d['outcome']} {d['message']}")
        elif d["outcome"] != "pass":
            bad.append(f"{d['check']} {d['src']}->{d.get('dst')}: {d['outcome']} {d['message']}")
    return bad
