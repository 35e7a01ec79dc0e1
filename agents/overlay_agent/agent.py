"""The agent's state and the operations the controller asks for (one method per RPC)."""

from __future__ import annotations

import ipaddress
import os
import platform
import re
import socket
import sys
import threading
from typing import Any, Dict, List, Optional

from overlay_agent import PROTOCOL_VERSION, __version__
from overlay_agent.controlplane import ControlPlaneMixin
from overlay_agent.core.probelog import PROBE_VNI
from overlay_agent.core.vtep import VtepCore
from overlay_agent.evidence import EvidenceOps
from overlay_agent.io import clock, conntrack, drops, gso, kernelvxlan, neighbours, netns, probes
from overlay_agent.io.dataplane import Dataplane
from overlay_agent.io.tap import open_tap
from overlay_agent.isolation import IsolationOps
from overlay_agent.methods import rpc
from overlay_agent.pmtu_methods import PmtuMethods
from overlay_agent.portaudit import PortAudit
from overlay_agent.udpaudit import UdpAudit
from overlay_agent.wire.ethernet import mac_to_bytes

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


class AgentError(Exception):
    """An operation failed in a way the controller should report; ``code`` classifies it."""

    def __init__(self, message: str, code: str = "failed") -> None:
        super().__init__(message)
        self.code = code


class Endpoint:
    def __init__(self, name: str, network: str, vni: int, ns: str, tap: str, fd: int, port: int,
                 mac: str, ip: str) -> None:
        self.name = name
        self.network = network
        self.vni = vni
        self.ns = ns
        self.tap = tap
        self.fd = fd
        self.port = port
        self.mac = mac
        self.ip = ip
        self.responder: Optional[probes.Responder] = None


def capabilities() -> Dict[str, Any]:
    """What this host can do: decides which checks run here (never assumed, always probed)."""
    tun = os.path.exists("/dev/net/tun") and os.access("/dev/net/tun", os.R_OK | os.W_OK)
    path = os.environ.get("PATH", "/usr/bin:/bin").split(":")
    has_ip = any(os.access(os.path.join(d, "ip"), os.X_OK) for d in [*path, "/sbin", "/usr/sbin"])
    return {
        "root": os.geteuid() == 0,
        "tun": tun,
        "kernel_vxlan": os.path.exists("/sys/module/vxlan") or _in_proc_modules("vxlan"),
        "iproute2": has_ip,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "hostname": socket.gethostname(),
    }


def _in_proc_modules(name: str) -> bool:
    try:
        with open("/proc/modules") as f:
            return any(line.split(" ", 1)[0] == name for line in f)
    except OSError:
        return False


