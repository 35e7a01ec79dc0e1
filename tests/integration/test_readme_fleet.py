"""The README's "from zero to a report" block, run line by line as written (as root)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_overlay.ansible_inventory import ansible_tool
from pytest_overlay.cli import leftovers
from tests.conftest import needs_root
from tests.integration.sshlab import all_pass_but_lab_host_skips

pytestmark = [
    needs_root, pytest.mark.slow,
    pytest.mark.skipif(ansible_tool("ansible-playbook") is None, reason="ansible-core missing"),
]
ROOT = Path(__file__).resolve().parents[2]


def _block() -> list:
    text = (ROOT / "README.md").read_text()
    section = text.split("## From zero to a report", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip().splitlines()


def test_readme_fleet_block_provisions_and_audits(tmp_path: Path) -> None:
    lines = _block()
    assert lines[0] == "sudo scripts/setup" and lines[-1].endswith("lab down fleet")
    bindir = Path(sys.executable).parent
    fleet = tmp_path / "fleet"
    prefix = None
    try:
        for line in lines[1:]:  # setup is what CI just ran
            argv = shlex.split(line)
            assert argv[0] == "sudo"
            argv = argv[1:]
            # as written, but with this interpreter's tools and a private directory
            argv = [str(bindir / a.split("/")[-1]) if a.startswith(".venv/bin/") else a for a in argv]
            argv = [a.replace("fleet/", f"{fleet}/").replace("fleet-report", str(tmp_path / "report"))
                    if "fleet/" in a or "fleet-report" in a else (str(fleet) if a == "fleet" else a)
                    for a in argv]
            proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, f"{line}\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
            if line.endswith("lab up fleet"):
                prefix = json.loads((fleet / "fleet.json").read_text())["prefix"]
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["mode"] == "ssh" and all(h["status"] == "ok" for h in report["hosts"])
        assert report["results"] and all_pass_but_lab_host_skips(report["results"]) == []
    finally:
        if prefix is not None and (fleet / "fleet.json").exists():
            subprocess.run([str(bindir / "pytest-overlay"), "lab", "down", str(fleet)], check=False)
    assert prefix is not None and leftovers(prefix) == {}
