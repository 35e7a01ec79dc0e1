"""An agent in a lab namespace driven synchronously: one request, one answer.

For tests and benchmarks that script agents step by step (the controller proper is async and
multiplexes, see :mod:`pytest_overlay.rpc`). Runs ``python -m overlay_agent --netns NS`` from the
agent's own source directory, so what is tested is the tree at hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import overlay_agent

AGENTS_DIR = Path(overlay_agent.__file__).resolve().parent.parent


class AgentProc:
    def __init__(self, netns: str, log: Path, env: Optional[Dict[str, str]] = None) -> None:
        self.netns = netns
        self._log = open(log, "wb")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "overlay_agent", "--netns", netns],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            cwd=str(AGENTS_DIR), start_new_session=True, env={**os.environ, **(env or {})},
        )
        self._id = 0

    def call(self, method: str, **params: Any) -> Any:
        """Send one request and wait for its answer; RuntimeError on an agent error or exit."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"agent in {self.netns} exited (code {self.proc.poll()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    def close(self) -> None:
        """Ask the agent to clean up and exit; kill it if it does not."""
        if self.proc.poll() is None:
            try:
                self.call("shutdown")
            except Exception:
                pass
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            except Exception:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
