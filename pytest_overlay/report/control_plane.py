"""Control plane: one row per Raft replica (role, term, commit index, lag, table size)."""

from __future__ import annotations

from typing import Any, List

from rich.table import Table
from rich.text import Text

from pytest_overlay.models import Report
from pytest_overlay.report import STYLE

#: Columns that keep their full width on a narrow terminal; the others fold onto a second line.
_ESSENTIAL = ("host", "role", "outcome")


def section(report: Report) -> List[Any]:
    rows = [r for r in report.results if r.check == "control-plane" and r.outcome != "skip"]
    if not rows:
        return []
    security = sorted({str(r.details.get("security")) for r in rows if r.details.get("security")})
    t = Table(title="Control plane (Raft)", title_justify="left",
              caption=f"authentication: {', '.join(security) or '?'}; table: hosts/endpoints in "
                      "the replica's table; refused: Raft frames that did not authenticate",
              caption_justify="left")
    for col in ("host", "role", "term", "commit", "lag", "table", "digest", "refused", "outcome"):
        t.add_column(col, no_wrap=col in _ESSENTIAL, overflow="fold",
                     justify="right" if col in ("term", "commit", "lag", "refused") else "left")
    for r in sorted(rows, key=lambda r: r.src or ""):
        d = r.details
        size = d.get("table_size") or {}
        t.add_row(
            r.src or "?", str(d.get("role", "-")), str(d.get("term", "-")),
            str(d.get("commit_index", "-")), str(d.get("lag", "-")),
            f"{size.get('members', '-')}/{size.get('endpoints', '-')}",
            str(d.get("digest", "-"))[:8], str(d.get("rejected_frames", "-")),
            Text(r.outcome, style=STYLE[r.outcome]),
        )
    return [t]
