"""Connection tracking: one row per host whose kernel tracks connections (fill, cap, losses
during the audit and before)."""

from __future__ import annotations

from typing import Any, List

from rich.table import Table
from rich.text import Text

from pytest_overlay.models import Report
from pytest_overlay.report import STYLE


def _losses(d: Any) -> str:
    if not isinstance(d, dict):
        return "?"
    parts = [f"{v} {k}" for k, v in d.items() if v]
    return ", ".join(parts) if parts else "0"


def section(report: Report) -> List[Any]:
    rows = [r for r in report.results
            if r.check == "conntrack" and r.details.get("present") and "count" in r.details]
    if not rows:
        return []
    t = Table(title="Connection tracking", title_justify="left",
              caption="tracked: entries in the host's conntrack table (its network namespace's); "
                      "cap: nf_conntrack_max; lost: new connections dropped (drop), unanswered "
                      "flows evicted to make room (early_drop), packets lost to insert races "
                      "(insert_failed), during the audit and since the table began",
              caption_justify="left")
    for col in ("host", "tracked", "cap", "fill", "lost in audit", "lost before", "outcome"):
        t.add_column(col, no_wrap=col in ("host", "outcome"), overflow="fold",
                     justify="left" if col in ("host", "outcome", "lost in audit", "lost before")
                     else "right")
    for r in sorted(rows, key=lambda r: r.src or ""):
        d = r.details
        fill = d.get("fill")
        t.add_row(r.src or "?", str(d["count"]), str(d.get("max", "?")),
                  "?" if fill is None else f"{100 * fill:.1f} %",
                  _losses(d.get("during_audit")),
                  _losses({k: d.get(k, 0) for k in ("drop", "early_drop", "insert_failed")}),
                  Text(r.outcome, style=STYLE[r.outcome]))
    return [t]
