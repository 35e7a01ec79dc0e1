"""The agent end of the JSON-lines protocol on stdin/stdout.

Request:  {"id": 7, "method": "ping", "params": {...}}
Response: {"id": 7, "result": {...}}  or  {"id": 7, "error": {"code": "...", "message": "..."}}

Quick methods run in order on the reading thread; probes run in a bounded pool so that many
pairs are measured at once. When stdin closes (the controller is gone) the caller cleans up.
"""

from __future__ import annotations

import json
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, Callable, Dict

from overlay_agent.agent import Agent, AgentError
from overlay_agent.methods import is_slow, lookup


class RpcServer:
    def __init__(self, agent: Agent, infile: IO[bytes], outfile: IO[bytes], workers: int = 16) -> None:
        self.agent = agent
        self.infile = infile
        self.outfile = outfile
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")

    def send(self, message: Dict[str, Any]) -> None:
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        with self._lock:
            try:
                self.outfile.write(data)
                self.outfile.flush()
            except (OSError, ValueError):
                pass  # the controller is gone; stdin will close and we clean up

    def serve(self) -> str:
        """Answer requests until stdin closes or ``shutdown`` arrives; returns which."""
        try:
            for raw in self.infile:
                line = raw.strip()
                if not line:
                    continue
                try:
                    msg = json.loads(line)
                    req_id = msg.get("id")
                    method = msg["method"]
                    params = msg.get("params") or {}
                    if not isinstance(method, str):
                        raise ValueError("method is not a string")
                except (ValueError, KeyError, AttributeError, RecursionError):
                    self.send({"id": None, "error": {"code": "protocol",
                                                     "message": f"not a request: {line[:80]!r}"}})
                    continue
                if method == "shutdown":
                    self.send({"id": req_id, "result": {"bye": True}})
                    return "shutdown"
                call = lookup(self.agent, method)
                if call is None:
                    self.send({"id": req_id, "error": {"code": "unknown-method",
                                                       "message": f"no method {method!r}"}})
                    continue
                if is_slow(call):
                    self._pool.submit(self._run, req_id, call, params)
                else:
                    self._run(req_id, call, params)
            return "eof"
        finally:
            self._pool.shutdown(wait=False)

    def _run(self, req_id: Any, call: Callable[..., Any], params: Dict[str, Any]) -> None:
        try:
            result = call(**params)
        except AgentError as e:
            self.send({"id": req_id, "error": {"code": e.code, "message": str(e)}})
        except TypeError as e:
            self.send({"id": req_id, "error": {"code": "invalid", "message": str(e)}})
        except Exception as e:
            self.send({"id": req_id, "error": {
                "code": type(e).__name__, "message": str(e) or type(e).__name__,
                "trace": traceback.format_exc(limit=6)}})
        else:
            self.send({"id": req_id, "result": result})
