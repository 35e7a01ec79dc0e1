"""Underlay port audit: can each host reach each other host on the ports an overlay needs?

Per ordered host pair, before any overlay traffic:

* ``vxlan``: VXLAN-framed probes to the VXLAN port (a real VXLAN header on the reserved probe
  VNI 0, see ``overlay_agent/core/probelog.py``); the receiving VTEP logs each probe id;
* ``udp``: random-payload UDP to the same port (some middleboxes drop VXLAN by content but pass
  other UDP, and the other way round);
* ``raft``: a TCP handshake to the control plane's port (:data:`RAFT_PORT`, or the run's
  ``raft_port`` when it has one);
* ``ssh``: a TCP handshake to :data:`SSH_PORT` (or the plan's ``ssh_port``).

For the TCP ports every receiving agent listens on them for the length of the audit (unless a
real service already does), so a connect tells ``open`` from ``rejected`` (RST) from
``filtered`` (no answer). A failure whose reverse direction passes is called asymmetric.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any, Dict, List, Optional, Tuple

from pytest_overlay import evidence
from pytest_overlay.checks import ports_extra
from pytest_overlay.errors import OverlayError
from pytest_overlay.models import CheckResult, HostPlan, RunPlan
from pytest_overlay.session import OverlaySession

NAME = "ports"
#: default TCP port of the Raft control plane (Docker Swarm's gossip port; override with
#: ``RunPlan.raft_port`` when the plan has that field)
RAFT_PORT = 7946
SSH_PORT = 22
#: UDP probes per kind and pair: with 10 % random loss all five vanish once in 10^5 pairs
PROBES = 5
#: the kernel sends SYNs at 0, 1 and 3 s: three tries before a port is called filtered, so
#: random loss on a path is not mistaken for a firewall
TCP_TIMEOUT_S = 3.2
#: verdicts that do not fail the pair: a port that lets some probes through is open (the loss
#: itself is the pmtu check's business, which tells size-dependent loss from plain loss)
OK_VERDICTS = ("pass", "lossy")
#: how long after the last send the receivers' probe logs are polled for stragglers (polling
#: stops as soon as all arrived; on a fresh IPv6 link neighbour discovery alone takes ~1 s)
WAIT_S = 3.0
PER_HOST_PARALLEL = 8
UDP_KINDS = ("vxlan", "udp")
TCP_KINDS = ("raft", "ssh")
KINDS = UDP_KINDS + TCP_KINDS


def tcp_ports(plan: RunPlan, session: Any = None) -> Dict[str, int]:
    """The TCP ports to probe: the run's Raft port (``session.raft_port``, set from
    ``--overlay-raft-port``, or ``plan.raft_port``) else :data:`RAFT_PORT`; SSH likewise."""
    def pick(name: str, default: int) -> int:
        for owner in (session, plan):
            value = getattr(owner, name, None)
            if isinstance(value, int) and 0 < value < 65536:
                return value
        return default

    return {"raft": pick("raft_port", RAFT_PORT), "ssh": pick("ssh_port", SSH_PORT)}


def host_pairs(plan: RunPlan) -> List[Tuple[HostPlan, HostPlan]]:
    return [(a, b) for a in plan.hosts for b in plan.hosts if a is not b]


def test_ids(plan: RunPlan) -> List[str]:
    return [f"{a.name}->{b.name}" for a, b in host_pairs(plan)]


# -- judging (pure) ---------------------------------------------------------------------------
def udp_verdict(sent: int, received: int) -> str:
    if sent <= 0:
        return "error"
    if received >= sent:
        return "pass"
    return "lossy" if received else "blocked"


def tcp_verdict(state: str, listener: Optional[str]) -> str:
    """``listener``: what the receiver said of the port (``ours``/``in-use``/``error: ...``)."""
    if state == "open":
        return "pass"
    if state == "refused":
        # With a listener in place a RST can only come from a reject rule on the way.
        return "rejected" if listener in ("ours", "in-use") else "closed"
    if state == "timeout":
        return "filtered"
    return "unreachable" if state == "unreachable" else "error"


_WHY = {
    "blocked": "no probe arrived",
    "lossy": "open, but some probes were lost on the way",
    "rejected": "a RST came back although the port listens (a reject rule on the path)",
    "closed": "refused and nothing could listen there to tell (port unknown)",
    "filtered": "no answer to the SYN (dropped on the path)",
    "unreachable": "an ICMP error came back",
    "error": "the probe could not be sent",
}


def describe(kind: str, probe: Dict[str, Any]) -> str:
    if kind not in KINDS:  # an extra port (--overlay-ports), keyed "PORT/PROTO"
        return ports_extra.describe(kind, probe, _WHY)
    port = probe.get("port")
    label = {"vxlan": f"VXLAN {port}/udp", "udp": f"random-payload UDP {port}/udp",
             "raft": f"Raft {port}/tcp", "ssh": f"SSH {port}/tcp"}[kind]
    v = probe["verdict"]
    if kind in UDP_KINDS:
        return f"{label} {v} ({probe.get('received', 0)} of {probe.get('sent', 0)} probes arrived)"
    extra = f": {probe['error']}" if probe.get("error") else ""
    return f"{label} {v} ({_WHY.get(v, v)}{extra})"


def judge(src: str, dst: str, probes: Dict[str, Dict[str, Any]],
          reverse: Optional[Dict[str, Dict[str, Any]]]) -> Tuple[str, str, List[str]]:
    """Outcome, message and the asymmetric kinds for one ordered pair's probe results."""
    keys = [k for k in KINDS if k in probes] + [k for k in probes if k not in KINDS]
    ok = (*OK_VERDICTS, ports_extra.UNVERIFIED)
    bad = [k for k in keys if probes[k]["verdict"] not in ok]
    lossy = [describe(k, probes[k]) for k in keys if k not in bad and (
             probes[k]["verdict"] in ("lossy", ports_extra.UNVERIFIED)
             or probes[k].get("observed") == "interface")]
    if not bad:
        note = f" ({'; '.join(lossy)})" if lossy else ""
        more = [k for k in keys if k not in KINDS]
        also = f"; also {', '.join(more)}" if more else ""
        return "pass", f"VXLAN, random UDP, Raft and SSH ports all open{also}{note}", []
    asym = [k for k in bad
            if reverse and (reverse.get(k) or {}).get("verdict") in OK_VERDICTS]
    parts = []
    for k in bad:
        text = describe(k, probes[k])
        if k in asym:
            text += f"; asymmetric: {dst}->{src} passes"
        parts.append(text)
    parts += lossy
    v, u = (probes.get("vxlan") or {}).get("verdict"), (probes.get("udp") or {}).get("verdict")
    if v not in OK_VERDICTS and u in OK_VERDICTS:
        parts.append("other UDP to the same port passes: something on the path drops VXLAN "
                     "by content (a VXLAN-aware firewall or DPI rule)")
    elif v in OK_VERDICTS and u not in (None, *OK_VERDICTS):
        parts.append("VXLAN passes but other UDP to the port does not: the path admits only "
                     "VXLAN there (harmless for the overlay)")
    return "fail", f"{src}->{dst}: " + "; ".join(parts), asym


