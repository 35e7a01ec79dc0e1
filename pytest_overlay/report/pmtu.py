"""Path MTU per ordered host pair: verdict, PMTU, who said so (PTB) or where packets vanish."""

from __future__ import annotations

from typing import Any, List

from rich.table import Table
from rich.text import Text

from pytest_overlay.models import Report
from pytest_overlay.report import STYLE, failures_first


def section(report: Report) -> List[Any]:
    rows = [r for r in report.results if r.check == "pmtu"]
    if not rows:
        return []
    t = Table(title="Underlay path MTU", title_justify="left",
              caption="per ordered host pair; 'evidence': who reported the MTU (ICMP), or the hop "
                      "after which large packets vanish; 'fragments': whether IPv4 fragments of "
                      "full-size packets cross (senders without DF)", caption_justify="left")
    for col in ("src", "dst", "verdict", "PMTU", "evidence", "ms"):
        t.add_column(col, justify="right" if col in ("PMTU", "ms") else "left")
    for r in failures_first(rows):
        d = r.details
        hop = d.get("hop") or {}
        if d.get("ptb_mtu"):
            ev = f"PTB {d['ptb_mtu']} from {d.get('ptb_from')}"
        elif hop.get("address"):
            ev = f"vanish after hop {hop['ttl']} {hop['address']}" + (
                f" -> {hop['next']}" if hop.get("next") else "")
        elif d.get("verdict") == "blackhole":
            ev = "vanish before the first router"
        elif d.get("verdict") in ("ok", "local-limit"):
            ev = f"full size passes (local MTU {d.get('local_mtu')})"
        else:
            c = d.get("controls") or []
            ev = f"controls {c[1]}/{c[0]} back" if len(c) == 2 else r.message[:60]
        if d.get("fragments") is not None:  # what a sender without DF meets (pmtu step 4)
            ev += "; fragments " + ("pass" if d["fragments"] else "dropped")
        t.add_row(r.src or "", r.dst or "", Text(str(d.get("verdict") or r.outcome),
                                                 style=STYLE[r.outcome]),
                  str(d.get("pmtu") or "-"), ev, f"{r.duration_ms:.0f}")
    return [t]
