"""A report around some results, for the tests of the terminal tables."""

from __future__ import annotations

from collections import Counter
from typing import Any, List

from pytest_overlay.models import Report


def report_of(results: List[Any], mode: str = "local") -> Report:
    return Report(tool_version="0", run_prefix="ov000000", mode=mode, started_at="t",
                  finished_at="t", hosts=[], networks=[], results=results,
                  summary=dict(Counter(r.outcome for r in results)))
