"""docs/troubleshooting.md stays true: the checks, options, presets and lab topologies it names
exist, and what it says fails in each lab is what the fault-accuracy tests (which run those labs
as a user does) expect to fail."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List

from pytest_overlay.checks import AUDIT
from pytest_overlay.portspec import PRESETS
from tests.integration.test_fault_accuracy import EXPECT

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "troubleshooting.md").read_text()


def _sections() -> Dict[str, str]:
    parts = re.split(r"^## (.+)$", DOC, flags=re.M)
    return {title: body for title, body in zip(parts[1::2], parts[2::2])}


def test_the_symptom_table_names_audit_checks_and_shipped_topologies() -> None:
    rows = [line for line in DOC.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) >= 8
    for row in rows:
        _, checks, lab = [c.strip() for c in row.strip("|").split("|")]
        names = re.findall(r"`([a-z-]+)`", checks)
        assert names and set(names) <= set(AUDIT), row
        for path in re.findall(r"`(fixtures/[\w.-]+\.yaml)`", lab):
            assert (ROOT / path).is_file(), path


def test_every_path_option_and_preset_named_exists() -> None:
    for path in set(re.findall(r"fixtures/[a-z0-9.-]+\.yaml", DOC)):
        assert (ROOT / path).is_file(), path
    for link in re.findall(r"\]\(([^)#]+)\)", DOC):
        assert (ROOT / "docs" / link).resolve().is_file(), link
    plugin = (ROOT / "pytest_overlay" / "plugin.py").read_text()
    for opt in set(re.findall(r"--overlay-[a-z-]+", DOC)):
        assert f'"{opt}"' in plugin, opt
    named = re.findall(r"--overlay-ports=(\w+)", DOC)
    assert named
    for preset in [*named, "kubernetes", "flannel", "calico", "cilium"]:
        assert preset in PRESETS, preset


def test_what_fails_in_each_lab_is_what_the_lab_tests_expect() -> None:
    seen: List[str] = []
    quoted = 0
    for title, body in _sections().items():
        lab = re.search(r"^Lab: `fixtures/([\w.-]+\.yaml)`", body, flags=re.M)
        if not lab:
            continue
        name = lab.group(1)
        seen.append(name)
        exp = EXPECT[name]
        listed = body.split("Fails in the lab:", 1)[1].split("\n\n", 1)[0]
        ids = set(re.findall(r"`([a-z-]+:[^`]+)`", listed))
        # every id named fails in that lab (for sure, or by the multipath hash) ...
        assert ids and ids <= exp.fails | exp.maybe, (title, ids - exp.fails - exp.maybe)
        # ... and every check that fails there is named, by id or in words
        for check in {f.split(":", 1)[0] for f in exp.fails}:
            assert check in listed, (title, check)
        # the quoted verdicts are those of failing checks of that lab
        for check in re.findall(r"\n\n> ([a-z-]+)[ :]", body):
            quoted += 1
            assert check in {f.split(":", 1)[0] for f in exp.fails | exp.maybe}, (title, check)
    assert quoted >= 6
    assert sorted(seen) == ["asymmetric.yaml", "ecmp.yaml", "vxlan-port-blocked.yaml",
                            "war-story.yaml"]
