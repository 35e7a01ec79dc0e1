"""Builds a :class:`LabTopology` out of network namespaces, and removes it again.

Nothing is created in the root namespace: every veth is made with both ends already inside lab
namespaces, bridges live in the lab's switch namespace, and all names carry the run prefix, so a
run's leftovers (if a run was killed) can be found and removed by prefix alone.

Routers are namespaces ``<prefix>-<router>`` with forwarding on and one interface per segment
(``e-<segment>``); hosts get static routes to the other segments (computed by the topology).
Every port on a segment (bridge, veths, the host or router end) has the segment's MTU, so a
low-MTU segment is a routed hop with routers at both ends, as in the kernel's own pmtu selftest:
a router drops (and answers "fragmentation needed" to) what does not fit. Faults are nftables
rules in a table ``inet <prefix>`` inside the faulty namespace.

Underlay neighbours are static: every interface gets a MAC derived from its address, and every
node on a segment a permanent neighbour entry for every other one, as a fabric with a fixed
inventory would. Dynamic entries of all namespaces share one kernel table with a cap (see
:mod:`pytest_overlay.lab.neighbours`); permanent ones do not count against it, so a large lab
keeps that room for its endpoints, and nothing waits for ARP or neighbour discovery underneath.
"""

from __future__ import annotations

import hashlib
import ipaddress
import subprocess
from typing import Dict, List, Tuple

from overlay_agent.io import netns
from pytest_overlay.errors import LabError
from pytest_overlay.lab.topology import Fault, LabTopology
from pytest_overlay.naming import namespaces

#: the multipath hash seed of an ``ecmp`` lab (``net.ipv4.fib_multipath_hash_seed``, which
#: IPv6 shares): fixed, so that which leg a flow takes is the same in every run
ECMP_SEED = 7890


