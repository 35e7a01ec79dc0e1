"""--overlay-ports parsing and the extra UDP ports' probe logs (no root, no sockets)."""

from __future__ import annotations

import pytest

from overlay_agent.core import probelog
from overlay_agent.core.portlogs import PortLogs
from pytest_overlay.errors import ConfigError
from pytest_overlay.portspec import parse_ports


@pytest.mark.parametrize("spec,want", [
    ("swarm", [(2377, "tcp"), (7946, "tcp"), (7946, "udp")]),
    ("SWARM", [(2377, "tcp"), (7946, "tcp"), (7946, "udp")]),
    ("2377/tcp, 7946/UDP", [(2377, "tcp"), (7946, "udp")]),
    ("swarm,4789/udp,2377/tcp", [(2377, "tcp"), (7946, "tcp"), (7946, "udp"), (4789, "udp")]),
    ("53/udp,53/udp", [(53, "udp")]),
    ("kubernetes,flannel", [(6443, "tcp"), (2379, "tcp"), (2380, "tcp"), (10250, "tcp"),
                            (8472, "udp")]),
    ("calico", [(179, "tcp"), (5473, "tcp")]),
    ("cilium,flannel", [(8472, "udp"), (4240, "tcp"), (4244, "tcp")]),
])
def test_parse_ports(spec: str, want: list) -> None:
    assert parse_ports(spec) == want


@pytest.mark.parametrize("spec,named", [
    ("2377", "'2377' has no protocol"), ("2377/sctp", "'2377/sctp' has no protocol"),
    ("openshift", "'openshift' has no protocol"), ("0/tcp", "'0' is not a port"),
    ("70000/udp", "'70000' is not a port"), ("x/tcp", "'x' is not a port"),
    ("2377/tcp,,7946/udp", "empty item"), ("", "empty"),
])
def test_bad_specs_name_the_item_and_the_fix(spec: str, named: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_ports(spec)
    assert named in e.value.message
    assert "--overlay-ports=swarm" in str(e.value.hint)


def test_port_logs_keep_member_probes_per_port() -> None:
    logs = PortLogs(members=["198.18.1.1", "2001:2::1"])
    assert logs.offer(7946, "198.18.1.1", probelog.raw_probe("abc1", 0, b"pad"))
    assert logs.offer(7946, "198.18.1.1", probelog.raw_probe("abc1", 1))
    assert logs.offer(53, "2001:2:0::1", probelog.raw_probe("abc2", 0))
    assert logs.offer(53, "::ffff:198.18.1.1", probelog.raw_probe("abc3", 0))
    # a non-member's probe and a member's non-probe are counted, not logged
    assert not logs.offer(7946, "198.18.1.9", probelog.raw_probe("abc4", 0))
    assert not logs.offer(7946, "198.18.1.1", b"\x08hello gossip")
    assert logs.ignored == 2
    snap = logs.snapshot()
    assert set(snap) == {"7946", "53"}
    assert snap["7946"]["abc1"]["count"] == 2 and snap["7946"]["abc1"]["seqs"] == [0, 1]
    assert snap["7946"]["abc1"]["kind"] == "udp" and snap["7946"]["abc1"]["src"] == "198.18.1.1"
    assert set(snap["53"]) == {"abc2", "abc3"}
    assert logs.snapshot(["abc2"]) == {"7946": {}, "53": {"abc2": snap["53"]["abc2"]}}


def test_port_logs_without_members_log_every_probe() -> None:
    logs = PortLogs()
    assert logs.offer(1, "192.0.2.1", probelog.vxlan_probe("v1", 3))
    assert logs.snapshot()["1"]["v1"]["kind"] == "vxlan"
