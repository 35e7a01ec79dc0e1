"""The evidence collector's contract, with fake agents (no root): files, folders, failures."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List

import pytest

from pytest_overlay import evidence
from pytest_overlay.errors import ConfigError
from pytest_overlay.models import CheckResult, HostPlan, NetworkSpec, RunPlan
from pytest_overlay.session import one_endpoint_per_host


class Client:
    def __init__(self, host: str, log: List[str], broken: bool) -> None:
        self.host, self.log, self.broken = host, log, broken

    async def call(self, method: str, **kw: Any) -> Dict[str, Any]:
        self.log.append(f"{self.host}:{method}")
        if self.broken and method != "evidence_capture_start":
            raise RuntimeError(f"{method} exploded")
        if method == "evidence_capture_stop":
            return {"frames": 1, "pcap_b64": base64.b64encode(b"PCAP").decode()}
        if method == "evidence_snapshot":
            return {"host": self.host, "route_get": f"{kw['peer']} dev eth0 mtu 1400"}
        return {}


class FakeSession:
    """A plain object: the collector keys sessions weakly (and by identity)."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def session(broken: bool = False) -> Any:
    hosts = [HostPlan(name=f"h{i}", underlay=f"198.18.0.{i}") for i in (1, 2)]
    plan = RunPlan(hosts=hosts, networks=[NetworkSpec()],
                   endpoints=one_endpoint_per_host(hosts, NetworkSpec()))
    log: List[str] = []
    s = FakeSession(plan=plan, log=log,
                        hosts={h.name: SimpleNamespace(plan=h, ok=True) for h in hosts})
    s.client = lambda h: Client(h, log, broken and h == "h2")
    return s


def results() -> List[CheckResult]:
    return [CheckResult(check="x", src="h1", dst="h2", vni=7, outcome="fail", message="bad"),
            CheckResult(check="x", src="h2", dst="h1", vni=7, outcome="pass")]


def test_nothing_happens_without_a_directory() -> None:
    s = session()
    assert asyncio.run(evidence.after_check(s, "x", results())) == results()
    assert s.log == []


def test_failing_pair_gets_its_folder(tmp_path: Path) -> None:
    s = session()
    evidence.attach(s, tmp_path / "ev")
    probed: List[str] = []

    async def reprobe(r: CheckResult) -> None:
        probed.append(r.test_id)

    out = asyncio.run(evidence.after_check(s, "x", results(), reprobe=reprobe))
    folder = tmp_path / "ev" / "x" / "h1--h2[vni=7]"
    assert out[0].details["evidence"] == str(folder) and "evidence" not in out[1].details
    assert probed == ["h1->h2[vni=7]"]
    assert json.loads((folder / "result.json").read_text())["message"] == "bad"
    assert (folder / "h1-underlay.pcap").read_bytes() == b"PCAP"
    assert "198.18.0.2 dev eth0 mtu 1400" in (folder / "h1.txt").read_text()
    assert "198.18.0.1 dev eth0" in (folder / "h2.txt").read_text()
    assert not (folder / "notes.txt").exists()
    # Capture started on both before the re-probe, stopped after.
    assert s.log.index("h1:evidence_capture_start") < s.log.index("h1:evidence_capture_stop")


def test_a_broken_agent_is_noted_not_raised(tmp_path: Path) -> None:
    s = session(broken=True)
    evidence.attach(s, tmp_path)
    out = asyncio.run(evidence.after_check(s, "x", results()))
    folder = Path(out[0].details["evidence"])
    notes = (folder / "notes.txt").read_text()
    assert "exploded" in notes
    assert (folder / "h1.txt").exists() and not (folder / "h2.txt").exists()


def test_option_value_that_is_a_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        evidence.directory_from_option(str(f))
    assert evidence.directory_from_option(None) is None
    assert evidence.directory_from_option(str(tmp_path / "new")) == tmp_path / "new"
