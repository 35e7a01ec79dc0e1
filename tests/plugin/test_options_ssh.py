"""Remote-mode options: inventory errors are usage errors; pairs come from the inventory."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "inventory.yaml"


def test_help_lists_ssh_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--overlay-hosts=FILE*", "*--overlay-accept-new-hostkeys*",
                                 "*--overlay-ssh-netns=NAME*"])


@pytest.mark.parametrize(("text", "message"), [
    ("hosts:\n  - {name: a, address: 192.0.2.1}\n  - {name: b, address: 192.0.2.2}\n"
     "networks:\n  - {name: x, vni: 5}\n  - {name: y, vni: 5}\n",
     "*inv.yaml:6: networks[[]1[]].vni: duplicate VNI 5*"),
    ("hosts:\n  - {name: a, address: 192.0.2.1}\n  - {name: b, address: 1.2.3.999}\n",
     "*inv.yaml:3: hosts[[]1[]].address: bad address*"),
    ("hosts: [\n", "*inv.yaml:*: not valid YAML*"),
])
def test_bad_inventory_is_a_usage_error(pytester: pytest.Pytester, text: str, message: str) -> None:
    pytester.makefile(".yaml", inv=text)
    result = pytester.runpytest("--overlay-hosts=inv.yaml", "--overlay-audit")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message, "*hint:*"])
    assert "Traceback" not in result.stderr.str()


def test_missing_inventory_and_both_modes(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--overlay-hosts=nope.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--overlay-hosts=nope.yaml: cannot read the inventory*"])
    result = pytester.runpytest(f"--overlay-hosts={EXAMPLE}", "--overlay-local=2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--overlay-local and --overlay-hosts exclude each other*"])


def test_collect_only_lists_pairs_of_every_network(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(f"--overlay-hosts={EXAMPLE}", "--overlay-audit",
                                "--collect-only", "-q")
    ids = [ln for ln in result.stdout.str().splitlines()
           if ln.startswith("overlay-audit::reachability::")]
    assert len(ids) == 12
    assert "overlay-audit::reachability::web1->db1[vni=4096]" in ids
    assert "overlay-audit::reachability::web1/e1->db1/e1[vni=4097]" in ids


def test_missing_controller_namespace(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(f"--overlay-hosts={EXAMPLE}", "--overlay-ssh-netns=ov000000-none")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--overlay-ssh-netns: no network namespace 'ov000000-none'*"])


def test_network_options_do_not_apply_to_our_inventory(pytester: pytest.Pytester) -> None:
    """The inventory defines the networks: --overlay-mtu next to it is a usage error, not ignored."""
    import shutil
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "inventory.yaml"
    shutil.copy(example, pytester.path / "inv.yaml")
    result = pytester.runpytest("--overlay-hosts=inv.yaml", "--overlay-mtu=1400")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--overlay-mtu does not apply with --overlay-hosts=inv.yaml*"])
