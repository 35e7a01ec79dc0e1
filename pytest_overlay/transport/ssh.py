"""Remote mode: the agent on a real host, started over SSH (asyncssh), nothing installed there.

Per host: connect (in parallel, bounded by a timeout; through a jump host if asked), verify the
host key against known_hosts, log in by key or ssh-agent (never a password), upload ``agent.pyz``
by SFTP into a private per-run directory (mode 0700, named with the run prefix), and start it with
the host's own Python, optionally under ``sudo -n``. Its stdio is the JSON-lines protocol.

The remote command is a small ``sh`` wrapper whose ``EXIT`` trap removes the directory: when the
connection ends (closed, cut, or the controller killed) the agent sees EOF on stdin, removes what
it made and exits, and the wrapper then removes the upload. Nothing of the run stays on the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shlex
import socket
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import asyncssh

from overlay_agent import PROTOCOL_VERSION
from pytest_overlay.errors import AgentError, AgentGone, OverlayError
from pytest_overlay.inventory import Inventory, parse_jump
from pytest_overlay.rpc import AgentClient

NO_PYTHON = 127
HINT_KNOWN = "compare the fingerprint with the host's own (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`)"


class HostKeyCheck:
    """Checks one host's key against known_hosts; says exactly why a key was refused."""

    def __init__(self, known_hosts: Path, name: str, accept_new: bool) -> None:
        self.path = known_hosts
        self.name = name  # as written in known_hosts: ``addr`` or ``[addr]:port``
        self.accept_new = accept_new
        self.status = "known"
        self.fingerprint = ""
        self.line = ""

    def load(self) -> Any:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        except OSError as e:
            raise OverlayError(f"cannot read known_hosts {self.path}: {e.strerror}",
                               "fix the file's permissions or set `known_hosts:`") from None
        try:
            return asyncssh.import_known_hosts(data.decode(errors="replace"))
        except (ValueError, asyncssh.KeyImportError) as e:
            raise OverlayError(f"known_hosts {self.path} is not readable: {e}",
                               "repair the file (ssh-keygen -H -f FILE rewrites it)") from None

    def unknown_key(self, known: Any, host: str, addr: str, port: int, key: Any) -> bool:
        """Called for a key that is not in known_hosts: accept it (opt-in) or refuse it."""
        self.fingerprint = key.get_fingerprint("sha256")
        self.line = f"{self.name} {key.export_public_key('openssh').decode().strip()}"
        listed = known.match(host, addr, port if port != 22 else None)[0]
        if listed:
            self.status = "changed"
            return False
        if not self.accept_new:
            self.status = "unknown"
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(self.line + "\n")
        self.status = "accepted-new"
        return True

    def refusal(self, host: str) -> AgentError:
        kh = shlex.quote(str(self.path))
        add = f"echo {shlex.quote(self.line)} >> {kh}"
        if self.status == "changed":
            return AgentError(
                host, f"host key CHANGED for {self.name}: the server now shows {self.fingerprint}, "
                "which differs from known_hosts (a reinstalled host, or someone in between)",
                f"{HINT_KNOWN}; if it is right: ssh-keygen -R {shlex.quote(self.name)} -f {kh} && {add}",
                code="hostkey")
        return AgentError(
            host, f"host key of {self.name} is unknown ({self.fingerprint}, not in {self.path})",
            f"{HINT_KNOWN}; to accept it: {add}   (or run once with --overlay-accept-new-hostkeys)",
            code="hostkey")


class _Client(asyncssh.SSHClient):
    def __init__(self, check: HostKeyCheck, known: Any) -> None:
        self._check = check
        self._known = known

    def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
        return self._check.unknown_key(self._known, host, addr, port, key)


