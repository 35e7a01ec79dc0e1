"""--overlay-evidence on the war story: the blackhole pair's folder explains it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from pytest_overlay.lab.topology import LabTopology
from pytest_overlay.runner import OverlayRun
from tests.conftest import needs_root

pytestmark = [needs_root, pytest.mark.slow]
WAR_STORY = Path(__file__).resolve().parents[2] / "fixtures" / "war-story.yaml"


@pytest.fixture
def run(local_run: Callable[..., OverlayRun], tmp_path: Path) -> OverlayRun:
    return local_run(LabTopology.load(str(WAR_STORY)), evidence_dir=tmp_path / "evidence")


def test_blackhole_and_stalled_pairs_get_evidence(run: OverlayRun, tmp_path: Path) -> None:
    pmtu = run.check("pmtu")
    assert run.start_error is None, run.start_error
    black = pmtu["h1->h3"]
    assert black.details["verdict"] == "blackhole" and black.details["pmtu"] == 1400
    folder = Path(black.details["evidence"])
    assert folder == tmp_path / "evidence" / "pmtu" / "h1--h3"
    assert json.loads((folder / "result.json").read_text())["details"]["verdict"] == "blackhole"
    text = "".join(p.read_text() for p in folder.glob("*.txt"))
    assert "mtu 1500" in text  # the hosts' own links are fine: the 1400 hop is further on
    # pairs that pass get no folder
    assert not (tmp_path / "evidence" / "pmtu" / "h1--h2").exists()

    reach = run.check("reachability")
    stalled = reach["h1->h3[vni=4096]"]
    assert stalled.outcome == "fail" and "evidence" in stalled.details
    rfolder = Path(stalled.details["evidence"])
    assert (rfolder / "result.json").exists()
    pcaps = sorted(rfolder.glob("*-underlay.pcap"))
    assert pcaps and max(p.stat().st_size for p in pcaps) > 24 + 16  # the re-sent probes
