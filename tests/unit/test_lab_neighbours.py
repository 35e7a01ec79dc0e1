"""The neighbour-table budget of a lab, checked before anything is built (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_overlay.checks.pmtu import PARALLEL, parallel_per_host
from pytest_overlay.errors import LabError
from pytest_overlay.lab import neighbours
from pytest_overlay.lab.netlab import mac_of
from pytest_overlay.lab.topology import LabTopology
from pytest_overlay.models import HostPlan, NetworkSpec, RunPlan
from pytest_overlay.session import one_endpoint_per_host


def _flat(n: int) -> RunPlan:
    hosts = [HostPlan(name=h.name, underlay=h.address, transport="netns")
             for h in LabTopology.flat(n).hosts]
    net = NetworkSpec()
    return RunPlan(hosts=hosts, networks=[net], endpoints=one_endpoint_per_host(hosts, net))


def test_need_is_every_endpoint_knowing_every_other_twice_with_the_mirror() -> None:
    assert neighbours.overlay_need(_flat(3), mirror=False) == 6
    assert neighbours.overlay_need(_flat(16)) == 2 * 16 * 15
    assert neighbours.overlay_need(_flat(32)) == 1984


def test_the_default_cap_takes_23_hosts_and_refuses_24_with_the_fix() -> None:
    room = {"cap": 1024, "in_use": 0}
    assert neighbours.max_flat_hosts(1024, 0) == 23
    neighbours.check(_flat(23), room)  # 1012 entries: fits
    with pytest.raises(LabError) as e:
        neighbours.check(_flat(24), room)
    assert "24 hosts needs up to 1104 ARP entries" in e.value.message
    assert "gc_thresh3" in e.value.message and "neighbor table overflow" in e.value.message
    assert e.value.hint is not None
    assert "gc_thresh3=2048" in e.value.hint and "at most 23 hosts" in e.value.hint
    # Entries other namespaces hold now count against the same cap.
    with pytest.raises(LabError):
        neighbours.check(_flat(23), {"cap": 1024, "in_use": 20})
    neighbours.check(_flat(250), None)  # cap unknown: nothing to say


def test_kernel_room_reads_the_cap_and_the_global_count(tmp_path: Path) -> None:
    (tmp_path / "sys/net/ipv4/neigh/default").mkdir(parents=True)
    (tmp_path / "sys/net/ipv4/neigh/default/gc_thresh3").write_text("4096\n")
    (tmp_path / "sys/net/ipv4/neigh/default/gc_thresh2").write_text("2048\n")
    (tmp_path / "net/stat").mkdir(parents=True)
    (tmp_path / "net/stat/arp_cache").write_text(
        "entries  allocs   destroys\n0000002a 00000100 000000f0\n0000002a 00000010 00000001\n")
    assert neighbours.kernel_room(proc=tmp_path) == {"cap": 4096, "in_use": 42}
    assert neighbours.kernel_room(proc=tmp_path / "missing") is None


def test_lab_macs_are_unicast_local_and_one_per_address() -> None:
    macs = {mac_of(f"198.18.{i}.{j}") for i in range(4) for j in range(1, 255)}
    macs |= {mac_of(f"2001:2::{i:x}") for i in range(1, 1000)}
    assert len(macs) == 4 * 254 + 999
    assert mac_of("198.18.0.1") == "02:18:c6:12:00:01"
    assert all(int(m[:2], 16) & 0x03 == 0x02 for m in macs)  # unicast, locally administered


def test_pmtu_searches_of_a_lab_share_the_machine() -> None:
    assert parallel_per_host(_flat(3), cpus=2) == PARALLEL
    assert parallel_per_host(_flat(16), cpus=2) == 4
    assert parallel_per_host(_flat(32), cpus=2) == 2
    assert parallel_per_host(_flat(250), cpus=2) == 1
    remote = RunPlan(hosts=[HostPlan(name=f"r{i}", underlay=f"192.0.2.{i}", transport="ssh")
                            for i in range(1, 33)], networks=[], endpoints=[])
    assert parallel_per_host(remote, cpus=2) == PARALLEL  # real hosts have their own CPUs
