"""--overlay-evidence and where the port audit sits in the run order (no root: nothing is built)."""

from __future__ import annotations

import pytest


def test_help_lists_evidence(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--overlay-evidence=DIR*"])


def test_evidence_path_that_is_a_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".txt", notadir="x")
    result = pytester.runpytest("--overlay-local=2", "--overlay-evidence=notadir.txt")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--overlay-evidence=notadir.txt: exists and is not a directory*"])
    assert "Traceback" not in result.stderr.str()


def test_audit_collects_ports_first_and_isolation_after_reachability(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine="def test_mine():\n    pass\n")
    result = pytester.runpytest("--overlay-local=3", "--overlay-audit", "--collect-only", "-q",
                                "test_mine.py")
    lines = [ln for ln in result.stdout.str().splitlines() if "::" in ln]
    checks = [ln.split("::")[1] if ln.startswith("overlay-audit") else "user" for ln in lines]
    assert checks[:6] == ["ports"] * 6  # before the user's tests: no overlay traffic yet
    assert checks[6] == "user"
    assert checks.count("isolation") == 14
    last_reach = max(i for i, c in enumerate(checks) if c == "reachability")
    assert min(i for i, c in enumerate(checks) if c == "isolation") > last_reach
    assert "overlay-audit::ports::h3->h2" in lines
    assert "overlay-audit::isolation::h1->h2[vni=4097]" in lines
    assert "overlay-audit::isolation::counters[vni=4096]" in lines
    # the hosts' kernel tables last, after every other check had its chance to overflow them
    assert checks[-9:] == ["neighbours"] * 3 + ["conntrack"] * 3 + ["drops"] * 3
    assert checks.count("neighbours") == 3 and checks.count("conntrack") == 3
