"""A host where an overlay already runs: the kernel's VXLAN device holds 4789/udp and dockerd
7946/tcp, so the audit's VTEP and Raft node cannot have them. The errors must name the holder
where it can be known, and the way out."""

from __future__ import annotations

import socket
import threading
from typing import Iterator

import pytest

from overlay_agent.core.vtep import VtepCore
from overlay_agent.io import netns
from overlay_agent.io.dataplane import Dataplane
from overlay_agent.io.raft import port_held
from pytest_overlay.naming import new_prefix
from tests.conftest import needs_root

pytestmark = [needs_root]


@pytest.fixture
def host() -> Iterator[str]:
    """A namespace of the run with the underlay address 198.18.0.1 (no packet leaves it)."""
    ns = f"{new_prefix()}-h1"
    netns.add(ns)
    try:
        netns.ip("link", "add", "ul0", "type", "veth", "peer", "name", "ul1", netns=ns)
        netns.ip("addr", "add", "198.18.0.1/24", "dev", "ul0", netns=ns)
        netns.ip("link", "set", "ul0", "up", netns=ns)
        yield ns
    finally:
        netns.delete(ns)


def test_a_port_held_by_kernel_vxlan_names_the_device_and_the_fix(host: str) -> None:
    netns.ip("link", "add", "vxlan42", "type", "vxlan", "id", "42", "dstport", "4789",
             "local", "198.18.0.1", netns=host)
    netns.ip("link", "set", "vxlan42", "up", netns=host)
    with netns.inside(host):
        with pytest.raises(OSError) as info:
            Dataplane(VtepCore(lock=threading.RLock()), "198.18.0.1", 4789)
        msg = str(info.value)
        assert "held by the kernel VXLAN device vxlan42" in msg
        assert "vxlan_port under overlay:" in msg and "--overlay-ports=4789/udp" in msg
        # another port is free, and the VTEP starts there
        dp = Dataplane(VtepCore(lock=threading.RLock()), "198.18.0.1", 4790)
        dp.sock.close()


def test_a_raft_port_held_by_another_program_is_named_before_raft_starts(host: str) -> None:
    with netns.inside(host):
        gossip = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # as dockerd: *:7946
        gossip.bind(("0.0.0.0", 7946))
        gossip.listen(8)
        try:
            why = port_held("198.18.0.1:7946")
            assert why is not None and "held by another program" in why
            assert "Docker Swarm's gossip" in why and "--overlay-raft-port" in why
            assert port_held("198.18.0.1:7947") is None
        finally:
            gossip.close()
        assert port_held("198.18.0.1:7946") is None
