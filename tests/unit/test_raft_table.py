"""The replicated table (core/table.py): deterministic, idempotent, derives forwarding."""

from __future__ import annotations

import json

import pytest

from overlay_agent.core.table import Table, decode


def member(name: str, ip: str) -> dict:
    return {"op": "member", "name": name, "underlay": ip, "vtep_port": 4789, "joined_at": 1.0}


def ep(host: str, mac: str, ip: str, vni: int = 100) -> dict:
    return {"op": "endpoint", "vni": vni, "mac": mac, "ip": ip, "host": host, "name": "e0"}


def filled() -> Table:
    t = Table()
    for c in (member("h1", "198.18.0.1"), member("h2", "198.18.0.2"), member("h3", "198.18.0.3"),
              {"op": "network", "name": "n", "vni": 100, "subnet": "10.0.0.0/24"},
              ep("h1", "02:00:00:00:00:01", "10.0.0.1"), ep("h2", "02:00:00:00:00:02", "10.0.0.2"),
              ep("h3", "02:00:00:00:00:03", "10.0.0.3")):
        assert t.apply(c)["ok"], c
    return t


def test_forwarding_skips_our_own_endpoints() -> None:
    entries, flood = filled().forwarding(100, "h1")
    assert entries == [("02:00:00:00:00:02", "10.0.0.2", ("198.18.0.2", 4789)),
                       ("02:00:00:00:00:03", "10.0.0.3", ("198.18.0.3", 4789))]
    assert flood == [("198.18.0.2", 4789), ("198.18.0.3", 4789)]
    assert filled().forwarding(200, "h1") == ([], [])


def test_commands_are_idempotent() -> None:
    t = filled()
    v, d = t.version, t.digest()
    assert t.apply(ep("h2", "02:00:00:00:00:02", "10.0.0.2")) == {"ok": True, "changed": 0}
    assert t.apply(member("h1", "198.18.0.1")) == {"ok": True, "changed": 0}
    assert (t.version, t.digest()) == (v, d)


def test_same_log_same_digest_in_any_replica() -> None:
    assert filled().digest() == filled().digest()
    other = filled()
    other.apply({"op": "remove_endpoint", "vni": 100, "mac": "02:00:00:00:00:03"})
    assert other.digest() != filled().digest()


def test_removing_a_member_removes_its_endpoints_and_vtep() -> None:
    t = filled()
    res = t.apply({"op": "remove_member", "name": "h3"})
    assert res == {"ok": True, "changed": 2}
    entries, flood = t.forwarding(100, "h1")
    assert [e[0] for e in entries] == ["02:00:00:00:00:02"]
    assert flood == [("198.18.0.2", 4789)]
    assert "198.18.0.3" not in t.member_underlays()


def test_endpoints_of_unknown_hosts_are_refused() -> None:
    res = filled().apply(ep("h9", "02:00:00:00:00:09", "10.0.0.9"))
    assert not res["ok"] and "not a member" in res["error"]


def test_network_conflicts_are_refused() -> None:
    t = filled()
    res = t.apply({"op": "network", "name": "other", "vni": 100, "subnet": "10.1.0.0/24"})
    assert not res["ok"] and "VNI 100" in res["error"]
    res = t.apply({"op": "network", "name": "n", "vni": 100, "subnet": "10.9.0.0/24"})
    assert not res["ok"] and "other settings" in res["error"]


def test_a_batch_counts_its_changes_once() -> None:
    t = Table()
    res = t.apply({"op": "batch", "commands": [member("h1", "198.18.0.1"),
                                                ep("h1", "02:00:00:00:00:01", "10.0.0.1")]})
    assert res == {"ok": True, "changed": 2} and t.version == 2


def test_rejoining_keeps_the_first_join_time() -> None:
    t = filled()
    t.apply({**member("h1", "198.18.0.1"), "joined_at": 99.0})
    assert t.members["h1"]["joined_at"] == 1.0


@pytest.mark.parametrize("bad", ['[1]', '{"x": 1}', '"op"'])
def test_decode_wants_a_command_object(bad: str) -> None:
    with pytest.raises(ValueError):
        decode(bad)


def test_bad_commands_are_errors_not_exceptions() -> None:
    t = Table()
    assert not t.apply({"op": "nope"})["ok"]
    assert not t.apply({"op": "member"})["ok"]
    assert json.loads(json.dumps(t.snapshot())) == {"members": {}, "networks": {}, "endpoints": {}}
