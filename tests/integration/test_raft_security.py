"""Raft port security: nothing unauthenticated is ever unpickled, and nothing crashes the agent.

h1..h3 run agents (three voters). The attacker runs in h4's namespace (no agent there) and talks
to h1's Raft port directly: garbage, a pickle that would create a file, and frames replayed
with a valid MAC. A fourth agent started with a wrong secret never joins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict

import pytest

from tests.conftest import needs_root
from tests.integration.raft_helpers import RAFT_PORT, RaftLab

pytestmark = needs_root
ATTACK = Path(__file__).with_name("raft_attack.py")


def attack(rl: RaftLab, mode: str, target: str, stdin: str = "") -> Dict[str, Any]:
    ns = rl.lab.host_ns["h4"]
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, str(ATTACK), mode, rl.lab.address(target),
         str(RAFT_PORT)], input=stdin, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def healthy(rl: RaftLab) -> None:
    """Every agent alive, and a write through h1 reaches all replicas."""
    for h, a in rl.agents.items():
        assert a.proc.poll() is None, f"agent {h} died"
    res = rl.agents["h1"].call("raft_write", command={"op": "network", "name": "probe",
                                                      "vni": 777, "subnet": "10.77.0.0/24"},
                               deadline=10.0)
    assert res["ok"]
    rl.wait_all(lambda a: a.call("raft_status")["table_size"]["networks"] == 2)


@pytest.fixture
def rl(make_lab: Any) -> RaftLab:
    lab = make_lab(4)
    r = RaftLab(lab, 3, voters=3)
    return r.start()


def test_garbage_is_refused_and_the_agent_survives(rl: RaftLab) -> None:
    before = rl.status("h1")["rejected_frames"]
    out = attack(rl, "garbage", "h1")
    assert out["blob1_closed"] and out["blob2_closed"] and out["blob3_closed"], out
    assert rl.status("h1")["rejected_frames"] > before
    healthy(rl)


def test_a_crafted_pickle_is_never_executed(rl: RaftLab, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    before = rl.status("h1")["rejected_frames"]
    out = attack(rl, "pickle", "h1", stdin=f"{marker}\n")
    assert out["pickle0_closed"] and out["pickle1_closed"], out
    time.sleep(0.5)
    assert not marker.exists(), "the agent unpickled an unauthenticated frame"
    status = rl.status("h1")
    assert status["rejected_frames"] > before
    assert "not a pytest-overlay Raft frame" in (status["last_rejection"] or "")
    healthy(rl)


def test_replayed_frames_are_refused(rl: RaftLab) -> None:
    out = attack(rl, "replay", "h1", stdin=rl.secret + "\n")
    assert out["legit_session_open"], out  # the frames themselves were valid once
    assert out["data_replay_closed"], out
    assert out["hello_replay_closed"], out
    assert out["stale_hello_closed"], out
    status = rl.agents["h1"].call("raft_status")
    assert status["rejected_frames"] >= 3, status
    healthy(rl)


def test_a_peer_with_the_wrong_secret_never_joins(rl: RaftLab) -> None:
    rl.hosts.append("h4")
    intruder = rl.start_host("h4", publish=False, secret="ab" * 32)
    time.sleep(2.0)
    st = intruder.call("raft_status")
    assert st["leader"] is None and st["table_size"]["endpoints"] == 0, st
    with pytest.raises(RuntimeError, match=r"no Raft quorum|not connected"):
        intruder.call("raft_write", command={"op": "remove_member", "name": "h1"}, deadline=1.0)
    assert all(rl.status(h)["table_size"]["members"] == 3 for h in ("h1", "h2", "h3"))
    assert sum(rl.status(h)["rejected_frames"] for h in ("h1", "h2", "h3")) > 0
