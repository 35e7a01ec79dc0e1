"""Agent RPCs for the extra UDP ports of the port audit (``--overlay-ports``), a mixin.

``listen_udp`` binds the ports at the underlay address and logs the probe ids that arrive
(``send_probes(kind="udp", port=...)`` on the sender), ``udp_probe_log`` reads them and
``unlisten_udp`` closes everything again.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from overlay_agent.io.udplisten import UdpListeners
from overlay_agent.methods import rpc


class UdpAudit:
    _udp_listeners: Optional[UdpListeners] = None

    def _underlay(self) -> str:  # provided by PortAudit
        raise NotImplementedError

    @rpc()
    def listen_udp(self, ports: List[int], members: Optional[List[str]] = None) -> Dict[str, Any]:
        """Listen on UDP ``ports`` at the underlay address, logging probes from ``members``."""
        if self._udp_listeners is None:
            self._udp_listeners = UdpListeners()
        return {"ports": self._udp_listeners.open(self._underlay(), [int(p) for p in ports],
                                                  members)}

    @rpc()
    def udp_probe_log(self, ids: Optional[List[str]] = None) -> Dict[str, Any]:
        """Probes received on the extra UDP ports: ``{"ports": {"7946": {id: entry}}}``."""
        if self._udp_listeners is None:
            return {"ports": {}, "ignored": 0}
        logs = self._udp_listeners.logs
        return {"ports": logs.snapshot(ids), "ignored": logs.ignored}

    @rpc()
    def unlisten_udp(self) -> Dict[str, Any]:
        lst, self._udp_listeners = self._udp_listeners, None
        return {"closed": lst.close() if lst is not None else 0}


__all__ = ["UdpAudit"]
