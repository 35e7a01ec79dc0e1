"""Probe logs of the extra UDP ports an audit checks (``--overlay-ports``), per port (sans-IO).

During the port audit a receiving agent listens on each extra UDP port (say Docker Swarm's
gossip port 7946/udp) at its underlay address; every datagram that arrives is offered here.
Probes carry the same id and marker as the VTEP's random-payload probes
(:func:`overlay_agent.core.probelog.raw_probe`), so parsing is shared. Only datagrams from the
audit's member underlay addresses are logged; anything else is counted and forgotten.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, Iterable, Optional, Set

from overlay_agent.core.probelog import ProbeLog


def _norm(addr: str) -> str:
    try:
        ip = ipaddress.ip_address(str(addr).split("%", 1)[0])
    except ValueError:
        return str(addr)
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


class PortLogs:
    """One :class:`ProbeLog` per port; written by the listener thread, read over RPC."""

    def __init__(self, members: Optional[Iterable[str]] = None) -> None:
        self.members: Optional[Set[str]] = ({_norm(m) for m in members}
                                            if members is not None else None)
        self.logs: Dict[int, ProbeLog] = {}
        #: datagrams from non-members, and from members but not probes
        self.ignored = 0

    def offer(self, port: int, src: str, datagram: bytes) -> bool:
        """Log ``datagram`` received on ``port`` from ``src`` if it is a member's probe."""
        src = _norm(src)
        if self.members is not None and src not in self.members:
            self.ignored += 1
            return False
        log = self.logs.get(port)
        if log is None:
            log = self.logs[port] = ProbeLog()
        if not log.offer(src, datagram):
            self.ignored += 1
            return False
        return True

    def snapshot(self, ids: Optional[Iterable[str]] = None) -> Dict[str, Dict[str, Any]]:
        """``{"7946": {probe_id: entry}}``, JSON-ready (port keys are strings)."""
        wanted = list(ids) if ids is not None else None
        return {str(port): log.snapshot(wanted) for port, log in list(self.logs.items())}


__all__ = ["PortLogs"]
