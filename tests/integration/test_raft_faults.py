"""Raft faults in the namespace lab: leader killed, minority cut off and healed, agent restarted,
hosts added and removed. h1..h3 vote, h4 is a read-only replica.

Deadlines here are generous (the machine is shared); the speed goals (failover < 2 s, ...) are
measured by benchmarks/bench_raft.py, not asserted.
"""

from __future__ import annotations

import time
from typing import Any, List

import pytest

from tests.conftest import needs_root
from tests.integration.raft_helpers import VNI, RaftLab, ep_ip, mac_for

pytestmark = needs_root
VOTERS = ["h1", "h2", "h3"]


@pytest.fixture
def rl(make_lab: Any) -> RaftLab:
    return RaftLab(make_lab(4), 4, voters=3).start()


def digests(rl: RaftLab, hosts: List[str]) -> set:
    return {rl.status(h)["digest"] for h in hosts}


def converged(rl: RaftLab, hosts: List[str], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while len(digests(rl, hosts)) != 1 or any(
            rl.status(h)["last_applied"] < max(rl.status(x)["commit_index"] for x in hosts)
            for h in hosts):
        assert time.monotonic() < end, {h: rl.status(h) for h in hosts}
        time.sleep(0.1)


def net_cmd(name: str, vni: int) -> dict:
    return {"op": "network", "name": name, "vni": vni, "subnet": "10.99.0.0/24"}


def test_sigkill_of_the_leader_elects_another_and_other_pairs_keep_passing(rl: RaftLab) -> None:
    leader = rl.leader(VOTERS)
    rl.kill(leader)
    t0 = time.monotonic()
    survivors = [h for h in VOTERS if h != leader]
    new = rl.leader(survivors, timeout=15)
    elapsed = time.monotonic() - t0
    assert new != leader
    print(f"new leader {new} after {elapsed * 1000:.0f} ms")
    rest = [h for h in rl.hosts if h != leader]
    for a in rest:
        for b in rest:
            if a != b:
                assert rl.ping(a, b)["received"] > 0, f"{a}->{b} broke when {leader} died"
    # The remaining majority still takes writes.
    assert rl.agents[rest[0]].call("raft_write", command=net_cmd("after", 901), deadline=10)["ok"]


def test_a_cut_off_minority_fails_fast_the_majority_goes_on_then_all_converge(rl: RaftLab) -> None:
    leader = rl.leader(VOTERS)
    cut = next(h for h in VOTERS if h != leader)
    term_before = rl.status(leader)["term"]
    rl.link(cut, up=False)
    try:
        end = time.monotonic() + 15
        while rl.status(cut)["connected"] > 0:  # TCP notices the cut after its timeout
            assert time.monotonic() < end
            time.sleep(0.1)
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match="no Raft quorum reachable from this host") as e:
            rl.agents[cut].call("raft_write", command=net_cmd("minority", 902), deadline=2.0)
        assert time.monotonic() - t0 < 5.0
        assert f"host {cut}" in str(e.value) and "underlay" in str(e.value)
        others = [h for h in rl.hosts if h != cut]
        assert rl.agents[leader].call("raft_write", command=net_cmd("majority", 903),
                                      deadline=10)["ok"]
        rl.wait_all(lambda a: a.call("raft_status")["table_size"]["networks"] == 2, hosts=others)
        assert rl.status(cut)["table_size"]["networks"] == 1
    finally:
        rl.link(cut, up=True)
    converged(rl, rl.hosts)
    table = rl.agents[cut].call("raft_table")["table"]
    assert "majority" in table["networks"] and "minority" not in table["networks"]
    print(f"term {term_before} -> {rl.status(leader)['term']} after the cut host returned")


def test_a_restarted_agent_rejoins_and_catches_up(rl: RaftLab) -> None:
    leader = rl.leader(VOTERS)
    victim = next(h for h in VOTERS if h != leader)
    rl.kill(victim)
    assert rl.agents[leader].call("raft_write", command=net_cmd("while-down", 904),
                                  deadline=10)["ok"]
    rl.start_host(victim, ep_name="e1")  # e0's namespace is what the killed agent left
    converged(rl, rl.hosts)
    assert "while-down" in rl.agents[victim].call("raft_table")["table"]["networks"]
    other = next(h for h in rl.hosts if h not in (victim,))
    assert rl.ping(victim, other, endpoint="e1")["received"] > 0


def test_add_and_remove_a_host(rl: RaftLab, make_lab: Any) -> None:
    # h4 (replica) is a member; remove it: its endpoint goes from every replica, its VTEP is
    # refused from then on.
    assert rl.ping("h4", "h1")["received"] > 0
    res = rl.agents["h1"].call("raft_write", command={"op": "remove_member", "name": "h4"},
                               deadline=10)
    assert res["ok"] and res["changed"] == 2
    key = f"{VNI}/{mac_for(ep_ip(3))}"
    rl.wait_all(lambda a: a.call("raft_wait", key=key, absent=True, timeout=5)["ok"])
    for h in ("h1", "h2", "h3"):
        assert "h4" not in rl.agents[h].call("raft_table")["table"]["members"]
    before = rl.agents["h1"].call("counters")["drops"].get("non-member-vtep", 0)
    assert rl.ping("h4", "h1", count=3)["received"] == 0
    after = rl.agents["h1"].call("counters")["drops"].get("non-member-vtep", 0)
    assert after > before, "h1 still accepts VXLAN from the removed host"
    assert rl.ping("h2", "h1")["received"] > 0
    # Add it back (a host joining a running overlay): every replica learns it, traffic flows.
    rl.agents["h4"].call("raft_publish", deadline=10)
    rl.wait_all(lambda a: a.call("raft_wait", key=key, timeout=5)["ok"])
    assert rl.ping("h4", "h1")["received"] > 0


def test_endpoints_made_later_are_registered_and_removed_by_their_agent(rl: RaftLab) -> None:
    ip, mac = ep_ip(50), mac_for(ep_ip(50))
    rl.agents["h2"].call("add_endpoint", network="overlay0", name="late", ip=ip, mac=mac)
    key = f"{VNI}/{mac}"
    rl.wait_all(lambda a: a.call("raft_wait", key=key, timeout=5)["ok"])
    assert rl.agents["h1"].call("ping", endpoint="e0", dst=ip, count=3, timeout=1.0,
                                interval=0.02)["received"] > 0
    rl.agents["h2"].call("remove_endpoint", name="late")
    rl.wait_all(lambda a: a.call("raft_wait", key=key, absent=True, timeout=5)["ok"])


def test_a_new_host_joins_a_running_overlay(make_lab: Any) -> None:
    """A host that was not there when the overlay started joins as a replica, registers its
    endpoint by a Raft write, and every replica learns it; traffic flows both ways."""
    rl = RaftLab(make_lab(5), 5, voters=3)
    for h in rl.hosts[:4]:
        rl.start_host(h, publish=False)
    for h in rl.hosts[:4]:
        rl.agents[h].call("raft_publish", deadline=30.0)
    rl.wait_all(lambda a: a.call("raft_wait", endpoints=4, timeout=20)["ok"])
    assert rl.ping("h1", "h5", count=2)["received"] == 0  # not there yet
    rl.start_host("h5")
    rl.wait_all(lambda a: a.call("raft_wait", endpoints=5, timeout=20)["ok"])
    for h in ("h1", "h2", "h3", "h4"):
        assert "h5" in rl.agents[h].call("raft_table")["table"]["members"]
    assert rl.ping("h5", "h1")["received"] > 0
    assert rl.ping("h1", "h5")["received"] > 0
