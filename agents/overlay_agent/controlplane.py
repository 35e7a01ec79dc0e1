"""Agent RPC methods of the Raft control plane (a mixin :class:`~overlay_agent.agent.Agent` has).

The controller only bootstraps (``raft_start`` with the peer list and the run's secret, sent
over this agent's stdin) and reads (``raft_status``). The agent registers what it owns by Raft
writes (``raft_publish``) and derives its VTEP tables from its own replica whenever it changes.
"""

from __future__ import annotations

import ipaddress
import threading
import time
import uuid
from typing import Any, Dict, List, Optional

from overlay_agent.methods import rpc
from overlay_agent.wire.ethernet import mac_to_bytes


class ControlPlaneMixin:
    """Needs from the agent: host, core, networks, endpoints, dataplane, AgentError."""

    _raft: Any = None
    _raft_sync: Optional[threading.Thread] = None
    _raft_dirty: Optional[threading.Event] = None
    _raft_stopping = False
    _raft_synced_version = -1

    @rpc()
    def raft_capabilities(self) -> Dict[str, Any]:
        from overlay_agent.io import raft

        return {"pysyncobj": raft.HAVE_PYSYNCOBJ, "fernet": raft.fernet_available(),
                "default_port": raft.DEFAULT_PORT}

    @rpc()
    def raft_start(self, secret: str, voters: List[str], self_addr: Optional[str] = None,
                   encrypt: bool = False) -> Dict[str, Any]:
        """Join the Raft group: a voter when ``self_addr`` ("ip:port") is given, else a replica."""
        from overlay_agent.io import raft

        err = self._agent_error()
        if self._raft is not None:
            raise err("Raft is already running on this agent", "state")
        try:
            key = bytes.fromhex(secret)
        except ValueError:
            raise err("the Raft secret must be hex", "invalid") from None
        if len(key) < 16:
            raise err("the Raft secret must be at least 16 bytes", "invalid")
        if self_addr is not None and self_addr not in voters:
            raise err(f"{self_addr} is not in the voter list {voters}", "invalid")
        if self_addr is not None:
            held = raft.port_held(self_addr)
            if held:
                raise err(held, "in-use")
        self._raft_dirty = threading.Event()
        try:
            self._raft = raft.RaftNode(self_addr, list(voters), key, encrypt=encrypt,
                                       on_change=self._raft_dirty.set)
        except raft.RaftError as e:
            raise err(str(e), e.code) from e
        self._raft_sync = threading.Thread(target=self._raft_sync_loop, name="raft-sync",
                                           daemon=True)
        self._raft_sync.start()
        return {"role": "voter" if self_addr else "replica", "security": self._raft.security}

    @rpc(slow=True)
    def raft_publish(self, deadline: float = 30.0) -> Dict[str, Any]:
        """Register this host and its endpoints by one idempotent Raft write; wait for it."""
        self._need_raft()
        dp = self.dataplane  # type: ignore[attr-defined]
        if dp is None:
            raise self._agent_error()("configure the VTEP before publishing", "state")
        cmds: List[Dict[str, Any]] = [{
            "op": "member", "name": self.host, "underlay": dp.address,  # type: ignore[attr-defined]
            "vtep_port": dp.port, "joined_at": time.time()}]
        for name, net in sorted(self.networks.items()):  # type: ignore[attr-defined]
            cmds.append({"op": "network", "name": name, "vni": net["vni"],
                         "subnet": net["subnet"], "mtu": net["mtu"]})
        for ep in self.endpoints.values():  # type: ignore[attr-defined]
            cmds.append({"op": "endpoint", "vni": ep.vni, "mac": ep.mac, "ip": ep.ip,
                         "host": self.host, "name": ep.name})  # type: ignore[attr-defined]
        res = self._raft_write({"op": "batch", "commands": cmds}, deadline, fail_fast=False)
        if self._raft_dirty is not None:
            self._raft_dirty.set()  # networks made since the last change need their tables
        return {"commands": len(cmds), **res}

    @rpc(slow=True)
    def raft_write(self, command: Dict[str, Any], deadline: float = 2.0) -> Dict[str, Any]:
        """Commit one table command (see core/table.py); fails fast without a quorum."""
        self._need_raft()
        return self._raft_write(command, deadline, fail_fast=True)

    @rpc(slow=True)
    def raft_wait(self, endpoints: Optional[int] = None, key: Optional[str] = None,
                  absent: bool = False, member: Optional[str] = None,
                  digest: Optional[str] = None, timeout: float = 10.0) -> Dict[str, Any]:
        """Wait until the local replica has ``endpoints`` entries / ``key`` (or not) / a digest."""
        node = self._need_raft()

        def ready(t: Any) -> bool:
            if endpoints is not None and len(t.endpoints) < endpoints:
                return False
            if key is not None and (key in t.endpoints) == absent:
                return False
            if member is not None and (member in t.members) == absent:
                return False
            return digest is None or t.digest() == digest

        ok = node.wait_until(ready, timeout)
        # The data plane is updated by the sync thread; wait for it to catch up too.
        end = time.monotonic() + 2.0
        while ok and self._raft_synced_version < node.table.version and time.monotonic() < end:
            time.sleep(0.005)
        return {"ok": ok, "status": node.status()}

    @rpc()
    def raft_status(self) -> Dict[str, Any]:
        return self._need_raft().status()

    @rpc()
    def raft_table(self) -> Dict[str, Any]:
        node = self._need_raft()
        return {"table": node.table.snapshot(), "applied_at": dict(node.applied_at)}

    # -- internals ----------------------------------------------------------------------------
    def _raft_write(self, command: Dict[str, Any], deadline: float, fail_fast: bool) -> Dict[str, Any]:
        from overlay_agent.io import raft

        node = self._need_raft()
        command = dict(command)
        command.setdefault("id", uuid.uuid4().hex)
        t0 = time.time()
        try:
            res = node.write(command, deadline=deadline, fail_fast=fail_fast)
        except raft.RaftError as e:
            raise self._agent_error()(f"host {self.host}: {e}", e.code) from e  # type: ignore[attr-defined]
        return {**res, "id": command["id"], "started_at": t0, "committed_at": time.time()}

    def _raft_sync_loop(self) -> None:
        """Tables from the replica on every change; our own endpoints kept registered."""
        dirty = self._raft_dirty
        assert dirty is not None
        next_reconcile = 0.0
        next_refresh = 0.0
        while not self._raft_stopping:
            changed = dirty.wait(0.25)
            node = self._raft
            if node is None:
                continue
            # A snapshot installed by the leader replaces the table without an apply call; and
            # once a second the tables are re-derived anyway, which repairs a rebuild that raced
            # with an endpoint being added on the RPC thread (VtepCore has no lock).
            now = time.monotonic()
            if changed or node.table.version != self._raft_synced_version or now >= next_refresh:
                next_refresh = now + 1.0
                dirty.clear()
                try:
                    self._raft_apply_tables()
                except Exception as e:  # keep the loop: the next change retries
                    self._raft_log(f"deriving tables from Raft failed: {e}")
            if time.monotonic() >= next_reconcile:
                next_reconcile = time.monotonic() + 0.5
                try:
                    self._raft_reconcile()
                except Exception as e:
                    next_reconcile = time.monotonic() + 2.0  # no quorum now: retry later
                    self._raft_log(f"registering endpoints by Raft failed: {e}")

    def _raft_reconcile(self) -> None:
        """Endpoints made or removed here after ``raft_publish`` are written by this agent.

        Only while this host is a member: a host removed from the overlay stays removed until
        it publishes again.
        """
        node = self._raft
        host = self.host  # type: ignore[attr-defined]
        if node is None or host not in node.table.members:
            return
        mine = {f"{ep.vni}/{ep.mac.lower()}": ep for ep in list(self.endpoints.values())}  # type: ignore[attr-defined]
        listed = {k for k, e in node.table.endpoints.items() if e["host"] == host}
        cmds: List[Dict[str, Any]] = [
            {"op": "endpoint", "vni": ep.vni, "mac": ep.mac, "ip": ep.ip, "host": host,
             "name": ep.name} for k, ep in mine.items() if k not in listed]
        for k in sorted(listed - set(mine)):
            vni, mac = k.split("/", 1)
            cmds.append({"op": "remove_endpoint", "vni": int(vni), "mac": mac})
        if cmds:
            self._raft_write({"op": "batch", "commands": cmds}, 5.0, fail_fast=True)

    @staticmethod
    def _raft_log(message: str) -> None:
        import sys

        sys.stderr.write(f"overlay-agent: {message}\n")

    def _raft_apply_tables(self) -> None:
        """VtepCore's members and per-VNI remote entries, from the local replica only."""
        node = self._raft
        if node is None:
            return
        table = node.table
        version = table.version
        core = self.core  # type: ignore[attr-defined]
        members = table.member_underlays()
        core.set_members(members, members)  # every member is an agent: all take RCO
        dataplane = getattr(self, "dataplane", None)
        if dataplane is not None:
            dataplane.refresh_offload()
        for net in list(self.networks.values()):  # type: ignore[attr-defined]
            entries, flood = table.forwarding(net["vni"], self.host)  # type: ignore[attr-defined]
            rows = [(mac_to_bytes(mac), ipaddress.ip_address(ip).packed if ip else None, addr)
                    for mac, ip, addr in entries]
            core.set_remote(net["vni"], rows, flood)
        self._raft_synced_version = version

    def _need_raft(self) -> Any:
        if self._raft is None:
            raise self._agent_error()("Raft is not running on this agent: raft_start first",
                                      "state")
        return self._raft

    def _agent_error(self) -> Any:
        from overlay_agent.agent import AgentError

        return AgentError

    def raft_cleanup(self) -> None:
        self._raft_stopping = True
        if self._raft is not None:
            self._raft.stop()
            self._raft = None
