"""A running overlay: agents on every host, networks and endpoints made, mappings installed.

The session is async and knows nothing of pytest; :mod:`pytest_overlay.runner` drives it. A host
whose agent cannot start or dies is marked (its :class:`HostReport` says why) and the rest go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

from pytest_overlay.errors import AgentError, OverlayError
from pytest_overlay.models import EndpointPlan, HostPlan, HostReport, NetworkSpec, RunPlan
from pytest_overlay.transport import AgentHandle


def mac_for(ip: str) -> str:
    """Docker's scheme: 02:42 then the four bytes of the IPv4 address (locally administered)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.ip_address(ip).packed)


def one_endpoint_per_host(hosts: List[HostPlan], network: NetworkSpec) -> List[EndpointPlan]:
    """Endpoint ``e0`` on every host, addresses from .2 up (.1 is left for a gateway)."""
    net = ipaddress.ip_network(network.subnet)
    if len(hosts) + 2 > net.num_addresses:
        raise OverlayError(f"subnet {net} has no room for {len(hosts)} endpoints",
                           "use a larger --overlay-subnet")
    return [
        EndpointPlan(name="e0", host=h.name, network=network.name, ip=str(net[i + 2]),
                     mac=mac_for(str(net[i + 2])))
        for i, h in enumerate(hosts)
    ]


@dataclass
class HostState:
    plan: HostPlan
    handle: Optional[AgentHandle] = None
    status: str = "not-started"
    error: Optional[str] = None
    hello: Dict[str, Any] = field(default_factory=dict)
    vtep: Optional[List[Any]] = None
    counters: Dict[str, Any] = field(default_factory=dict)
    missing: List[str] = field(default_factory=list)  # capabilities: its checks are skipped

    @property
    def ok(self) -> bool:
        if self.status != "ok" or self.handle is None:
            return False
        if not self.handle.client.alive:
            self.fail(f"the agent is gone mid-run ({self.handle.client.closed_reason})")
            return False
        return True

    def fail(self, error: str) -> None:
        self.status = "error"
        self.error = self.error or error

    def report(self) -> HostReport:
        return HostReport(
            name=self.plan.name, underlay=self.plan.underlay, transport=self.plan.transport,
            status="ok" if self.status == "ok" else ("error" if self.error else "not-started"),
            error=self.error, agent_version=self.hello.get("agent_version"),
            capabilities=self.hello.get("capabilities", {}), counters=self.counters,
            ssh=dict(getattr(self.handle, "info", None) or {}),
        )


