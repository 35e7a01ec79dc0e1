"""Unit tests (no root): make ``agents/`` importable when the package is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

_AGENTS = str(Path(__file__).resolve().parents[2] / "agents")
if _AGENTS not in sys.path:
    sys.path.insert(0, _AGENTS)
