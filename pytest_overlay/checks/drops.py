"""Kernel drops: did a host's kernel throw away packets during the audit that no capture on the
sender shows, for a bad checksum or by reverse-path filtering?

One result per host (test id = host name), from its kernel's counters when the overlay came up
(``session.drops_start``) and after every other check ran (agent: ``io/drops.py``):

* packets with bad checksums: corrupted on the way, or by checksum offload in a NIC, driver or
  virtual switch (some virtual NICs get VXLAN checksums wrong): the receiving kernel drops
  them, and the overlay loses traffic while every sender's capture looks right;
* packets dropped by ``rp_filter``: they arrived on an interface other than the one the route
  back to their source uses, on hosts with a second interface or asymmetric routes.

Either during the audit fails the host. UDP sockets that overflowed (``RcvbufErrors``) are
reported, not failed: a slow reader is not the network's fault. What the counters held before
(since the namespace began: since boot for a host's own) is reported with the fix.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from pytest_overlay.checks import per_host
from pytest_overlay.errors import OverlayError
from pytest_overlay.models import CheckResult, RunPlan

NAME = "drops"
#: groups whose rise during the audit fails the host
FAILING = ("checksum", "rp_filter")

CHECKSUM_WHY = ("corrupted on the way, or by checksum offload in a NIC, driver or virtual "
                "switch (some virtual NICs get the checksums of VXLAN packets wrong)")
CHECKSUM_FIX = ("find the device that corrupts them: turn its checksum offloads off to compare "
                "(`ethtool -K <nic> rx off tx off`, also on the overlay's own device), then "
                "update its driver, firmware or hypervisor")
RP_WHY = ("they arrived on an interface other than the one this host's route back to their "
          "source uses (a second interface for the underlay, or asymmetric routes)")


def test_ids(plan: RunPlan) -> List[str]:
    return [h.name for h in plan.hosts]


def _rp_fix(strict: List[str]) -> str:
    devs = [d for d in strict if d != "all"] or ["<interface>"]
    keys = " ".join(f"net.ipv4.conf.{d}.rp_filter=2" for d in ["all", *devs])
    return (f"sysctl -w {keys} (loose mode: a source only needs some route back), or route "
            "the underlay symmetrically")


def _sum(group: Dict[str, int]) -> int:
    return sum(group.values())


def _what(group: str, n: int, counts: Dict[str, int], when: str) -> str:
    if group == "checksum":
        parts = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        return f"{n} packets with bad checksums dropped {when} ({parts})"
    if group == "rp_filter":
        return f"{n} packets dropped {when} by reverse-path filtering (rp_filter)"
    return f"{n} datagrams lost {when} to full UDP socket buffers (RcvbufErrors)"


def judge(host: str, start: Any, end: Any) -> CheckResult:
    """One host's result from its counters at the start (may be missing) and at the end."""
    base: Dict[str, Any] = {"check": NAME, "src": host}
    if isinstance(end, OverlayError):
        return CheckResult(**base, outcome="error", message=end.message)
    now: Dict[str, Dict[str, int]] = end.get("counters", {})
    if not any(now.values()):
        why = "; ".join(end.get("errors", [])) or "this kernel exports none of them"
        return CheckResult(**base, outcome="error", message=f"{host}: no drop counters ({why})")
    was: Optional[Dict[str, Dict[str, int]]] = (start.get("counters")
                                                 if isinstance(start, dict) else None)
    during: Optional[Dict[str, Dict[str, int]]] = None
    if was is not None:
        during = {g: {k: max(0, v - was.get(g, {}).get(k, v)) for k, v in c.items()}
                  for g, c in now.items()}
    strict = sorted(d for d, mode in end.get("rp_filter", {}).items() if mode == "strict")
    details: Dict[str, Any] = {"counters": now, "during_audit": during,
                               "rp_filter": end.get("rp_filter", {})}
    if end.get("errors"):
        details["errors"] = end["errors"]
    problems: List[str] = []
    fixes: List[str] = []
    notes: List[str] = []
    for group, counts in (during or {}).items():
        n = _sum(counts)
        if not n:
            continue
        if group == "checksum":
            problems.append(f"{_what(group, n, counts, 'during the audit')}: {CHECKSUM_WHY}")
            fixes.append(CHECKSUM_FIX)
        elif group == "rp_filter":
            on = f"; strict on {', '.join(strict)}" if strict else ""
            problems.append(f"{_what(group, n, counts, 'during the audit')}: {RP_WHY}{on}")
            fixes.append(_rp_fix(strict))
        else:
            notes.append(_what(group, n, counts, "during the audit"))
    if problems:
        details["fix"] = "; ".join(fixes)
        msg = (f"{host}: " + "; ".join(problems) + ". Flows through this host lose packets "
               "that every sender's capture shows leaving")
        if notes:
            msg += "; also " + "; ".join(notes)
        return CheckResult(**base, outcome="fail", details=details,
                           message=f"{msg}; fix: {details['fix']}")
    msg = f"{host}: no packet dropped for a bad checksum or by rp_filter during the audit"
    if during is None:
        msg = f"{host}: no reading from the start of the audit to compare with"
    before = []
    for group in FAILING:
        n = _sum(now.get(group, {}))
        if n:
            before.append(_what(group, n, now[group], "since the namespace began"))
            fixes.append(CHECKSUM_FIX if group == "checksum" else _rp_fix(strict))
    if strict:
        notes.append(f"rp_filter is strict on {', '.join(strict)}: an asymmetric route will "
                     "drop traffic there")
    if notes or before:
        msg += ". " + "; ".join(notes + before)
    if fixes:
        details["fix"] = "; ".join(fixes)
        msg += f"; fix: {details['fix']}"
    return CheckResult(**base, outcome="pass", message=msg, details=details)


async def run(session: Any) -> List[CheckResult]:
    return per_host(session, NAME, session.drops_start, await session.agent_reads("drops"), judge)
