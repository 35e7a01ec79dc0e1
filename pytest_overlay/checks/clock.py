"""Clocks: do the hosts agree on the time, and does an NTP daemon keep each one right?

One result per host (test id = host name). Cluster members compare wall-clock times: TLS
between them (Swarm's mutual TLS, Kubernetes, etcd) checks certificates against it, etcd and
Raft implementations warn when peers drift apart by a second, and this run's own Raft
transport refuses a peer more than 120 s away. A host whose clock has wandered breaks the
control plane in ways that look like network faults.

The controller asks each agent for its time a few times and keeps the sample with the shortest
round trip: offset = agent's time - the midpoint of the round trip, give or take half of it.
The reference is the median of the hosts' offsets and the controller's own (zero), so one
wrong clock, the controller's included, stands out against the rest. A host more than
:data:`TOLERANCE` from the reference (beyond the measurement's own error) fails. Whether the
kernel has the clock synchronised (``adjtimex``: an NTP daemon disciplines it) is reported;
a clock nothing disciplines drifts, but today it may still be right, so that alone passes.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Dict, List, Optional, Tuple

from pytest_overlay.errors import OverlayError
from pytest_overlay.models import CheckResult, RunPlan

NAME = "clock"
#: seconds a host may differ from the reference (etcd warns about drift past 1 s)
TOLERANCE = 1.0
#: samples per host; the one with the shortest round trip counts
SAMPLES = 3
#: this run's Raft transport refuses a HELLO further than this from its clock (core/raftauth.py)
RAFT_WINDOW = 120.0

CONSEQUENCES = ("TLS between cluster members (Swarm's mutual TLS, Kubernetes, etcd) can see "
                "certificates as not yet valid or expired, etcd and other Raft members warn "
                "about clock drift past 1 s")
FIX = ("synchronise every host with NTP: `timedatectl set-ntp true` (systemd-timesyncd), or "
       "chrony (`chronyc makestep` steps the clock at once)")


def test_ids(plan: RunPlan) -> List[str]:
    return [h.name for h in plan.hosts]


async def sample(client: Any, samples: int = SAMPLES) -> Dict[str, Any]:
    """The agent's offset from this controller's clock (seconds), from the sample with the
    shortest round trip, with its ``error`` (half that round trip) and the agent's ``sync``."""
    best: Optional[Tuple[float, float, Dict[str, Any]]] = None
    for _ in range(samples):
        t0 = time.time()
        got = await client.call("clock", rpc_timeout=5)
        t1 = time.time()
        if best is None or t1 - t0 < best[1] - best[0]:
            best = (t0, t1, got)
    assert best is not None
    t0, t1, got = best
    return {"offset": float(got["time"]) - (t0 + t1) / 2, "error": (t1 - t0) / 2,
            "sync": got.get("sync") or {}}


def reference(offsets: List[float]) -> float:
    """The median of the hosts' offsets and the controller's own (0)."""
    return float(statistics.median([0.0, *offsets]))


def _secs(x: float) -> str:
    if abs(x) >= 1:
        return f"{x:.1f} s"
    return f"{x * 1000:.1f} ms" if abs(x) < 0.01 else f"{x * 1000:.0f} ms"


def _sync_note(sync: Dict[str, Any]) -> Tuple[str, bool]:
    """What the kernel says of the clock's synchronisation, and whether that is a worry."""
    if "error" in sync:
        return f"its synchronisation is unknown ({sync['error']})", False
    if sync.get("synchronised"):
        return f"synchronised by NTP (max error {sync.get('maxerror_ms', 0):g} ms)", False
    return ("not synchronised: nothing disciplines this clock (no NTP daemon has it), so it "
            "drifts"), True


def raft_hint(skew: float) -> str:
    """What to add to a host's Raft failure when its clock is ``skew`` s from the others'
    ("" when that cannot be the reason)."""
    if abs(skew) <= RAFT_WINDOW:
        return ""
    side = "ahead of" if skew > 0 else "behind"
    return (f"; its clock is {abs(skew):.0f} s {side} the other hosts', and Raft peers refuse "
            f"each other's connections more than {RAFT_WINDOW:g} s apart: fix the clock "
            f"({FIX})")


def judge(host: str, got: Any, ref: float, others: int) -> CheckResult:
    """One host's result from its sample (or the error that kept it from answering), the
    reference offset and how many other clocks (hosts and the controller) made it."""
    base: Dict[str, Any] = {"check": NAME, "src": host}
    if isinstance(got, OverlayError):
        return CheckResult(**base, outcome="error", message=got.message)
    offset, err = float(got["offset"]), float(got["error"])
    skew = offset - ref
    sync: Dict[str, Any] = got.get("sync") or {}
    note, worry = _sync_note(sync)
    details: Dict[str, Any] = {"offset_s": round(offset, 6), "error_s": round(err, 6),
                               "reference_s": round(ref, 6), "skew_s": round(skew, 6),
                               "tolerance_s": TOLERANCE, **sync}
    side = "ahead of" if skew > 0 else "behind"
    if abs(skew) - err > TOLERANCE:
        raft = (f", and this run's Raft control plane refuses peers more than "
                f"{RAFT_WINDOW:g} s apart" if abs(skew) > RAFT_WINDOW else "")
        details["fix"] = FIX
        return CheckResult(**base, outcome="fail", details=details, message=(
            f"{host}: clock {_secs(abs(skew))} {side} the others (the median of {others} "
            f"clocks; tolerance {TOLERANCE:g} s, measured to within {_secs(err)}); {note}: "
            f"{CONSEQUENCES}{raft}; fix: {FIX}"))
    msg = (f"{host}: clock within {_secs(abs(skew) + err)} of the others ({_secs(offset)} "
           f"from the controller's); {note}")
    if worry:
        details["fix"] = FIX
        msg += f"; fix: {FIX}"
    return CheckResult(**base, outcome="pass", details=details, message=msg)


async def run(session: Any) -> List[CheckResult]:
    """Judged from the samples taken as the agents started (``session.clocks``): also for a
    host that failed after that, whose clock may be why (it could not join Raft)."""
    got: Dict[str, Any] = session.clocks
    offsets = [g["offset"] for g in got.values() if isinstance(g, dict)]
    ref = reference(offsets)
    out: List[CheckResult] = []
    for h in session.plan.hosts:
        if h.name not in got:
            why = session.unavailable(h.name) or ("error", f"host {h.name} did not answer")
            out.append(CheckResult(check=NAME, src=h.name, outcome=why[0],  # type: ignore[arg-type]
                                   message=why[1]))
            continue
        out.append(judge(h.name, got[h.name], ref, len(offsets) + 1))
    return out
