"""Every example in examples/ runs as documented."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, Optional

import pytest

from tests.conftest import needs_root

pytestmark = [needs_root, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _pytest(*args: str, cwd: Path, timeout: float = 180,
            env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env} if env else None)


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
    # the page from the saved report, as the snippet makes it
    show = next(m.group(1) for m in re.finditer(r"\.venv/bin/pytest-overlay (show [^\n]+)", text))
    done = subprocess.run([sys.executable, "-m", "pytest_overlay.cli", *shlex.split(show)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    page = (tmp_path / "overlay-report.html").read_text()
    assert "Reachability VNI 4096" in page and "h1-&gt;h2" in page


# -- examples/swarm-preflight.md, the war-story lab, examples/inventory.yaml --------------------
SWARM_PORTS = ("2377/tcp", "7946/tcp", "7946/udp")


def _documented(doc: str, starts: str) -> list:
    """The arguments of the command line in ``doc`` that starts with ``starts``."""
    text = (EXAMPLES / doc).read_text()
    line = next(ln.strip() for ln in text.splitlines() if ln.strip().startswith(starts))
    words = shlex.split(line)
    return words[words.index("pytest") + 1:]


def _audit(args: list, tmp_path: Path) -> tuple:
    """Run ``pytest ARGS`` with a known prefix; the JSON report's results and the output."""
    import json

    from pytest_overlay.cli import leftovers
    from pytest_overlay.naming import new_prefix

    prefix = new_prefix()
    proc = _pytest(*args, f"--overlay-prefix={prefix}", "--color=no", "--rootdir", str(tmp_path),
                   cwd=tmp_path, timeout=240, env={"COLUMNS": "200"})  # the table unwrapped
    assert leftovers(prefix) == {}, f"run {prefix} left things behind"
    report = next((tmp_path / a.split("=", 1)[1] for a in args
                   if a.startswith("--overlay-report=")), None)
    assert report is not None and report.exists(), proc.stdout[-3000:] + proc.stderr[-2000:]
    return json.loads(report.read_text())["results"], proc


def test_swarm_preflight_local_command_passes_with_the_swarm_ports(tmp_path: Path) -> None:
    args = _documented("swarm-preflight.md", "sudo pytest --overlay-local=3")
    assert "--overlay-ports=swarm" in args and "--overlay-audit" in args
    results, proc = _audit(args, tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:]
    rows = [r for r in results if r["check"] == "ports"]
    assert len(rows) == 6
    for r in rows:
        probes = r["details"]["probes"]
        assert {k: probes[k]["verdict"] for k in (*SWARM_PORTS, "vxlan")} == dict.fromkeys(
            (*SWARM_PORTS, "vxlan"), "pass"), r
        assert probes["7946/udp"]["received"] == probes["7946/udp"]["sent"] > 0
    assert "7946 udp" in proc.stdout  # the ports table has its column


def test_swarm_preflight_names_gossip_udp_blocked_into_one_host(tmp_path: Path) -> None:
    """An nftables rule in h3 (the lab's fault, table named with the run prefix) drops
    7946/udp: exactly the pairs into h3 fail, on 7946/udp only, and the fix is named."""
    topo = tmp_path / "gossip-blocked.yaml"
    topo.write_text((ROOT / "fixtures" / "vxlan-port-blocked.yaml").read_text()
                    .replace("port: 4789}", "port: 7946}"))
    assert "port: 7946}" in topo.read_text()
    args = _documented("swarm-preflight.md", "sudo pytest --overlay-local=3")
    args = [f"--overlay-local={topo}" if a.startswith("--overlay-local") else a for a in args]
    results, proc = _audit(args, tmp_path)
    assert proc.returncode == 1
    failed = {f"{r['check']}:{r['src']}->{r.get('dst')}" for r in results
              if r["outcome"] in ("fail", "error")}
    assert failed == {"ports:h1->h3", "ports:h2->h3"}, proc.stdout[-4000:]
    for r in results:
        if r["check"] != "ports":
            continue
        bad = {k for k, p in r["details"]["probes"].items() if p["verdict"] != "pass"}
        assert bad == ({"7946/udp"} if r["dst"] == "h3" else set()), r
    r13 = next(r for r in results if r["check"] == "ports" and (r["src"], r["dst"]) == ("h1", "h3"))
    assert r13["message"] == ("h1->h3: 7946/udp blocked (0 of 5 probes arrived); "
                              "asymmetric: h3->h1 passes")
    assert "blocked 0/5 (asym)" in proc.stdout


def test_war_story_example_finds_the_blackhole_and_the_mtu_fix(tmp_path: Path) -> None:
    readme = (EXAMPLES / "README.md").read_text()
    cmd = "pytest --overlay-local=fixtures/war-story.yaml --overlay-audit"
    assert f"`{cmd}`" in readme
    args = [a.replace("fixtures/", f"{ROOT}/fixtures/") for a in shlex.split(cmd)[1:]]
    results, proc = _audit([*args, "--overlay-report=war.json"], tmp_path)
    assert proc.returncode == 1
    pm = {(r["src"], r["dst"]): r for r in results if r["check"] == "pmtu"}
    assert (pm[("h1", "h3")]["details"]["verdict"], pm[("h1", "h3")]["details"]["pmtu"]) == (
        "blackhole", 1400)
    assert {p for p, r in pm.items() if r["details"]["verdict"] == "blackhole"} == {("h1", "h3")}
    (mtu,) = [r for r in results if r["check"] == "mtu"]
    assert mtu["outcome"] == "fail" and mtu["details"]["recommended"] == 1350
    assert "com.docker.network.driver.mtu=1350" in proc.stdout

    # The fix, then `pytest-overlay diff` of before and after (examples/README.md): the overlay
    # at the recommended MTU carries h1->h3, and the underlay's blackhole is still there.
    _, fixed = _audit([*args, "--overlay-mtu=1350", "--overlay-report=fixed.json"], tmp_path)
    assert fixed.returncode == 1
    diff = subprocess.run([sys.executable, "-m", "pytest_overlay.cli", "diff", "war.json",
                           "fixed.json", "--color=no"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert diff.returncode == 0, diff.stdout + diff.stderr  # nothing broke
    fixed_rows = diff.stdout[diff.stdout.index("Fixed (2)"):diff.stdout.index("Still failing (1)")]
    assert re.search(r"│ reachability +│ h1->h3\[vni=4096\] ", fixed_rows), fixed_rows
    assert re.search(r"│ mtu +│ overlay0\[vni=4096\] ", fixed_rows), fixed_rows
    assert re.search(r"│ pmtu +│ h1->h3 +│ fail +│ fail ",
                     diff.stdout[diff.stdout.index("Still failing (1)"):]), diff.stdout
    assert diff.stdout.rstrip().endswith("diff: 2 fixed, 1 still failing; 51 the same")


def test_inventory_example_loads_into_a_plan() -> None:
    from pytest_overlay.inventory import load_inventory

    plan = load_inventory(EXAMPLES / "inventory.yaml").to_plan()
    assert [h.name for h in plan.hosts] == ["web1", "web2", "db1"]
    assert [h.underlay for h in plan.hosts] == ["192.0.2.11", "192.0.2.12", "192.0.2.21"]
    assert {n.vni for n in plan.networks} == {4096, 4097}
    assert plan.vxlan_port == 4789