class Agent(ControlPlaneMixin, PmtuMethods, PortAudit, UdpAudit, IsolationOps, EvidenceOps):
    """Everything one agent made on its host, and how to take it all away again."""

    def __init__(self) -> None:
        self.host = ""
        self.prefix = ""
        self.core = VtepCore(lock=threading.RLock())
        self.dataplane: Optional[Dataplane] = None
        self.networks: Dict[str, Dict[str, Any]] = {}
        self.endpoints: Dict[str, Endpoint] = {}
        self.probe_port = 7
        self._next_port = 1

    # -- RPC methods --------------------------------------------------------------------------
    @rpc()
    def hello(self, protocol: int, **_: Any) -> Dict[str, Any]:
        if protocol != PROTOCOL_VERSION:
            raise AgentError(
                f"controller speaks protocol {protocol}, this agent {PROTOCOL_VERSION}:"
                " rebuild the agent from the same pytest-overlay version", "version")
        return {"protocol": PROTOCOL_VERSION, "agent_version": __version__, "pid": os.getpid(),
                "capabilities": capabilities()}

    @rpc()
    def neighbours(self) -> Dict[str, Any]:
        """The host kernel's neighbour tables: entries, caps, overflows (io/neighbours.py)."""
        return neighbours.read()

    @rpc()
    def clock(self) -> Dict[str, Any]:
        """This host's wall clock now, and whether the kernel has it synchronised."""
        return {"time": clock.now(), "sync": clock.sync_state()}

    @rpc()
    def conntrack(self) -> Dict[str, Any]:
        """This namespace's connection-tracking table: fill, cap, losses (io/conntrack.py)."""
        return conntrack.read()

    @rpc()
    def drops(self) -> Dict[str, Any]:
        """This namespace's drop counters (bad checksums, rp_filter, socket overflows) and its
        rp_filter settings (io/drops.py)."""
        return drops.read()

    @rpc(slow=True)
    def kernel_overlays(self) -> Dict[str, Any]:
        """The host's kernel VXLAN devices, also in Docker's overlay namespaces (read-only)."""
        return kernelvxlan.scan()

    @rpc()
    def configure(self, host: str, prefix: str, underlay: str, vxlan_port: int = 4789,
                  probe_port: int = 7) -> Dict[str, Any]:
        if self.dataplane is not None:
            raise AgentError("the VTEP is already configured", "state")
        if not _NAME.match(host) or not re.match(r"^[a-z0-9]{2,10}$", prefix):
            raise AgentError(f"bad host name {host!r} or run prefix {prefix!r}", "invalid")
        self.host, self.prefix, self.probe_port = host, prefix, probe_port
        self.dataplane = Dataplane(self.core, underlay, vxlan_port)
        self.dataplane.start()
        return {"vtep": [underlay, self.dataplane.sock.getsockname()[1]]}

    @rpc()
    def create_network(self, name: str, vni: int, subnet: str, mtu: int = 1450) -> Dict[str, Any]:
        if not 0 <= vni <= 0xFFFFFF:
            raise AgentError(f"VNI {vni} is outside 0..16777215", "invalid")
        if vni == PROBE_VNI:
            raise AgentError(f"VNI {vni} is reserved for underlay port probes: use 1..16777215",
                             "invalid")
        net = ipaddress.ip_network(subnet)
        old = self.networks.get(name)
        if old is not None and (old["vni"], old["subnet"], old["mtu"]) != (vni, str(net), mtu):
            raise AgentError(f"network {name!r} exists with other settings", "conflict")
        self.networks[name] = {"vni": vni, "subnet": str(net), "mtu": mtu}
        self.core.add_network(vni)
        return {"name": name, "vni": vni}

    @rpc()
    def add_endpoint(self, network: str, name: str, ip: str, mac: str) -> Dict[str, Any]:
        self._need_vtep()
        net = self.networks.get(network)
        if net is None:
            raise AgentError(f"unknown network {network!r}: create_network first", "invalid")
        if not _NAME.match(name) or name in self.endpoints:
            raise AgentError(f"endpoint name {name!r} is invalid or taken", "invalid")
        subnet = ipaddress.ip_network(net["subnet"])
        addr = ipaddress.ip_address(ip)
        if addr not in subnet:
            raise AgentError(f"endpoint {name}: {ip} is outside {subnet}", "invalid")
        port = self._next_port
        self._next_port += 1
        ns = f"{self.prefix}-{self.host}-{name}"
        tap = f"{self.prefix}t{port}"
        netns.add(ns)
        fd = -1
        try:
            # IPv6 off before the link comes up: no router solicitations or DAD in the overlay.
            for key in ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"):
                try:
                    netns.write_sysctl(key, "1", netns=ns)
                except OSError:
                    pass
            fd = open_tap(tap, vnet_hdr=bool(self.dataplane and self.dataplane.vnet_hdr))
            netns.ip("link", "set", tap, "netns", ns)
            netns.ip("link", "set", "lo", "up", netns=ns)
            netns.ip("link", "set", tap, "name", "eth0", "address", mac, "mtu", str(net["mtu"]),
                     netns=ns)
            netns.ip("addr", "add", f"{ip}/{subnet.prefixlen}", "dev", "eth0", netns=ns)
            self._limit_tso(ns, int(net["mtu"]))
            netns.ip("link", "set", "eth0", "up", netns=ns)
            self._fix_advmss(ns, ip, subnet, int(net["mtu"]))
            ep = Endpoint(name, network, net["vni"], ns, tap, fd, port, mac, ip)
            ep.responder = probes.Responder(ns, self.probe_port)
        except Exception:
            if fd >= 0:
                os.close(fd)
            netns.delete(ns)
            raise
        self.endpoints[name] = ep
        self.core.add_port(port, net["vni"], mac_to_bytes(mac), addr.packed)
        assert self.dataplane is not None
        self.dataplane.add_tap(port, fd)
        return {"name": name, "netns": ns, "tap": tap, "mac": mac, "ip": ip, "vni": net["vni"]}

    @staticmethod
    def _fix_advmss(ns: str, ip: str, subnet: Any, mtu: int) -> None:
        """Advertise the MSS of the endpoint's MTU whatever path MTU it has cached (the
        ``advmss`` metric of its subnet route). Linux otherwise advertises the MSS of the path
        MTU it learnt towards the peer (core/ptb.py relays those), so a stall in one direction
        would pass or not depending on what the other direction learnt first; with the metric,
        each direction of a pair is judged on its own path (docs/checks.md). Best effort: an
        ip(8) that cannot leaves the kernel's default."""
        try:
            netns.ip("route", "replace", str(subnet), "dev", "eth0", "proto", "kernel",
                     "scope", "link", "src", ip, "advmss", str(mtu - 40), netns=ns)
        except netns.NetnsError:
            pass

    def _limit_tso(self, ns: str, mtu: int) -> None:
        """Cap the endpoint's TSO frames at what one GSO send of the VTEP carries (~44
        segments at MTU 1450), so a frame leaves in one ``sendmsg`` and arrives in one
        ``recvmsg`` instead of a long and a short one (best effort: older kernels lack it)."""
        segs = gso.segments_per_send(mtu)
        try:
            netns.ip("link", "set", "eth0", "gso_max_segs", str(segs),
                     "gso_max_size", str(segs * (mtu - 52)), netns=ns)
        except netns.NetnsError:
            pass  # an old ip(8) or kernel: TSO frames stay larger, and leave in two sends

    @rpc()
    def remove_endpoint(self, name: str) -> Dict[str, Any]:
        ep = self.endpoints.pop(name, None)
        if ep is None:
            return {"removed": False}
        self._teardown_endpoint(ep)
        return {"removed": True}

    @rpc()
    def set_members(self, vteps: List[str],
                    remcsum: Optional[List[str]] = None) -> Dict[str, Any]:
        """The VTEPs VXLAN is accepted from; ``remcsum``: those of them that take VXLAN Remote
        Checksum Offload (agents of this version; a kernel vxlan only with ``remcsumrx``)."""
        norm = [str(ipaddress.ip_address(v)) for v in vteps]
        rco = [str(ipaddress.ip_address(v)) for v in (remcsum or [])]
        self.core.set_members(norm, rco)
        if self.dataplane is not None:
            self.dataplane.refresh_offload()
        return {"members": len(vteps), "remcsum": sorted(self.core.remcsum)}

    @rpc()
    def set_mappings(self, vni: int, entries: List[Dict[str, Any]],
                     vteps: Optional[List[List[Any]]] = None) -> Dict[str, Any]:
        """Replace the remote (MAC, IP) -> VTEP entries of ``vni`` (our own VTEP is skipped)."""
        own = self._own_vtep()
        rows = []
        for e in entries:
            addr = (str(e["vtep"][0]), int(e["vtep"][1]))
            if addr == own:
                continue
            ip = ipaddress.ip_address(e["ip"]).packed if e.get("ip") else None
            rows.append((mac_to_bytes(e["mac"]), ip, addr))
        flood = [(str(v[0]), int(v[1])) for v in (vteps or []) if (str(v[0]), int(v[1])) != own]
        self.core.set_remote(vni, rows, flood)
        return {"vni": vni, "entries": len(rows)}

    @rpc()
    def counters(self) -> Dict[str, Any]:
        snap = self.core.counters()
        snap["io_errors"] = dict(self.dataplane.io_errors) if self.dataplane else {}
        snap["dataplane"] = self.dataplane.stats() if self.dataplane else {}
        return snap

    @rpc(slow=True)
    def ping(self, endpoint: str, dst: str, count: int = 3, size: int = 56, timeout: float = 1.0,
             interval: float = 0.05, dont_fragment: bool = False) -> Dict[str, Any]:
        ep = self._endpoint(endpoint)
        return probes.ping(ep.ns, dst, count=count, size=size, timeout=timeout,
                           interval=interval, dont_fragment=dont_fragment)

    @rpc(slow=True)
    def tcp_transfer(self, endpoint: str, dst: str, nbytes: int = 65536, timeout: float = 5.0,
                     port: Optional[int] = None) -> Dict[str, Any]:
        ep = self._endpoint(endpoint)
        return probes.tcp_transfer(ep.ns, dst, port or self.probe_port, nbytes, timeout)

    # -- helpers and clean-up -----------------------------------------------------------------
    def _need_vtep(self) -> None:
        if self.dataplane is None:
            raise AgentError("configure the VTEP first", "state")

    def _own_vtep(self) -> Any:
        if self.dataplane is None:
            return None
        return (self.dataplane.address, self.dataplane.port)

    def _endpoint(self, name: str) -> Endpoint:
        ep = self.endpoints.get(name)
        if ep is None:
            raise AgentError(f"no endpoint {name!r} on host {self.host}", "invalid")
        return ep

    def _teardown_endpoint(self, ep: Endpoint) -> None:
        if ep.responder is not None:
            ep.responder.close()
        self.core.remove_port(ep.port)
        if self.dataplane is not None:
            self.dataplane.retire_tap(ep.port, ep.fd)  # closes the TAP without freeing its fd
        else:
            try:
                os.close(ep.fd)
            except OSError:
                pass
        netns.delete(ep.ns)

    def cleanup(self) -> None:
        """Remove every namespace, TAP and socket this agent made. Safe to call twice."""
        self.raft_cleanup()
        for name in list(self.endpoints):
            ep = self.endpoints.pop(name)
            try:
                self._teardown_endpoint(ep)
            except Exception as e:  # keep going: the rest must still be removed
                sys.stderr.write(f"overlay-agent: clean-up of {name} failed: {e}\n")
        self._pmtu_cleanup()
        self.unlisten_udp()
        if self.dataplane is not None:
            self.dataplane.stop()
            self.dataplane = None