class OverlaySession:
    def __init__(self, plan: RunPlan, prefix: str, starter: Any, control_plane: str = "raft") -> None:
        """``starter(host_plan)`` is a coroutine function returning an :class:`AgentHandle`.

        ``control_plane``: "raft" (agents replicate the mappings, controlplane.py) or "static"
        (the controller pushes them, :meth:`push_mappings`).
        """
        self.plan = plan
        self.prefix = prefix
        self._starter = starter
        self.control_plane = control_plane
        self.raft: Any = None  # controlplane.RaftInfo in raft mode
        self.raft_port = 7946
        self.extra_ports: List[Tuple[int, str]] = []  # --overlay-ports, for the ports check
        self.hosts: Dict[str, HostState] = {h.name: HostState(h) for h in plan.hosts}
        self.timings: Dict[str, float] = {}
        #: each host kernel's neighbour tables when the overlay was up (see neighbour_tables)
        self.neighbours_start: Dict[str, Any] = {}
        #: each host's connection-tracking table when the overlay was up (see agent_reads)
        self.conntrack_start: Dict[str, Any] = {}
        #: each host's drop counters when the overlay was up (see agent_reads)
        self.drops_start: Dict[str, Any] = {}
        #: each agent's clock against the controller's, sampled as it started (checks/clock.py)
        self.clocks: Dict[str, Any] = {}

    def client(self, host: str) -> Any:
        st = self.hosts[host]
        if not st.ok:
            raise AgentError(host, st.error or "the agent is not running")
        assert st.handle is not None
        return st.handle.client

    def unavailable(self, *hosts: str) -> Optional[Tuple[str, str]]:
        """(outcome, why) for the first of ``hosts`` that cannot take part, else None: a host
        that lacks a capability makes its checks ``skip``; any other trouble ``error``."""
        for host in hosts:
            st = self.hosts[host]
            if not st.ok:
                return ("skip" if st.missing else "error",
                        f"host {host} is not available: {st.error or 'agent down'}")
        return None

    async def start(self) -> None:
        t0 = time.monotonic()
        await asyncio.gather(*(self._start_host(st) for st in self.hosts.values()))
        self.timings["agents_s"] = time.monotonic() - t0
        # Before the control plane: a host whose clock is far off cannot join Raft, and its
        # failure should say why.
        self.clocks = await self.clock_samples()
        t1 = time.monotonic()
        await asyncio.gather(*(self._setup_host(st) for st in self.hosts.values() if st.ok))
        if self.control_plane == "raft":
            from pytest_overlay.controlplane import bootstrap

            await bootstrap(self, port=self.raft_port)
        else:
            await self.push_mappings()
        self.timings["overlay_s"] = time.monotonic() - t1
        self.neighbours_start, self.conntrack_start, self.drops_start = await asyncio.gather(
            self.neighbour_tables(), self.agent_reads("conntrack"), self.agent_reads("drops"))

    async def _start_host(self, st: HostState) -> None:
        try:
            st.handle = await self._starter(st.plan)
            st.hello = await st.handle.client.call("hello", protocol=1, rpc_timeout=15)
            caps = st.hello.get("capabilities", {})
            missing = [k for k in ("root", "tun", "iproute2") if not caps.get(k)]
            if missing:
                st.missing = missing
                st.fail(f"missing capabilities: {', '.join(missing)} (the VTEP needs root, "
                        "/dev/net/tun and iproute2)")
                return
            res = await st.handle.client.call(
                "configure", host=st.plan.name, prefix=self.prefix, underlay=st.plan.underlay,
                vxlan_port=self.plan.vxlan_port, probe_port=self.plan.probe_port)
            st.vtep = res["vtep"]
            st.status = "ok"
        except OverlayError as e:
            st.fail(f"{e.message}; fix: {e.hint}" if e.hint else e.message)
        except Exception as e:
            st.fail(f"{type(e).__name__}: {e}")

    async def _setup_host(self, st: HostState) -> None:
        client = self.client(st.plan.name)
        try:
            mine = [ep for ep in self.plan.endpoints if ep.host == st.plan.name]
            for name in sorted({ep.network for ep in mine}):
                net = self.plan.network(name)
                await client.call("create_network", name=net.name, vni=net.vni,
                                  subnet=net.subnet, mtu=net.mtu)
            for ep in mine:
                await client.call("add_endpoint", network=ep.network, name=ep.name, ip=ep.ip,
                                  mac=ep.mac)
        except OverlayError as e:
            st.fail(e.message)

    async def push_mappings(self) -> None:
        """Controller-pushed control plane: members and (VNI, MAC, IP) -> VTEP to every agent."""
        live = [st for st in self.hosts.values() if st.ok and st.vtep]
        members = [st.vtep[0] for st in live if st.vtep]
        vtep_of = {st.plan.name: st.vtep for st in live}
        calls = []
        for st in live:
            client = self.client(st.plan.name)
            # Every member is an agent: all take VXLAN Remote Checksum Offload.
            calls.append(client.call("set_members", vteps=members, remcsum=members))
            for net in self.plan.networks:
                entries = [
                    {"mac": ep.mac, "ip": ep.ip, "vtep": vtep_of[ep.host]}
                    for ep in self.plan.endpoints
                    if ep.network == net.name and ep.host in vtep_of
                ]
                hosts_in = {ep.host for ep in self.plan.endpoints if ep.network == net.name}
                if st.plan.name not in hosts_in:
                    continue
                vteps = [vtep_of[h] for h in sorted(hosts_in) if h in vtep_of]
                calls.append(client.call("set_mappings", vni=net.vni, entries=entries, vteps=vteps))
        results = await asyncio.gather(*calls, return_exceptions=True)
        for r in results:
            if isinstance(r, AgentError) and r.host in self.hosts:
                self.hosts[r.host].fail(r.message)

    async def neighbour_tables(self) -> Dict[str, Any]:
        """Host -> its kernel's neighbour tables now (``overlay_agent.io.neighbours.read``), or
        the OverlayError that kept the agent from answering. The hosts of a local lab are
        namespaces of the controller's own machine: one kernel, which only the initial
        namespace can read, so the controller reads it once for all of them (``shared``)."""
        from overlay_agent.io import neighbours

        machine: Dict[str, Any] = {}

        async def ask(st: HostState) -> Any:
            if st.plan.transport != "netns":
                return await self.client(st.plan.name).call("neighbours", rpc_timeout=5)
            if not machine:
                machine.update(neighbours.read(), shared=True)
            return machine

        return await self.each_live(ask)

    async def each_live(self, ask: Callable[[HostState], Awaitable[Any]],
                        only: Optional[Callable[[HostState], bool]] = None) -> Dict[str, Any]:
        """Host -> ``await ask(its state)`` for every live host (of those ``only`` keeps), in
        parallel, or the OverlayError that kept that host from answering."""
        async def one(st: HostState) -> Any:
            try:
                return await ask(st)
            except OverlayError as e:
                return e

        live = [st for st in self.hosts.values() if st.ok and (only is None or only(st))]
        got = await asyncio.gather(*(one(st) for st in live))
        return {st.plan.name: g for st, g in zip(live, got)}

    async def clock_samples(self) -> Dict[str, Any]:
        """Host -> its agent's clock against the controller's (``checks.clock.sample``)."""
        from pytest_overlay.checks import clock

        return await self.each_live(lambda st: clock.sample(self.client(st.plan.name)))

    async def agent_reads(self, method: str) -> Dict[str, Any]:
        """Host -> what its agent's read-only ``method`` answers now, read in the agent's own
        network namespace (``conntrack``: its connection-tracking table; ``drops``: its drop
        counters)."""
        return await self.each_live(
            lambda st: self.client(st.plan.name).call(method, rpc_timeout=5))

    async def collect_counters(self) -> None:
        async def one(st: HostState) -> None:
            with contextlib.suppress(Exception):
                st.counters = await self.client(st.plan.name).call("counters", rpc_timeout=5)

        await asyncio.gather(*(one(st) for st in self.hosts.values() if st.ok))

    async def close(self) -> None:
        """Stop every agent (each removes what it made), in parallel; never raises."""
        async def one(st: HostState) -> None:
            if st.handle is not None:
                with contextlib.suppress(Exception):
                    await st.handle.stop()

        await asyncio.gather(*(one(st) for st in self.hosts.values()))

    def host_reports(self) -> List[HostReport]:
        return [st.report() for st in self.hosts.values()]