class NetLab:
    def __init__(self, topology: LabTopology, prefix: str) -> None:
        self.topology = topology
        self.prefix = prefix
        self.switch_ns = f"{prefix}-_ul"
        self._made: List[str] = []
        self._ports = 0
        #: segment -> the (namespace, interface, address) of every node on it
        self._on_segment: Dict[str, List[Tuple[str, str, str]]] = {}

    def host_ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    def build(self) -> Dict[str, str]:
        """Create the lab; returns host name -> namespace. Half-built labs are removed."""
        try:
            return self._build()
        except Exception as e:
            self.destroy()
            if isinstance(e, LabError):
                raise
            raise LabError(f"building the lab failed: {e}",
                           "run as root on Linux with iproute2 and nftables; see the error above") from e

    def _add_ns(self, name: str, ipv6: bool = False) -> None:
        netns.add(name)
        self._made.append(name)
        keys = {"net.ipv6.conf.all.disable_ipv6": "0" if ipv6 else "1",
                "net.ipv6.conf.default.disable_ipv6": "0" if ipv6 else "1"}
        if ipv6:  # static addressing only: no DAD delay, no router advertisements
            keys.update({"net.ipv6.conf.default.accept_dad": "0", "net.ipv6.conf.all.accept_dad": "0",
                         "net.ipv6.conf.default.accept_ra": "0", "net.ipv6.conf.all.accept_ra": "0"})
        for key, value in keys.items():
            netns.write_sysctl(key, value, netns=name)
        netns.ip("link", "set", "lo", "up", netns=name)

    def _attach(self, ns: str, ifname: str, seg_name: str, address: str) -> None:
        """A veth from segment ``seg_name``'s bridge to ``ifname`` in ``ns``, addressed."""
        seg = next(s for s in self.topology.segments if s.name == seg_name)
        self._ports += 1
        port = f"{self.prefix}p{self._ports}"
        mtu = str(seg.mtu)
        netns.ip("link", "add", port, "mtu", mtu, "type", "veth", "peer", "name", ifname,
                 "mtu", mtu, "address", mac_of(address), "netns", ns, netns=self.switch_ns)
        netns.ip("link", "set", port, "master", f"br-{seg.name}", "up", netns=self.switch_ns)
        plen = ipaddress.ip_network(seg.subnet).prefixlen
        extra = ["nodad"] if ":" in address else []
        netns.ip("addr", "add", f"{address}/{plen}", "dev", ifname, *extra, netns=ns)
        netns.ip("link", "set", ifname, "up", netns=ns)
        self._on_segment.setdefault(seg_name, []).append((ns, ifname, address))

    def _static_neighbours(self) -> None:
        """Every node on a segment learns every other one's MAC, permanently (one ``ip -batch``
        per namespace)."""
        lines: Dict[str, List[str]] = {}
        for seg, nodes in self._on_segment.items():
            if len({mac_of(a) for _ns, _if, a in nodes}) != len(nodes):
                raise LabError(f"two addresses on segment {seg} map to the same MAC",
                               "change one of the segment's IPv6 addresses")
            for ns, ifname, address in nodes:
                lines.setdefault(ns, []).extend(
                    f"neigh replace {other} lladdr {mac_of(other)} dev {ifname} nud permanent"
                    for _ns, _if, other in nodes if other != address)
        for ns, batch in lines.items():
            proc = subprocess.run(["ip", "-n", ns, "-batch", "-"], input="\n".join(batch) + "\n",
                                  capture_output=True, text=True, timeout=60)
            if proc.returncode != 0:
                raise LabError(f"static neighbours in {ns} failed: {proc.stderr.strip()}",
                               "run as root with iproute2")

    def _build(self) -> Dict[str, str]:
        topo = self.topology
        v6 = topo.family == 6
        sw = self.switch_ns
        self._add_ns(sw)
        for seg in topo.segments:
            br = f"br-{seg.name}"
            netns.ip("link", "add", br, "type", "bridge", netns=sw)
            netns.ip("link", "set", br, "mtu", str(seg.mtu), "up", netns=sw)
        for r in topo.routers:
            ns = self.host_ns(r.name)
            self._add_ns(ns, ipv6=v6)
            netns.write_sysctl("net.ipv6.conf.all.forwarding" if v6 else "net.ipv4.ip_forward", "1",
                               netns=ns)
            for seg_name, address in r.interfaces.items():
                self._attach(ns, f"e-{seg_name}", seg_name, address)
        out: Dict[str, str] = {}
        for host in topo.hosts:
            ns = self.host_ns(host.name)
            self._add_ns(ns, ipv6=v6)
            self._attach(ns, "eth0", host.segment, host.address)
            out[host.name] = ns
        for name in [r.name for r in topo.routers] + [h.name for h in topo.hosts]:
            self._routes(name)
        self._static_neighbours()
        self._faults()
        return out

    def _routes(self, node: str) -> None:
        ns = self.host_ns(node)
        segs = {s.name: s.subnet for s in self.topology.segments}
        multipath = False
        for seg_name, gws in self.topology.gateways(node).items():
            if not gws:
                continue
            if len(gws) > 1 and self.topology.ecmp:
                hops = [w for gw in gws for w in ("nexthop", "via", gw)]
                netns.ip("route", "add", segs[seg_name], *hops, netns=ns)
                multipath = True
            else:
                netns.ip("route", "add", segs[seg_name], "via", gws[0], netns=ns)
        if multipath:
            # hash on the 5-tuple (L4), as fabrics do, with a fixed seed: the same flow takes
            # the same leg in every run, and different source ports spread over the legs
            v = "ipv6" if self.topology.family == 6 else "ipv4"
            netns.write_sysctl(f"net.{v}.fib_multipath_hash_policy", "1", netns=ns)
            netns.write_sysctl("net.ipv4.fib_multipath_hash_seed", str(ECMP_SEED), netns=ns)

    # -- faults -------------------------------------------------------------------------------
    def _faults(self) -> None:
        by_node: Dict[str, List[Fault]] = {}
        for f in self.topology.faults:
            by_node.setdefault(f.at, []).append(f)
        routers = {r.name for r in self.topology.routers}
        for node, faults in by_node.items():
            hooks = ("forward", "output") if node in routers else ("input",)
            lines = [f"table inet {self.prefix} {{"]
            for hook in hooks:
                lines.append(f"  chain {hook} {{ type filter hook {hook} priority 0; policy accept;")
                lines += [f"    {rule}" for f in faults for rule in self.rules(f)]
                lines.append("  }")
            lines.append("}")
            self.nft(node, "\n".join(lines) + "\n")

    def rules(self, f: Fault) -> List[str]:
        """The nftables rules (one per address family where it matters) of one fault."""
        fam = "ip6" if self.topology.family == 6 else "ip"
        sel = ""
        if f.src:
            sel += f"{fam} saddr {self.topology.address_of(f.src)} "
        if f.dst:
            sel += f"{fam} daddr {self.topology.address_of(f.dst)} "
        if f.drop == "ptb":
            return [f"{sel}icmp type destination-unreachable icmp code frag-needed counter drop",
                    f"{sel}icmpv6 type packet-too-big counter drop"]
        if f.drop == "port":
            return [f"{sel}{f.proto} dport {f.port} counter drop"]
        if f.drop == "fragments":
            return [f"{sel}ip frag-off & 0x3fff != 0 counter drop",
                    f"{sel}exthdr frag exists counter drop"]
        if f.percent is not None and f.percent >= 100:
            return [f"{sel}counter drop"]
        return [f"{sel}numgen random mod 100 < {f.percent} counter drop"]

    def nft(self, node: str, script: str) -> str:
        """Run an nft script inside a lab namespace (``-f -``); output on success."""
        proc = subprocess.run(["ip", "netns", "exec", self.host_ns(node), "nft", "-f", "-"],
                              input=script, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise LabError(f"nftables in {self.host_ns(node)} refused the faults: "
                           f"{proc.stderr.strip()}", "check the faults of the topology file")
        return proc.stdout

    def destroy(self) -> List[str]:
        """Delete every namespace of the run (agents' endpoint namespaces too); idempotent.

        The nft tables live inside the lab's namespaces and go with them.
        """
        removed = []
        for name in set(self._made) | set(namespaces(self.prefix)):
            if netns.delete(name):
                removed.append(name)
        self._made.clear()
        return sorted(removed)


def mac_of(address: str) -> str:
    """The MAC of the lab interface holding ``address``: unicast, locally administered, and
    unique per address (IPv4: its four bytes; IPv6: a hash of it)."""
    ip = ipaddress.ip_address(address)
    tail = ip.packed if ip.version == 4 else hashlib.sha256(ip.packed).digest()[:4]
    return ":".join(f"{b:02x}" for b in (0x02, 0x18, *tail))
