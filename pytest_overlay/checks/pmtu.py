"""Underlay path MTU per ordered host pair, with blackhole classification.

Every agent answers probe datagrams on its underlay address (UDP :data:`PORT`); every agent then
searches the path MTU to all others at once (see ``overlay_agent/core/pmtu.py``). Verdicts:

* ``ok`` - large packets pass, or the path tells us its MTU (ICMP "fragmentation needed" /
  ICMPv6 "packet too big" arrives): PMTUD works;
* ``local-limit`` - the sender's own interface is the smallest link (below 1500);
* ``blackhole`` - packets above the PMTU vanish and no ICMP says why (fail);
* ``lossy`` - small control probes on the same 5-tuple are lost too: plain loss (fail);
* ``unreachable`` - not even the small probes come back (fail).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
import weakref
from typing import Any, Dict, List, Optional, Tuple

from pytest_overlay import evidence
from pytest_overlay.checks import once_per_session
from pytest_overlay.errors import OverlayError
from pytest_overlay.models import CheckResult, HostPlan, RunPlan
from pytest_overlay.session import OverlaySession

NAME = "pmtu"
PORT = 47890
#: first source port of the flows of a multi-flow search (``RunPlan.pmtu_flows`` > 1): fixed,
#: so a multipath underlay with a fixed hash sends each flow down the same leg every run
SPORT_BASE = 48000
#: searches an agent runs at once (the agent's own default)
PARALLEL = 16
#: searches running at once on one machine, per CPU, when all hosts share it (local mode)
SHARED_PER_CPU = 32


def parallel_per_host(plan: RunPlan, cpus: Optional[int] = None) -> int:
    """How many searches each agent runs at once. Real hosts each have their own CPUs; the
    namespace hosts of a lab share this machine's, and a probe answered after the round's
    200 ms counts as lost: with every agent at 16, a 32-host lab on 2 CPUs answered late and
    the check called healthy paths lossy or unreachable. So a lab's total is bounded."""
    lab = [h for h in plan.hosts if h.transport == "netns"]
    if not lab:
        return PARALLEL
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    total = SHARED_PER_CPU * max(1, cpus or 1)
    return max(1, min(PARALLEL, total // len(lab)))

_cache: weakref.WeakKeyDictionary[OverlaySession, asyncio.Future[Dict[Tuple[str, str], Dict[str, Any]]]]
_cache = weakref.WeakKeyDictionary()


def pairs(plan: RunPlan) -> List[Tuple[HostPlan, HostPlan]]:
    return [(a, b) for a in plan.hosts for b in plan.hosts if a is not b]


def test_ids(plan: RunPlan) -> List[str]:
    return [f"{a.name}->{b.name}" for a, b in pairs(plan)]


def icmp_name(addr: str) -> str:
    if ipaddress.ip_address(addr).version == 6:
        return 'ICMPv6 "packet too big"'
    return 'ICMP "fragmentation needed" (type 3 code 4)'


async def measure(session: OverlaySession) -> Dict[Tuple[str, str], Dict[str, Any]]:
    """Raw results by (src host, dst host), measured once per session (other checks reuse it)."""
    return await once_per_session(_cache, session, lambda: _measure(session))


async def _measure(session: OverlaySession) -> Dict[Tuple[str, str], Dict[str, Any]]:
    hosts = [h for h in session.plan.hosts if session.hosts[h.name].ok]
    out: Dict[Tuple[str, str], Dict[str, Any]] = {}

    async def listen(h: HostPlan) -> None:
        try:
            await session.client(h.name).call("pmtu_listen", port=PORT)
        except OverlayError as e:
            for a in session.plan.hosts:
                if a.name != h.name:
                    out[(a.name, h.name)] = {"verdict": "error",
                                             "error": f"no probe responder on {h.name}: {e.message}"}

    await asyncio.gather(*(listen(h) for h in hosts))
    by_addr = {h.underlay: h.name for h in hosts}

    parallel = parallel_per_host(session.plan)
    flows = int(getattr(session.plan, "pmtu_flows", 1) or 1)
    extra = {"flows": flows, "sport_base": SPORT_BASE} if flows > 1 else {}

    async def probe(h: HostPlan) -> None:
        dsts = [b.underlay for b in hosts if b is not h and (h.name, b.name) not in out]
        if not dsts:
            return
        waves = -(-len(dsts) * flows // parallel)
        try:
            res = await session.client(h.name).call(
                "pmtu_probe", dsts=dsts, port=PORT, parallel=parallel, rpc_timeout=15 + 6 * waves,
                **extra)
        except OverlayError as e:
            for d in dsts:
                out[(h.name, by_addr[d])] = {"verdict": "error", "error": e.message}
            return
        for addr, r in res["results"].items():
            out[(h.name, by_addr[str(ipaddress.ip_address(addr))])] = merge_flows(r)

    await asyncio.gather(*(probe(h) for h in hosts))
    return out


#: how bad a flow's verdict is, to pick the one that speaks for the pair
_SEVERITY = {"unreachable": 5, "blackhole": 4, "lossy": 3, "error": 2, "ok": 0, "local-limit": 0}


def merge_flows(r: Dict[str, Any]) -> Dict[str, Any]:
    """One pair's result from its flows (``r["flows"]``, each a search from its own source
    port; pure). Flows that agree give the first one's result. Flows that disagree mean a
    multipath underlay whose legs differ: the worst flow speaks for the pair (a connection
    hashed onto its leg meets exactly that; of equally bad ones, one that found the hop), and
    ``ecmp`` groups the flows by what they saw."""
    flows = r.get("flows")
    if not flows:
        return r
    seen: Dict[Tuple[Any, Any], List[Any]] = {}
    for f in flows:
        seen.setdefault((f.get("verdict"), f.get("pmtu")), []).append(f.get("sport"))
    base = {k: v for k, v in r.items() if k != "flows"}
    # fragments: dropped on any leg speaks for the pair, then crossing on any
    frags = [f.get("fragments") for f in flows]
    fragments = False if False in frags else (True if True in frags else None)
    if len(seen) == 1:
        return {**base, "flows": len(flows), "fragments": fragments}
    # Among equally bad flows, one that located the hop: routers rate-limit their ICMP
    # errors, so of several flows tracing at once some may not hear "time exceeded".
    worst = max(flows, key=lambda f: (_SEVERITY.get(str(f.get("verdict")), 1),
                                      -int(f.get("pmtu") or 0),
                                      bool((f.get("hop") or {}).get("address"))))
    groups = [{"verdict": v, "pmtu": m, "sports": sorted(p for p in ports if p)}
              for (v, m), ports in sorted(seen.items(), key=lambda kv: -len(kv[1]))]
    return {**worst, "flows": len(flows), "ecmp": groups, "fragments": fragments}


def _flows_note(r: Dict[str, Any]) -> str:
    groups = r.get("ecmp") or []
    if not groups:
        return ""
    total = sum(len(g["sports"]) or 1 for g in groups)
    parts = [f"{len(g['sports']) or 1} of {total} see {g['verdict']} {g['pmtu']}" for g in groups]
    return (f"flows disagree ({'; '.join(parts)}; one source port each): the underlay spreads "
            "flows over paths that differ, so connections hashed onto the worst one meet this "
            "while the others work. Worst flow: ")


def judge(src: str, dst: str, r: Dict[str, Any]) -> Tuple[str, str]:
    outcome, message = _judge(src, dst, r)
    return outcome, _flows_note(r) + message + _fragments_note(r)


def _fragments_note(r: Dict[str, Any]) -> str:
    """What the probes without DF found (IPv4, where a hop beyond the host is smaller)."""
    f = r.get("fragments")
    if f is True:
        return (". IPv4 fragments of full-size packets cross this path: a sender without DF "
                "(a kernel VXLAN device's default) gets through, fragmented")
    if f is False:
        return (". IPv4 fragments are dropped on this path: a sender without DF (a kernel "
                "VXLAN device's default) stalls here too")
    return ""


def _judge(src: str, dst: str, r: Dict[str, Any]) -> Tuple[str, str]:
    v = r.get("verdict")
    pmtu = r.get("pmtu")
    if v == "ok":
        if r.get("ptb_mtu"):
            return "pass", (f"path MTU {pmtu}: the path says so itself ({icmp_name(dst)} from "
                            f"{r.get('ptb_from')}), PMTUD works")
        return "pass", f"path MTU {pmtu}: full-size packets pass"
    if v == "local-limit":
        return "pass", f"path MTU {pmtu}: {src}'s own interface is the limit (MTU {r.get('local_mtu')})"
    if v == "blackhole":
        hop = r.get("hop") or {}
        where = ""
        if hop.get("address"):
            where = f" after hop {hop['ttl']} ({hop['address']}"
            where += f", before {hop['next']})" if hop.get("next") else ")"
        elif hop:
            where = " before the first router"
        return "fail", (
            f"blackhole: packets up to {pmtu} bytes pass, larger ones vanish{where} and no "
            f"{icmp_name(dst)} comes back, so senders never learn the path MTU; large payloads "
            f"stall while small ones work. Let that ICMP through (or lower the overlay MTU, see "
            f"the mtu check)")
    if v == "lossy":
        c = r.get("controls") or [0, 0]
        return "fail", (f"lossy: {c[0] - c[1]} of {c[0]} small control probes lost as well, so "
                        f"this is loss on the path, not a size limit (path MTU at least {pmtu})")
    if v == "unreachable":
        return "fail", (f"unreachable: none of {(r.get('controls') or [0])[0]} small UDP probes to "
                        f"{dst}:{PORT} came back (routing, a firewall on UDP {PORT}, or {src} is not a "
                        f"member VTEP of {dst})")
    return "error", str(r.get("error") or f"no result ({v})")


async def run(session: OverlaySession) -> List[CheckResult]:
    started = time.monotonic()
    raw = await measure(session)
    elapsed = (time.monotonic() - started) * 1000
    out = []
    for a, b in pairs(session.plan):
        base: Dict[str, Any] = {"check": NAME, "src": a.name, "dst": b.name}
        bad = next((h for h in (a, b) if not session.hosts[h.name].ok), None)
        r: Optional[Dict[str, Any]] = raw.get((a.name, b.name))
        if bad is not None or r is None:
            st = session.hosts[bad.name] if bad else None
            why = st.error if st else "not measured"
            out.append(CheckResult(**base, outcome="skip" if st and st.missing else "error",
                                   message=f"host {bad.name if bad else a.name} is not available: {why}"))
            continue
        outcome, message = judge(a.name, b.underlay, r)
        details = {k: r.get(k) for k in ("verdict", "pmtu", "exact", "local_mtu", "ptb_mtu",
                                         "ptb_from", "hop", "controls", "rounds", "flows",
                                         "ecmp", "fragments")}
        details.update(src_ip=a.underlay, dst_ip=b.underlay, port=PORT)
        out.append(CheckResult(**base, outcome=outcome, message=message, details=details,  # type: ignore[arg-type]
                               duration_ms=float(r.get("ms") or elapsed)))
    # --overlay-evidence: per failing pair, routes and the cached path MTU on both sides,
    # interface MTUs, firewall rules, counters (nothing to re-send: the search already ran).
    return await evidence.after_check(session, NAME, out)
