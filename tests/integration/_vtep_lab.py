"""Shared set-up for the isolation tests: two agents with one endpoint each on VNI 4096, and a
UDP socket opened inside a lab host's namespace (packets start in the lab, never in the root
namespace)."""

from __future__ import annotations

import socket
import time
from typing import Any, Callable, Dict, Tuple

from overlay_agent.io import netns

VNI = 4096
SUBNET = "10.10.0.0/16"
EPS = {"h1": ("10.10.0.2", "02:42:0a:0a:00:02"), "h2": ("10.10.0.3", "02:42:0a:0a:00:03")}


def vteps(lab: Any, eps: Dict[str, Tuple[str, str]], mtu: int = 1450) -> Dict[str, Any]:
    """An agent per host of ``eps`` (host -> (ip, mac)), all members of each other, with
    endpoint e0 on network "ov" (VNI 4096) and the static mappings of all of them."""
    agents = {h: lab.agent(h) for h in eps}
    for host, agent in agents.items():
        agent.call("create_network", name="ov", vni=VNI, subnet=SUBNET, mtu=mtu)
        ip, mac = eps[host]
        agent.call("add_endpoint", network="ov", name="e0", ip=ip, mac=mac)
    entries = [{"mac": mac, "ip": ip, "vtep": [lab.address(h), 4789]}
               for h, (ip, mac) in eps.items()]
    table = [[lab.address(h), 4789] for h in eps]
    for agent in agents.values():
        agent.call("set_members", vteps=[lab.address(h) for h in eps])
        agent.call("set_mappings", vni=VNI, entries=entries, vteps=table)
    return agents


def two_vteps(lab: Any) -> Tuple[Any, Any]:
    """Agents on h1 and h2 (members of each other), endpoint e0 on each; h3 has no agent."""
    agents = vteps(lab, EPS)
    return agents["h1"], agents["h2"]


def sender_in(lab: Any, host: str) -> socket.socket:
    """A UDP socket living in ``host``'s namespace, bound to its underlay address."""
    with netns.inside(lab.host_ns[host]):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((lab.address(host), 0))
    return sock


def rx_accounted(stats: Dict[str, Any]) -> int:
    """Datagrams the VTEP's receive side has accounted for: delivered, dropped or probes."""
    return int(stats["rx_packets"]) + sum(stats["rx_drops"].values()) + int(stats["probes"])


def wait_for(cond: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def udp_errors(lab: Any, host: str) -> Dict[str, int]:
    """The Udp: line of /proc/net/snmp inside ``host``'s namespace (RcvbufErrors etc.)."""
    out = lab.run(host, "cat", "/proc/net/snmp").stdout.splitlines()
    rows = [line.split() for line in out if line.startswith("Udp:")]
    return {k: int(v) for k, v in zip(rows[0][1:], rows[1][1:])}
