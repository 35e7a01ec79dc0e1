"""The extra ports of the ``ports`` check (``--overlay-ports``, e.g. Docker Swarm's
2377/tcp, 7946/tcp and 7946/udp), probed per ordered host pair next to the built-in kinds.

* TCP: the receiving agent listens on the port for the audit (``listen_tcp``, or leaves it to a
  real service already there) and the sender tries a handshake (``tcp_connect``);
* UDP: the receiving agent listens on the port at its underlay address (``listen_udp``) and logs
  the ids of the random-payload probes (``send_probes(kind="udp", port=...)``) that arrive.

Results land in the pair's ``details.probes`` under ``"PORT/PROTO"`` keys.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Dict, List, Optional, Tuple

from pytest_overlay.portspec import label

#: verdict of an extra UDP port another program already holds: probes go to it, unseen by us
UNVERIFIED = "unverified"
#: listener state of such a port when the receiver watches probes arrive on its interface
CAPTURE = "capture"


def extras(session: Any) -> List[Tuple[int, str]]:
    """The run's extra ports; UDP on the VXLAN port is the check's own VXLAN probe already."""
    vxlan = int(getattr(session.plan, "vxlan_port", 4789))
    return [(p, proto) for p, proto in getattr(session, "extra_ports", None) or []
            if not (proto == "udp" and p == vxlan)]


def tcp_of(ports: List[Tuple[int, str]]) -> List[int]:
    return [p for p, proto in ports if proto == "tcp"]


def udp_of(ports: List[Tuple[int, str]]) -> List[int]:
    return [p for p, proto in ports if proto == "udp"]


def probe_ids(token: str, n: int, ports: List[Tuple[int, str]]) -> Dict[str, str]:
    """Probe ids of pair number ``n`` for its extra UDP ports (alphanumeric, <= 32 chars)."""
    return {label(p, "udp"): f"{token}x{n}p{p}" for p in udp_of(ports)}


async def listen_udp(session: Any, live: List[str], ports: List[Tuple[int, str]]
                     ) -> Dict[str, Dict[str, str]]:
    """Open the UDP listeners on every live host; ``{host: {"7946": "ours"|"in-use"|...}}``."""
    udp = udp_of(ports)
    if not udp:
        return {}
    members = [h.underlay for h in session.plan.hosts]
    out: Dict[str, Dict[str, str]] = {}

    async def one(host: str) -> None:
        res = await session.client(host).call("listen_udp", ports=udp, members=members)
        out[host] = res.get("ports", {})

    await asyncio.gather(*(one(h) for h in live), return_exceptions=True)
    return out


async def unlisten(session: Any, live: List[str], ports: List[Tuple[int, str]]) -> None:
    if udp_of(ports):
        await asyncio.gather(*(session.client(h).call("unlisten_udp") for h in live
                               if session.hosts[h].ok), return_exceptions=True)


def send_calls(client: Any, dst: str, ids: Dict[str, str], ports: List[Tuple[int, str]],
               count: int, tcp_timeout: float) -> List[Tuple[str, Awaitable[Any]]]:
    calls: List[Tuple[str, Awaitable[Any]]] = []
    for p, proto in ports:
        key = label(p, proto)
        if proto == "udp":
            calls.append((key, client.call("send_probes", dst=dst, probe_id=ids[key], kind="udp",
                                           port=p, count=count)))
        else:
            calls.append((key, client.call("tcp_connect", dst=dst, port=p, timeout=tcp_timeout,
                                           rpc_timeout=tcp_timeout + 30)))
    return calls


async def collect(session: Any, want: Dict[str, List[Tuple[int, str]]], count: int,
                  deadline: float) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """``{host: {port: {probe_id: entry}}}`` polled until every probe is in or the deadline."""
    got: Dict[str, Dict[str, Dict[str, Any]]] = {h: {} for h in want}

    def have(host: str, port: int, pid: str) -> int:
        return int(got[host].get(str(port), {}).get(pid, {}).get("count", 0))

    while True:
        async def one(host: str) -> None:
            missing = [pid for port, pid in want[host] if have(host, port, pid) < count]
            if missing and session.hosts[host].ok:
                res = await session.client(host).call("udp_probe_log", ids=missing)
                for port, entries in (res.get("ports") or {}).items():
                    got[host].setdefault(port, {}).update(entries)

        await asyncio.gather(*(one(h) for h in want), return_exceptions=True)
        if all(have(h, port, pid) >= count for h in want for port, pid in want[h]) \
                or time.monotonic() >= deadline:
            return got
        await asyncio.sleep(0.05)


def udp_result(port: int, answer: Dict[str, Any], received: int, listener: Optional[str],
               verdict_of: Any) -> Dict[str, Any]:
    n_sent = int(answer.get("sent", 0))
    probe: Dict[str, Any] = {"port": port, "proto": "udp", "sent": n_sent, "received": received,
                             "listener": listener}
    if listener in ("ours", CAPTURE) or received:
        probe["verdict"] = verdict_of(n_sent, received)
        if listener == CAPTURE:
            # seen on the receiver's interface, before its own firewall and the port's owner
            probe["observed"] = "interface"
    else:
        probe["verdict"] = UNVERIFIED
        probe["error"] = (f"port {port}/udp is held by another program on the receiver "
                          f"({listener or 'listener unknown'}): probes cannot be observed")
    if answer.get("errors"):
        probe["error"] = "; ".join(answer["errors"][:3])
    return probe


def describe(key: str, probe: Dict[str, Any], why: Dict[str, str]) -> str:
    v = probe["verdict"]
    if probe.get("proto") == "udp":
        if v == UNVERIFIED:
            return f"{key} unverified ({probe.get('error')})"
        counts = f"{probe.get('received', 0)} of {probe.get('sent', 0)} probes"
        if probe.get("observed") == "interface":
            return (f"{key} {v} at the receiver's interface ({counts} reached it; another "
                    "program holds the port there, so the receiver's own firewall and that "
                    "program were not tested)")
        return f"{key} {v} ({counts} arrived)"
    extra = f": {probe['error']}" if probe.get("error") else ""
    return f"{key} {v} ({why.get(v, v)}{extra})"


__all__ = ["CAPTURE", "UNVERIFIED", "collect", "describe", "extras", "listen_udp", "probe_ids",
           "send_calls", "udp_result", "unlisten"]
