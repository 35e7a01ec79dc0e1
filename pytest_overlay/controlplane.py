"""Raft control plane, controller side: bootstrap only (peer list, secret), then read.

The agents hold the table. The controller picks the voters (a small odd set, as Swarm's
managers: 3, or 5 from 7 hosts up; the rest are read-only replicas), makes a fresh secret per
run and hands it to each agent over its stdin (an RPC parameter: never argv, never a file),
then asks each agent to publish what it owns and waits until every replica holds every endpoint.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any, Dict, List, Optional

from pytest_overlay.errors import OverlayError

MODES = ("raft", "static")
DEFAULT_PORT = 7946


def voter_count(n: int) -> int:
    """3 voters up to 6 hosts (all of them below 3), 5 from 7 hosts on."""
    return n if n <= 3 else (3 if n < 7 else 5)


def _addr(ip: str, port: int) -> str:
    return f"{ip}:{port}"  # pysyncobj splits at the last colon, IPv6 needs no brackets


class RaftInfo:
    """What the controller knows of the Raft group (kept on the session as ``session.raft``)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.voters: List[str] = []
        self.voter_hosts: List[str] = []
        self.security = "none"
        self.started: Dict[str, Dict[str, Any]] = {}
        self.ready_s: Optional[float] = None


def _clock_hint(session: Any, st: Any) -> str:
    """Why a host could not take part in Raft when its clock is the reason: further from the
    others' than the Raft transport accepts (checks/clock.py; "" otherwise)."""
    from pytest_overlay.checks import clock

    clocks = getattr(session, "clocks", {})
    offsets = {h: s["offset"] for h, s in clocks.items() if isinstance(s, dict)}
    if st.plan.name not in offsets:
        return ""
    return clock.raft_hint(offsets[st.plan.name] - clock.reference(list(offsets.values())))


async def bootstrap(session: Any, port: int = DEFAULT_PORT, timeout: float = 30.0) -> RaftInfo:
    """Start Raft on every live agent, publish their endpoints, wait for full replicas."""
    info = RaftInfo(port)
    session.raft = info
    t0 = time.monotonic()
    live = [st for st in session.hosts.values() if st.ok]
    if not live:
        return info
    caps = await asyncio.gather(*(session.client(st.plan.name).call("raft_capabilities")
                                  for st in live), return_exceptions=True)
    usable = []
    for st, cap in zip(live, caps):
        if isinstance(cap, OverlayError):
            st.fail(cap.message)
        elif isinstance(cap, BaseException):
            st.fail(f"raft_capabilities: {cap}")
        elif not cap.get("pysyncobj"):
            st.fail("pysyncobj is missing from the agent: it must be bundled into agent.pyz")
        else:
            usable.append((st, cap))
    encrypt = bool(usable) and all(cap.get("fernet") for _, cap in usable)
    info.security = "hmac-sha256+fernet" if encrypt else "hmac-sha256"
    secret = secrets.token_hex(32)
    voters = [st for st, _ in usable][:voter_count(len(usable))]
    info.voter_hosts = [st.plan.name for st in voters]
    info.voters = [_addr(st.plan.underlay, port) for st in voters]

    async def start(st: Any) -> None:
        me = _addr(st.plan.underlay, port)
        try:
            info.started[st.plan.name] = await session.client(st.plan.name).call(
                "raft_start", secret=secret, voters=info.voters,
                self_addr=me if me in info.voters else None, encrypt=encrypt)
        except OverlayError as e:
            st.fail(f"raft_start: {e.message}")

    await asyncio.gather(*(start(st) for st, _ in usable))

    async def publish(st: Any) -> None:
        try:
            await session.client(st.plan.name).call("raft_publish", deadline=timeout,
                                                    rpc_timeout=timeout + 10)
        except OverlayError as e:
            st.fail(f"registering its endpoints by Raft failed: {e.message}{_clock_hint(session, st)}")

    await asyncio.gather(*(publish(st) for st in live if st.ok))
    # Every replica must hold every live host's endpoints before the data plane is checked.
    owners = {st.plan.name for st in live if st.ok}
    want = sum(1 for ep in session.plan.endpoints if ep.host in owners)

    async def converge(st: Any) -> None:
        try:
            res = await session.client(st.plan.name).call(
                "raft_wait", endpoints=want, timeout=timeout, rpc_timeout=timeout + 10)
            if not res.get("ok"):
                st.fail(f"its Raft replica did not receive all {want} endpoints within "
                        f"{timeout:g} s (has {res['status']['table_size']['endpoints']})"
                        f"{_clock_hint(session, st)}")
        except OverlayError as e:
            st.fail(f"{e.message}{_clock_hint(session, st)}")

    await asyncio.gather(*(converge(st) for st in live if st.ok))
    info.ready_s = round(time.monotonic() - t0, 3)
    session.timings["raft_s"] = info.ready_s
    return info
