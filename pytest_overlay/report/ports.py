"""Underlay ports: one row per ordered host pair, a column per probe, failures first."""

from __future__ import annotations

from typing import Any, Dict, List

from rich.table import Table
from rich.text import Text

from pytest_overlay.models import CheckResult, Report
from pytest_overlay.report import STYLE, failures_first

KINDS = ("vxlan", "udp", "raft", "ssh")
HEAD = {"vxlan": "VXLAN", "udp": "UDP (random)", "raft": "Raft/tcp", "ssh": "SSH/tcp"}


def _cell(probe: Dict[str, Any], kind: str, asym: List[str]) -> Text:
    if not probe:
        return Text("-", style="dim")
    v = str(probe.get("verdict", "?"))
    if kind in ("vxlan", "udp") or (probe.get("proto") == "udp" and v != "unverified"):
        label = "ok" if v == "pass" else f"{v} {probe.get('received', 0)}/{probe.get('sent', 0)}"
    else:
        label = "open" if v == "pass" else v
    if probe.get("observed") == "interface":
        label += "*"
    if kind in asym:
        label += " (asym)"
    style = (STYLE["pass"] if v == "pass" else STYLE["skip"] if v in ("lossy", "unverified")
             else STYLE["fail"])
    return Text(label, style=style)


def table(results: List[CheckResult]) -> Table:
    ports: Dict[str, Any] = {}
    for r in results:
        for k, p in ((r.details or {}).get("probes") or {}).items():
            ports.setdefault(k, p.get("port"))
    extra = [k for k in ports if k not in KINDS]  # --overlay-ports, keyed "PORT/PROTO"
    seen_at_nic = any(p.get("observed") == "interface" for r in results
                      for p in ((r.details or {}).get("probes") or {}).values())
    t = Table(title="Underlay ports", title_justify="left",
              caption="per ordered host pair, before any overlay traffic; (asym): the reverse "
                      "direction passes"
                      + ("; *: seen arriving on the receiver's interface (another program "
                         "holds the port there)" if seen_at_nic else ""),
              caption_justify="left")
    t.add_column("src")
    t.add_column("dst")
    for k in KINDS:
        t.add_column(f"{HEAD[k]} {ports.get(k, '')}".strip(), justify="center")
    for k in extra:
        t.add_column(k.replace("/", " "), justify="center")  # wraps as "2377" / "tcp"
    t.add_column("outcome")
    for r in failures_first(results, lambda r: (r.src or "", r.dst or "")):
        probes = (r.details or {}).get("probes") or {}
        asym = list((r.details or {}).get("asymmetric") or [])
        cells = [_cell(probes.get(k) or {}, k, asym) for k in (*KINDS, *extra)]
        t.add_row(Text(r.src or ""), Text(r.dst or ""), *cells,
                  Text(r.outcome, style=STYLE[r.outcome]))
    return t


def section(report: Report) -> List[Any]:
    rows = [r for r in report.results if r.check == "ports"]
    return [table(rows)] if rows else []
