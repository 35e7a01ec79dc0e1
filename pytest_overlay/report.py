"""The only module that renders: rich tables for pytest's terminal summary, and the JSON report."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Dict, List, Optional

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pytest_overlay.models import CheckResult, Report

_STYLE = {"pass": "green", "fail": "bold red", "error": "bold magenta", "skip": "yellow"}
_MARK = {"pass": "ok", "fail": "FAIL", "error": "ERR", "skip": "skip"}


def report_schema() -> Dict[str, object]:
    schema = Report.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pytest-overlay report"
    return schema


def write_json(report: Report, path: Path) -> None:
    path.write_text(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")


def _hosts_table(report: Report) -> Table:
    t = Table(title="Hosts", title_justify="left", expand=False)
    for col in ("host", "underlay", "via", "status", "agent", "python", "drops", "note"):
        t.add_column(col)
    for h in sorted(report.hosts, key=lambda h: (h.status == "ok", h.name)):
        drops = sum((h.counters.get("drops") or {}).values()) if h.counters else 0
        t.add_row(
            h.name, h.underlay, h.transport,
            Text(h.status, style="green" if h.status == "ok" else "bold red"),
            h.agent_version or "-", str(h.capabilities.get("python", "-")),
            str(drops), h.error or "",
        )
    return t


def _matrix(results: List[CheckResult], vni: Optional[int]) -> Table:
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
            label = f"{rtt:.2f}" if r.outcome == "pass" and rtt is not None else _MARK[r.outcome]
            cells.append(Text(label, style=_STYLE[r.outcome]))
        t.add_row(s, *cells)
    return t


def _failures(results: List[CheckResult]) -> Table:
    t = Table(title="Failures", title_justify="left", show_lines=False)
    t.add_column("check")
    t.add_column("test id")
    t.add_column("outcome")
    t.add_column("why", overflow="fold")
    for r in results:
        t.add_row(r.check, r.test_id, Text(r.outcome, style=_STYLE[r.outcome]), r.message)
    return t


def _natural(s: Optional[str]) -> tuple:
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s or ""))


def render(report: Report, width: int = 100, color: bool = False) -> str:
    """The terminal summary as text (ANSI colours only when ``color``)."""
    buf = io.StringIO()
    console = Console(file=buf, width=max(width, 40), force_terminal=color, no_color=not color,
                      color_system="standard" if color else None, highlight=False,
                      soft_wrap=False, emoji=False)
    console.print(_hosts_table(report))
    reach = [r for r in report.results if r.check == "reachability"]
    for vni in sorted({r.vni for r in reach if r.vni is not None}):
        rows = [r for r in reach if r.vni == vni]
        # A matrix stays readable up to ~24 hosts; beyond that the failures list says it all.
        if len({r.src for r in rows}) <= 24:
            console.print(_matrix(rows, vni))
    bad = [r for r in report.results if r.outcome in ("fail", "error")]
    if bad:
        console.print(_failures(bad))
    s = report.summary
    line = ", ".join(f"{s.get(k, 0)} {k}" for k in ("pass", "fail", "error", "skip") if s.get(k))
    console.print(f"overlay: {line or 'no checks ran'} (run {report.run_prefix})")
    return buf.getvalue()
