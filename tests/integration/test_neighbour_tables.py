"""The neighbour-table check against this kernel: an overflow is counted where the check reads.

The tables are the kernel's, one for all namespaces, so filling the ARP table from a namespace
of the run overflows it for the whole machine for the moment it takes (a few milliseconds):
the kernel then refuses new entries, counts ``table_fulls`` and logs "neighbor table overflow".
Nothing here sends a packet; deleting the namespace frees every entry it made.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from overlay_agent.io import neighbours as reader
from overlay_agent.io import netns
from pytest_overlay.checks import neighbours
from pytest_overlay.naming import new_prefix
from tests.conftest import needs_root

pytestmark = [needs_root]


def test_an_overflow_from_a_namespace_is_counted_and_fails_the_host() -> None:
    before = reader.read()
    if not before["visible"]:
        pytest.skip("this process is not in the initial network namespace")
    arp = before["tables"]["arp"]
    prefix = new_prefix()
    ns = f"{prefix}-nb"
    netns.add(ns)
    try:
        netns.ip("link", "add", "br0", "type", "bridge", netns=ns)
        netns.ip("addr", "add", "10.254.0.1/16", "dev", "br0", netns=ns)
        netns.ip("link", "set", "br0", "up", netns=ns)
        # More dynamic entries than the cap allows; fresh ones cannot be collected (< 5 s old).
        n = arp["gc_thresh3"] + 64
        batch = "".join(f"neigh add 10.254.{i // 250 + 1}.{i % 250 + 1} "
                        f"lladdr 02:fe:00:00:{i // 256:02x}:{i % 256:02x} dev br0 nud stale\n"
                        for i in range(n))
        r = subprocess.run(["ip", "-n", ns, "-force", "-batch", "-"], input=batch, text=True,
                           capture_output=True, timeout=60)
        assert r.returncode != 0 and "No buffer space available" in r.stderr, r.stderr[-500:]
        during = reader.read()
    finally:
        netns.delete(ns)
    grew = during["tables"]["arp"]["table_fulls"] - arp["table_fulls"]
    assert grew > 0
    res = neighbours.judge("h1", before, during)
    assert res.outcome == "fail", res.message
    assert f"ARP table overflowed {grew} times during the audit" in res.message
    assert "net.ipv4.neigh.default.gc_thresh3=" in res.message
    # The next audit on this kernel starts from the new count: it passes, and says the table
    # has overflowed before. The namespace's entries go with it (its clean-up is asynchronous).
    deadline = time.monotonic() + 10
    after = reader.read()
    while after["tables"]["arp"]["entries"] > arp["entries"] + 16 and time.monotonic() < deadline:
        time.sleep(0.1)
        after = reader.read()
    assert after["tables"]["arp"]["entries"] <= arp["entries"] + 16, after
    again = neighbours.judge("h1", after, after)
    assert again.outcome == "pass" and "times since boot" in again.message
