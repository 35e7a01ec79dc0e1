"""MTU verdict per network and the fix (the recommendation in full, under the table)."""

from __future__ import annotations

from typing import Any, List

from rich.table import Table
from rich.text import Text

from pytest_overlay.models import Report
from pytest_overlay.report import STYLE, failures_first


def section(report: Report) -> List[Any]:
    rows = [r for r in report.results if r.check == "mtu"]
    if not rows:
        return []
    t = Table(title="Overlay MTU", title_justify="left")
    for col in ("network", "VNI", "configured", "fits", "verdict", "pairs at risk"):
        t.add_column(col, justify="right" if col in ("VNI", "configured", "fits") else "left")
    out: List[Any] = [t]
    for r in failures_first(rows):
        d = r.details
        verdict = "too high" if r.outcome == "fail" else (
            "too low" if d.get("warning") else ("ok" if r.outcome == "pass" else r.outcome))
        holes = set(d.get("blackhole_pairs") or [])
        pairs = [f"{p} (no ICMP)" if p in holes else p for p in d.get("stalling_pairs") or []]
        pairs += [f"{p} (PMTUD)" for p in d.get("pmtud_pairs") or []]
        risk = ", ".join(pairs)
        t.add_row(r.src or "", str(r.vni), str(d.get("configured", "-")),
                  str(d.get("recommended", "-")), Text(verdict, style=STYLE[r.outcome]), risk or "-")
        if r.outcome == "fail" or d.get("warning"):
            out.append(Text(f"{r.src}: {r.message}", style=STYLE[r.outcome]))
    return out
