"""Kernel overlays: one row per kernel VXLAN device the hosts already run, with the MTU that
fits the measured paths."""

from __future__ import annotations

from typing import Any, List

from rich.table import Table
from rich.text import Text

from pytest_overlay.checks.kernel_overlays import owner
from pytest_overlay.models import Report
from pytest_overlay.report import STYLE


def section(report: Report) -> List[Any]:
    rows = [r for r in report.results if r.check == "kernel-overlays" and r.outcome != "skip"]
    if not rows:
        return []
    t = Table(title="Overlays already running (kernel VXLAN devices)", title_justify="left",
              caption="fits: smallest path MTU to the VNI's other hosts less the overhead; "
                      "-: not judged (metadata mode, or no path measured)", caption_justify="left")
    for col in ("host", "device", "made by", "VNI", "MTU", "fits", "verdict"):
        t.add_column(col, no_wrap=col in ("host", "verdict"), overflow="fold",
                     justify="right" if col in ("VNI", "MTU", "fits") else "left")
    for r in sorted(rows, key=lambda r: r.src or ""):
        for dev in r.details.get("devices") or []:
            bad = dev.get("judged") and int(dev.get("mtu") or 0) > int(dev.get("fits") or 0)
            verdict = "too high" if bad else "ok" if dev.get("judged") else "-"
            t.add_row(r.src or "?", str(dev.get("name")), owner(dev), str(dev.get("vni")),
                      str(dev.get("mtu")), str(dev.get("fits", "-")),
                      Text(verdict, style=STYLE["fail" if bad else "pass" if dev.get("judged")
                                                else "skip"]))
    return [t]
