"""The replicated control-plane table (sans-IO): members, networks and endpoints.

Every Raft log entry is one JSON command; :meth:`Table.apply` is deterministic, so replicas that
applied the same log hold the same table (:meth:`Table.digest` proves it). Commands are
idempotent: a retried write that commits twice changes nothing the second time.

Commands (``op``):
  ``member``          name, underlay, vtep_port, joined_at      add or update a host
  ``remove_member``   name                                      drop a host and all its endpoints
  ``network``         name, vni, subnet, mtu                    declare an overlay network
  ``endpoint``        vni, mac, ip, host, name                  (VNI, MAC) -> host's VTEP
  ``remove_endpoint`` vni, mac
  ``batch``           commands: [...]                           several, applied in order
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, List, Optional, Tuple

Addr = Tuple[str, int]


class Table:
    def __init__(self) -> None:
        self.members: Dict[str, Dict[str, Any]] = {}
        self.networks: Dict[str, Dict[str, Any]] = {}
        self.endpoints: Dict[str, Dict[str, Any]] = {}  # key "vni/mac"
        self.version = 0  # commands that changed something

    # -- state transitions --------------------------------------------------------------------
    def apply(self, command: Dict[str, Any]) -> Dict[str, Any]:
        """Apply one command; returns ``{"ok": bool, "changed": int, "error"?: str}``."""
        try:
            changed = self._apply(command)
        except (KeyError, TypeError, ValueError) as e:
            return {"ok": False, "changed": 0, "error": f"{command.get('op')!r}: {e}"}
        except _Rejected as e:
            return {"ok": False, "changed": 0, "error": str(e)}
        self.version += changed
        return {"ok": True, "changed": changed}

    def _apply(self, c: Dict[str, Any]) -> int:
        op = c["op"]
        if op == "batch":
            n = 0
            for sub in c["commands"]:
                res = self.apply(sub)
                if not res["ok"]:
                    raise _Rejected(res["error"])
                n += res["changed"]
            self.version -= n  # counted once by the caller
            return n
        if op == "member":
            rec: Dict[str, Any] = {"name": str(c["name"]), "underlay": str(c["underlay"]),
                   "vtep_port": int(c["vtep_port"]), "status": "up",
                   "joined_at": c.get("joined_at")}
            old = self.members.get(rec["name"])
            if old is not None:
                rec["joined_at"] = old["joined_at"]  # re-registration keeps the first join
            return self._put(self.members, rec["name"], rec)
        if op == "remove_member":
            name = str(c["name"])
            gone = [k for k, e in self.endpoints.items() if e["host"] == name]
            for k in gone:
                del self.endpoints[k]
            return len(gone) + (1 if self.members.pop(name, None) is not None else 0)
        if op == "network":
            net: Dict[str, Any] = {"name": str(c["name"]), "vni": int(c["vni"]), "subnet": str(c["subnet"]),
                   "mtu": int(c.get("mtu", 1450))}
            for other in self.networks.values():
                if other["vni"] == net["vni"] and other["name"] != net["name"]:
                    raise _Rejected(f"VNI {net['vni']} already belongs to network {other['name']}")
            old = self.networks.get(net["name"])
            if old is not None and old != net:
                raise _Rejected(f"network {net['name']} exists with other settings: {old}")
            return self._put(self.networks, net["name"], net)
        if op == "endpoint":
            host = str(c["host"])
            if host not in self.members:
                raise _Rejected(f"endpoint on host {host}, which is not a member: register it first")
            epr: Dict[str, Any] = {"vni": int(c["vni"]), "mac": str(c["mac"]).lower(), "ip": c.get("ip"),
                   "host": host, "name": c.get("name")}
            return self._put(self.endpoints, f"{epr['vni']}/{epr['mac']}", epr)
        if op == "remove_endpoint":
            key = f"{int(c['vni'])}/{str(c['mac']).lower()}"
            return 1 if self.endpoints.pop(key, None) is not None else 0
        raise _Rejected(f"unknown command {op!r}")

    @staticmethod
    def _put(where: Dict[str, Dict[str, Any]], key: str, rec: Dict[str, Any]) -> int:
        if where.get(key) == rec:
            return 0
        where[key] = rec
        return 1

    # -- what the data plane needs ------------------------------------------------------------
    def vtep(self, host: str) -> Optional[Addr]:
        m = self.members.get(host)
        return (m["underlay"], m["vtep_port"]) if m else None

    def member_underlays(self) -> List[str]:
        return sorted({m["underlay"] for m in self.members.values()})

    def forwarding(self, vni: int, own_host: str) -> Tuple[List[Tuple[str, Optional[str], Addr]],
                                                           List[Addr]]:
        """Remote entries (MAC, IP, VTEP) of ``vni`` and the VTEPs to flood to, minus ours."""
        entries = []
        flood = set()
        for e in self.endpoints.values():
            if e["vni"] != vni or e["host"] == own_host:
                continue
            addr = self.vtep(e["host"])
            if addr is None:
                continue
            entries.append((e["mac"], e["ip"], addr))
            flood.add(addr)
        return sorted(entries), sorted(flood)

    # -- comparison ---------------------------------------------------------------------------
    def snapshot(self) -> Dict[str, Any]:
        return {"members": self.members, "networks": self.networks, "endpoints": self.endpoints}

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the table: equal digests, equal replicas."""
        data = json.dumps(self.snapshot(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    def size(self) -> Dict[str, int]:
        return {"members": len(self.members), "networks": len(self.networks),
                "endpoints": len(self.endpoints)}


class _Rejected(Exception):
    pass


def decode(command: str) -> Dict[str, Any]:
    """A log entry back to a command dict (entries are JSON text, never pickled objects)."""
    obj = json.loads(command)
    if not isinstance(obj, dict) or "op" not in obj:
        raise ValueError("a command is a JSON object with an 'op'")
    return obj
