"""The reachability matrix in the terminal summary: cut into tables by destination columns so
that no cell is ever shortened to an ellipsis (a FAIL must stay readable at 80 columns)."""

from __future__ import annotations

from typing import List

import pytest

from pytest_overlay.models import CheckResult, Report
from pytest_overlay.report import render


def _report(n: int, failing: List[tuple]) -> Report:
    results = []
    for i in range(1, n + 1):
        for j in range(1, n + 1):
            if i == j:
                continue
            bad = (f"h{i}", f"h{j}") in failing
            results.append(CheckResult(
                check="reachability", src=f"h{i}", dst=f"h{j}", vni=4096,
                outcome="fail" if bad else "pass", message="x",
                details={"ping": {"rtt_ms_avg": 12.345 if (i + j) % 7 == 0 else 0.5}}))
    return Report(tool_version="0", run_prefix="ov000000", mode="local", started_at="t",
                  finished_at="t", hosts=[], networks=[], results=results,
                  summary={"pass": len(results) - len(failing), "fail": len(failing)})


@pytest.mark.parametrize(("n", "width", "tables"), [(3, 80, 1), (16, 80, 2), (23, 80, 3),
                                                    (23, 120, 2), (16, 200, 1)])
def test_the_matrix_fits_the_width_and_shows_every_cell(n: int, width: int, tables: int) -> None:
    failing = sorted({("h1", f"h{n}"), (f"h{n}", "h2"), ("h3", "h1")})
    text = render(_report(n, failing), width=width)
    start = text.index("Reachability VNI 4096")
    matrix = text[start:text.index("Failures", start)]
    assert "\u2026" not in matrix, matrix
    assert max(len(line) for line in matrix.splitlines()) <= width
    assert matrix.count("Reachability VNI 4096") == tables
    # Every cell is there: one FAIL per failing pair, every RTT in full.
    assert matrix.count("FAIL") == len(failing)
    assert matrix.count("12.35") == sum(1 for i in range(1, n + 1) for j in range(1, n + 1)
                                        if i != j and (i + j) % 7 == 0 and
                                        (f"h{i}", f"h{j}") not in failing)
    headers = " ".join(line for line in matrix.splitlines() if "src \\ dst" in line)
    assert all(f" h{j} " in headers for j in range(1, n + 1)), headers
    if tables > 1:
        assert "(destinations h1.." in matrix and f"..h{n})" in matrix
