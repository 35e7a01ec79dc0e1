"""The clock check: sampling an agent's clock, the reference, and the verdicts."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Dict, List

import pytest

from overlay_agent.io import clock as agent_clock
from pytest_overlay.checks import AUDIT, clock
from pytest_overlay.errors import AgentError
from pytest_overlay.report import render
from tests.unit.reports import report_of

SYNCED = {"synchronised": True, "maxerror_ms": 12.0, "esterror_ms": 1.0}
ADRIFT = {"synchronised": False, "maxerror_ms": 16000.0, "esterror_ms": 16000.0}


class SlowThenFast:
    """An agent whose answers come back after 30, 2 and 10 ms, its clock ``ahead`` s ahead."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead
        self.delays: List[float] = [0.03, 0.002, 0.01]
        self.calls = 0

    async def call(self, method: str, rpc_timeout: float = 5) -> Dict[str, Any]:
        import time

        assert method == "clock"
        delay = self.delays[self.calls]
        self.calls += 1
        await asyncio.sleep(delay / 2)
        now = time.time() + self.ahead
        await asyncio.sleep(delay / 2)
        return {"time": now, "sync": SYNCED}


def test_the_sample_with_the_shortest_round_trip_counts() -> None:
    agent = SlowThenFast(ahead=2.5)
    got = asyncio.run(clock.sample(agent))
    assert agent.calls == 3
    assert abs(got["offset"] - 2.5) < 0.005, got
    assert got["error"] < 0.006, got  # the 2 ms sample's half round trip, not the 30 ms one's
    assert got["sync"] == SYNCED


def test_the_reference_is_the_median_with_the_controller() -> None:
    assert clock.reference([0.001, 30.0, -0.002]) == pytest.approx(0.0005)
    # the controller alone is off: the hosts agree among themselves
    assert clock.reference([-5.0, -5.001, -4.999]) == pytest.approx(-5.0, abs=0.001)
    assert clock.reference([]) == 0.0


def _s(offset: float, sync: Dict[str, Any] = SYNCED, error: float = 0.001) -> Dict[str, Any]:
    return {"offset": offset, "error": error, "sync": sync}


def test_a_clock_close_to_the_others_passes() -> None:
    r = clock.judge("h1", _s(0.004), 0.001, 4)
    assert r.outcome == "pass"
    assert r.message == ("h1: clock within 4.0 ms of the others (4.0 ms from the controller's); "
                         "synchronised by NTP (max error 12 ms)")
    assert r.details["skew_s"] == pytest.approx(0.003) and "fix" not in r.details


def test_a_clock_nothing_disciplines_passes_with_the_fix() -> None:
    r = clock.judge("h1", _s(0.0, ADRIFT), 0.0, 4)
    assert r.outcome == "pass" and "not synchronised" in r.message and clock.FIX in r.message


def test_a_clock_seconds_off_fails_and_the_measurement_error_is_allowed_for() -> None:
    r = clock.judge("h2", _s(-3.2), 0.0, 4)
    assert r.outcome == "fail"
    assert r.message.startswith("h2: clock 3.2 s behind the others (the median of 4 clocks; "
                                "tolerance 1 s, measured to within 1.0 ms)")
    assert "refuses peers" not in r.message and r.details["fix"] == clock.FIX
    # 1.3 s off, but the round trip was 0.8 s: it may be within the tolerance
    assert clock.judge("h2", _s(1.3, error=0.4), 0.0, 4).outcome == "pass"


def test_beyond_the_raft_window_the_message_and_the_hint_say_so() -> None:
    r = clock.judge("h3", _s(300.0), 0.0, 4)
    assert r.outcome == "fail" and "refuses peers more than 120 s apart" in r.message
    assert clock.raft_hint(300.0).startswith("; its clock is 300 s ahead of the other hosts'")
    assert clock.raft_hint(-121.0).startswith("; its clock is 121 s behind")
    assert clock.raft_hint(100.0) == ""


def test_errors_stay_errors() -> None:
    assert clock.judge("h1", AgentError("h1", "gone"), 0.0, 3).outcome == "error"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adjtimex is Linux-only")
def test_this_kernel_says_whether_its_clock_is_synchronised() -> None:
    got = agent_clock.sync_state()
    assert isinstance(got["synchronised"], bool) and got["maxerror_ms"] >= 0, got


def test_it_runs_before_the_control_plane_and_renders() -> None:
    assert AUDIT.index("clock") < AUDIT.index("control-plane")
    results = [clock.judge("h1", _s(0.002), 0.0, 3), clock.judge("h2", _s(30.0, ADRIFT), 0.0, 3)]
    report = report_of(results, mode="ssh")
    text = render(report, width=100)
    table = text[text.index("Clocks"):]
    row = next(ln for ln in table.splitlines() if " h2 " in ln)
    assert "+30000.0" in row and " no " in row and "fail" in row
