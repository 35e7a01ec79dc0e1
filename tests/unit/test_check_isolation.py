"""The isolation check's logic against an in-memory fabric of fake agents (no root).

The fake fabric delivers a marked datagram to the endpoint with the destination IP on the
sender's VNI and echoes it back, as the lab does; a ``leak`` makes it also deliver to the endpoint
with that IP on another VNI, which a real VTEP must never do. The check must notice each way.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple

import pytest

from pytest_overlay.checks import isolation
from pytest_overlay.models import HostPlan, NetworkSpec, RunPlan
from pytest_overlay.session import one_endpoint_per_host


@dataclass
class FakeHost:
    plan: HostPlan
    vtep: List[Any]
    ok: bool = True
    error: Optional[str] = None


@dataclass
class Fabric:
    #: (host, endpoint) -> (vni, ip)
    endpoints: Dict[Tuple[str, str], Tuple[int, str]] = field(default_factory=dict)
    networks: Dict[Tuple[str, str], int] = field(default_factory=dict)
    seen: Dict[Tuple[str, str], Dict[str, int]] = field(default_factory=dict)
    #: host -> vni -> counter -> value
    counters: Dict[str, Dict[int, Dict[str, int]]] = field(default_factory=dict)
    leak: Set[Tuple[int, int]] = field(default_factory=set)  # (from vni, to vni)
    #: a VNI whose VTEPs count received datagrams nobody sent on it (what a leak looks like)
    phantom_vni: Optional[int] = None
    #: a VNI whose endpoints send background traffic of their own (sent and received on it)
    chatter_vni: Optional[int] = None
    calls: List[str] = field(default_factory=list)

    def count(self, host: str, vni: int, key: str) -> None:
        row = self.counters.setdefault(host, {}).setdefault(vni, {})
        row[key] = row.get(key, 0) + 1

    def deliver(self, to: Tuple[str, str], marker: str) -> None:
        self.seen.setdefault(to, {})
        self.seen[to][marker] = self.seen[to].get(marker, 0) + 1
        self.count(to[0], self.endpoints[to][0], "rx_packets")


class FakeClient:
    def __init__(self, fabric: Fabric, host: str) -> None:
        self.f = fabric
        self.host = host

    async def call(self, method: str, **kw: Any) -> Any:
        f, h = self.f, self.host
        f.calls.append(method)
        if method == "create_network":
            f.networks[(h, kw["name"])] = kw["vni"]
        elif method == "add_endpoint":
            f.endpoints[(h, kw["name"])] = (f.networks[(h, kw["network"])], kw["ip"])
        elif method == "remove_endpoint":
            f.endpoints.pop((h, kw["name"]), None)
        elif method == "remove_network":
            f.networks.pop((h, kw["name"]), None)
        elif method in ("set_mappings", "capture_start", "capture_stop"):
            return {"markers": {}}
        elif method == "capture_read":
            return {"markers": dict(f.seen.get((h, kw["endpoint"]), {}))}
        elif method == "counters":
            if f.phantom_vni is not None:
                f.count(h, f.phantom_vni, "rx_packets")
            if f.chatter_vni is not None:
                f.count(h, f.chatter_vni, "tx_packets")
                f.count(h, f.chatter_vni, "tx_packets")
                f.count(h, f.chatter_vni, "rx_packets")
            return {"vnis": {str(v): dict(row) for v, row in f.counters.get(h, {}).items()}}
        elif method == "udp_send":
            vni, _ = f.endpoints[(h, kw["endpoint"])]
            marker = re.search(r":(.*);", kw["payload"]).group(1)  # type: ignore[union-attr]
            for key, (v, ip) in list(f.endpoints.items()):
                if ip == kw["dst"] and (v == vni or (vni, v) in f.leak):
                    for _ in range(kw.get("count", 1)):
                        f.count(h, vni, "tx_packets")
                        f.deliver(key, marker)
                    if v == vni:
                        f.deliver((h, kw["endpoint"]), marker)  # the echo
            return {"sent": kw.get("count", 1)}
        return {}


class FakeSession:
    def __init__(self, plan: RunPlan, fabric: Fabric) -> None:
        self.plan = plan
        self.fabric = fabric
        self.hosts = {h.name: FakeHost(h, [h.underlay, 4789]) for h in plan.hosts}
        for ep in plan.endpoints:
            fabric.networks[(ep.host, ep.network)] = plan.network(ep.network).vni
            fabric.endpoints[(ep.host, ep.name)] = (plan.network(ep.network).vni, ep.ip)

    def client(self, host: str) -> FakeClient:
        return FakeClient(self.fabric, host)


def make_plan(n: int = 3) -> RunPlan:
    hosts = [HostPlan(name=f"h{i}", underlay=f"198.18.0.{i}") for i in range(1, n + 1)]
    net = NetworkSpec()
    return RunPlan(hosts=hosts, networks=[net], endpoints=one_endpoint_per_host(hosts, net))


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolation, "SETTLE_S", 0.0)
    monkeypatch.setattr(isolation, "DEADLINE_S", 0.2)


def run_check(fabric: Fabric, plan: Optional[RunPlan] = None) -> Dict[str, Any]:
    plan = plan or make_plan()
    session = FakeSession(plan, fabric)
    results = asyncio.run(isolation.run(session))  # type: ignore[arg-type]
    by_id = {r.test_id: r for r in results}
    assert sorted(by_id) == sorted(isolation.test_ids(plan))
    return by_id


def test_second_network_is_next_free_vni_same_subnet() -> None:
    plan = make_plan()
    other = isolation.second_network(plan)
    assert other is not None
    assert (other.vni, other.subnet, other.mtu, other.name) == (4097, "10.10.0.0/16", 1450,
                                                                "overlay0-iso")
    m = isolation.mirror(plan.endpoints[0], other)
    assert (m.ip, m.mac, m.host) == (plan.endpoints[0].ip, plan.endpoints[0].mac, "h1")
    assert len(isolation.test_ids(plan)) == 6 * 2 + 2


def test_isolated_fabric_passes_and_cleans_up() -> None:
    fabric = Fabric()
    res = run_check(fabric)
    assert {r.outcome for r in res.values()} == {"pass"}, [r.message for r in res.values()]
    assert res["h1->h2[vni=4097]"].details["delivered"] is True
    assert res["counters[vni=4097]"].details["busy_rx_packets"] > 0
    # The mirror endpoints and the second network are gone again.
    assert set(fabric.endpoints) == {("h1", "e0"), ("h2", "e0"), ("h3", "e0")}
    assert all(v == 4096 for v in fabric.networks.values())
    assert fabric.calls.count("remove_endpoint") == 3 and fabric.calls.count("remove_network") == 3


def test_leak_from_a_to_b_is_named_per_pair() -> None:
    res = run_check(Fabric(leak={(4096, 4097)}))
    r = res["h1->h2[vni=4096]"]
    assert r.outcome == "fail"
    assert r.details["leaks"] == ["h2/e0-iso"]
    assert "reached h2/e0-iso on VNI 4097" in r.message and "not isolated" in r.message
    # Counted as sent on 4096 and received on 4097: 4097 received more than it sent.
    assert res["counters[vni=4097]"].outcome == "fail"
    assert "h2:rx_packets" in res["counters[vni=4097]"].message
    assert "crossed from VNI 4096 to 4097" in res["counters[vni=4097]"].message
    # The other direction is clean.
    assert res["h1->h2[vni=4097]"].outcome == "pass"
    assert res["counters[vni=4096]"].outcome == "pass"


def test_datagrams_appearing_on_a_silent_vni_fail_the_counter_result() -> None:
    res = run_check(Fabric(phantom_vni=4097))
    assert res["counters[vni=4097]"].outcome == "fail"
    assert res["counters[vni=4097]"].details["silent_rx_packets"] > 0
    assert res["counters[vni=4097]"].details["silent_tx_packets"] == 0
    assert res["h1->h2[vni=4096]"].outcome == "pass"


def test_background_traffic_of_the_silent_vni_itself_is_allowed_and_named() -> None:
    res = run_check(Fabric(chatter_vni=4096))
    r = res["counters[vni=4096]"]
    assert r.outcome == "pass", r.message
    assert "background traffic" in r.message
    assert 0 < r.details["silent_rx_packets"] < r.details["silent_tx_packets"]


def test_dead_host_makes_errors_for_its_pairs() -> None:
    plan = make_plan()
    fabric = Fabric()
    session = FakeSession(plan, fabric)
    session.hosts["h3"].ok = False
    session.hosts["h3"].error = "agent gone"
    res = {r.test_id: r for r in asyncio.run(isolation.run(session))}  # type: ignore[arg-type]
    assert res["h1->h3[vni=4096]"].outcome == "error" and "h3" in res["h1->h3[vni=4096]"].message
    assert res["h1->h2[vni=4096]"].outcome == "pass"
    assert res["counters[vni=4096]"].outcome == "pass"


def test_undelivered_marker_is_a_skip_not_a_pass() -> None:
    out, msg = isolation.judge_pair("h1", "h2", 4096, 4097, False, [], "10.10.0.3")
    assert out == "skip" and "did not arrive" in msg
    out, _ = isolation.judge_counters(4097, 4096, {"h1:rx_packets": 0}, 0, 18)
    assert out == "skip"
    # A leak is a failure even when the marker missed its own destination.
    assert isolation.judge_pair("h1", "h2", 4096, 4097, False, ["h2/e0-iso"], "x")[0] == "fail"
