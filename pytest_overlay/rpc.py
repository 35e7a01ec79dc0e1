"""The controller end of the agent's JSON-lines protocol (see ``overlay_agent/rpc.py``).

Requests carry ids, so many can be in flight at once on one agent (pairs are probed in
parallel). A dead agent fails every pending and later call with :class:`AgentGone`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from typing import Any, Dict, Optional

from pytest_overlay.errors import AgentError, AgentGone

#: the longest answer line the controller reads (asyncio's default, 64 KiB, is shorter than an
#: evidence capture: an answer past it ended the connection, and the agent was reported gone)
LINE_LIMIT = 64 << 20


class AgentClient:
    def __init__(self, host: str, reader: asyncio.StreamReader, writer: Any) -> None:
        """``writer`` needs ``write(bytes)``, ``drain()`` and ``close()`` (asyncio or asyncssh)."""
        self.host = host
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: Dict[int, asyncio.Future[Any]] = {}
        self._closed: Optional[str] = None
        self._task = asyncio.ensure_future(self._read_loop())

    @property
    def alive(self) -> bool:
        return self._closed is None

    @property
    def closed_reason(self) -> str:
        return self._closed or ""

    async def call(self, method: str, rpc_timeout: Optional[float] = 30.0, **params: Any) -> Any:
        """Call ``method`` with ``params``; ``rpc_timeout`` bounds the wait for the answer."""
        timeout = rpc_timeout
        if self._closed is not None:
            raise AgentGone(self.host, f"cannot call {method}: {self._closed}")
        req_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        data = json.dumps({"id": req_id, "method": method, "params": params}) + "\n"
        try:
            self._writer.write(data.encode())
            await self._writer.drain()
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise AgentError(self.host, f"{method} got no answer within {timeout:g} s",
                             code="timeout") from None
        except (ConnectionError, BrokenPipeError) as e:
            raise AgentGone(self.host, f"connection lost during {method}: {e}") from e
        finally:
            self._pending.pop(req_id, None)

    async def _read_loop(self) -> None:
        reason = "the agent closed its output"
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                fut = self._pending.get(msg.get("id"))
                if fut is None or fut.done():
                    continue
                if "error" in msg:
                    err = msg["error"] or {}
                    fut.set_exception(AgentError(self.host, str(err.get("message")),
                                                 code=str(err.get("code", "failed"))))
                else:
                    fut.set_result(msg.get("result"))
        except (ConnectionError, asyncio.IncompleteReadError) as e:
            reason = f"connection lost: {e}"
        except ValueError as e:  # StreamReader.readline: a line past the reader's limit
            reason = f"an answer longer than this controller reads ({e})"
        except asyncio.CancelledError:
            reason = "the controller closed the connection"
        finally:
            self._closed = reason
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(AgentGone(self.host, reason))

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        with contextlib.suppress(Exception):
            self._writer.close()
