"""The inventory: validation, error messages (file, line, key path, fix) and the run plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_overlay.errors import ConfigError
from pytest_overlay.inventory import inventory_schema, load_inventory, parse_inventory

ROOT = Path(__file__).resolve().parents[2]
TWO = "hosts:\n  - {name: a, address: 192.0.2.1}\n  - {name: b, address: 192.0.2.2}\n"


def _err(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        parse_inventory(text, "inv.yaml")
    return e.value


def test_example_inventory_loads_into_a_plan() -> None:
    inv = load_inventory(ROOT / "examples" / "inventory.yaml")
    plan = inv.to_plan()
    assert [h.name for h in plan.hosts] == ["web1", "web2", "db1"]
    assert [h.underlay for h in plan.hosts] == ["192.0.2.11", "192.0.2.12", "192.0.2.21"]
    assert all(h.transport == "ssh" for h in plan.hosts)
    backend = [(e.host, e.name, e.ip) for e in plan.endpoints if e.network == "backend"]
    assert backend == [("web1", "e1", "10.20.0.2"), ("web2", "e1", "10.20.0.3"),
                       ("db1", "e1", "10.20.0.50")]
    s = inv.settings("db1")
    assert (s["user"], s["sudo"], s["python"], s["jump"], s["port"]) == (
        "ops", True, "/usr/bin/python3", "bastion@198.51.100.1:22", 22)


def test_defaults_and_host_overrides() -> None:
    inv = parse_inventory("defaults: {user: ops, port: 2222}\n"
                          "hosts:\n  - {name: a, address: 192.0.2.1, port: 22}\n"
                          "  - {name: b, address: 192.0.2.2}\n")
    assert inv.settings("a")["port"] == 22
    assert inv.settings("b")["port"] == 2222
    assert inv.settings("b")["user"] == "ops"
    plan = inv.to_plan()
    assert [(e.host, e.ip) for e in plan.endpoints] == [("a", "10.10.0.2"), ("b", "10.10.0.3")]
    assert plan.networks[0].vni == 4096


def test_duplicate_vni() -> None:
    e = _err(TWO + "networks:\n  - {name: x, vni: 5}\n  - {name: y, vni: 5}\n")
    assert e.message == "inv.yaml:6: networks[1].vni: duplicate VNI 5: networks 'x' and 'y' both use it"
    assert e.hint == "give each network its own VNI"


def test_unknown_host_in_network() -> None:
    e = _err(TWO + "networks:\n  - name: x\n    vni: 5\n    hosts: [a, c]\n")
    assert e.message == "inv.yaml:7: networks[0].hosts[1]: network x: unknown host 'c'"
    assert "(a, b)" in (e.hint or "")


def test_endpoint_outside_subnet() -> None:
    e = _err(TWO + "networks:\n  - name: x\n    vni: 5\n    subnet: 10.0.0.0/24\n"
             "    endpoints:\n      a: 10.0.1.1\n")
    assert e.message == ("inv.yaml:9: networks[0].endpoints.a: network x: endpoint 10.0.1.1 of "
                         "host a is outside the subnet 10.0.0.0/24")
    assert "inside 10.0.0.0/24" in (e.hint or "")


@pytest.mark.parametrize(("host", "key"), [
    ("{name: a, address: 1.2.3.400}", "address"),
    ("{name: a, address: 'bad host!'}", "address"),
    ("{name: a, address: 192.0.2.1, underlay: web1}", "underlay"),
])
def test_bad_address(host: str, key: str) -> None:
    e = _err(f"hosts:\n  - {host}\n  - {{name: b, address: 192.0.2.2}}\n")
    assert e.message.startswith(f"inv.yaml:2: hosts[0].{key}: bad address: ")
    assert "address" in (e.hint or "")


def test_dns_name_needs_underlay() -> None:
    e = _err("hosts:\n  - {name: a, address: web1.example.net}\n  - {name: b, address: 192.0.2.2}\n")
    assert e.message.startswith("inv.yaml:2: hosts[0].address: host a: address 'web1.example.net'")
    assert e.hint == "add `underlay: <IP address>` to the host"


def test_unknown_key_and_duplicate_host_and_yaml_syntax() -> None:
    e = _err(TWO + "  - {name: c, address: 192.0.2.3, colour: red}\n")
    assert e.message == "inv.yaml:4: hosts[2].colour: Extra inputs are not permitted"
    e = _err(TWO + "  - {name: a, address: 192.0.2.3}\n")
    assert e.message == "inv.yaml:4: hosts[2].name: host 'a' is listed twice (also hosts[0])"
    e = _err("hosts:\n  - {name: a, address: 192.0.2.1\n")
    assert e.message.startswith("inv.yaml:3: not valid YAML")
    e = _err("- just a list\n")
    assert "must be a mapping" in e.message


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read the inventory"):
        load_inventory("/nonexistent/inv.yaml")


def test_bad_jump_spec() -> None:
    e = _err("defaults: {jump: 'a@b@:x'}\n" + TWO)
    assert e.message.startswith("inv.yaml:1: defaults.jump: ")


def test_inventory_schema_in_docs_is_current() -> None:
    docs = ROOT / "docs" / "inventory-schema.json"
    assert json.loads(docs.read_text()) == inventory_schema(), (
        "docs/inventory-schema.json is stale: run "
        "`pytest-overlay inventory-schema > docs/inventory-schema.json`")
