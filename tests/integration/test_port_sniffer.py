"""The packet-socket watcher of held UDP ports (``io/sniff.py``) against the real kernel.

Two namespaces of the run joined by a veth pair, over IPv4 and IPv6. In ``b`` another socket
holds the port (as dockerd holds 7946/udp); ``a`` sends probes and other datagrams to it. The
watcher must report exactly the probes, with their source, while the holder still gets them.
"""

from __future__ import annotations

import socket
import time
from typing import List, Tuple

import pytest

from overlay_agent.core.probelog import parse, raw_probe, vxlan_probe
from overlay_agent.io import netns
from overlay_agent.io.sniff import PortSniffer, program
from pytest_overlay.naming import new_prefix
from tests.conftest import needs_root

pytestmark = [needs_root]

PORT = 7946


def _drain(s: socket.socket) -> int:
    n = 0
    while True:
        try:
            s.recv(4096)
        except BlockingIOError:
            return n
        n += 1


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_it_sees_the_probes_to_a_held_port_and_nothing_else(family: str) -> None:
    v6 = family == "ipv6"
    addr_a, addr_b = ("2001:2::1", "2001:2::2") if v6 else ("198.18.0.1", "198.18.0.2")
    plen = 64 if v6 else 24
    af = socket.AF_INET6 if v6 else socket.AF_INET
    prefix = new_prefix()
    a, b = f"{prefix}-a", f"{prefix}-b"
    for ns in (a, b):
        netns.add(ns)
    try:
        netns.ip("link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b, netns=a)
        for ns, dev, addr in ((a, "va", addr_a), (b, "vb", addr_b)):
            args = ["addr", "add", f"{addr}/{plen}", "dev", dev]
            netns.ip(*args, *(["nodad"] if v6 else []), netns=ns)
            netns.ip("link", "set", dev, "up", netns=ns)
        with netns.inside(b):
            holder = socket.socket(af, socket.SOCK_DGRAM)
            holder.bind((addr_b, PORT))
            holder.setblocking(False)
            with pytest.raises(OSError):  # the port really is held
                socket.socket(af, socket.SOCK_DGRAM).bind((addr_b, PORT))
            sniffer = PortSniffer(addr_b, PORT)
        with netns.inside(a):
            tx = socket.socket(af, socket.SOCK_DGRAM)
        try:
            sent = [raw_probe("held", i) for i in range(5)]
            noise = [b"\x01" + b"x" * 40, vxlan_probe("vx", 0), b"\x00OVRx"]
            for d in [*sent, *noise]:
                tx.sendto(d, (addr_b, PORT))
            tx.sendto(raw_probe("otherport", 0), (addr_b, PORT + 1))
            got: List[Tuple[str, bytes]] = []
            deadline = time.monotonic() + 5
            while len(got) < 6 and time.monotonic() < deadline:  # 5 probes + the short lead
                got += sniffer.read()
                time.sleep(0.02)
            time.sleep(0.1)
            got += sniffer.read()
            assert [src for src, _ in got] == [addr_a] * 6
            assert [p for _, p in got][:5] == sent and got[5][1] == b"\x00OVRx"
            assert [parse(p) for _, p in got[:5]] == [("udp", "held", i) for i in range(5)]
            assert _drain(holder) == len(sent) + len(noise)  # the holder got everything
        finally:
            sniffer.close()
            holder.close()
            tx.close()
    finally:
        for ns in (a, b):
            netns.delete(ns)


def test_the_filter_jumps_stay_inside_the_program() -> None:
    for addr in ("198.18.0.2", "2001:2::2"):
        prog = program(addr, PORT)
        assert prog[-1] == (0x06, 0, 0, 0) and prog[-2] == (0x06, 0, 0, 0xFFFF)
        for i, (code, jt, jf, _k) in enumerate(prog):
            if code & 0x07 == 0x05:  # a jump: both targets inside, the last is the drop
                assert i + 1 + max(jt, jf) < len(prog)
