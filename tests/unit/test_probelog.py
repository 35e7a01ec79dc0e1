"""Port probes (core/probelog.py) and how the VTEP treats them: exact bytes, member rule, log."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overlay_agent.core import probelog
from overlay_agent.core.probelog import PROBE_VNI, ProbeLog, parse, raw_probe, vxlan_probe
from overlay_agent.core.vtep import VtepCore
from overlay_agent.wire.vxlan import VxlanHeader, decap

MEMBER = "198.18.0.2"
NON_MEMBER = "198.18.0.9"


def core_with_members() -> VtepCore:
    core = VtepCore()
    core.add_network(4096)
    core.set_members(["198.18.0.1", MEMBER])
    return core


def test_vxlan_probe_exact_bytes() -> None:
    data = vxlan_probe("ab12", 7)
    assert data[:8] == b"\x08\x00\x00\x00\x00\x00\x00\x00"  # I flag, VNI 0
    assert data[8:14] == bytes.fromhex("026f76707262") == data[14:20]
    assert data[20:22] == b"\x88\xb5"
    assert data[22:30] == b"OVPROBE1"
    assert data[30:37] == b"\x04ab12\x00\x07"
    assert len(data) == 8 + 14 + 46  # padded to a minimum Ethernet frame
    assert VxlanHeader.decode(data).vni == PROBE_VNI
    assert decap(data)[1][12:14] == b"\x88\xb5"


def test_raw_probe_is_not_vxlan() -> None:
    data = raw_probe("Z9", 65535, padding=b"\xff" * 5)
    assert data == b"\x00OVRAWUDP\x02Z9\xff\xff" + b"\xff" * 5
    assert not data[0] & 0x08  # a VXLAN-aware box sees no I flag


@pytest.mark.parametrize("builder,kind", [(vxlan_probe, "vxlan"), (raw_probe, "udp")])
def test_parse_round_trip(builder, kind) -> None:  # type: ignore[no-untyped-def]
    assert parse(builder("x" * 32, 513, b"pad")) == (kind, "x" * 32, 513)


@pytest.mark.parametrize("bad", ["", "a" * 33, "a-b", "é"])
def test_bad_ids_refused(bad: str) -> None:
    with pytest.raises((ValueError, UnicodeEncodeError)):
        raw_probe(bad, 0)


@pytest.mark.parametrize("data", [
    b"", b"\x00OVRAWUDP", b"\x00OVRAWUDP\x00", b"\x00OVRAWUDP\x21" + b"a" * 40,
    b"\x00OVRAWUDP\x02ab\x00", b"\x00OVRAWUDP\x02a-\x00\x01", b"\x00OVRAWUDX\x02ab\x00\x01",
])
def test_parse_rejects_malformed(data: bytes) -> None:
    assert parse(data) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_parse_never_raises(data: bytes) -> None:
    parse(data)
    parse(vxlan_probe("a", 1)[:len(data)] + data)
    parse(raw_probe("a", 1)[:len(data) % 13] + data)


def test_vtep_logs_probes_from_members_and_delivers_nothing() -> None:
    core = core_with_members()
    assert core.from_underlay(MEMBER, vxlan_probe("p1", 0)) == []
    assert core.from_underlay(MEMBER, vxlan_probe("p1", 1)) == []
    assert core.from_underlay(MEMBER, raw_probe("p2", 0, b"\x01\x02")) == []
    snap = core.probes.snapshot()
    assert snap["p1"]["kind"] == "vxlan" and snap["p1"]["count"] == 2
    assert snap["p1"]["seqs"] == [0, 1] and snap["p1"]["src"] == MEMBER
    assert snap["p2"]["kind"] == "udp" and snap["p2"]["count"] == 1
    assert core.probes.total == 3
    c = core.counters()
    assert c["drops"] == {}  # probes are not drops
    assert c["vnis"]["4096"]["rx_packets"] == 0


def test_vtep_probe_from_non_member_is_dropped_not_logged() -> None:
    core = core_with_members()
    core.from_underlay(NON_MEMBER, vxlan_probe("p1", 0))
    core.from_underlay(NON_MEMBER, raw_probe("p2", 0))
    assert core.probes.snapshot() == {} and core.probes.total == 0
    assert core.counters()["drops"] == {"non-member-vtep": 2}


def test_vtep_non_probe_on_probe_vni_or_without_i_flag_is_dropped() -> None:
    core = core_with_members()
    core.from_underlay(MEMBER, b"\x08\x00\x00\x00\x00\x00\x00\x00" + bytes(60))
    core.from_underlay(MEMBER, b"\x00" * 70)
    assert core.counters()["drops"] == {"unknown-vni": 1, "no-i-flag": 1}
    assert core.probes.total == 0


def test_agent_refuses_the_probe_vni_as_a_network() -> None:
    from overlay_agent.agent import Agent, AgentError

    with pytest.raises(AgentError, match="reserved for underlay port probes"):
        Agent().create_network("p", PROBE_VNI, "10.0.0.0/24")


def test_log_is_bounded_and_filterable() -> None:
    log = ProbeLog(limit=3)
    for i in range(5):
        assert log.offer(MEMBER, raw_probe(f"id{i}", 0))
    assert sorted(log.snapshot()) == ["id2", "id3", "id4"]
    assert sorted(log.snapshot(["id4", "id0"])) == ["id4"]
    assert log.total == 5
    for seq in range(probelog.SEQ_LIMIT + 10):
        log.offer(MEMBER, raw_probe("id4", seq))
    assert log.snapshot()["id4"]["count"] == probelog.SEQ_LIMIT + 11
    assert len(log.snapshot()["id4"]["seqs"]) == probelog.SEQ_LIMIT
    log.clear()
    assert log.snapshot() == {}
