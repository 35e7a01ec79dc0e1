"""Agent RPCs that gather what explains a failing pair (``--overlay-evidence``), as a mixin.

``evidence_snapshot`` returns the host's view of the path to a peer: ``ip route get`` (with any
cached path MTU), interface MTUs and counters, neighbours, the nftables ruleset, the VTEP's
counters. ``evidence_capture_start`` / ``evidence_capture_stop`` record the underlay frames to
or from the peer meanwhile and hand them back as a pcap file (base64).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from typing import Any, Dict, List, Optional

from overlay_agent.io.capture import PcapCapture
from overlay_agent.methods import rpc

_COMMANDS = {
    "route_get": ["ip", "route", "get", "{peer}"],
    "routes": ["ip", "route", "show", "table", "all"],
    "route_cache": ["ip", "route", "show", "cache"],
    "links": ["ip", "-d", "-s", "link", "show"],
    "addresses": ["ip", "addr", "show"],
    "neighbours": ["ip", "neigh", "show"],
    "nft_ruleset": ["nft", "list", "ruleset"],
    "udp_stats": ["cat", "/proc/net/snmp"],
}


def _run(cmd: List[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return f"({cmd[0]} is not installed on this host)"
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"({' '.join(cmd)} failed: {e})"
    return p.stdout + (f"\n(stderr) {p.stderr.strip()}" if p.stderr.strip() else "")


class EvidenceOps:
    core: Any
    dataplane: Any
    host: str

    _pcaps: Optional[Dict[str, PcapCapture]] = None

    @rpc(slow=True)
    def evidence_snapshot(self, peer: str) -> Dict[str, Any]:
        """Texts of the host's route, MTU, neighbour and firewall state toward ``peer``."""
        import ipaddress

        peer = str(ipaddress.ip_address(peer))
        out: Dict[str, Any] = {"host": self.host}
        for key, cmd in _COMMANDS.items():
            out[key] = _run([c.replace("{peer}", peer) for c in cmd])
        out["vtep_counters"] = self.core.counters()
        out["probe_log_total"] = self.core.probes.total
        return out

    @rpc()
    def evidence_capture_start(self, peer: str, limit: int = 2000) -> Dict[str, Any]:
        if self._pcaps is None:
            self._pcaps = {}
        old = self._pcaps.pop(peer, None)
        if old is not None:
            old.close()
        self._pcaps[peer] = PcapCapture(peer, limit=max(1, min(limit, 20000)))
        return {"peer": peer}

    @rpc()
    def evidence_capture_stop(self, peer: str) -> Dict[str, Any]:
        cap = (self._pcaps or {}).pop(peer, None)
        if cap is None:
            return {"frames": 0, "pcap_b64": ""}
        try:
            data = cap.pcap()
            return {"frames": len(cap.frames), "dropped": cap.dropped,
                    "pcap_b64": base64.b64encode(data).decode()}
        finally:
            cap.close()
