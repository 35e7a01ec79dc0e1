"""--overlay-ports: bad specs are usage errors naming the item and the fix (nothing is built)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("spec,item", [("2377", "'2377'"), ("swarm,7946/icmp", "'7946/icmp'"),
                                       ("99999/tcp", "'99999/tcp'")])
def test_bad_overlay_ports_is_a_usage_error(pytester: pytest.Pytester, spec: str, item: str) -> None:
    result = pytester.runpytest("--overlay-local=3", "--overlay-audit", f"--overlay-ports={spec}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"--overlay-ports={spec}: item {item}" in err
    assert "hint: write PORT/PROTO items" in err and "--overlay-ports=swarm" in err
    assert "Traceback" not in err


def test_bad_overlay_ports_with_hosts_is_a_usage_error(pytester: pytest.Pytester) -> None:
    inv = pytester.path / "inv.yaml"
    inv.write_text("hosts: [{name: a, address: 192.0.2.1}, {name: b, address: 192.0.2.2}]\n")
    result = pytester.runpytest(f"--overlay-hosts={inv}", "--overlay-ports=gossip")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--overlay-ports=gossip: item 'gossip' has no protocol*"])


def test_good_overlay_ports_collects_the_audit(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--overlay-local=3", "--overlay-audit", "--overlay-ports=swarm",
                                "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert "overlay-audit::ports::h1->h2" in result.stdout.str()


def test_help_shows_overlay_ports(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--overlay-ports=SPEC*"])
