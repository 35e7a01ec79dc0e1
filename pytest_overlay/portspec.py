"""``--overlay-ports=SPEC``: extra underlay ports the ``ports`` check probes per host pair.

SPEC is a comma list of ``PORT/PROTO`` items (``2377/tcp,7946/tcp,7946/udp``) and/or presets
(``swarm``, ``kubernetes``, ``flannel``, ``calico``, ``cilium``: :data:`PRESETS`). The VXLAN port (4789/udp by default) is always probed by the check and may be
listed too; duplicates are dropped, the order kept.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from pytest_overlay.errors import ConfigError

#: What each platform needs open between its nodes. A platform's VXLAN port that is this run's
#: own (4789/udp by default) is the check's VXLAN probe already and is not repeated here.
PRESETS: Dict[str, Tuple[Tuple[int, str], ...]] = {
    # Docker Swarm: managers' cluster management, gossip among all nodes (TCP and UDP)
    "swarm": ((2377, "tcp"), (7946, "tcp"), (7946, "udp")),
    # Kubernetes itself: the API server, etcd's clients and peers, the kubelet
    "kubernetes": ((6443, "tcp"), (2379, "tcp"), (2380, "tcp"), (10250, "tcp")),
    # flannel's VXLAN backend (the Linux kernel's default VXLAN port, not IANA's 4789)
    "flannel": ((8472, "udp"),),
    # Calico: BGP between nodes, Typha; its VXLAN mode uses 4789/udp
    "calico": ((179, "tcp"), (5473, "tcp")),
    # Cilium: its VXLAN tunnel, node health checks, Hubble's server
    "cilium": ((8472, "udp"), (4240, "tcp"), (4244, "tcp")),
}
PROTOS = ("tcp", "udp")
_FIX = "write PORT/PROTO items (1..65535, tcp or udp) or a preset, e.g. --overlay-ports=swarm " \
       "or --overlay-ports=2377/tcp,7946/tcp,7946/udp"


def parse_ports(spec: str) -> List[Tuple[int, str]]:
    """``[(port, proto), ...]`` from SPEC; a :class:`ConfigError` names the bad item."""
    out: List[Tuple[int, str]] = []
    items = [s.strip() for s in str(spec).split(",")]
    if not any(items):
        raise ConfigError("--overlay-ports: empty", _FIX)
    for item in items:
        if not item:
            raise ConfigError(f"--overlay-ports={spec}: an empty item (two commas in a row, or a "
                              "trailing comma)", _FIX)
        preset = PRESETS.get(item.lower())
        if preset is not None:
            found = list(preset)
        else:
            port_s, slash, proto = item.partition("/")
            proto = proto.strip().lower()
            if not slash or proto not in PROTOS:
                raise ConfigError(f"--overlay-ports={spec}: item {item!r} has no protocol "
                                  f"(tcp or udp) and is not a preset "
                                  f"({', '.join(sorted(PRESETS))})", _FIX)
            if not port_s.strip().isdigit() or not 1 <= int(port_s) <= 65535:
                raise ConfigError(f"--overlay-ports={spec}: item {item!r}: {port_s.strip()!r} is "
                                  "not a port number (1..65535)", _FIX)
            found = [(int(port_s), proto)]
        for p in found:
            if p not in out:
                out.append(p)
    return out


def label(port: int, proto: str) -> str:
    """The key of an extra port in a ports result's ``details.probes``: ``7946/udp``."""
    return f"{port}/{proto}"


__all__ = ["PRESETS", "label", "parse_ports"]
