"""Clocks: one row per host, its offset from the controller's clock and from the others'."""

from __future__ import annotations

from typing import Any, List

from rich.table import Table
from rich.text import Text

from pytest_overlay.models import Report
from pytest_overlay.report import STYLE


def _ms(x: Any) -> str:
    return "?" if x is None else f"{float(x) * 1000:+.1f}"


def section(report: Report) -> List[Any]:
    rows = [r for r in report.results if r.check == "clock" and "offset_s" in r.details]
    if not rows:
        return []
    t = Table(title="Clocks", title_justify="left",
              caption="ms from the controller's clock and from the others' (the median of the "
                      "hosts and the controller), give or take half the fastest round trip; "
                      f"tolerance {rows[0].details.get('tolerance_s', 1.0):g} s; NTP: whether "
                      "the kernel has the clock synchronised", caption_justify="left")
    for col in ("host", "vs controller", "vs others", "±", "NTP", "outcome"):
        t.add_column(col, no_wrap=True, justify="left" if col in ("host", "NTP", "outcome")
                     else "right")
    for r in sorted(rows, key=lambda r: r.src or ""):
        d = r.details
        ntp = "?" if "synchronised" not in d else ("yes" if d["synchronised"] else "no")
        t.add_row(r.src or "?", _ms(d.get("offset_s")), _ms(d.get("skew_s")),
                  f"{float(d.get('error_s', 0)) * 1000:.1f}", ntp,
                  Text(r.outcome, style=STYLE[r.outcome]))
    return [t]
