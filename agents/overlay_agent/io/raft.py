"""Raft (pysyncobj) for the control-plane table; the ONLY module that imports pysyncobj.

Security: pysyncobj unpickles what peers send. Every connection gets its own
:class:`~overlay_agent.core.raftauth.Session` as its encryptor, set by :class:`_AuthTransport`
when the connection is made; pysyncobj calls it on each frame before ``pickle.loads`` and drops
the connection when it raises. Log entries are JSON text, applied by :class:`RaftNode`.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from overlay_agent.core.raftauth import ReplayCache, Session, derive_key
from overlay_agent.core.table import Table, decode

_inet_ntop = socket.inet_ntop
try:
    from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
    from pysyncobj.transport import TCPTransport

    HAVE_PYSYNCOBJ = True
except ImportError:  # pragma: no cover - reported by capabilities()
    HAVE_PYSYNCOBJ = False
    SyncObj = object  # type: ignore[assignment,misc]
    TCPTransport = object  # type: ignore[assignment,misc]

    def replicated(f: Any) -> Any:  # type: ignore[no-redef]
        return f
finally:
    socket.inet_ntop = _inet_ntop  # pysyncobj replaces it (win_inet_pton); put ours back

DEFAULT_PORT = 7946
ROLES = {0: "follower", 1: "candidate", 2: "leader"}
RETRY = ("LEADER_CHANGED", "MISSING_LEADER", "NOT_LEADER", "DISCARDED", "QUEUE_FULL")


class RaftError(Exception):
    def __init__(self, message: str, code: str = "raft") -> None:
        super().__init__(message)
        self.code = code


def fernet_available() -> bool:
    try:
        from cryptography.fernet import Fernet  # noqa: F401
    except Exception:
        return False
    return True


def _fernet(secret: bytes) -> Any:
    import base64

    from cryptography.fernet import Fernet

    return Fernet(base64.urlsafe_b64encode(derive_key(secret, b"enc")))


class _SessionEncryptor:
    """pysyncobj's encryptor interface over one :class:`Session` (one per connection)."""

    def __init__(self, session: Session, on_reject: Callable[[str], None]) -> None:
        self.session = session
        self._on_reject = on_reject

    def encrypt_at_time(self, data: bytes, _ts: int) -> bytes:
        return self.session.seal(data, time.time(), os.urandom(16))

    def extract_timestamp(self, data: bytes) -> int:
        try:
            return self.session.peek_seq(data)
        except Exception as e:
            self._on_reject(str(e))
            raise

    def decrypt(self, data: bytes) -> bytes:
        try:
            return self.session.open(data, time.time())
        except Exception as e:
            self._on_reject(str(e))
            raise


class _Refuse:
    """Placeholder encryptor: truthy (so pysyncobj runs its handshake), never used for bytes."""

    def encrypt_at_time(self, data: bytes, _ts: int) -> bytes:
        raise RuntimeError("no session")

    def extract_timestamp(self, data: bytes) -> int:
        raise RuntimeError("no session")

    def decrypt(self, data: bytes) -> bytes:
        raise RuntimeError("no session")


UNKNOWN_TIMEOUT = 3.0  # s an incoming connection may take to identify itself
UNKNOWN_MAX_BUFFER = 1 << 20  # bytes buffered for a frame on such a connection


class _AuthTransport(TCPTransport):  # type: ignore[misc,valid-type]
    """pysyncobj's TCP transport with a fresh authenticated session on every connection.

    Incoming connections that have not completed the handshake are dropped after
    ``UNKNOWN_TIMEOUT`` s or once they buffer more than ``UNKNOWN_MAX_BUFFER`` bytes (a forged
    length prefix would otherwise make pysyncobj wait and buffer without limit).
    """

    def _onNewIncomingConnection(self, conn: Any) -> None:
        super()._onNewIncomingConnection(conn)
        conn.encryptor = self._syncObj.new_session(initiator=False)
        conn.ov_since = time.monotonic()

    def _onTick(self) -> None:
        super()._onTick()
        now = time.monotonic()
        for conn in list(self._unknownConnections):
            buffered = len(getattr(conn, "_TcpConnection__readBuffer", b""))
            if now - getattr(conn, "ov_since", now) > UNKNOWN_TIMEOUT or buffered > UNKNOWN_MAX_BUFFER:
                self._syncObj._rejected_frame("unauthenticated connection dropped: no valid "
                                              f"handshake within {UNKNOWN_TIMEOUT:g} s")
                conn.disconnect()

    def _onOutgoingConnected(self, conn: Any) -> None:
        conn.encryptor = self._syncObj.new_session(initiator=True)
        super()._onOutgoingConnected(conn)


