"""Builds ``agent.pyz`` at run time: the agent package (and, when asked, installed packages).

Nothing third-party is kept in the repository: what the agent needs beyond the stdlib is copied
from the controller's own installed packages into the archive when it is built.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import zipapp
from pathlib import Path
from typing import Iterable

import overlay_agent


def _copy_package(name: str, dest: Path) -> None:
    mod = importlib.import_module(name)
    src = Path(mod.__file__ or "").parent
    shutil.copytree(
        src, dest / name,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", "*.so", "tests"),
    )


def build_agent(dest_dir: Path, bundle: Iterable[str] = ()) -> Path:
    """Write ``agent.pyz`` into ``dest_dir`` and return its path.

    ``bundle`` names extra installed pure-Python packages to ship inside (e.g. ``pysyncobj``).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / "agent.pyz"
    with tempfile.TemporaryDirectory(prefix="agent-build-", dir=dest_dir) as tmp:
        staging = Path(tmp)
        _copy_package(overlay_agent.__name__, staging)
        for name in bundle:
            _copy_package(name, staging)
        zipapp.create_archive(staging, target, interpreter=None, main="overlay_agent.__main__:main",
                              compressed=True)
    os.chmod(target, 0o600)
    return target
