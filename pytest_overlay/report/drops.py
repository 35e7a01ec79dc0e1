"""Kernel drops: one row per host, packets dropped for bad checksums and by rp_filter during
the audit and before, sockets that overflowed, and where rp_filter is strict."""

from __future__ import annotations

from typing import Any, Dict, List

from rich.table import Table
from rich.text import Text

from pytest_overlay.models import Report
from pytest_overlay.report import STYLE


def _n(groups: Any, group: str) -> str:
    if not isinstance(groups, dict):
        return "?"
    counts: Dict[str, int] = groups.get(group) or {}
    return str(sum(counts.values()))


def section(report: Report) -> List[Any]:
    rows = [r for r in report.results if r.check == "drops" and "counters" in r.details]
    if not rows:
        return []
    t = Table(title="Kernel drops", title_justify="left",
              caption="packets each host's kernel dropped for a bad checksum (corrupted on the "
                      "way or by a NIC's offload) and by reverse-path filtering: during the "
                      "audit / since the namespace began; UDP datagrams lost to full socket "
                      "buffers during the audit; interfaces where rp_filter is strict",
              caption_justify="left")
    for col in ("host", "bad checksums", "rp_filter drops", "socket full", "strict rp_filter",
                "outcome"):
        t.add_column(col, no_wrap=col in ("host", "outcome"), overflow="fold",
                     justify="left" if col in ("host", "strict rp_filter", "outcome") else "right")
    for r in sorted(rows, key=lambda r: r.src or ""):
        d = r.details
        during, now = d.get("during_audit"), d.get("counters")
        strict = [k for k, v in (d.get("rp_filter") or {}).items() if v == "strict"]
        t.add_row(r.src or "?", f"{_n(during, 'checksum')} / {_n(now, 'checksum')}",
                  f"{_n(during, 'rp_filter')} / {_n(now, 'rp_filter')}", _n(during, "rcvbuf"),
                  ", ".join(strict) or "-", Text(r.outcome, style=STYLE[r.outcome]))
    return [t]
