"""The only package that renders: rich tables for pytest's terminal summary, and the JSON report.

One module per check family adds its section (``SECTIONS``, in the order they print: underlay
first, then what runs over it); hosts come first and failures last.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Callable, Dict, List

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pytest_overlay.models import CheckResult, Report

STYLE = {"pass": "green", "fail": "bold red", "error": "bold magenta", "skip": "yellow"}
#: Tables list failures first, then errors, skips, passes.
OUTCOME_ORDER = {"fail": 0, "error": 1, "skip": 2, "pass": 3}


def failures_first(results: List[CheckResult],
                   then: Callable[[CheckResult], Any] = lambda r: r.test_id) -> List[CheckResult]:
    """``results`` by outcome (failures first), then by ``then`` (the test id)."""
    return sorted(results, key=lambda r: (OUTCOME_ORDER.get(r.outcome, 9), then(r)))
MARK = {"pass": "ok", "fail": "FAIL", "error": "ERR", "skip": "skip"}


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
        # What identifies a host never shrinks; the rest gives way on a narrow terminal.
        essential = col in ("host", "underlay", "status")
        t.add_column(col, no_wrap=essential, min_width=None if not essential else len(col),
                     overflow="fold" if col == "note" else "ellipsis")
    for h in sorted(report.hosts, key=lambda h: (h.status == "ok", h.name)):
        drops = sum((h.counters.get("drops") or {}).values()) if h.counters else 0
        t.add_row(
            h.name, h.underlay, h.transport,
            Text(h.status, style="green" if h.status == "ok" else "bold red"),
            h.agent_version or "-", str(h.capabilities.get("python", "-")),
            str(drops), h.error or _ssh_note(h.ssh),
        )
    return t


def _ssh_note(ssh: Dict[str, Any]) -> str:
    if ssh.get("host_key") == "accepted-new":
        return "NEW host key accepted"
    return ""


def _failures(results: List[CheckResult]) -> Table:
    t = Table(title="Failures", title_justify="left", show_lines=False)
    t.add_column("check")
    t.add_column("test id")
    t.add_column("outcome")
    t.add_column("why", overflow="fold")
    for r in results:
        t.add_row(r.check, Text(r.test_id), Text(r.outcome, style=STYLE[r.outcome]), Text(r.message))
    return t


def _sections() -> List[Callable[[Report], List[Any]]]:
    from pytest_overlay.report import (
        clock,
        conntrack,
        control_plane,
        drops,
        isolation,
        kernel_overlays,
        mtu,
        neighbours,
        overhead,
        pmtu,
        ports,
        reachability,
    )

    return [ports.section, pmtu.section, overhead.section, clock.section, control_plane.section,
            reachability.section, isolation.section, mtu.section, kernel_overlays.section,
            neighbours.section, conntrack.section, drops.section]


def text_console(buf: io.StringIO, width: int = 100, color: bool = False) -> Console:
    """A console that writes into ``buf`` as pytest's terminal would: ``width`` columns (40
    at least), ANSI colours only when ``color``, nothing guessed from the environment."""
    return Console(file=buf, width=max(width, 40), force_terminal=color, no_color=not color,
                   color_system="standard" if color else None, highlight=False,
                   soft_wrap=False, emoji=False)


def render(report: Report, width: int = 100, color: bool = False) -> str:
    """The terminal summary as text (ANSI colours only when ``color``)."""
    buf = io.StringIO()
    _print(text_console(buf, width, color), report)
    return buf.getvalue()


def render_html(report: Report, width: int = 120) -> str:
    """The same tables as one self-contained HTML page (inline styles, the outcomes in colour),
    to attach to a ticket or keep as a CI artifact."""
    console = Console(file=io.StringIO(), width=width, record=True, force_terminal=True,
                      color_system="standard", highlight=False, soft_wrap=False, emoji=False)
    _print(console, report)
    return console.export_html(inline_styles=True)


def _print(console: Console, report: Report) -> None:
    console.print(_hosts_table(report))
    for h in report.hosts:
        if h.ssh.get("host_key") == "accepted-new":
            console.print(f"host {h.name}: new host key {h.ssh.get('host_key_fingerprint')} accepted "
                          "and added to known_hosts (--overlay-accept-new-hostkeys)",
                          style="yellow", overflow="fold")
    for section in _sections():
        for renderable in section(report):
            console.print(renderable)
    bad = [r for r in report.results if r.outcome in ("fail", "error")]
    if bad:
        console.print(_failures(bad))
    s = report.summary
    line = ", ".join(f"{s.get(k, 0)} {k}" for k in ("pass", "fail", "error", "skip") if s.get(k))
    console.print(f"overlay: {line or 'no checks ran'} (run {report.run_prefix})")
