"""MTU verdict per overlay network, and the fix.

The overlay MTU must be at most (smallest underlay path MTU between its hosts) - overhead
(50 over IPv4, 70 over IPv6, or what the overhead check measured if larger). Too high: ``fail``,
naming the pairs whose path is too small, split by what their senders learn: where the PTB of
the underlay comes back, the VTEP relays it to the endpoint as ICMP "fragmentation needed" and
path-MTU discovery recovers after lost packets (``pmtud_pairs``); where it does not (the
blackholes, or no verdict), large payloads stall while small requests work
(``stalling_pairs``). Much lower than possible (more than :data:`SLACK` bytes): ``pass`` with a
warning, throughput is left on the table. The message names the setting.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from pytest_overlay.checks import overhead as overhead_check
from pytest_overlay.checks import pmtu as pmtu_check
from pytest_overlay.models import CheckResult, NetworkSpec, RunPlan
from pytest_overlay.session import OverlaySession

NAME = "mtu"
SLACK = 100


def test_ids(plan: RunPlan) -> List[str]:
    return [f"{n.name}[vni={n.vni}]" for n in plan.networks]


def fix(n: int, net: NetworkSpec) -> str:
    """Where to set an overlay MTU of ``n``, for the usual tools."""
    return (
        f"set the overlay MTU to {n}: "
        f"Docker: docker network create -d overlay --opt com.docker.network.driver.mtu={n} "
        f"{net.name} (bridge networks: \"mtu\": {n} in daemon.json); "
        f"flannel: \"mtu\": {n} in the delegate of the CNI config (cni-conf.json), or run "
        f"flanneld with --iface on the link whose MTU is {n} + overhead; "
        f"Calico: veth_mtu: \"{n}\" in the calico-config ConfigMap (operator: "
        f"Installation spec.calicoNetwork.mtu: {n}; Felix: vxlanMTU); "
        f"Cilium: --set MTU={n} (Helm) or cilium-agent --mtu={n}; "
        f"kernel: ip link set dev vxlan{net.vni} mtu {n} (or ip link add vxlan{net.vni} mtu {n} "
        f"type vxlan id {net.vni} dstport 4789 dev <underlay-if>)")


def verdict(net: NetworkSpec, hosts: List[str], paths: Dict[Tuple[str, str], Dict[str, Any]],
            overheads: Dict[Tuple[str, str], int], family_overhead: Dict[str, int]) -> CheckResult:
    """Judge one network from the pmtu results of its hosts' pairs (pure: unit-tested)."""
    base: Dict[str, Any] = {"check": NAME, "src": net.name, "vni": net.vni}
    rows = []
    multipath = []
    for a in hosts:
        for b in hosts:
            if a == b:
                continue
            r = paths.get((a, b)) or {}
            if r.get("pmtu"):
                over = max(family_overhead.get(a, 50), overheads.get((a, b), 0))
                rows.append((a, b, int(r["pmtu"]), over, r.get("verdict")))
                if r.get("ecmp"):
                    multipath.append(f"{a}->{b}")
    if not rows:
        return CheckResult(**base, outcome="skip",
                           message="no path MTU known between the network's hosts (see pmtu)")
    best = min(pmtu - over for _a, _b, pmtu, over, _v in rows)
    limiting = [f"{a}->{b}" for a, b, pmtu, over, _v in rows if pmtu - over == best]
    min_pmtu = min(pmtu for _a, _b, pmtu, _o, _v in rows)
    too_small = [(a, b, v) for a, b, pmtu, over, v in rows if net.mtu > pmtu - over]
    details: Dict[str, Any] = {
        "configured": net.mtu, "recommended": best, "min_path_mtu": min_pmtu,
        "overhead": max(o for *_x, o, _v in rows), "limiting_pairs": limiting,
        "stalling_pairs": [f"{a}->{b}" for a, b, v in too_small if v != "ok"],
        "blackhole_pairs": [f"{a}->{b}" for a, b, v in too_small if v == "blackhole"],
        "pmtud_pairs": [f"{a}->{b}" for a, b, v in too_small if v == "ok"],
        "multipath_pairs": multipath,
    }
    if too_small:
        stall, hole = details["stalling_pairs"], details["blackhole_pairs"]
        pmtud = details["pmtud_pairs"]
        parts = [f"MTU {net.mtu} is too high: the smallest underlay path MTU is {min_pmtu} "
                 f"({', '.join(limiting)}), which leaves {best} for the overlay"]
        if stall:
            why = ("nothing tells the sender (ICMP blackhole)" if hole == stall
                   else "the sender may never learn why")
            parts.append(f"on {', '.join(stall)} packets above {best} never arrive and "
                         f"{why}: large payloads stall while small requests work")
        if pmtud:
            parts.append(f"on {', '.join(pmtud)} the underlay reports the drops: the VTEP "
                         "relays them to the sending endpoint as ICMP fragmentation needed, and "
                         "TCP recovers after losing the first large packets to each destination "
                         "(a tail-loss probe or retransmission timeout); senders that ignore "
                         "ICMP or clear DF keep losing large packets")
        short = [f"{a}->{b}" for a, b, _v in too_small]
        # What the fix's kernel VXLAN devices meet meanwhile: over IPv4 they leave DF off, so
        # the small hop fragments their frames; whether those cross, the pmtu probes said.
        crossing = [f"{a}->{b}" for a, b, _v in too_small
                    if (paths.get((a, b)) or {}).get("fragments") is True]
        dropped = [f"{a}->{b}" for a, b, _v in too_small
                   if (paths.get((a, b)) or {}).get("fragments") is False]
        details.update(fragments_cross_pairs=crossing, fragments_dropped_pairs=dropped)
        if crossing or dropped:
            said = [f"they arrive on {', '.join(crossing)}, where IPv4 fragments cross"] \
                if crossing else []
            if dropped:
                said.append(f"on {', '.join(dropped)} the path drops IPv4 fragments, so they "
                            "stall there too")
            parts.append("a kernel VXLAN device at this MTU (Docker Swarm, flannel, Calico: DF "
                         "off over IPv4 unless created with df set) has its full-size frames "
                         "fragmented by the small hop instead: " + "; ".join(said))
        split = [p for p in multipath if p in short]
        if split:
            parts.append(f"{', '.join(split)} cross a multipath underlay whose legs differ (see "
                         "pmtu): only connections hashed onto the smaller leg meet this, so some "
                         "connections between the same hosts hang while others work")
        parts.append(fix(best, net))
        return CheckResult(**base, outcome="fail", message="; ".join(parts), details=details)
    if net.mtu < best - SLACK:
        return CheckResult(**base, outcome="pass", details={**details, "warning": "too-low"},
                           message=(f"warning: MTU {net.mtu} is {best - net.mtu} bytes below what "
                                    f"the underlay carries ({best}): throughput is left on the "
                                    f"table; {fix(best, net)}"))
    return CheckResult(**base, outcome="pass", details=details,
                       message=f"MTU {net.mtu} fits: the underlay carries up to {best} "
                               f"(path MTU {min_pmtu} - {details['overhead']})")


async def run(session: OverlaySession) -> List[CheckResult]:
    paths = await pmtu_check.measure(session)
    measured = await overhead_check.measure(session)
    overheads: Dict[Tuple[str, str], int] = {}
    for r in measured.values():
        if r.details.get("overhead") and r.src and r.dst:
            key = (r.src.split("/")[0], r.dst.split("/")[0])
            overheads[key] = max(overheads.get(key, 0), int(r.details["overhead"]))
    fam = {h.name: overhead_check.expected_overhead(h.underlay) for h in session.plan.hosts}
    out = []
    for net in session.plan.networks:
        hosts = sorted({ep.host for ep in session.plan.endpoints if ep.network == net.name})
        out.append(verdict(net, hosts, paths, overheads, fam))
    return out
