"""Run an agent reader inside a namespace of the run, as the agent there would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

AGENTS = Path(__file__).resolve().parents[2] / "agents"


def read_in(ns: str, reader: str) -> Dict[str, Any]:
    """``overlay_agent.io.<reader>.read()`` run inside network namespace ``ns``."""
    code = f"import json; from overlay_agent.io import {reader}; print(json.dumps({reader}.read()))"
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code],
                         env={**os.environ, "PYTHONPATH": str(AGENTS)}, check=True,
                         capture_output=True, text=True, timeout=30).stdout
    return dict(json.loads(out))