# -- probing ----------------------------------------------------------------------------------
async def _send(session: OverlaySession, a: HostPlan, b: HostPlan, ids: Dict[str, str],
                ports: Dict[str, int], limit: asyncio.Semaphore,
                extra: Optional[List[Tuple[int, str]]] = None) -> Dict[str, Any]:
    client = session.client(a.name)
    calls = [client.call("send_probes", dst=b.underlay, probe_id=ids[kind], kind=kind,
                         port=session.plan.vxlan_port, count=PROBES) for kind in UDP_KINDS]
    calls += [client.call("tcp_connect", dst=b.underlay, port=ports[kind], timeout=TCP_TIMEOUT_S,
                          rpc_timeout=TCP_TIMEOUT_S + 30) for kind in TCP_KINDS]
    more = ports_extra.send_calls(client, b.underlay, ids, extra or [], PROBES, TCP_TIMEOUT_S)
    async with limit:  # the four probes of a pair at once: two filtered ports cost 3 s, not 6
        answers = await asyncio.gather(*calls, *(c for _, c in more))
    return dict(zip([*UDP_KINDS, *TCP_KINDS, *(k for k, _ in more)], answers))


async def _collect(session: OverlaySession, want: Dict[str, List[str]],
                   deadline: float) -> Dict[str, Dict[str, Any]]:
    """Probe log entries per receiving host, polled until every id is in or the deadline."""
    got: Dict[str, Dict[str, Any]] = {h: {} for h in want}
    while True:
        async def one(host: str) -> None:
            missing = [i for i in want[host] if got[host].get(i, {}).get("count", 0) < PROBES]
            if missing and session.hosts[host].ok:
                with_log = await session.client(host).call("probe_log", ids=missing)
                got[host].update(with_log.get("probes", {}))

        await asyncio.gather(*(one(h) for h in want), return_exceptions=True)
        done = all(got[h].get(i, {}).get("count", 0) >= PROBES for h in want for i in want[h])
        if done or time.monotonic() >= deadline:
            return got
        await asyncio.sleep(0.05)


