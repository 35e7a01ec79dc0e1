"""Local mode: the agent runs in a lab namespace, its stdio piped to the controller."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import IO, Optional

from pytest_overlay.errors import AgentError
from pytest_overlay.rpc import LINE_LIMIT, AgentClient


class NetnsAgent:
    def __init__(self, host: str, proc: asyncio.subprocess.Process, log: IO[bytes]) -> None:
        self.host = host
        self.proc = proc
        self._log = log
        assert proc.stdout is not None and proc.stdin is not None
        self.client = AgentClient(host, proc.stdout, proc.stdin)

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid

    async def stop(self, timeout: float = 5.0) -> None:
        if self.proc.returncode is None and self.client.alive:
            with contextlib.suppress(Exception):
                await self.client.call("shutdown", rpc_timeout=timeout)
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            self.kill()
            await self.proc.wait()
        await self.client.close()
        self._log.close()

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)


class NetnsTransport:
    """Starts agents with ``python3 agent.pyz --netns NS`` (the agent enters NS itself)."""

    def __init__(self, pyz: Path, log_dir: Path, python: Optional[str] = None) -> None:
        self.pyz = pyz
        self.log_dir = log_dir
        self.python = python or sys.executable

    async def start(self, host: str, netns: str) -> NetnsAgent:
        log = open(self.log_dir / f"agent-{host}.log", "wb")  # noqa: SIM115 (closed in stop)
        try:
            proc = await asyncio.create_subprocess_exec(
                self.python, str(self.pyz), "--netns", netns,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
                limit=LINE_LIMIT,
                # Its own session: a Ctrl-C at the terminal reaches the controller, which then
                # shuts the agents down in order (they also clean up if it dies).
                start_new_session=True,
            )
        except OSError as e:
            log.close()
            raise AgentError(host, f"cannot start the agent: {e}") from e
        return NetnsAgent(host, proc, log)
