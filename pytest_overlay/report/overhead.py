"""Encapsulation overhead per endpoint pair: largest inner packet vs the underlay path MTU."""

from __future__ import annotations

from typing import Any, List

from rich.table import Table
from rich.text import Text

from pytest_overlay.models import Report
from pytest_overlay.report import STYLE, failures_first


def section(report: Report) -> List[Any]:
    rows = [r for r in report.results if r.check == "overhead"]
    if not rows:
        return []
    t = Table(title="Encapsulation overhead", title_justify="left",
              caption="inner: largest inner IP packet that crossed (DF); overhead = path MTU - "
                      "inner; outer: wire size of a full-size inner packet", caption_justify="left")
    for col in ("src", "dst", "inner", "path MTU", "overhead", "expected", "outer", "note"):
        t.add_column(col, justify="left" if col in ("src", "dst", "note") else "right")
    for r in failures_first(rows):
        d = r.details
        if d.get("fragmented"):
            note = "outer fragmented by the VTEP"
        elif d.get("inner_max") and d.get("inner_max") == d.get("inner_mtu"):
            note = "inner MTU reached first"
        else:
            note = "" if r.outcome == "pass" else r.message[:50]
        t.add_row(r.src or "", r.dst or "", str(d.get("inner_max") or "-"),
                  str(d.get("path_mtu") or "-"),
                  Text(str(d["overhead"]) if d.get("overhead") is not None else (
                      f"<={d['overhead_max']}" if d.get("overhead_max") else "-"),
                      style=STYLE[r.outcome]),
                  str(d.get("expected", "-")), str(d.get("outer_full_frame", "-")), note)
    return [t]
