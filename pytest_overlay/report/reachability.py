"""Reachability: a source x destination matrix per VNI (avg RTT, or what went wrong)."""

from __future__ import annotations

import re
from typing import Any, List, Optional, Tuple

from rich.table import Table
from rich.text import Text

from pytest_overlay.models import CheckResult, Report
from pytest_overlay.report import MARK, STYLE

#: Past this many sources a matrix no longer fits a terminal; the failures table says it all.
MAX_MATRIX = 24


def section(report: Report) -> List[Any]:
    reach = [r for r in report.results if r.check == "reachability"]
    out: List[Any] = []
    for vni in sorted({r.vni for r in reach if r.vni is not None}):
        rows = [r for r in reach if r.vni == vni]
        if len({r.src for r in rows}) <= MAX_MATRIX:
            out.append(matrix(rows, vni))
    return out


def matrix(results: List[CheckResult], vni: Optional[int]) -> Table:
    srcs = sorted({r.src for r in results if r.src}, key=_natural)
    dsts = sorted({r.dst for r in results if r.dst}, key=_natural)
    by_pair = {(r.src, r.dst): r for r in results}
    t = Table(title=f"Reachability VNI {vni}", title_justify="left",
              caption="rows: source, columns: destination; cells: avg RTT ms", caption_justify="left")
    t.add_column("src \\ dst")
    for d in dsts:
        t.add_column(d, justify="center")
    for s in srcs:
        cells: List[Text] = []
        for d in dsts:
            r = by_pair.get((s, d))
            if r is None:
                cells.append(Text("·", style="dim"))
                continue
            rtt = ((r.details.get("ping") or {}).get("rtt_ms_avg"))
            label = f"{rtt:.2f}" if r.outcome == "pass" and rtt is not None else MARK[r.outcome]
            cells.append(Text(label, style=STYLE[r.outcome]))
        t.add_row(s, *cells)
    return t


def _natural(s: Optional[str]) -> Tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s or ""))


