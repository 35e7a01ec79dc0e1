"""The plugin's options and their errors (no root needed: nothing is built)."""

from __future__ import annotations

import pytest


def test_help_lists_overlay_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*overlay network (VXLAN) tests*", "*--overlay-local=N*",
                                 "*--overlay-audit*", "*--overlay-report=FILE*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--overlay-audit"], "*--overlay-audit needs hosts*--overlay-local=N*"),
        (["--overlay-local=1"], "*--overlay-local=1: the lab takes 2 to 250 hosts*"),
        (["--overlay-local=300"], "*--overlay-local=300: the lab takes 2 to 250 hosts*"),
        (["--overlay-local=many"], "*--overlay-local=many: many: cannot read the topology file*"),
        (["--overlay-local=3", "--overlay-mtu=100"], "*--overlay-mtu*greater than or equal to 576*"),
        (["--overlay-local=3", "--overlay-subnet=10.10.0.1/16"], "*--overlay-subnet*not a subnet*"),
        (["--overlay-local=3", "--overlay-vni=0"], "*--overlay-vni*"),
        (["--overlay-local=3", "--overlay-prefix=bad"], "*--overlay-prefix*'ov' + 6 hex digits*"),
    ],
)
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, args: list, message: str) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str()


def test_collect_only_lists_one_test_per_ordered_pair(pytester: pytest.Pytester) -> None:
    """Pairs come from the plan, so collection works without building anything (no root)."""
    result = pytester.runpytest("--overlay-local=4", "--overlay-audit", "--collect-only", "-q")
    out = result.stdout.str()
    ids = [line for line in out.splitlines() if line.startswith("overlay-audit::reachability::")]
    assert len(ids) == 12
    assert "overlay-audit::reachability::h1->h2[vni=4096]" in ids
    assert "overlay-audit::reachability::h4->h3[vni=4096]" in ids


def test_topology_file_collects_host_pairs_and_networks(pytester: pytest.Pytester) -> None:
    from pathlib import Path

    topo = Path(__file__).resolve().parents[2] / "fixtures" / "war-story.yaml"
    result = pytester.runpytest(f"--overlay-local={topo}", "--overlay-audit", "--collect-only", "-q")
    out = result.stdout.str()
    assert "overlay-audit::pmtu::h1->h3" in out
    assert "overlay-audit::overhead::h3->h1[vni=4096]" in out
    assert "overlay-audit::mtu::overlay0[vni=4096]" in out
    bad = pytester.makefile(".yaml", bad="segments: []\nhosts: []\n")
    result = pytester.runpytest(f"--overlay-local={bad}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--overlay-local={bad}: {bad}*", "*hint: fix the topology file*"])


def test_audit_only_ignores_test_files_unless_given(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine="def test_mine():\n    pass\n")
    only = pytester.runpytest("--overlay-local=2", "--overlay-audit", "--collect-only", "-q")
    assert "test_mine" not in only.stdout.str()
    both = pytester.runpytest("--overlay-local=2", "--overlay-audit", "--collect-only", "-q",
                              "test_mine.py")
    assert "test_mine.py::test_mine" in both.stdout.str()
    assert "overlay-audit::reachability::h2->h1[vni=4096]" in both.stdout.str()


def test_report_schema_in_docs_is_current() -> None:
    import json
    from pathlib import Path

    from pytest_overlay.report import report_schema

    docs = Path(__file__).resolve().parents[2] / "docs" / "report-schema.json"
    assert json.loads(docs.read_text()) == report_schema(), (
        "docs/report-schema.json is stale: run `pytest-overlay schema > docs/report-schema.json`")


def test_a_lab_the_kernel_cannot_hold_is_a_usage_error(pytester: pytest.Pytester,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """--overlay-local=40 on the default neighbour cap: refused before anything is built,
    with the numbers and the sysctl that fixes it (not 6 000 failed pairs)."""
    from pytest_overlay.lab import neighbours

    monkeypatch.setattr(neighbours, "kernel_room", lambda *a, **k: {"cap": 1024, "in_use": 20})
    result = pytester.runpytest("--overlay-local=40", "--overlay-audit")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*--overlay-local=40: a lab of 40 hosts needs up to 3120 ARP entries*",
        "*hint: raise the cap*net.ipv4.neigh.default.gc_thresh3=4096*or use at most 22 hosts*"])
