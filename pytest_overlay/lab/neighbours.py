"""Can this kernel hold the neighbour (ARP / NDP) entries a lab will need? Asked before building.

Every namespace of the lab resolves its neighbours in one table per address family that the
kernel shares among *all* namespaces: ``arp_cache`` and ``ndisc_cache``. Dynamic entries in all
of them together are capped by ``net.ipv4.neigh.default.gc_thresh3`` (1024 by default; NDP
has its own cap); past it the kernel logs "neighbor table overflow!" and a new neighbour cannot
be resolved: sends fail with ENOBUFS, ARP goes unanswered. In a lab of N hosts on one machine
the endpoints of a network learn up to N * (N - 1) entries, the isolation check's mirror network
as many again, and the underlay (whose entries are static, see netlab) none. On the default cap
that is 23 hosts; past it every check would report failures of the lab, not of a network.
So the plan is measured against the cap before anything is built, and a plan that does not fit
is refused with the numbers and the fix (raise the cap, or fewer hosts).

Pure functions on data, and :func:`kernel_room` reading ``/proc`` (no namespace needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from overlay_agent.io import neighbours as neighbour_tables
from pytest_overlay.errors import LabError
from pytest_overlay.models import RunPlan


def overlay_need(plan: RunPlan, mirror: bool = True) -> int:
    """ARP entries the endpoints may hold at once: every endpoint knowing every other one of
    its network, and (``mirror``) as many again for the isolation check's second network."""
    per_net: Dict[str, int] = {}
    for ep in plan.endpoints:
        per_net[ep.network] = per_net.get(ep.network, 0) + 1
    need = sum(k * (k - 1) for k in per_net.values())
    return need * 2 if mirror else need


def kernel_room(proc: Path = Path("/proc")) -> Optional[Dict[str, int]]:
    """The ARP table's cap and the entries it holds now (all namespaces); None where unknown."""
    arp = neighbour_tables.read(proc).get("tables", {}).get("arp", {})
    if "gc_thresh3" not in arp:
        return None
    return {"cap": arp["gc_thresh3"], "in_use": arp["entries"]}


def max_flat_hosts(cap: int, in_use: int, mirror: bool = True) -> int:
    """The most hosts of a flat lab (one endpoint each) whose endpoints fit in ``cap``."""
    per = 2 if mirror else 1
    n = 1
    while per * (n + 1) * n + in_use <= cap:
        n += 1
    return n


def check(plan: RunPlan, room: Optional[Dict[str, int]], mirror: bool = True) -> None:
    """Refuse a plan whose endpoints' ARP entries would overflow the kernel's table."""
    if room is None:
        return
    need = overlay_need(plan, mirror)
    cap, in_use = room["cap"], room["in_use"]
    if need + in_use <= cap:
        return
    hosts = len(plan.hosts)
    fits = max_flat_hosts(cap, in_use, mirror)
    want = 1 << (need + in_use + 255).bit_length()
    raise LabError(
        f"a lab of {hosts} hosts needs up to {need} ARP entries in its endpoints "
        f"({len(plan.endpoints)} endpoints, each may resolve every other one of its network"
        + (", and the isolation check's mirror network as many again" if mirror else "")
        + f"), but this kernel holds at most {cap} in all namespaces together "
        f"(net.ipv4.neigh.default.gc_thresh3; {in_use} in use now). Past that it logs "
        "'neighbor table overflow' and new neighbours fail, so pairs would fail because of the "
        "lab, not the network",
        f"raise the cap for the run (sudo sysctl -w net.ipv4.neigh.default.gc_thresh3={want} "
        f"net.ipv4.neigh.default.gc_thresh2={want // 2}; the defaults are 1024 and 512), "
        f"or use at most {fits} hosts",
    )
