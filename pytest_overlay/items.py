"""pytest nodes for the built-in audit: one collector per check, one item per pair."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple, Union

import pytest

from pytest_overlay.models import CheckResult
from pytest_overlay.runner import OverlayRun


class CheckFailed(Exception):
    def __init__(self, result: CheckResult) -> None:
        super().__init__(result.message)
        self.result = result


class AuditCollector(pytest.Collector):
    """``overlay-audit``: holds one :class:`CheckCollector` per check family."""

    def __init__(self, *, run: OverlayRun, checks: List[str], **kw: Any) -> None:
        super().__init__(**kw)
        self.run = run
        self.checks = checks

    def collect(self) -> List[Union[pytest.Item, pytest.Collector]]:
        return [CheckCollector.from_parent(self, name=c, run=self.run) for c in self.checks]


class CheckCollector(pytest.Collector):
    def __init__(self, *, run: OverlayRun, **kw: Any) -> None:
        super().__init__(**kw)
        self.run = run

    def collect(self) -> List[Union[pytest.Item, pytest.Collector]]:
        return [AuditItem.from_parent(self, name=tid, run=self.run, check=self.name)
                for tid in self.run.test_ids(self.name)]


class AuditItem(pytest.Item):
    def __init__(self, *, run: OverlayRun, check: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.run = run
        self.check = check

    def runtest(self) -> None:
        result = self.run.result(self.check, self.name)
        self.user_properties.append(("outcome", result.outcome))
        if result.outcome == "skip":
            pytest.skip(result.message)
        if result.outcome in ("fail", "error"):
            raise CheckFailed(result)

    def repr_failure(self, excinfo: Any, style: Optional[str] = None) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, CheckFailed):
            r = excinfo.value.result
            return f"{r.check} {r.test_id}: {r.outcome}: {r.message}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> Tuple[str, Optional[int], str]:
        return ("overlay-audit", None, f"{self.check} {self.name}")


def audit_items(session: pytest.Session, run: OverlayRun, checks: List[str]) -> List[pytest.Item]:
    """The audit's items, announced through ``pytest_collectreport`` like collected ones."""
    root = AuditCollector.from_parent(session, name="overlay-audit", nodeid="overlay-audit",
                                      run=run, checks=checks)
    items: List[pytest.Item] = []
    for coll in root.collect():
        assert isinstance(coll, pytest.Collector)
        found: List[Union[pytest.Item, pytest.Collector]] = [
            i for i in coll.collect() if isinstance(i, pytest.Item)]
        session.ihook.pytest_collectreport(
            report=pytest.CollectReport(coll.nodeid, "passed", None, [*found]))
        items.extend(i for i in found if isinstance(i, pytest.Item))
    return items
