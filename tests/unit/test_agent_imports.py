"""House rule 3: the agent imports only the stdlib and pysyncobj, pysyncobj only in io/raft.py.

Also: the agent parses as Python 3.8 (it runs on whatever python3 a host has), never touches
pydantic, rich or scapy, and its sans-IO packages (wire/, core/) do no I/O.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

AGENT_ROOT = Path(__file__).resolve().parents[2] / "agents" / "overlay_agent"
RAFT_MODULE = "io/raft.py"
FORBIDDEN = {"pydantic", "rich", "scapy"}
# wire/ and core/ are sans-IO (house rule 2): no sockets, files, processes, threads or clock.
IO_MODULES = {
    "asyncio",
    "io",
    "os",
    "select",
    "selectors",
    "socket",
    "ssl",
    "subprocess",
    "threading",
    "time",
    "datetime",
    "random",
    "fcntl",
    "ctypes",
    "signal",
    "shutil",
    "tempfile",
}

needs_stdlib_list = pytest.mark.skipif(
    sys.version_info < (3, 10), reason="sys.stdlib_module_names exists from Python 3.10"
)


def agent_files() -> List[Path]:
    files = sorted(AGENT_ROOT.rglob("*.py"))
    assert files, f"no agent sources under {AGENT_ROOT}"
    return files


def rel(path: Path) -> str:
    return path.relative_to(AGENT_ROOT).as_posix()


def imported_modules(source: str, filename: str = "<src>") -> Set[Tuple[str, int]]:
    """Top-level names of every module imported anywhere in ``source``, with their line.

    Relative imports count as ``overlay_agent``; ``importlib.import_module("x")`` and
    ``__import__("x")`` with a literal name count too.
    """
    found: Set[Tuple[str, int]] = set()
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found.update((alias.name.split(".")[0], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.add(("overlay_agent", node.lineno))
            else:
                found.add(((node.module or "").split(".")[0], node.lineno))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and not arg.value.startswith(".")
            ):
                found.add((arg.value.split(".")[0], node.lineno))
    return found


def imports_by_file() -> Dict[str, Set[Tuple[str, int]]]:
    return {rel(p): imported_modules(p.read_text(encoding="utf-8"), str(p)) for p in agent_files()}


def test_the_import_collector_sees_every_kind_of_import() -> None:
    src = (
        "import os.path, json as j\n"
        "from typing import List\n"
        "from . import wire\n"
        "from ..core.vtep import VtepCore\n"
        "def f():\n"
        "    import pysyncobj.batteries\n"
        "    class C:\n"
        "        from rich.table import Table\n"
        "    try:\n"
        "        import yaml\n"
        "    except ImportError:\n"
        "        pass\n"
        "    importlib.import_module('pydantic.main')\n"
        "    return __import__('scapy')\n"
    )
    assert {m for m, _ in imported_modules(src)} == {
        "os",
        "json",
        "typing",
        "overlay_agent",
        "pysyncobj",
        "rich",
        "yaml",
        "pydantic",
        "scapy",
    }


@needs_stdlib_list
def test_agent_imports_only_stdlib_and_pysyncobj_in_raft() -> None:
    stdlib = set(sys.stdlib_module_names)
    bad = []
    for name, mods in imports_by_file().items():
        for mod, line in sorted(mods):
            if mod == "overlay_agent" or mod in stdlib:
                continue
            if mod == "pysyncobj" and name == RAFT_MODULE:
                continue
            # Optional: Fernet encryption of Raft frames where every member has it (issue 6).
            if mod == "cryptography" and name == RAFT_MODULE:
                continue
            where = "only io/raft.py may import it" if mod == "pysyncobj" else "not stdlib"
            bad.append(f"agents/overlay_agent/{name}:{line}: import {mod} ({where})")
    assert not bad, "the agent must import only the stdlib (and pysyncobj in io/raft.py):\n" + (
        "\n".join(bad)
    )


def test_agent_never_imports_controller_only_packages() -> None:
    bad = [
        f"agents/overlay_agent/{name}:{line}: import {mod}"
        for name, mods in imports_by_file().items()
        for mod, line in sorted(mods)
        if mod in FORBIDDEN or mod == "pytest_overlay"
    ]
    assert not bad, "pydantic, rich, scapy and pytest_overlay stay on the controller:\n" + (
        "\n".join(bad)
    )


def test_sans_io_packages_do_no_io() -> None:
    bad = [
        f"agents/overlay_agent/{name}:{line}: import {mod}"
        for name, mods in imports_by_file().items()
        if name.startswith(("wire/", "core/"))
        for mod, line in sorted(mods)
        if mod in IO_MODULES
    ]
    assert not bad, "wire/ and core/ are sans-IO (house rule 2):\n" + "\n".join(bad)


def test_sans_io_packages_do_not_reach_into_io() -> None:
    bad = []
    for path in agent_files():
        name = rel(path)
        if not name.startswith(("wire/", "core/")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "overlay_agent.io"
            ):
                bad.append(f"agents/overlay_agent/{name}:{node.lineno}")
    assert not bad, "wire/ and core/ must not import overlay_agent.io:\n" + "\n".join(bad)


@pytest.mark.parametrize("path", agent_files(), ids=rel)
def test_agent_source_parses_as_python_3_8(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, str(path), feature_version=(3, 8))
    except SyntaxError as e:
        pytest.fail(f"{rel(path)}:{e.lineno}: not Python 3.8 syntax: {e.msg}")
    # Belt and braces: feature_version does not reject every newer construct on every Python.
    newer = [
        (type(node).__name__, getattr(node, "lineno", 0))
        for node in ast.walk(tree)
        if type(node).__name__ in ("Match", "TryStar", "TypeAlias", "TypeVar", "ParamSpec")
    ]
    assert not newer, f"{rel(path)}: syntax newer than Python 3.8: {newer}"


def test_parsing_as_3_8_rejects_match_statements() -> None:
    if sys.version_info < (3, 10):
        pytest.skip("match statements do not parse before Python 3.10")
    with pytest.raises(SyntaxError):
        ast.parse("match x:\n    case 1:\n        pass\n", feature_version=(3, 8))
