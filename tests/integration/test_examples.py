"""Every example in examples/ runs as documented."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import needs_root

pytestmark = [needs_root, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _pytest(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_custom_check_example(tmp_path: Path) -> None:
    proc = _pytest(str(EXAMPLES / "test_custom_check.py"), "--overlay-local=3", "-q",
                   "--rootdir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "18 passed" in proc.stdout


@pytest.mark.parametrize("snippet", ["github-actions.yml", "gitlab-ci.yml"])
def test_ci_snippet_produces_junit_and_json(snippet: str, tmp_path: Path) -> None:
    """The snippet's pytest command, run here as written (local mode), yields both reports."""
    text = (EXAMPLES / "ci" / snippet).read_text()
    line = next(m.group(1) for m in re.finditer(r"(\.venv/bin/pytest [^\n]+)", text))
    args = shlex.split(line)[1:]
    proc = _pytest(*args, "--rootdir", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    suite = ET.parse(tmp_path / "overlay-junit.xml").getroot()
    cases = suite.iter("testcase")
    names = {c.get("name") for c in cases}
    assert "h1->h2[vni=4096]" in names
    assert (tmp_path / "overlay-report.json").exists()