def port_held(self_addr: str) -> Optional[str]:
    """Why a voter cannot listen at ``self_addr`` ("ip:port"), or None if it can. pysyncobj
    would retry a taken port forever and the replica would just never hear from its peers."""
    host, _, port = self_addr.rpartition(":")
    host = host.strip("[]")
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as pysyncobj binds it
        s.bind((host, int(port)))
        s.listen(1)
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            return None  # not ours to judge here: pysyncobj reports its own bind failures
        docker = " (Docker Swarm's gossip uses 7946/tcp)" if int(port) == 7946 else ""
        return (f"the Raft port {port}/tcp at {host} is held by another program{docker}: "
                f"give the audit's control plane a free port with --overlay-raft-port "
                f"(e.g. {int(port) + 1}, open on the underlay between the hosts), or run "
                "with --overlay-control-plane=static")
    finally:
        s.close()
    return None


class RaftNode(SyncObj):  # type: ignore[misc,valid-type]
    """One replica. ``self_addr`` "ip:port" for a voter, None for a read-only replica."""

    def __init__(self, self_addr: Optional[str], voters: List[str], secret: bytes,
                 encrypt: bool = False, on_change: Optional[Callable[[], None]] = None,
                 fast: bool = True) -> None:
        if not HAVE_PYSYNCOBJ:
            raise RaftError("pysyncobj is not available on this host: ship the agent with it "
                            "(deploy.build_agent(bundle=['pysyncobj']))", "unavailable")
        self._mac_key = derive_key(secret, b"mac")
        self._cache = ReplayCache()
        self._cipher = _fernet(secret) if encrypt else None
        self._placeholder = _Refuse()
        self.table = Table()
        self.applied_at: Dict[str, float] = {}  # command id -> wall time applied here
        self.rejected: List[str] = []  # why frames were refused (last 50)
        self.rejected_count = 0
        self._on_change = on_change
        self._cond = threading.Condition()
        conf = SyncObjConf(
            commandsWaitLeader=False, appendEntriesUseBatch=False, useFork=False,
            dynamicMembershipChange=False, password=None, journalFile=None, fullDumpFile=None,
            raftMinTimeout=0.35 if fast else 0.4, raftMaxTimeout=0.9 if fast else 1.4,
            appendEntriesPeriod=0.05, connectionTimeout=2.0, connectionRetryTime=0.5,
            autoTickPeriod=0.01, bindRetryTime=0.5, logCompactionMinEntries=20000,
            bindAddress=self_addr,  # the underlay address only (pysyncobj would take 0.0.0.0)
        )
        others = [v for v in voters if v != self_addr]
        super().__init__(self_addr, others, conf, transportClass=_AuthTransport)
        # pysyncobj snapshots only attributes made after its __init__; the table is the state.
        self._SyncObj__properies.discard("table")
        self.security = "hmac-sha256+fernet" if encrypt else "hmac-sha256"

    # -- pysyncobj hooks ----------------------------------------------------------------------
    @property
    def encryptor(self) -> Any:
        return self._placeholder

    def new_session(self, initiator: bool) -> _SessionEncryptor:
        return _SessionEncryptor(Session(self._mac_key, initiator, self._cache, self._cipher),
                                 self._rejected_frame)

    def _rejected_frame(self, why: str) -> None:
        self.rejected_count += 1
        self.rejected = [*self.rejected, why][-50:]

    @replicated
    def _apply(self, command: str) -> Dict[str, Any]:
        try:
            cmd = decode(command)
        except ValueError as e:
            return {"ok": False, "changed": 0, "error": str(e)}
        table = self.__dict__.get("table")
        if table is None:  # applied during SyncObj.__init__ (cannot happen before a leader)
            table = self.table = Table()
        res = table.apply(cmd)
        cid = cmd.get("id")
        if cid:
            self.applied_at[str(cid)] = time.time()
        with self._cond:
            self._cond.notify_all()
        if res.get("changed") and self._on_change is not None:
            self._on_change()
        return res

    # -- writes -------------------------------------------------------------------------------
    def write(self, command: Dict[str, Any], deadline: float = 2.0,
              fail_fast: bool = True) -> Dict[str, Any]:
        """Commit ``command`` (idempotent), retrying on leader changes until ``deadline`` s."""
        text = json.dumps(command, sort_keys=True, separators=(",", ":"))
        end = time.monotonic() + deadline
        last = "no attempt"
        while True:
            if fail_fast:
                self._check_quorum()
            done = threading.Event()
            box: Dict[str, Any] = {}

            def cb(res: Any, err: Any, box: Dict[str, Any] = box, done: threading.Event = done) -> None:
                box["res"], box["err"] = res, err
                done.set()

            self._apply(text, callback=cb)
            done.wait(max(0.0, min(end - time.monotonic(), 1.0)))
            if done.is_set():
                err = _reason(box["err"])
                if err == "SUCCESS":
                    res = box["res"]
                    if not res.get("ok"):
                        raise RaftError(f"the table refused the command: {res.get('error')}",
                                        "rejected")
                    return dict(res)
                if err not in RETRY:
                    raise RaftError(f"Raft write failed: {err}", "raft")
                last = err
            else:
                last = "no answer from the leader"
            if time.monotonic() >= end:
                raise RaftError(self._unavailable(f"last: {last}"), "unavailable")
            time.sleep(0.05)

    def _check_quorum(self) -> None:
        if self.selfNode is None:  # read-only: needs the leader itself
            leader = self._getLeader()
            if leader is None or not self.isNodeConnected(leader):
                raise RaftError(self._unavailable("not connected to the leader"), "unavailable")
            return
        voters = [self.selfNode, *self.otherNodes]
        reach = 1 + sum(1 for n in self.otherNodes if self.isNodeConnected(n))
        if reach <= len(voters) // 2:
            raise RaftError(self._unavailable(f"reaches {reach} of {len(voters)} voters"),
                            "unavailable")

    def _unavailable(self, detail: str) -> str:
        st = self.getStatus()
        return (f"no Raft quorum reachable from this host ({detail}; term {st.get('raft_term')},"
                f" leader {st.get('leader') or 'none'}): this host is cut off from the majority "
                "of the voters; check its underlay link and the Raft port, then retry")

    def wait_until(self, pred: Callable[[Table], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        with self._cond:
            while not pred(self.table):
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
        return True

    # -- reading ------------------------------------------------------------------------------
    def status(self) -> Dict[str, Any]:
        for _ in range(5):  # getStatus iterates sets the tick thread may be changing
            try:
                st = self.getStatus()
                break
            except RuntimeError:
                time.sleep(0.001)
        else:
            st = self.getStatus()
        leader = st.get("leader")
        return {
            "role": "replica" if self.selfNode is None else ROLES.get(st.get("state"), "?"),
            "voter": self.selfNode is not None,
            "self": str(self.selfNode) if self.selfNode is not None else None,
            "leader": str(leader) if leader is not None else None,
            "term": st.get("raft_term"),
            "commit_index": st.get("commit_idx"),
            "last_applied": st.get("last_applied"),
            "leader_commit_index": st.get("leader_commit_idx"),
            "log_len": st.get("log_len"),
            "connected": sum(1 for n in self.otherNodes if self.isNodeConnected(n)),
            "voters": len(self.otherNodes) + (1 if self.selfNode is not None else 0),
            "table_version": self.table.version,
            "table_size": self.table.size(),
            "digest": self.table.digest(),
            "security": self.security,
            "rejected_frames": self.rejected_count,
            "last_rejection": self.rejected[-1] if self.rejected else None,
        }

    def stop(self) -> None:
        try:
            self.destroy()
        except Exception as e:  # never block clean-up
            sys.stderr.write(f"overlay-agent: stopping Raft: {e}\n")


def _reason(err: Any) -> str:
    if not HAVE_PYSYNCOBJ:
        return str(err)
    for name in dir(FAIL_REASON):
        if not name.startswith("_") and getattr(FAIL_REASON, name) == err:
            return name
    return str(err)
