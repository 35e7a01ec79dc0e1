"""The kernel-drops check against this kernel: bad checksums and rp_filter, counted where the
check reads them.

A namespace of the run sends to another over a veth pair (scapy builds the packets, a raw
socket sends them): UDP datagrams with a wrong checksum, as a NIC with broken checksum offload
would deliver them, and datagrams from a source the receiver routes through another interface,
which strict reverse-path filtering drops. The receiving end has receive checksum offload off:
a veth otherwise marks packets as verified and the kernel never looks. Nothing leaves the
namespaces of the run.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from overlay_agent.io import netns
from pytest_overlay.checks import drops
from pytest_overlay.naming import new_prefix
from tests.conftest import needs_root
from tests.integration import nsread

pytestmark = [needs_root]

#: run inside the sender's namespace: SRC DST CHECKSUM(0x.. or auto) COUNT
SEND = """
import socket, sys
from scapy.layers.inet import IP, UDP
src, dst, csum, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for i in range(n):
    udp = UDP(sport=40000 + i, dport=4789, chksum=None if csum == "auto" else int(csum, 0))
    s.sendto(bytes(IP(src=src, dst=dst) / udp / (b"x" * 64)), (dst, 0))
"""


def send(ns: str, src: str, dst: str, checksum: str, count: int) -> None:
    subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", SEND, src, dst, checksum,
                    str(count)], check=True, timeout=60)


def read_in(ns: str) -> dict:
    return nsread.read_in(ns, "drops")


def test_bad_checksums_and_rp_filter_drops_are_counted_and_fail_the_host() -> None:
    prefix = new_prefix()
    rx, tx = f"{prefix}-rx", f"{prefix}-tx"
    netns.add(rx)
    netns.add(tx)
    try:
        netns.ip("link", "add", "a0", "type", "veth", "peer", "name", "b0", "netns", tx, netns=rx)
        netns.ip("addr", "add", "198.18.251.1/30", "dev", "a0", netns=rx)
        netns.ip("addr", "add", "198.18.251.2/30", "dev", "b0", netns=tx)
        # The receiver routes 198.18.252.0/24 through a second link: a source from there
        # arriving on a0 fails the reverse-path test.
        netns.ip("link", "add", "a1", "type", "veth", "peer", "name", "b1", "netns", tx, netns=rx)
        netns.ip("addr", "add", "198.18.252.1/24", "dev", "a1", netns=rx)
        for ns, dev in ((rx, "a0"), (tx, "b0"), (rx, "a1"), (tx, "b1")):
            netns.ip("link", "set", dev, "up", netns=ns)
        subprocess.run(["ip", "netns", "exec", rx, "ethtool", "-K", "a0", "rx", "off"],
                       check=True, capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "exec", rx, "sysctl", "-qw",
                        "net.ipv4.conf.a0.rp_filter=1"], check=True, timeout=30)
        before = read_in(rx)
        send(tx, "198.18.251.2", "198.18.251.1", "0x1234", 5)  # wrong checksum
        send(tx, "198.18.251.2", "198.18.251.1", "auto", 3)  # right one: not counted
        send(tx, "198.18.252.9", "198.18.251.1", "auto", 4)  # the route back is a1
        after = read_in(rx)
    finally:
        netns.delete(tx)
        netns.delete(rx)
    grew = {g: {k: v - before["counters"][g][k] for k, v in c.items()}
            for g, c in after["counters"].items()}
    assert grew["checksum"]["Udp.InCsumErrors"] == 5, grew
    assert grew["rp_filter"]["TcpExt.IPReversePathFilter"] == 4, grew
    assert after["rp_filter"] == {"a0": "strict"}
    res = drops.judge("h2", before, after)
    assert res.outcome == "fail", res.message
    assert "5 packets with bad checksums dropped during the audit (Udp.InCsumErrors 5)" in res.message
    assert "4 packets dropped during the audit by reverse-path filtering" in res.message
    assert "net.ipv4.conf.a0.rp_filter=2" in res.message


USER_TESTS = f'''
import subprocess, sys

SEND = {SEND!r}

def ip(*args):
    subprocess.run(["ip", *args], check=True)

def test_a_bad_nic_and_an_asymmetric_route_at_h2(overlay):
    h2, x = overlay.prefix + "-h2", overlay.prefix + "-x"
    ip("netns", "add", x)
    ip("-n", h2, "link", "add", "xa", "type", "veth", "peer", "name", "xb", "netns", x)
    ip("-n", h2, "addr", "add", "198.18.251.1/30", "dev", "xa")
    ip("-n", x, "addr", "add", "198.18.251.2/30", "dev", "xb")
    ip("-n", h2, "link", "set", "xa", "up")
    ip("-n", x, "link", "set", "xb", "up")
    subprocess.run(["ip", "netns", "exec", h2, "ethtool", "-K", "xa", "rx", "off"], check=True)
    subprocess.run(["ip", "netns", "exec", h2, "sysctl", "-qw", "net.ipv4.conf.xa.rp_filter=1"],
                   check=True)
    for src, csum in (("198.18.251.2", "0x1234"), ("198.18.0.3", "auto")):
        subprocess.run(["ip", "netns", "exec", x, sys.executable, "-c", SEND, src,
                        "198.18.251.1", csum, "5"], check=True, timeout=60)
    # the namespace carries the run's prefix: the run's clean-up removes it, and xa with it
'''


@pytest.mark.slow
def test_the_audit_fails_the_host_that_dropped_them(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess("test_user.py", "--overlay-local=3", "--overlay-audit",
                                           "-v", "-p", "no:cacheprovider",
                                           f"--overlay-report={report}")
    out = result.stdout.str()
    assert "overlay-audit::drops::h2 FAILED" in out, out[-3000:]
    assert "overlay-audit::drops::h1 PASSED" in out and "drops::h3 PASSED" in out
    data = json.loads(report.read_text())
    # Every other check still passes.
    result.assert_outcomes(passed=len(data["results"]) - 1 + 1, failed=1)  # + the user's test
    h2 = next(r for r in data["results"] if r["check"] == "drops" and r["src"] == "h2")
    assert h2["details"]["during_audit"]["checksum"]["Udp.InCsumErrors"] == 5, h2
    assert h2["details"]["during_audit"]["rp_filter"]["TcpExt.IPReversePathFilter"] == 5, h2
    assert "strict on xa" in h2["message"]
    assert "Kernel drops" in out