class _Reader:
    """The agent's stdout. At its end, tells a cut connection (no exit status came: raised as
    :class:`ConnectionResetError`, which the client reports) from an agent that exited."""

    def __init__(self, proc: Any, where: str) -> None:
        self._proc = proc
        self._where = where

    async def readline(self) -> bytes:
        try:
            line = bytes(await self._proc.stdout.readline())
        except (asyncssh.Error, OSError):
            line = b""
        if line:
            return line
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._proc.wait_closed(), 2)
        if self._proc.exit_status is None and self._proc.exit_signal is None:
            raise ConnectionResetError(f"the SSH connection to {self._where} was cut")
        return b""


class _Writer:
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        try:
            self._stream.write(data)
        except (asyncssh.Error, OSError) as e:
            raise ConnectionError(str(e)) from e

    async def drain(self) -> None:
        try:
            await self._stream.drain()
        except (asyncssh.Error, OSError) as e:
            raise ConnectionError(str(e)) from e

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stream.close()


class SshAgent:
    def __init__(self, host: str, conn: Any, proc: Any, info: Dict[str, Any]) -> None:
        self.host = host
        self.conn = conn
        self.proc = proc
        self.info = info
        self.remote_pid: Optional[int] = None
        self.stderr = bytearray()
        self.client = AgentClient(host, _Reader(proc, info["address"]),  # type: ignore[arg-type]
                                  _Writer(proc.stdin))
        self._err_task = asyncio.ensure_future(self._read_stderr())

    @property
    def pid(self) -> Optional[int]:
        return self.remote_pid

    async def _read_stderr(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                chunk = await self.proc.stderr.read(4096)
                if not chunk:
                    return
                self.stderr += chunk
                del self.stderr[:-4096]

    def stderr_tail(self) -> str:
        return bytes(self.stderr).decode(errors="replace").strip()[-600:]

    async def stop(self, timeout: float = 5.0) -> None:
        if self.client.alive:
            with contextlib.suppress(Exception):
                await self.client.call("shutdown", rpc_timeout=timeout)
        with contextlib.suppress(Exception):
            self.proc.stdin.write_eof()
        # The wrapper removes the upload after the agent exits: wait for its exit status.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait_closed(), timeout)
        await self.client.close()
        self._err_task.cancel()
        self.conn.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.wait_closed(), timeout)

    def kill(self) -> None:
        """Cut the connection at once (the agent then sees EOF and cleans up on its own)."""
        self.conn.abort()


