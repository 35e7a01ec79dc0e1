"""Shared test configuration: markers and the root / namespace requirements."""

from __future__ import annotations

import os
import shutil

import pytest

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
HAS_NETNS = IS_ROOT and shutil.which("ip") is not None and os.path.exists("/dev/net/tun")

needs_root = pytest.mark.skipif(
    not HAS_NETNS,
    reason="needs root, iproute2 and /dev/net/tun (network namespaces and TAP devices); "
    "run the integration tests as root, as CI does",
)


def _fence_count() -> int | None:
    """Packets the root-namespace fence has counted (None when it is not installed)."""
    import re
    import subprocess

    if not IS_ROOT or shutil.which("nft") is None:
        return None
    proc = subprocess.run(["nft", "list", "table", "inet", "overlay_fence"], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        return None
    return sum(int(n) for n in re.findall(r"packets (\d+)", proc.stdout))


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_FENCE] = _fence_count()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_FENCE, None)
    after = _fence_count()
    if before is not None and after is not None and after != before:
        session.config.stash[_FENCE_MOVED] = after - before
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    moved = config.stash.get(_FENCE_MOVED, 0)
    if moved:
        terminalreporter.write_line(
            f"FENCE: {moved} packets left the root namespace for the lab ranges: a test sent "
            "lab traffic from outside its namespaces (the suite fails)", red=True, bold=True)


_FENCE = pytest.StashKey["int | None"]()
_FENCE_MOVED = pytest.StashKey[int]()
