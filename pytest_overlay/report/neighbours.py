"""Neighbour tables: one row per host and table (ARP, NDP), or one per table when the hosts
are a local lab's and share the machine's kernel."""

from __future__ import annotations

from typing import Any, List

from rich.table import Table
from rich.text import Text

from pytest_overlay.checks.neighbours import TABLES
from pytest_overlay.models import Report
from pytest_overlay.report import STYLE


def section(report: Report) -> List[Any]:
    rows = [r for r in report.results if r.check == "neighbours" and r.details.get("visible")]
    if not rows:
        return []
    shared = all(r.details.get("shared") for r in rows)
    if shared:  # one kernel: every host's row would be the same
        rows = rows[:1]
    t = Table(title="Neighbour tables", title_justify="left",
              caption="entries: all the table holds (the permanent ones too); cap: gc_thresh3; "
                      "evict at: gc_thresh2; audit, boot: new neighbours that did not fit "
                      "(overflows) during the audit, and since boot"
                      + ("; one kernel for all the lab's hosts" if shared else ""),
              caption_justify="left")
    for col in ("host", "table", "entries", "evict at", "cap", "audit", "boot", "outcome"):
        t.add_column(col, no_wrap=col in ("host", "table", "outcome"), overflow="fold",
                     justify="left" if col in ("host", "table", "outcome") else "right")
    for r in sorted(rows, key=lambda r: r.src or ""):
        for name, d in sorted(r.details.get("tables", {}).items()):
            during = d.get("table_fulls_during_audit")
            t.add_row("all" if shared else (r.src or "?"), TABLES.get(name, (name,))[0],
                      str(d["entries"]), str(d["gc_thresh2"]), str(d["gc_thresh3"]),
                      "?" if during is None else str(during), str(d["table_fulls"]),
                      Text(r.outcome, style=STYLE[r.outcome]))
    return [t]
