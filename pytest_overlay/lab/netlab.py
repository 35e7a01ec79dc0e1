"""Builds a :class:`LabTopology` out of network namespaces, and removes it again.

Nothing is created in the root namespace: every veth is made with both ends already inside lab
namespaces, bridges live in the lab's switch namespace, and all names carry the run prefix, so a
run's leftovers (if a run was killed) can be found and removed by prefix alone.
"""

from __future__ import annotations

import ipaddress
from typing import Dict, List

from overlay_agent.io import netns
from pytest_overlay.errors import LabError
from pytest_overlay.lab.topology import LabTopology
from pytest_overlay.naming import namespaces


class NetLab:
    def __init__(self, topology: LabTopology, prefix: str) -> None:
        self.topology = topology
        self.prefix = prefix
        self.switch_ns = f"{prefix}-_ul"
        self._made: List[str] = []

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
                           "run as root on Linux with iproute2; see the error above") from e

    def _add_ns(self, name: str) -> None:
        netns.add(name)
        self._made.append(name)
        for key in ("net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"):
            netns.write_sysctl(key, "1", netns=name)
        netns.ip("link", "set", "lo", "up", netns=name)

    def _build(self) -> Dict[str, str]:
        topo = self.topology
        sw = self.switch_ns
        self._add_ns(sw)
        segs = {s.name: s for s in topo.segments}
        for seg in topo.segments:
            br = f"br-{seg.name}"
            netns.ip("link", "add", br, "type", "bridge", netns=sw)
            netns.ip("link", "set", br, "mtu", str(seg.mtu), "up", netns=sw)
        out: Dict[str, str] = {}
        for i, host in enumerate(topo.hosts, start=1):
            ns = self.host_ns(host.name)
            self._add_ns(ns)
            seg = segs[host.segment]
            port = f"{self.prefix}p{i}"
            netns.ip("link", "add", port, "mtu", str(seg.mtu), "type", "veth",
                     "peer", "name", "eth0", "mtu", str(seg.mtu), "netns", ns, netns=sw)
            netns.ip("link", "set", port, "master", f"br-{seg.name}", "up", netns=sw)
            plen = ipaddress.ip_network(seg.subnet).prefixlen
            netns.ip("addr", "add", f"{host.address}/{plen}", "dev", "eth0", netns=ns)
            netns.ip("link", "set", "eth0", "up", netns=ns)
            out[host.name] = ns
        return out

    def destroy(self) -> List[str]:
        """Delete every namespace of the run (agents' endpoint namespaces too); idempotent."""
        removed = []
        for name in set(self._made) | set(namespaces(self.prefix)):
            if netns.delete(name):
                removed.append(name)
        self._made.clear()
        return sorted(removed)
