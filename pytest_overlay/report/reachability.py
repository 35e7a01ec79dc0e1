"""Reachability: a source x destination matrix per VNI (avg RTT, or what went wrong)."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

from rich.console import Console, ConsoleOptions, RenderResult
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
            out.append(Matrix(rows, vni))
    return out


class Matrix:
    """The source x destination matrix of one VNI, cut into as many tables (by destination
    columns) as the terminal's width needs: a cell cut to an ellipsis would hide a FAIL."""

    CORNER = "src \\ dst"

    def __init__(self, results: List[CheckResult], vni: Optional[int]) -> None:
        self.vni = vni
        self.srcs = sorted({r.src for r in results if r.src}, key=_natural)
        self.dsts = sorted({r.dst for r in results if r.dst}, key=_natural)
        by_pair = {(r.src, r.dst): r for r in results}
        self.cells: Dict[Tuple[str, str], Text] = {}
        for s in self.srcs:
            for d in self.dsts:
                r = by_pair.get((s, d))
                if r is None:
                    self.cells[(s, d)] = Text("·", style="dim")
                    continue
                rtt = ((r.details.get("ping") or {}).get("rtt_ms_avg"))
                label = f"{rtt:.2f}" if r.outcome == "pass" and rtt is not None else MARK[r.outcome]
                self.cells[(s, d)] = Text(label, style=STYLE[r.outcome])

    def chunks(self, width: int) -> List[List[str]]:
        """Destinations in groups whose table fits ``width`` (at least one per group)."""
        # A column costs its content, one space each side and one border; the table one more.
        first = max(len(self.CORNER), *(len(s) for s in self.srcs)) + 3 + 1
        out: List[List[str]] = [[]]
        used = first
        for d in self.dsts:
            w = max(len(d), *(self.cells[(s, d)].cell_len for s in self.srcs)) + 3
            if out[-1] and used + w > width:
                out.append([])
                used = first
            out[-1].append(d)
            used += w
        return out

    def table(self, dsts: List[str], part: str = "", last: bool = True) -> Table:
        t = Table(title=f"Reachability VNI {self.vni}{part}", title_justify="left",
                  caption="rows: source, columns: destination; cells: avg RTT ms" if last else None,
                  caption_justify="left")
        t.add_column(self.CORNER, no_wrap=True)
        for d in dsts:
            t.add_column(d, justify="center", no_wrap=True)
        for s in self.srcs:
            t.add_row(s, *(self.cells[(s, d)] for d in dsts))
        return t

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        groups = self.chunks(options.max_width)
        for i, dsts in enumerate(groups):
            part = f" (destinations {dsts[0]}..{dsts[-1]})" if len(groups) > 1 else ""
            yield self.table(dsts, part, last=i == len(groups) - 1)


def _natural(s: Optional[str]) -> Tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s or ""))