async def run(session: OverlaySession) -> List[CheckResult]:
    plan = session.plan
    ports = tcp_ports(plan, session)
    pairs = host_pairs(plan)
    started = time.monotonic()
    live = [h.name for h in plan.hosts if session.hosts[h.name].ok]
    token = secrets.token_hex(4)
    extra = ports_extra.extras(session)
    ids = {(a.name, b.name): {**{k: f"{token}{i}{k[0]}"
                                 for k, i in zip(UDP_KINDS, (2 * n, 2 * n + 1))},
                              **ports_extra.probe_ids(token, n, extra)}
           for n, (a, b) in enumerate(pairs)}
    listeners: Dict[str, Dict[str, str]] = {}
    udp_listeners: Dict[str, Dict[str, str]] = {}

    async def listen(host: str) -> None:
        tcp = sorted(set(ports.values()) | set(ports_extra.tcp_of(extra)))
        res = await session.client(host).call("listen_tcp", ports=tcp)
        listeners[host] = res.get("ports", {})

    sent: Dict[Tuple[str, str], Any] = {}
    extra_logs: Dict[str, Dict[str, Dict[str, Any]]] = {}
    try:  # the listeners are closed in the finally, also when opening them failed half-way
        await asyncio.gather(*(listen(h) for h in live), return_exceptions=True)
        udp_listeners = await ports_extra.listen_udp(session, live, extra)
        limits = {h.name: asyncio.Semaphore(PER_HOST_PARALLEL) for h in plan.hosts}
        todo = [(a, b) for a, b in pairs if a.name in live and b.name in live]
        outs = await asyncio.gather(*(_send(session, a, b, ids[(a.name, b.name)], ports,
                                            limits[a.name], extra) for a, b in todo),
                                    return_exceptions=True)
        sent = {(a.name, b.name): o for (a, b), o in zip(todo, outs)}
        want: Dict[str, List[str]] = {}
        want_extra: Dict[str, List[Tuple[int, str]]] = {}
        for (sa, sb), o in sent.items():
            if not isinstance(o, BaseException):
                want.setdefault(sb, []).extend(ids[(sa, sb)][k] for k in UDP_KINDS)
                want_extra.setdefault(sb, []).extend(
                    (p, ids[(sa, sb)][f"{p}/udp"]) for p in ports_extra.udp_of(extra))
        deadline = time.monotonic() + WAIT_S
        logs, extra_logs = await asyncio.gather(
            _collect(session, want, deadline),
            ports_extra.collect(session, want_extra, PROBES, deadline))
    finally:
        await asyncio.gather(*(session.client(h).call("unlisten_tcp") for h in live
                               if session.hosts[h].ok), return_exceptions=True)
        await ports_extra.unlisten(session, live, extra)

    per_pair: Dict[Tuple[str, str], Dict[str, Dict[str, Any]]] = {}
    for (sa, sb), o in sent.items():
        if isinstance(o, BaseException):
            continue
        probes: Dict[str, Dict[str, Any]] = {}
        for kind in UDP_KINDS:
            entry = logs.get(sb, {}).get(ids[(sa, sb)][kind], {})
            n_sent, n_got = int(o[kind].get("sent", 0)), int(entry.get("count", 0))
            probes[kind] = {"port": plan.vxlan_port, "sent": n_sent, "received": n_got,
                            "verdict": udp_verdict(n_sent, n_got)}
            if o[kind].get("errors"):
                probes[kind]["error"] = "; ".join(o[kind]["errors"][:3])
        for kind in TCP_KINDS:
            r = dict(o[kind])
            r["listener"] = listeners.get(sb, {}).get(str(ports[kind]))
            r["verdict"] = tcp_verdict(str(r.get("state")), r["listener"])
            probes[kind] = r
        for p, proto in extra:
            key = f"{p}/{proto}"
            if proto == "udp":
                entry = extra_logs.get(sb, {}).get(str(p), {}).get(ids[(sa, sb)][key], {})
                probes[key] = ports_extra.udp_result(
                    p, o[key], int(entry.get("count", 0)),
                    udp_listeners.get(sb, {}).get(str(p)), udp_verdict)
            else:
                r = dict(o[key])
                r["proto"] = "tcp"
                r["listener"] = listeners.get(sb, {}).get(str(p))
                r["verdict"] = tcp_verdict(str(r.get("state")), r["listener"])
                probes[key] = r
        per_pair[(sa, sb)] = probes

    results = []
    elapsed = round((time.monotonic() - started) * 1000, 3)
    for a, b in pairs:
        base: Dict[str, Any] = {"check": NAME, "src": a.name, "dst": b.name}
        o = sent.get((a.name, b.name))
        down = [h for h in (a.name, b.name) if not session.hosts[h].ok]
        if down or o is None or isinstance(o, BaseException):
            why = (f"host {down[0]} is not available: {session.hosts[down[0]].error or 'agent down'}"
                   if down else (o.message if isinstance(o, OverlayError) else f"probe failed: {o}"))
            # A host lacking a capability skips its pairs; any other trouble is an error.
            skip = bool(down) and bool(getattr(session.hosts[down[0]], "missing", None))
            results.append(CheckResult(**base, outcome="skip" if skip else "error", message=why,
                                       duration_ms=elapsed))
            continue
        probes = per_pair[(a.name, b.name)]
        outcome, message, asym = judge(a.name, b.name, probes, per_pair.get((b.name, a.name)))
        details = {"src_underlay": a.underlay, "dst_underlay": b.underlay, "probes": probes,
                   "asymmetric": asym}
        results.append(CheckResult(**base, outcome=outcome, message=message,  # type: ignore[arg-type]
                                   details=details, duration_ms=elapsed))
    async def reprobe(result: CheckResult) -> None:
        """The failing pair's own probes again, while the evidence capture runs."""
        by_name = {h.name: h for h in plan.hosts}
        a, b = by_name[str(result.src)], by_name[str(result.dst)]
        await _send(session, a, b, {k: secrets.token_hex(4) for k in UDP_KINDS}, ports,
                    asyncio.Semaphore(1))  # (the extra ports' listeners are closed by now)

    return await evidence.after_check(session, NAME, results, reprobe=reprobe)
