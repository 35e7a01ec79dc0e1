"""Neighbour tables: did a host's kernel run out of room for ARP / NDP entries during the audit?

One result per host (test id = host name). The kernel keeps one neighbour table per address
family for all its namespaces, capped by ``gc_thresh3`` (1024 by default); when a new neighbour
does not fit it counts a ``table_fulls`` and the packet that needed it fails. Then pairs fail
with nothing wrong on the wire, so this check says when that happened: it compares the counter
when the overlay came up (``session.neighbours_start``) with the counter after every other
check ran, and fails a host whose tables overflowed in between. It also reports how full each
table is and whether it overflowed before (since boot), which a node about to take a few
hundred containers should know.

A host agent that runs inside a container or a lab namespace cannot see the tables (only the
initial namespace can): its result is a skip that says so. The hosts of a local lab share the
controller's kernel, which the controller reads itself.
"""

from __future__ import annotations

from typing import Any, Dict, List

from pytest_overlay.checks import per_host
from pytest_overlay.errors import OverlayError
from pytest_overlay.models import CheckResult, RunPlan

NAME = "neighbours"
#: printed names and the sysctl prefix of each table
TABLES = {"arp": ("ARP", "net.ipv4.neigh.default"), "ndisc": ("NDP", "net.ipv6.neigh.default")}


def test_ids(plan: RunPlan) -> List[str]:
    return [h.name for h in plan.hosts]


def _fix(table: str, entries: int, cap: int) -> str:
    want = max(4096, 1 << (max(entries, cap) * 2 - 1).bit_length())
    prefix = TABLES[table][1]
    return (f"sysctl -w {prefix}.gc_thresh3={want} {prefix}.gc_thresh2={want // 2} "
            f"(and the same in /etc/sysctl.d/ to keep it)")


def judge(host: str, start: Any, end: Any) -> CheckResult:
    """One host's result from its tables at the start (may be missing) and at the end."""
    base: Dict[str, Any] = {"check": NAME, "src": host}
    if isinstance(end, OverlayError):
        return CheckResult(**base, outcome="error", message=end.message)
    if not end.get("visible"):
        return CheckResult(**base, outcome="skip", message=f"{host}: {end.get('reason')}",
                           details={"visible": False})
    before = start.get("tables", {}) if isinstance(start, dict) else {}
    details: Dict[str, Any] = {"visible": True, "shared": bool(end.get("shared")), "tables": {}}
    overflows: List[str] = []
    notes: List[str] = []
    fixes: List[str] = []
    for table, now in sorted(end.get("tables", {}).items()):
        label = TABLES.get(table, (table,))[0]
        if "error" in now:
            notes.append(f"{label} unreadable ({now['error']})")
            continue
        was = before.get(table) or {}
        during = (now["table_fulls"] - was["table_fulls"]) if "table_fulls" in was else None
        details["tables"][table] = {**now, "table_fulls_during_audit": during}
        use = f"{label} {now['entries']} of {now['gc_thresh3']} entries"
        if during:
            overflows.append(f"{label} table overflowed {during} times during the audit "
                             f"({now['entries']} entries, cap gc_thresh3={now['gc_thresh3']})")
            fixes.append(_fix(table, now["entries"], now["gc_thresh3"]))
            continue
        extra = []
        if now["entries"] > now["gc_thresh2"]:
            extra.append(f"over gc_thresh2={now['gc_thresh2']}, so the kernel is evicting")
        if now["table_fulls"]:
            extra.append(f"overflowed {now['table_fulls']} times since boot")
            fixes.append(_fix(table, now["entries"], now["gc_thresh3"]))
        notes.append(use + (f" ({'; '.join(extra)})" if extra else ""))
    scope = " (the lab's hosts share this machine's kernel)" if details["shared"] else ""
    if overflows:
        msg = (f"{host}: " + "; ".join(overflows) + ": a new neighbour did not fit and its "
               "packet failed, so failures from or to this host may be the table's, not the "
               f"network's{scope}")
        details["fix"] = "; ".join(dict.fromkeys(fixes))
        return CheckResult(**base, outcome="fail", message=f"{msg}; fix: {details['fix']}",
                           details=details)
    msg = f"{host}: " + "; ".join(notes) + f"; no overflow during the audit{scope}"
    if fixes:
        details["fix"] = "; ".join(dict.fromkeys(fixes))
        msg += (". This kernel has run out of neighbour entries before, and a node with more "
                f"containers will again: {details['fix']}")
    return CheckResult(**base, outcome="pass", message=msg, details=details)


async def run(session: Any) -> List[CheckResult]:
    return per_host(session, NAME, session.neighbours_start, await session.neighbour_tables(), judge)
