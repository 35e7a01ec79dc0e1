"""VNI isolation: one row per probe direction and VNI, plus the counter verdicts; failures first."""

from __future__ import annotations

from typing import Any, List

from rich.table import Table
from rich.text import Text

from pytest_overlay.models import CheckResult, Report
from pytest_overlay.report import STYLE, failures_first


def table(results: List[CheckResult]) -> Table:
    t = Table(title="VNI isolation", title_justify="left",
              caption="marked UDP sent on one VNI to an address that also exists on the other; "
                      "leaks: endpoints of the other VNI that received it", caption_justify="left")
    for col in ("pair", "VNI", "delivered", "leaks", "outcome"):
        t.add_column(col)
    for r in failures_first(results, lambda r: (r.dst is not None, r.vni or 0, r.test_id)):
        d = r.details or {}
        if "counter_deltas" in d:
            delivered = "-"
            rx, tx = d.get("silent_rx_packets", 0), d.get("silent_tx_packets", 0)
            leaks = (f"received {rx} > sent {tx}" if rx > tx
                     else f"none (own traffic: sent {tx}, received {rx})" if rx or tx
                     else "none (counters still)")
        else:
            delivered = "yes" if d.get("delivered") else "no"
            leaks = ", ".join(d.get("leaks") or []) or "none"
        pair = f"{r.src}->{r.dst}" if r.dst else "VTEP counters (all hosts)"
        t.add_row(Text(pair), str(r.vni), delivered, Text(leaks),
                  Text(r.outcome, style=STYLE[r.outcome]))
    return t


def section(report: Report) -> List[Any]:
    rows = [r for r in report.results if r.check == "isolation"]
    return [table(rows)] if rows else []
