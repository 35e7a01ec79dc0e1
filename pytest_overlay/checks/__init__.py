"""Check families: what to probe between which endpoints, and how to judge the answers.

Each module exposes ``NAME``, ``test_ids(run_plan) -> list[str]`` (known before anything is
built, so pytest collects one test per pair) and ``async run(session) -> list[CheckResult]``.
``AUDIT`` is the built-in audit, in the order it runs and reports: the underlay first, then what
runs over it.
"""

from __future__ import annotations

import asyncio
import importlib
from types import ModuleType
from typing import Any, Awaitable, Callable, Dict, List, Optional, TypeVar

T = TypeVar("T")

CHECKS: Dict[str, str] = {
    "ports": "pytest_overlay.checks.ports",
    "reachability": "pytest_overlay.checks.reachability",
    "control-plane": "pytest_overlay.checks.control_plane",
    "pmtu": "pytest_overlay.checks.pmtu",
    "overhead": "pytest_overlay.checks.overhead",
    "mtu": "pytest_overlay.checks.mtu",
    "isolation": "pytest_overlay.checks.isolation",
    "neighbours": "pytest_overlay.checks.neighbours",
    "kernel-overlays": "pytest_overlay.checks.kernel_overlays",
    "conntrack": "pytest_overlay.checks.conntrack",
    "drops": "pytest_overlay.checks.drops",
    "clock": "pytest_overlay.checks.clock",
}

AUDIT: List[str] = ["ports", "pmtu", "overhead", "clock", "control-plane", "reachability",
                    "isolation", "mtu", "kernel-overlays", "neighbours", "conntrack", "drops"]
#: audit checks that run before the user's own tests (the underlay, before any overlay traffic)
BEFORE_TESTS: List[str] = ["ports"]


def once_per_session(cache: Any, session: Any, measure: Callable[[], Awaitable[T]]) -> Awaitable[T]:
    """Measure once per session and share the result with every check that asks (pmtu's path
    MTUs feed overhead and mtu): concurrent callers wait for the same measurement."""
    async def run() -> T:
        fut = cache.get(session)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            cache[session] = fut
            try:
                fut.set_result(await measure())
            except BaseException as e:
                fut.set_exception(e)
                raise
        return await asyncio.shield(fut)

    return run()


def per_host(session: Any, name: str, start: Dict[str, Any], end: Dict[str, Any],
             judge: Callable[[str, Any, Any], Any]) -> List[Any]:
    """One result per host of a check that compares a reading taken when the overlay came up
    (``start``) with one taken now (``end``), both host -> reading: ``judge(host, start,
    end)``, or the host's unavailability (an error or a skip) where it has no reading now."""
    from pytest_overlay.models import CheckResult

    out: List[Any] = []
    for h in session.plan.hosts:
        why = session.unavailable(h.name)
        got: Optional[Any] = end.get(h.name)
        if why is not None or got is None:
            outcome, msg = why or ("error", f"host {h.name} did not answer")
            out.append(CheckResult(check=name, src=h.name, outcome=outcome,  # type: ignore[arg-type]
                                   message=msg))
            continue
        out.append(judge(h.name, start.get(h.name), got))
    return out


def get(name: str) -> ModuleType:
    try:
        return importlib.import_module(CHECKS[name])
    except KeyError:
        raise KeyError(f"unknown check {name!r}; known: {', '.join(CHECKS)}") from None
