"""Connection tracking: did a host's conntrack table fill up, or lose packets, during the audit?

One result per host (test id = host name). Docker, kube-proxy, NAT and stateful firewalls
track every flow in the kernel's conntrack table, capped by ``net.netfilter.nf_conntrack_max``.
A full table evicts flows that never saw a reply (``early_drop``) and, when there are none,
drops the first packet of every new connection ("nf_conntrack: table full, dropping packet"):
connections then time out at random while ping, and the overlay's own tunnels, look fine. A
packet whose new entry clashes with one another CPU inserted at the same moment is dropped too
(``insert_failed``: the 5 s DNS timeouts of Kubernetes, when a resolver sends its A and AAAA
queries at once).

The check compares the counters when the overlay came up (``session.conntrack_start``) with
the counters after every other check ran: losses in between fail the host, and so does a table
that is full at the end. It also reports how full the table is and what it lost before (since
the namespace's table began: since boot for a host's own), with the sysctl that makes room.
The table belongs to the reader's network namespace, so an agent in a lab host reads that
host's table.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from pytest_overlay.checks import per_host
from pytest_overlay.errors import OverlayError
from pytest_overlay.models import CheckResult, RunPlan

NAME = "conntrack"
#: a table at least this full (entries / cap) is reported as nearly full
NEARLY_FULL = 0.8
#: ... and at least this full as full: with unanswered flows to evict, the kernel keeps the
#: count a few entries under the cap (it evicts one for every new one past it)
FULL = 0.99
#: kernel memory per entry (the ``nf_conntrack`` slab object on x86-64), for the fix's cost
ENTRY_BYTES = 256
LOSSES = ("drop", "early_drop", "insert_failed")


def test_ids(plan: RunPlan) -> List[str]:
    return [h.name for h in plan.hosts]


def _size_fix(count: int, cap: int) -> str:
    want = 1 << (max(count, cap, 65536) * 2 - 1).bit_length()
    mib = want * ENTRY_BYTES / (1 << 20)
    return (f"sysctl -w net.netfilter.nf_conntrack_max={want} "
            f"net.netfilter.nf_conntrack_buckets={want} (and the same in /etc/sysctl.d/ to "
            f"keep it; a full table of {want} entries takes about {mib:.0f} MiB of kernel "
            "memory)")


RACE_FIX = ("a recent kernel (it resolves most clashes of UDP flows), or resolvers that send "
            "one query at a time (resolv.conf `options single-request-reopen`) or ask a cache "
            "on the node (Kubernetes NodeLocal DNSCache)")


def _losses(n: Dict[str, int], when: str) -> List[str]:
    out = []
    if n.get("drop"):
        out.append(f"{n['drop']} new connections dropped {when} because the table was full")
    if n.get("early_drop"):
        out.append(f"{n['early_drop']} unanswered flows evicted {when} to make room (the table "
                   "was full; with nothing left to evict, new connections are dropped)")
    if n.get("insert_failed"):
        out.append(f"{n['insert_failed']} packets dropped {when} on insert races (two packets "
                   "of one new flow on two CPUs at once, like a resolver's A and AAAA queries)")
    return out


def _fixes(n: Dict[str, int], count: int, cap: int) -> List[str]:
    out = []
    if n.get("drop") or n.get("early_drop"):
        out.append(_size_fix(count, cap))
    if n.get("insert_failed"):
        out.append(RACE_FIX)
    return out


def judge(host: str, start: Any, end: Any) -> CheckResult:
    """One host's result from its table at the start (may be missing) and at the end."""
    base: Dict[str, Any] = {"check": NAME, "src": host}
    if isinstance(end, OverlayError):
        return CheckResult(**base, outcome="error", message=end.message)
    if not end.get("present"):
        return CheckResult(**base, outcome="pass", message=f"{host}: {end.get('reason')}",
                           details={"present": False})
    if "error" in end:
        return CheckResult(**base, outcome="error", details={"present": True},
                           message=f"{host}: the conntrack table cannot be read ({end['error']})")
    count, cap = int(end["count"]), int(end["max"])
    was = start if isinstance(start, dict) and start.get("present") and "error" not in start else {}
    during: Optional[Dict[str, int]] = None
    if was:
        during = {k: max(0, int(end.get(k, 0)) - int(was.get(k, 0))) for k in LOSSES}
    since = {k: int(end.get(k, 0)) for k in LOSSES}
    details: Dict[str, Any] = {"present": True, **{k: v for k, v in end.items() if k != "present"},
                               "fill": round(count / cap, 4) if cap else None,
                               "during_audit": during}
    use = f"{count} of {cap} connections tracked ({100 * count / cap:.1f} %)" if cap else \
        f"{count} connections tracked (no cap)"
    full = bool(cap) and count >= FULL * cap
    problems = _losses(during or {}, "during the audit")
    if full:
        problems.insert(0, f"the table is full ({count} of {cap})")
    if problems:
        fixes = ([_size_fix(count, cap)] if full else []) + _fixes(during or {}, count, cap)
        details["fix"] = "; ".join(dict.fromkeys(fixes))
        msg = (f"{host}: " + "; ".join(problems) + ": connections from, to and through this "
               "host fail at random while ping and the overlay's tunnels work")
        return CheckResult(**base, outcome="fail", details=details,
                           message=f"{msg}; fix: {details['fix']}")
    msg = f"{host}: {use}, nothing lost during the audit"
    if during is None:
        msg = f"{host}: {use} (no reading from the start of the audit to compare with)"
    notes = []
    if cap and count >= NEARLY_FULL * cap:
        notes.append("the table is nearly full: when it fills, new connections are dropped")
    before = _losses(since, "since the table began")
    notes.extend(before)
    fixes = _fixes(since, count, cap)
    if cap and count >= NEARLY_FULL * cap and not since.get("drop") and not since.get("early_drop"):
        fixes.insert(0, _size_fix(count, cap))
    if notes:
        details["fix"] = "; ".join(dict.fromkeys(fixes))
        msg += ". " + "; ".join(notes) + f"; fix: {details['fix']}"
    return CheckResult(**base, outcome="pass", message=msg, details=details)


async def run(session: Any) -> List[CheckResult]:
    return per_host(session, NAME, session.conntrack_start, await session.agent_reads("conntrack"), judge)
