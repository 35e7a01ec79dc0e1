"""Encapsulation overhead, measured: the largest inner packet that crosses the overlay (DF ping
from the source endpoint, sizes searched in parallel rounds) against the underlay path MTU of
the two hosts (the pmtu check). VXLAN costs 50 bytes over IPv4 (outer IP 20 + UDP 8 + VXLAN 8 +
inner Ethernet 14) and 70 over IPv6; any other figure is flagged.

When the inner interface's MTU is reached before the path's limit, the figure is a bound: the
check says "consistent" if the bound allows the expected overhead. When the inner MTU is larger
than the path allows and full-size packets still cross, the sending VTEP fragments the outer
packets (it learned the path MTU from ICMP): no overhead can be read off, and the mtu check
reports the misconfiguration.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
import weakref
from typing import Any, Dict, List, Optional, Tuple

from pytest_overlay.checks import once_per_session, reachability
from pytest_overlay.checks import pmtu as pmtu_check
from pytest_overlay.errors import OverlayError
from pytest_overlay.models import CheckResult, EndpointPlan, RunPlan
from pytest_overlay.session import OverlaySession

NAME = "overhead"
ICMP_IP = 28  # IPv4 + ICMP echo headers: inner packet = payload + 28
ROUND_WIDTH = 6
PER_HOST_PARALLEL = 8

_cache: weakref.WeakKeyDictionary[OverlaySession, asyncio.Future[Dict[str, CheckResult]]]
_cache = weakref.WeakKeyDictionary()


def expected_overhead(underlay: str) -> int:
    return 70 if ipaddress.ip_address(underlay).version == 6 else 50


def test_ids(plan: RunPlan) -> List[str]:
    return reachability.test_ids(plan)


async def _passes(client: Any, ep: EndpointPlan, dst: str, size: int, patient: bool = False) -> bool:
    r = await client.call("ping", endpoint=ep.name, dst=dst, count=3 if patient else 2,
                          size=size - ICMP_IP, timeout=1.0 if patient else 0.4,
                          interval=0.05 if patient else 0.0, dont_fragment=True)
    return int(r.get("received", 0)) > 0


async def largest_inner(client: Any, ep: EndpointPlan, dst: str, mtu: int,
                        guess: Optional[int]) -> Tuple[Optional[int], int]:
    """(largest inner IP packet that crossed, rounds); None when not even 100 bytes cross."""
    lo, hi = 0, mtu + 1  # lo passes (0: unknown), hi fails
    first = sorted({s for s in (mtu, guess, (guess or 0) + 1, 100) if s and 100 <= s <= mtu})
    rounds = 0
    sizes = first
    while sizes:
        rounds += 1
        got = await asyncio.gather(*(_passes(client, ep, dst, s) for s in sizes))
        for s, ok in zip(sizes, got):
            if ok:
                lo = max(lo, s)
            else:
                hi = min(hi, s) if s > lo else hi
        if lo == 0 and 100 in sizes:
            return None, rounds
        if lo + 1 >= hi or rounds >= 8:
            break
        step = max(1, (hi - lo) // (ROUND_WIDTH + 1))
        sizes = list(range(lo + step, hi, step))[:ROUND_WIDTH]
    # The boundary decides the figure: a size that failed once may have met plain loss on a
    # busy path, so the first size above the largest one that passed is asked again, patiently.
    while lo and lo + 1 == hi and hi <= mtu and rounds < 12:
        rounds += 1
        if not await _passes(client, ep, dst, hi, patient=True):
            break
        lo, hi = hi, mtu + 1
        while lo + 1 < hi:  # then on upward, one size at a time is rare: loss was at the edge
            mid = (lo + hi) // 2
            rounds += 1
            if await _passes(client, ep, dst, mid, patient=True):
                lo = mid
            else:
                hi = mid
    return (lo or None), rounds


async def measure(session: OverlaySession) -> Dict[str, CheckResult]:
    return await once_per_session(_cache, session, lambda: _measure(session))


async def _pair(session: OverlaySession, src: EndpointPlan, dst: EndpointPlan, vni: int,
                path: Dict[str, Any], limit: asyncio.Semaphore) -> CheckResult:
    started = time.monotonic()
    base: Dict[str, Any] = {"check": NAME, "src": src.label, "dst": dst.label, "vni": vni}
    down = session.unavailable(src.host, dst.host)
    if down is not None:
        return CheckResult(**base, outcome=down[0], message=down[1])  # type: ignore[arg-type]
    underlay = next(h.underlay for h in session.plan.hosts if h.name == src.host)
    expect = expected_overhead(underlay)
    net = next(n for n in session.plan.networks if n.vni == vni)
    pmtu = path.get("pmtu")
    guess = pmtu - expect if pmtu else None
    async with limit:
        try:
            inner, rounds = await largest_inner(session.client(src.host), src, dst.ip, net.mtu, guess)
        except OverlayError as e:
            return CheckResult(**base, outcome="error", message=e.message)
    details: Dict[str, Any] = {"inner_max": inner, "inner_mtu": net.mtu, "path_mtu": pmtu,
                               "expected": expect, "overhead": None, "fragmented": False,
                               "outer_full_frame": net.mtu + expect, "rounds": rounds,
                               "pmtu_verdict": path.get("verdict")}
    ms = round((time.monotonic() - started) * 1000, 3)
    if inner is None:
        return CheckResult(**base, outcome="skip", details=details, duration_ms=ms,
                           message="not measurable: no inner packet crosses the overlay at all "
                                   "(reachability and ports say why)")
    if not pmtu:
        return CheckResult(**base, outcome="skip", details=details, duration_ms=ms,
                           message=f"largest inner packet {inner}; underlay path MTU unknown "
                                   f"(pmtu: {path.get('verdict')})")
    # A multipath underlay (the pmtu check's flows disagree): the VTEP's own flow took one of
    # the legs, and what crossed says which. Read the overhead against that leg.
    legs = sorted({int(g["pmtu"]) for g in path.get("ecmp") or [] if g.get("pmtu")})
    leg = next((m for m in legs if m >= inner + expect), None)
    leg_note = ""
    if leg is not None and leg != pmtu and inner + expect > pmtu:
        leg_note = (f" (multipath underlay: its flows see path MTUs {', '.join(map(str, legs))}; "
                    f"the VTEP's flow took a {leg}-byte leg)")
        pmtu = details["path_mtu"] = details["ecmp_leg_mtu"] = leg
    measured = pmtu - inner
    if measured < expect:
        details["fragmented"] = True
        return CheckResult(
            **base, outcome="pass", details=details, duration_ms=ms,
            message=(f"inner packets of {inner} bytes cross a {pmtu}-byte path only because the "
                     f"sending VTEP fragments the {inner + expect}-byte VXLAN packets; the overhead "
                     f"({expect}) cannot be measured here, the mtu check flags the MTU"))
    if inner >= net.mtu:
        # The inner interface stopped the search, not the path: only a bound on the overhead.
        details["overhead"] = expect if measured == expect else None
        details["overhead_max"] = measured
        return CheckResult(**base, outcome="pass", details=details, duration_ms=ms,
                           message=(f"full-size inner packets ({inner}) cross; path MTU {pmtu} "
                                    f"leaves {measured} bytes, consistent with {expect}"
                                    f"{leg_note}"))
    details["overhead"] = measured
    if measured == expect:
        return CheckResult(**base, outcome="pass", details=details, duration_ms=ms,
                           message=(f"overhead {measured} bytes (largest inner {inner}, path "
                                    f"MTU {pmtu}){leg_note}"))
    return CheckResult(**base, outcome="fail", details=details, duration_ms=ms,
                       message=(f"overhead {measured} bytes, expected {expect}: the largest inner "
                                f"packet is {inner} on a {pmtu}-byte path; something adds headers "
                                "(another tunnel, IP options) or drops packets below the path MTU"))


async def _measure(session: OverlaySession) -> Dict[str, CheckResult]:
    paths = await pmtu_check.measure(session)
    limits = {h: asyncio.Semaphore(PER_HOST_PARALLEL) for h in session.hosts}
    res = await asyncio.gather(*(
        _pair(session, a, b, vni, paths.get((a.host, b.host), {}), limits[a.host])
        for a, b, vni in reachability.pairs(session.plan)))
    return {r.test_id: r for r in res}


async def run(session: OverlaySession) -> List[CheckResult]:
    return list((await measure(session)).values())
