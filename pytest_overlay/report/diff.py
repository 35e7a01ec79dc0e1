"""Two reports side by side: what broke, what was fixed, what still fails.

``pytest-overlay diff OLD.json NEW.json`` answers the question after a change (an MTU set, a
firewall rule opened, a node added) or between two CI runs: results are matched by check and
test id (``pmtu h1->h3``, ``reachability h1->h2[vni=4096]``), and each pair of outcomes falls
into one group; a result whose outcome stayed while its key figure moved (a path MTU, the
overhead) is "moved". The exit status is 1 when something broke (a result that passed or was skipped
now fails or errs, or a new one fails), else 0, so a pipeline can gate on it.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from pydantic import ValidationError
from rich.table import Table
from rich.text import Text

from pytest_overlay.errors import ConfigError
from pytest_overlay.models import CheckResult, Report
from pytest_overlay.report import STYLE, text_console

BAD = ("fail", "error")
Key = Tuple[str, str]
Row = Tuple[Key, Optional[CheckResult], Optional[CheckResult]]
#: the groups, in the order they are shown
GROUPS = ("broke", "fixed", "still failing", "changed", "moved", "new", "gone")
#: per check, the figure (a key of ``details``) whose move is news even when the outcome stays:
#: a path MTU that shrank but still carries the overlay, a different overhead
FIGURES = {"pmtu": "pmtu", "mtu": "min_path_mtu", "overhead": "overhead"}


def load(path: Path) -> Report:
    """A report file; a :class:`ConfigError` names the file and what is wrong with it."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such report", "give the file --overlay-report wrote") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a JSON report ({e})",
                          "give the file --overlay-report wrote") from None
    try:
        return Report.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"{path}: not a pytest-overlay report: {where}: {first['msg']}",
                          "give the file --overlay-report wrote (schema: pytest-overlay "
                          "schema)") from None


def _key(r: CheckResult) -> Key:
    return (r.check, r.test_id)


def group(old: Optional[CheckResult], new: Optional[CheckResult]) -> str:
    if old is None:
        return "new"
    if new is None:
        return "gone"
    if new.outcome in BAD:
        return "still failing" if old.outcome in BAD else "broke"
    if old.outcome in BAD:
        return "fixed" if new.outcome == "pass" else "changed"
    if old.outcome != new.outcome:
        return "changed"
    key = FIGURES.get(new.check)
    if key is not None:
        was, now = old.details.get(key), new.details.get(key)
        # a figure one run could not measure (the overhead, with room to spare) is no news
        if was is not None and now is not None and was != now:
            return "moved"
    return "same"


def _figure(r: Optional[CheckResult]) -> str:
    key = FIGURES.get(r.check) if r is not None else None
    return "-" if r is None or key is None else f"{key} {r.details.get(key)}"


def compare(old: Report, new: Report) -> Dict[str, List[Row]]:
    """Rows (key, old result, new result) per group; ``same`` holds the unchanged ones."""
    before = {_key(r): r for r in old.results}
    after = {_key(r): r for r in new.results}
    out: Dict[str, List[Row]] = {g: [] for g in (*GROUPS, "same")}
    for key in [*before, *(k for k in after if k not in before)]:
        a, b = before.get(key), after.get(key)
        out[group(a, b)].append((key, a, b))
    return out


def broke(groups: Dict[str, List[Row]]) -> bool:
    """Whether the new report is worse: a result broke, or a new one fails."""
    return bool(groups["broke"]) or any(b is not None and b.outcome in BAD
                                        for _, _, b in groups["new"])


def _outcome(r: Optional[CheckResult]) -> Text:
    return Text("-") if r is None else Text(r.outcome, style=STYLE[r.outcome])


def render(old: Report, new: Report, groups: Dict[str, List[Row]], width: int = 100,
           color: bool = False) -> str:
    buf = io.StringIO()
    console = text_console(buf, width, color)
    console.print(f"old: run {old.run_prefix} ({old.mode}, {old.finished_at}), "
                  f"{len(old.results)} results; new: run {new.run_prefix} ({new.mode}, "
                  f"{new.finished_at}), {len(new.results)} results")
    for name in ("broke", "fixed", "still failing", "changed", "moved"):
        rows = groups[name]
        if not rows:
            continue
        t = Table(title=f"{name.capitalize()} ({len(rows)})", title_justify="left")
        for col in ("check", "test id", "was", "now", "why (now)"):
            t.add_column(col, no_wrap=col in ("check", "was", "now"), overflow="fold")
        for (check, tid), a, b in rows:
            was, now = ((_figure(a), _figure(b)) if name == "moved"
                        else (_outcome(a), _outcome(b)))
            t.add_row(check, Text(tid), was, now, Text(b.message if b else ""))
        console.print(t)
    for name in ("new", "gone"):
        rows = groups[name]
        if rows:
            counts = Counter((key[0], r.outcome) for key, a, b in rows
                             for r in ([b] if name == "new" else [a]) if r is not None)
            what = ", ".join(f"{check} {n} {outcome}"
                             for (check, outcome), n in sorted(counts.items()))
            where = "only in the new report" if name == "new" else "only in the old report"
            console.print(f"{len(rows)} results {where}: {what}")
    parts = [f"{len(groups[g])} {g}" for g in GROUPS if groups[g]]
    console.print(f"diff: {', '.join(parts) or 'no change'}; {len(groups['same'])} the same")
    return buf.getvalue()
