"""Control plane: every Raft replica is identical (same commit index, same table) in time.

One result per host (test id = host name). A replica passes when, within ``DEADLINE`` seconds,
it knows a leader, has applied everything the most advanced replica committed and its table
digest equals the leader's. With ``--overlay-control-plane=static`` there is nothing to check.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any, Dict, List, Optional

from pytest_overlay.errors import OverlayError
from pytest_overlay.models import CheckResult, RunPlan

NAME = "control-plane"
DEADLINE = 10.0


def test_ids(plan: RunPlan) -> List[str]:
    return [h.name for h in plan.hosts]


async def _statuses(session: Any) -> Dict[str, Any]:
    async def one(host: str) -> Any:
        try:
            return await session.client(host).call("raft_status", rpc_timeout=5)
        except OverlayError as e:
            return e

    hosts = [h.name for h in session.plan.hosts if session.hosts[h.name].ok]
    got = await asyncio.gather(*(one(h) for h in hosts))
    return dict(zip(hosts, got))


def _reference(statuses: Dict[str, Any]) -> Dict[str, Any]:
    good = [s for s in statuses.values() if isinstance(s, dict)]
    leaders = [s for s in good if s.get("role") == "leader"]
    top = max((s.get("commit_index") or 0 for s in good), default=0)
    if leaders:
        digest = max(leaders, key=lambda s: s.get("term") or 0)["digest"]
    else:
        digest = Counter(s["digest"] for s in good).most_common(1)[0][0] if good else None
    return {"commit_index": top, "digest": digest, "leaders": len(leaders)}


def _converged(statuses: Dict[str, Any]) -> bool:
    ref = _reference(statuses)
    return ref["leaders"] >= 1 and all(
        isinstance(s, dict) and s.get("leader") and s.get("digest") == ref["digest"]
        and (s.get("last_applied") or 0) >= ref["commit_index"]
        for s in statuses.values())


def judge(host: str, status: Any, ref: Dict[str, Any]) -> CheckResult:
    base: Dict[str, Any] = {"check": NAME, "src": host}
    if isinstance(status, OverlayError):
        return CheckResult(**base, outcome="error", message=status.message)
    lag = max(0, ref["commit_index"] - (status.get("last_applied") or 0))
    details = {k: status.get(k) for k in ("role", "voter", "term", "leader", "commit_index",
                                          "last_applied", "table_size", "digest", "security",
                                          "rejected_frames", "last_rejection")}
    details["lag"] = lag
    details["reference_digest"] = ref["digest"]
    if not status.get("leader"):
        outcome, msg = "fail", (f"replica on {host} knows no Raft leader (term {status.get('term')},"
                                f" connected to {status.get('connected')} of the other voters): "
                                "check its underlay link and the Raft port")
    elif status.get("digest") != ref["digest"]:
        outcome, msg = "fail", (f"replica on {host} differs from the leader's (digest "
                                f"{status.get('digest')} != {ref['digest']}, lag {lag} entries)")
    elif lag:
        outcome, msg = "fail", f"replica on {host} is {lag} entries behind the commit index"
    else:
        size = status.get("table_size") or {}
        outcome, msg = "pass", (f"{status.get('role')}, term {status.get('term')}, commit index "
                                f"{status.get('commit_index')}, {size.get('endpoints', 0)} "
                                f"endpoints, identical to the leader ({status.get('security')})")
    return CheckResult(**base, outcome=outcome, message=msg, details=details)  # type: ignore[arg-type]


async def run(session: Any) -> List[CheckResult]:
    if getattr(session, "control_plane", "raft") != "raft":
        return [CheckResult(check=NAME, src=h.name, outcome="skip",
                            message="static control plane: the controller pushed the mappings")
                for h in session.plan.hosts]
    t0 = time.monotonic()
    statuses: Dict[str, Any] = {}
    while True:
        statuses = await _statuses(session)
        if _converged(statuses) or time.monotonic() - t0 > DEADLINE:
            break
        await asyncio.sleep(0.1)
    ref = _reference(statuses)
    waited = round((time.monotonic() - t0) * 1000, 1)
    out: List[CheckResult] = []
    for h in session.plan.hosts:
        st = session.hosts[h.name]
        status: Optional[Any] = statuses.get(h.name)
        if status is None or not st.ok:
            # Like reachability: a host lacking a capability is skipped, a broken one an error.
            out.append(CheckResult(check=NAME, src=h.name,
                                   outcome="skip" if getattr(st, "missing", None) else "error",
                                   message=f"host {h.name} is not available: "
                                           f"{st.error or 'agent down'}"))
            continue
        r = judge(h.name, status, ref)
        out.append(r.model_copy(update={"duration_ms": waited}))
    return out
