"""Builds ``agent.pyz`` at run time: the agent package (and, when asked, installed packages).

Nothing third-party is kept in the repository: what the agent needs beyond the stdlib is copied
from the controller's own installed packages into the archive when it is built. The archive is
reproducible (sorted entries, fixed timestamps): the same sources give the same SHA-256, which is
what an Ansible-prepared host allow-lists for its root-owned agent wrapper.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import zipfile
from pathlib import Path
from typing import Iterable, List, Tuple

import overlay_agent

_EPOCH = (1980, 1, 1, 0, 0, 0)
_MAIN = "from overlay_agent.__main__ import main\nimport sys\nsys.exit(main())\n"


def _package_files(name: str) -> List[Tuple[str, Path]]:
    mod = importlib.import_module(name)
    root = Path(mod.__file__ or "").parent
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent)
        if "__pycache__" in rel.parts or "tests" in rel.parts:
            continue
        out.append((rel.as_posix(), path))
    return out


def bundle_for(control_plane: str) -> List[str]:
    """What the agent needs beyond the stdlib: pysyncobj for the Raft control plane."""
    return ["pysyncobj"] if control_plane == "raft" else []


def agent_archive(bundle: Iterable[str] = ()) -> bytes:
    """The bytes of ``agent.pyz``: ``__main__.py`` + the agent package + ``bundle`` packages."""
    files = _package_files(overlay_agent.__name__)
    for name in sorted(set(bundle)):
        files += _package_files(name)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        entries = [("__main__.py", _MAIN.encode())] + [(a, p.read_bytes()) for a, p in files]
        for arcname, data in sorted(entries):
            info = zipfile.ZipInfo(arcname, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def agent_digest(bundle: Iterable[str] = ()) -> str:
    return hashlib.sha256(agent_archive(bundle)).hexdigest()


def build_agent(dest_dir: Path, bundle: Iterable[str] = ()) -> Path:
    """Write ``agent.pyz`` (mode 0600) into ``dest_dir`` and return its path.

    ``bundle`` names extra installed pure-Python packages to ship inside (e.g. ``pysyncobj``).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / "agent.pyz"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(agent_archive(bundle))
    return target
