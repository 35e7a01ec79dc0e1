"""Reachability: every ordered pair of endpoints, ICMP echo and a 64 KiB TCP transfer.

A payload far larger than the MTU is the point: "small requests work but large payloads time
out" is the classic overlay failure, and a ping alone does not see it.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any, Dict, List, Optional, Tuple

from pytest_overlay import evidence
from pytest_overlay.errors import OverlayError
from pytest_overlay.models import CheckResult, EndpointPlan, RunPlan
from pytest_overlay.session import OverlaySession

NAME = "reachability"
TRANSFER_BYTES = 64 * 1024
PING_COUNT = 3
PER_HOST_PARALLEL = 8


def pairs(plan: RunPlan) -> List[Tuple[EndpointPlan, EndpointPlan, int]]:
    """Ordered pairs of distinct endpoints on the same network, with its VNI."""
    out = []
    for net in plan.networks:
        eps = [ep for ep in plan.endpoints if ep.network == net.name]
        for a in eps:
            for b in eps:
                if a is not b:
                    out.append((a, b, net.vni))
    return out


def test_ids(plan: RunPlan) -> List[str]:
    return [f"{a.label}->{b.label}[vni={vni}]" for a, b, vni in pairs(plan)]


def _sender_view(tcp: Dict[str, Any], mtu: Optional[int]) -> Tuple[Optional[int], str]:
    """The path MTU the sending endpoint's TCP ended up with, and a clause saying so."""
    info = tcp.get("tcp_info") or {}
    pmtu, retrans = info.get("pmtu"), info.get("retransmits")
    if not pmtu or not mtu:
        return None, ""
    again = f", {retrans} segments retransmitted" if retrans else ""
    if pmtu < mtu:
        return pmtu, (f"the sender's path MTU is {pmtu}, below its MTU of {mtu} "
                      f"(learnt by path-MTU discovery through the VTEP{again})")
    return pmtu, f"the sender still used its full MTU of {mtu}{again}"


def judge(ping: Dict[str, Any], tcp: Dict[str, Any], mtu: Optional[int] = None
          ) -> Tuple[str, str]:
    """Outcome and message from one pair's ping and transfer results (``mtu``: the network's,
    to read the sender's ``tcp_info`` against)."""
    got = int(ping.get("received", 0))
    sent = int(ping.get("sent", 0))
    ok_tcp = bool(tcp.get("ok"))
    pmtu, view = _sender_view(tcp, mtu)
    if got and ok_tcp:
        lost = f", {sent - got} of {sent} pings lost" if got < sent else ""
        msg = f"ICMP echo and {TRANSFER_BYTES // 1024} KiB TCP transfer passed{lost}"
        if pmtu is not None and mtu is not None and pmtu < mtu:
            msg += f"; {view}: the overlay MTU is too high for this path (see mtu)"
        return "pass", msg
    why = tcp.get("error") or "transfer failed"
    if got and not ok_tcp:
        size = f"{TRANSFER_BYTES // 1024} KiB"
        if not tcp.get("stalled"):  # refused, reset, corrupted: not a matter of packet size
            return "fail", f"ICMP echo passes but the {size} TCP transfer fails ({why})"
        told = ""
        if pmtu is not None and mtu is not None:
            told = (f"; {view}: nothing told it the path is smaller" if pmtu >= mtu
                    else f"; {view}")
        acked = (tcp.get("tcp_info") or {}).get("bytes_acked")
        if acked is not None and acked > 1 + 8:  # more than the SYN and the 8-byte length
            # Full-size segments did cross: this stall is not (only) a size limit.
            return "fail", (f"ICMP echo passes but the {size} TCP transfer stalls part-way "
                            f"({why}): heavy loss, or a path that changed during the transfer"
                            f"{told}; run the pmtu check")
        return "fail", (
            f"ICMP echo passes but the {size} TCP transfer stalls ({why}): small packets pass "
            f"while large ones vanish, the classic overlay MTU problem{told}; run the pmtu check"
        )
    if ok_tcp:
        return "fail", f"TCP works but all {sent} ICMP echo requests went unanswered (ICMP filtered?)"
    return "fail", f"unreachable: no reply to {sent} ICMP echo requests and TCP failed ({why})"


async def _pair(session: OverlaySession, src: EndpointPlan, dst: EndpointPlan, vni: int,
                limit: asyncio.Semaphore) -> CheckResult:
    started = time.monotonic()
    base: Dict[str, Any] = {"check": NAME, "src": src.label, "dst": dst.label, "vni": vni}
    down = session.unavailable(src.host, dst.host)
    if down is not None:
        return CheckResult(**base, outcome=down[0], message=down[1])  # type: ignore[arg-type]
    client = session.client(src.host)
    async with limit:
        try:
            ping = await client.call("ping", endpoint=src.name, dst=dst.ip, count=PING_COUNT,
                                     size=56, timeout=1.0, interval=0.02)
            tcp = await client.call("tcp_transfer", endpoint=src.name, dst=dst.ip,
                                    nbytes=TRANSFER_BYTES, timeout=5.0)
        except OverlayError as e:
            return CheckResult(**base, outcome="error", message=e.message,
                               duration_ms=(time.monotonic() - started) * 1000)
    # A host that died while we probed makes its pairs errors, not network failures.
    down = session.unavailable(src.host, dst.host)
    if down is not None:
        return CheckResult(**base, outcome=down[0], message=down[1],  # type: ignore[arg-type]
                           duration_ms=(time.monotonic() - started) * 1000)
    net = next((n for n in session.plan.networks if n.vni == vni), None)
    outcome, message = judge(ping, tcp, net.mtu if net is not None else None)
    rtts = ping.get("rtts_ms") or []
    details: Dict[str, Any] = {
        "src_ip": src.ip, "dst_ip": dst.ip,
        "ping": {"sent": ping.get("sent"), "received": ping.get("received"),
                 "rtt_ms_min": round(min(rtts), 3) if rtts else None,
                 "rtt_ms_avg": round(statistics.fmean(rtts), 3) if rtts else None,
                 "rtt_ms_max": round(max(rtts), 3) if rtts else None},
        "tcp": tcp,
    }
    return CheckResult(**base, outcome=outcome, message=message, details=details,  # type: ignore[arg-type]
                       duration_ms=round((time.monotonic() - started) * 1000, 3))


async def run(session: OverlaySession) -> List[CheckResult]:
    limits = {h: asyncio.Semaphore(PER_HOST_PARALLEL) for h in session.hosts}
    results = list(await asyncio.gather(*(
        _pair(session, a, b, vni, limits[a.host]) for a, b, vni in pairs(session.plan)
    )))
    by_label = {(ep.label, ep.network): ep for ep in session.plan.endpoints}
    vni_net = {n.vni: n.name for n in session.plan.networks}

    async def reprobe(result: CheckResult) -> None:
        """The pair's own ping and transfer again, while the evidence capture runs."""
        net = vni_net.get(result.vni or -1, "")
        src, dst = by_label.get((str(result.src), net)), by_label.get((str(result.dst), net))
        if src is None or dst is None:
            return
        client = session.client(src.host)
        await client.call("ping", endpoint=src.name, dst=dst.ip, count=2, size=56, timeout=1.0,
                          interval=0.02)
        await client.call("tcp_transfer", endpoint=src.name, dst=dst.ip, nbytes=TRANSFER_BYTES,
                          timeout=2.0)

    return await evidence.after_check(session, NAME, results, reprobe=reprobe)
