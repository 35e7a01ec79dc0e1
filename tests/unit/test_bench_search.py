"""The loss-bounded rate search of ``bench_dataplane.py --pdr`` against synthetic paths.

The search runs iperf3 in the benchmark; here each trial is a model of a path whose loss is
known, so that what the search finds can be checked against the capacity it should find.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _search import search_rate


def _path(capacity: float, base_loss: float = 0.0):
    """A path that delivers up to ``capacity`` pps and loses ``base_loss`` % besides."""
    offered: List[float] = []

    def trial(rate: float) -> Tuple[float, float, Dict[str, Any]]:
        offered.append(rate)
        got = min(rate, capacity) * (1 - base_loss / 100)
        return got, 100 * (rate - got) / rate, {}

    return trial, offered


@pytest.mark.parametrize("capacity", [50e3, 207e3, 289e3])
def test_it_brackets_the_capacity_within_the_precision(capacity: float) -> None:
    trial, offered = _path(capacity)
    res = search_rate(trial, 0.5, first=0.8 * capacity, upper=490e3)
    lo, hi = res["bracket_pps"]
    assert lo <= capacity * 1.005 < hi, res  # 0.5 % over capacity still passes the bound
    assert hi - lo <= 0.02 * hi
    assert capacity * 0.97 <= res["pps"] <= capacity
    assert len(offered) <= 8
    assert all(t["passed"] == (t["loss_pct"] <= 0.5) for t in res["trials"])


def test_the_first_trial_is_the_guess_and_never_the_failing_bound() -> None:
    trial, offered = _path(200e3)
    search_rate(trial, 0.5, first=600e3, upper=400e3)
    assert offered[0] == pytest.approx(360e3)  # capped at 0.9 of the failing offer


def test_a_path_that_always_loses_more_than_the_bound_gives_zero() -> None:
    trial, offered = _path(200e3, base_loss=2.0)
    res = search_rate(trial, 0.5, first=150e3, upper=400e3, max_trials=5)
    assert res["pps"] == 0.0 and res["loss_pct"] is None
    assert len(offered) == 5 and not any(t["passed"] for t in res["trials"])


def test_noise_never_reports_a_failing_trial_as_the_result() -> None:
    rng = random.Random(7)

    def trial(rate: float) -> Tuple[float, float, Dict[str, Any]]:
        loss = max(0.0, (rate - 200e3) / rate * 100) + rng.uniform(0, 0.8)
        return rate * (1 - loss / 100), loss, {}

    res = search_rate(trial, 0.5, first=180e3, upper=490e3)
    best = max((t for t in res["trials"] if t["passed"]), key=lambda t: t["pps"])
    assert res["pps"] == best["pps"] and res["loss_pct"] <= 0.5
