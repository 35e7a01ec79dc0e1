"""An Ansible inventory as the host list: INI and YAML, read directly or via ansible-inventory."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_overlay import ansible_inventory as ai
from pytest_overlay.errors import ConfigError
from pytest_overlay.models import NetworkSpec

INI = """\
# a fleet
[web]
web1 ansible_host=192.0.2.11 ansible_user=ops
web2 ansible_host=192.0.2.12 ansible_port=2222

[db]
db1 ansible_host=192.0.2.21 overlay_underlay=192.0.2.121 overlay_python=/usr/local/libexec/pytest-overlay-agent

[fleet:children]
web
db

[fleet:vars]
ansible_ssh_private_key_file=/keys/id_ed25519
ansible_become=yes
overlay_known_hosts=/keys/known_hosts
"""

YAML = """\
all:
  vars:
    overlay_networks:
      - {name: front, vni: 5000, subnet: 10.50.0.0/24, mtu: 1400}
  children:
    web:
      vars: {ansible_user: deploy}
      hosts:
        web1: {ansible_host: 192.0.2.11}
        web2: {ansible_host: 192.0.2.12, ansible_user: special}
"""


@pytest.fixture(params=["direct", "ansible-inventory"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "direct":
        monkeypatch.setattr(ai, "ansible_tool", lambda name: None)
    elif ai.ansible_tool("ansible-inventory") is None:
        pytest.skip("ansible-core is not installed")
    return str(request.param)


def _load(tmp_path: Path, name: str, text: str, group: str | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_text(text)
    return ai.load_ansible_inventory(path, text, group, NetworkSpec())


def test_ini_maps_ansible_variables(tmp_path: Path, reader: str) -> None:
    inv = _load(tmp_path, "hosts.ini", INI, group="fleet")
    by = {h.name: h for h in inv.hosts}
    assert sorted(by) == ["db1", "web1", "web2"]
    assert (by["web1"].address, by["web1"].user, by["web1"].port) == ("192.0.2.11", "ops", None)
    assert by["web2"].port == 2222
    assert all(h.identity == "/keys/id_ed25519" and h.sudo is True for h in inv.hosts)
    assert all(h.known_hosts == "/keys/known_hosts" for h in inv.hosts)
    assert by["db1"].underlay == "192.0.2.121"
    assert by["db1"].python == "/usr/local/libexec/pytest-overlay-agent"
    assert set(by["web1"].groups) == {"fleet", "web"}
    # no overlay_networks: the command line's default network
    assert [(n.vni, n.subnet) for n in inv.networks] == [(4096, "10.10.0.0/16")]
    plan = inv.to_plan()
    assert {h.underlay for h in plan.hosts} == {"192.0.2.11", "192.0.2.12", "192.0.2.121"}


def test_group_selects_hosts(tmp_path: Path, reader: str) -> None:
    text = INI + "\n[extra]\nweb3 ansible_host=192.0.2.13\n"
    inv = _load(tmp_path, "hosts.ini", text, group="web")
    assert sorted(h.name for h in inv.hosts) == ["web1", "web2"]
    everyone = _load(tmp_path, "hosts.ini", text)
    assert len(everyone.hosts) == 4


def test_yaml_inventory_with_networks_and_precedence(tmp_path: Path, reader: str) -> None:
    inv = _load(tmp_path, "hosts.yml", YAML)
    by = {h.name: h for h in inv.hosts}
    assert by["web1"].user == "deploy" and by["web2"].user == "special"
    assert [(n.name, n.vni, n.mtu) for n in inv.networks] == [("front", 5000, 1400)]


def test_errors_name_the_host_and_the_variable(tmp_path: Path, reader: str) -> None:
    bad_port = INI.replace("ansible_port=2222", "ansible_port=many")
    with pytest.raises(ConfigError, match=r"host web2: ansible_port='many' is not a port number"):
        _load(tmp_path, "hosts.ini", bad_port)
    bad_become = INI.replace("ansible_become=yes", "ansible_become=perhaps")
    with pytest.raises(ConfigError, match=r"ansible_become='perhaps' is not a boolean"):
        _load(tmp_path, "hosts.ini", bad_become)
    bad_addr = INI.replace("overlay_underlay=192.0.2.121", "overlay_underlay=not-an-ip")
    with pytest.raises(ConfigError, match=r"host db1: overlay_underlay"):
        _load(tmp_path, "hosts.ini", bad_addr)
    with pytest.raises(ConfigError, match=r"--overlay-group=nope: no such group"):
        _load(tmp_path, "hosts.ini", INI, group="nope")
    with pytest.raises(ConfigError, match=r"has 1 host\(s\); an overlay needs at least 2"):
        _load(tmp_path, "hosts.ini", INI, group="db")


def test_detection() -> None:
    assert ai.looks_like_ansible(Path("hosts.ini"), INI)
    assert ai.looks_like_ansible(Path("hosts.yml"), YAML)
    ours = Path(__file__).resolve().parents[2] / "examples" / "inventory.yaml"
    assert not ai.looks_like_ansible(ours, ours.read_text())
    assert not ai.looks_like_ansible(Path("broken.yaml"), "hosts: [\n-")


def test_overlay_settings_come_from_variables_too(tmp_path: Path, reader: str) -> None:
    """A live cluster holds 4789: the audit's VTEP port is set the Ansible way as well."""
    live = INI + "overlay_vxlan_port=4790\noverlay_pmtu_flows=8\n"
    plan = _load(tmp_path, "hosts.ini", live, group="fleet").to_plan()
    assert (plan.vxlan_port, plan.pmtu_flows, plan.probe_port) == (4790, 8, 7)
    assert _load(tmp_path, "hosts.ini", INI, group="fleet").to_plan().pmtu_flows == 4
    bad = INI + "overlay_pmtu_flows=99\n"
    with pytest.raises(ConfigError, match=r"overlay_pmtu_flows: .*less than or equal to 32"):
        _load(tmp_path, "hosts.ini", bad, group="fleet")
