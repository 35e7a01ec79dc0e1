"""Agent RPCs of the VNI isolation check (a mixin :class:`~overlay_agent.agent.Agent` inherits).

``udp_send`` sends marked datagrams from an endpoint; ``capture_start`` / ``capture_read`` /
``capture_stop`` count the markers that arrive at an endpoint (an AF_PACKET socket on its
``eth0``, independent of the VTEP's own counters); ``remove_network`` takes away the second
network the check made once its endpoints are gone.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Dict, Optional

from overlay_agent.io import netns
from overlay_agent.io.capture import MarkerCapture
from overlay_agent.methods import rpc


def _error(message: str, code: str = "invalid") -> Exception:
    from overlay_agent.agent import AgentError

    return AgentError(message, code)


class IsolationOps:
    core: Any
    networks: Dict[str, Dict[str, Any]]
    endpoints: Dict[str, Any]
    host: str

    _captures: Optional[Dict[str, MarkerCapture]] = None

    def _ep(self, name: str) -> Any:
        ep = self.endpoints.get(name)
        if ep is None:
            raise _error(f"no endpoint {name!r} on host {self.host}")
        return ep

    @rpc()
    def remove_network(self, name: str) -> Dict[str, Any]:
        """Forget network ``name`` (and its VNI on the VTEP); its endpoints must be gone first."""
        net = self.networks.get(name)
        if net is None:
            return {"removed": False}
        busy = sorted(e.name for e in self.endpoints.values() if e.network == name)
        if busy:
            raise _error(f"network {name!r} on {self.host} still has endpoints {busy}: "
                         "remove_endpoint them first", "state")
        del self.networks[name]
        if not any(n["vni"] == net["vni"] for n in self.networks.values()):
            self.core.remove_network(net["vni"])
        return {"removed": True}

    @rpc()
    def neigh_flush(self, endpoint: str) -> Dict[str, Any]:
        """Forget the endpoint's ARP entries: no unicast ARP re-probes start from it afterwards."""
        ep = self._ep(endpoint)
        netns.ip("neigh", "flush", "all", netns=ep.ns, check=False)
        return {"endpoint": endpoint}

    @rpc(slow=True)
    def udp_send(self, endpoint: str, dst: str, port: int, payload: str, count: int = 1,
                 interval: float = 0.005) -> Dict[str, Any]:
        """Send ``payload`` (text) ``count`` times over UDP from ``endpoint`` to ``dst:port``."""
        ep = self._ep(endpoint)
        data = payload.encode("utf-8")[:1400]
        with netns.inside(ep.ns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sent, errors = 0, []
        try:
            for _ in range(max(1, min(count, 1000))):
                try:
                    sock.sendto(data, (dst, port))
                    sent += 1
                except OSError as e:
                    errors.append(e.strerror or str(e))
                if interval > 0:
                    time.sleep(interval)
        finally:
            sock.close()
        return {"sent": sent, "errors": errors[:5]}

    @rpc()
    def capture_start(self, endpoint: str, token: str) -> Dict[str, Any]:
        """Count markers ``token:MARKER;`` arriving at ``endpoint`` until capture_stop."""
        ep = self._ep(endpoint)
        if not token.isalnum():
            raise _error(f"capture token {token!r} must be letters and digits")
        if self._captures is None:
            self._captures = {}
        old = self._captures.pop(endpoint, None)
        if old is not None:
            old.close()
        self._captures[endpoint] = MarkerCapture(ep.ns, "eth0", token)
        return {"endpoint": endpoint, "netns": ep.ns}

    @rpc()
    def capture_read(self, endpoint: str) -> Dict[str, Any]:
        cap = (self._captures or {}).get(endpoint)
        if cap is None:
            raise _error(f"no capture running on endpoint {endpoint!r} of {self.host}", "state")
        return {"markers": cap.read(), "frames": cap.frames}

    @rpc()
    def capture_stop(self, endpoint: str) -> Dict[str, Any]:
        cap = (self._captures or {}).pop(endpoint, None)
        if cap is None:
            return {"markers": {}, "frames": 0}
        try:
            return {"markers": cap.read(), "frames": cap.frames}
        finally:
            cap.close()