class SshTransport:
    """Starts agents on inventory hosts; ``start(name)`` per host, all in parallel."""

    def __init__(self, pyz: Path, prefix: str, inventory: Inventory, accept_new: bool = False,
                 netns: Optional[str] = None) -> None:
        self.pyz = pyz.read_bytes()
        self.prefix = prefix
        self.inventory = inventory
        self.accept_new = accept_new
        self.netns = netns if netns is not None else inventory.controller.netns
        self._jumps: Dict[Tuple[Optional[str], str, int], asyncio.Future[Any]] = {}
        self._keys: Dict[str, Any] = {}

    # -- connecting -----------------------------------------------------------------------
    async def _socket(self, addr: str, port: int) -> Optional[socket.socket]:
        """A TCP socket connected from inside ``netns`` (None: asyncssh connects itself)."""
        if not self.netns:
            return None
        from overlay_agent.io import netns

        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(addr, port, type=socket.SOCK_STREAM)
        family, _, _, _, sockaddr = infos[0]
        with netns.inside(self.netns):
            sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, sockaddr)
        except BaseException:
            sock.close()
            raise
        return sock

    async def _connect(self, host: str, addr: str, port: int, user: Optional[str],
                       s: Dict[str, Any], tunnel: Any = None) -> Tuple[Any, HostKeyCheck]:
        kh = Path(os.path.expanduser(s["known_hosts"] or "~/.ssh/known_hosts"))
        check = HostKeyCheck(kh, addr if port == 22 else f"[{addr}]:{port}", self.accept_new)
        known = check.load()
        opts: Dict[str, Any] = {
            "port": port, "username": user, "known_hosts": known, "config": None,
            "password_auth": False, "kbdint_auth": False,
            # A silently dead path is noticed in ~1 min instead of TCP's hours.
            "keepalive_interval": 15, "keepalive_count_max": 4,
            "client_factory": lambda: _Client(check, known),
        }
        if s["identity"]:
            opts["client_keys"] = [self._identity(host, s["identity"])]
        where = f"{user + '@' if user else ''}{addr}:{port}"
        try:
            sock = None if tunnel is not None else await self._socket(addr, port)
            if sock is not None:
                opts["sock"] = sock
            if tunnel is not None:
                opts["tunnel"] = tunnel
            conn = await asyncssh.connect(addr, **opts)
        except asyncssh.HostKeyNotVerifiable:
            raise check.refusal(host) from None
        except asyncssh.PermissionDenied as e:
            key = s["identity"] or "the ssh-agent's and ~/.ssh/id_* keys"
            raise AgentError(host, f"SSH log-in to {where} refused with {key} ({e.reason})",
                             "add the public key to the user's ~/.ssh/authorized_keys on the host, "
                             "or set `identity:`/`user:` in the inventory", code="auth") from None
        except (OSError, asyncssh.Error) as e:
            reason = "connection refused" if isinstance(e, ConnectionRefusedError) else (
                e.strerror or str(e)) if isinstance(e, OSError) else (
                getattr(e, "reason", "") or str(e))
            raise AgentError(host, f"cannot connect to {where}: {reason or type(e).__name__}",
                             "check the address, the port and that sshd runs there",
                             code="unreachable") from None
        return conn, check

    def _identity(self, host: str, identity: str) -> Any:
        """The private key of ``identity`` (read once per run); unreadable: the host's error."""
        path = os.path.expanduser(identity)
        if path not in self._keys:
            try:
                self._keys[path] = asyncssh.read_private_key(path)
            except OSError as e:
                self._keys[path] = AgentError(
                    host, f"identity file {path}: {e.strerror}", "set `identity:` to a private "
                    "key file, or leave it unset to use the ssh-agent", code="auth")
            except (asyncssh.KeyImportError, ValueError) as e:
                self._keys[path] = AgentError(
                    host, f"identity file {path} cannot be used: {e}", "a passphrase-protected key "
                    "belongs in the ssh-agent (ssh-add); then leave `identity:` unset", code="auth")
        key = self._keys[path]
        if isinstance(key, AgentError):
            raise AgentError(host, key.message.split(": ", 1)[1], key.hint, code="auth")
        return key

    async def _jump(self, host: str, spec: str, s: Dict[str, Any]) -> Any:
        user, addr, port = parse_jump(spec)
        key = (user or s["user"], addr, port)
        if key not in self._jumps:
            fut: asyncio.Future[Any] = asyncio.ensure_future(
                self._connect(f"{host} (jump host {spec})", addr, port, key[0], s))
            self._jumps[key] = fut
        conn, _ = await asyncio.shield(self._jumps[key])
        return conn

    # -- starting ---------------------------------------------------------------------------
    async def start(self, host: str) -> SshAgent:
        s = self.inventory.settings(host)
        try:
            return await asyncio.wait_for(self._start(host, s), s["connect_timeout"] + 60)
        except asyncio.TimeoutError:
            raise AgentError(host, f"the agent on {s['address']} did not start within "
                             f"{s['connect_timeout'] + 60:g} s", "check the host's load and its "
                             "Python", code="timeout") from None

    async def _start(self, host: str, s: Dict[str, Any]) -> SshAgent:
        tunnel = await self._jump(host, s["jump"], s) if s["jump"] else None
        try:
            conn, check = await asyncio.wait_for(
                self._connect(host, s["address"], s["port"], s["user"], s, tunnel),
                s["connect_timeout"])
        except asyncio.TimeoutError:
            raise AgentError(host, f"no SSH connection to {s['address']}:{s['port']} within "
                             f"{s['connect_timeout']:g} s", "check that the host is up and "
                             "reachable, or raise `connect_timeout:`", code="unreachable") from None
        try:
            remote_dir = f"{s['workdir'].rstrip('/')}/{self.prefix}-{host}-{secrets.token_hex(4)}"
            async with conn.start_sftp_client() as sftp:
                await sftp.mkdir(remote_dir, asyncssh.SFTPAttrs(permissions=0o700))
                async with sftp.open(f"{remote_dir}/agent.pyz", "wb",
                                     asyncssh.SFTPAttrs(permissions=0o600)) as f:
                    await f.write(self.pyz)
            proc = await conn.create_process(self._command(remote_dir, s), encoding=None)
        except (OSError, asyncssh.Error) as e:
            conn.close()
            raise AgentError(host, f"cannot upload or start the agent in {s['workdir']}: {e}",
                             "check that the user may write there (`workdir:`)") from None
        info = {"address": f"{s['user'] + '@' if s['user'] else ''}{s['address']}:{s['port']}",
                "host_key": check.status, "host_key_fingerprint": check.fingerprint or None,
                "jump": s["jump"], "sudo": bool(s["sudo"]), "python": s["python"],
                "remote_dir": remote_dir}
        if check.status == "known":
            key = conn.get_server_host_key()
            info["host_key_fingerprint"] = key.get_fingerprint("sha256") if key else None
        agent = SshAgent(host, conn, proc, info)
        try:
            hello = await agent.client.call("hello", protocol=PROTOCOL_VERSION, rpc_timeout=30)
        except AgentGone:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait_closed(), 5)
            await asyncio.sleep(0)
            err = self._why(host, s, proc.exit_status, agent.stderr_tail())
            await agent.stop(timeout=2)
            raise err from None
        except BaseException:
            await agent.stop(timeout=2)
            raise
        agent.remote_pid = hello.get("pid")
        return agent

    def _command(self, remote_dir: str, s: Dict[str, Any]) -> str:
        py = shlex.quote(s["python"])
        sudo = "sudo -n " if s["sudo"] else ""
        script = (
            f"d={shlex.quote(remote_dir)}; trap 'rm -rf \"$d\"' EXIT; trap 'exit 129' HUP; "
            "trap 'exit 130' INT; trap 'exit 143' TERM; "
            f"command -v {py} >/dev/null 2>&1 || {{ echo \"overlay: no {py} here\" >&2; "
            f"exit {NO_PYTHON}; }}; {sudo}{py} \"$d/agent.pyz\""
        )
        return "sh -c " + shlex.quote(script)

    def _why(self, host: str, s: Dict[str, Any], status: Optional[int], stderr: str) -> AgentError:
        """Why the agent ended before it answered, from its exit status and last output."""
        py = s["python"]
        if status == NO_PYTHON or "overlay: no " in stderr:
            return AgentError(host, f"no Python interpreter {py!r} on the host",
                              "install Python 3.8+ there, or set `python:` to its path",
                              code="no-python")
        if s["sudo"] and "sudo" in stderr:
            if "password" in stderr:
                return AgentError(host, f"`sudo -n` would ask for a password ({stderr.splitlines()[-1]})",
                                  f"allow {s['user'] or 'the user'} to run {py} with NOPASSWD in "
                                  "sudoers, or log in as root and set `sudo: false`", code="sudo")
            return AgentError(host, f"`sudo -n` failed: {stderr.splitlines()[-1]}",
                              f"let the user run {py} with sudo (NOPASSWD), or set `sudo: false`",
                              code="sudo")
        if "SyntaxError" in stderr:
            return AgentError(host, f"{py} is too old for the agent: {stderr.splitlines()[-1]}",
                              "the agent needs Python 3.8+: set `python:` to a newer one",
                              code="no-python")
        return AgentError(host, f"the agent ended before it answered (exit status {status}): "
                                f"{stderr or 'no output'}", "see the host's message above")

    async def close(self) -> None:
        """Close shared jump-host connections."""
        for fut in self._jumps.values():
            with contextlib.suppress(BaseException):
                conn, _ = await fut
                conn.close()
                await asyncio.wait_for(conn.wait_closed(), 5)
        self._jumps.clear()
