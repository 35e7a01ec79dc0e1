"""Agent RPCs of the underlay port audit (a mixin :class:`~overlay_agent.agent.Agent` inherits).

Sender side: ``send_probes`` (VXLAN-framed or random-payload UDP to the VXLAN port) and
``tcp_connect``; receiver side: ``probe_log`` (which probe ids arrived, from whom) and
``listen_tcp`` / ``unlisten_tcp`` (temporary listeners so a connect can tell open from filtered).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from overlay_agent.core import probelog
from overlay_agent.core.vtep import VtepCore
from overlay_agent.io import portprobe
from overlay_agent.methods import rpc


class PortAudit:
    core: VtepCore
    dataplane: Any
    host: str

    _listeners: Optional[portprobe.Listeners] = None

    def _underlay(self) -> str:
        if self.dataplane is None:
            from overlay_agent.agent import AgentError

            raise AgentError("configure the VTEP first: probes leave from its underlay address",
                             "state")
        return str(self.dataplane.address)

    @rpc(slow=True)
    def send_probes(self, dst: str, probe_id: str, kind: str = "vxlan", port: int = 0,
                    count: int = 3, interval: float = 0.01, size: int = 96) -> Dict[str, Any]:
        """Send ``count`` probes of ``kind`` (``vxlan``/``udp``) to ``dst`` on the VXLAN port."""
        src = self._underlay()
        return portprobe.send_udp(src, dst, port or int(self.dataplane.port), probe_id, kind,
                                  count=min(max(count, 1), 100), interval=interval,
                                  size=min(max(size, 64), 1400))

    @rpc()
    def probe_log(self, ids: Optional[List[str]] = None, clear: bool = False) -> Dict[str, Any]:
        """Probes this VTEP received from member VTEPs, by probe id (only ``ids`` if given)."""
        log = self.core.probes
        out = {"total": log.total, "probes": log.snapshot(ids)}
        if clear:
            log.clear()
        return out

    @rpc(slow=True)
    def tcp_connect(self, dst: str, port: int, timeout: float = 1.0) -> Dict[str, Any]:
        """A TCP handshake from this host's underlay address: open/refused/timeout/unreachable."""
        return portprobe.tcp_connect(self._underlay(), dst, port, timeout=min(timeout, 30.0))

    @rpc()
    def listen_tcp(self, ports: List[int]) -> Dict[str, Any]:
        """Listen on ``ports`` at the underlay address while the audit runs (see unlisten_tcp)."""
        if self._listeners is None:
            self._listeners = portprobe.Listeners()
        return {"ports": self._listeners.open(self._underlay(), [int(p) for p in ports])}

    @rpc()
    def unlisten_tcp(self) -> Dict[str, Any]:
        closed = self._listeners.close() if self._listeners is not None else 0
        return {"closed": closed}

    @rpc()
    def vtep_stats(self) -> Dict[str, Any]:
        """Drops split by direction, and probes: what the fuzz and isolation tests account with."""
        core = self.core
        return {"rx_drops": dict(list(core.rx.drops.items())),
                "tx_drops": dict(list(core.tx.drops.items())),
                "rx_packets": sum(v.get("rx_packets", 0) for v in list(core.rx.per_vni.values())),
                "probes": core.probes.total}


__all__ = ["PortAudit", "probelog"]
