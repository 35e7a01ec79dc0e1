"""The conntrack check against this kernel: a namespace's table filled until it evicts.

The table belongs to each network namespace (only the cap, ``nf_conntrack_max``, is the
machine's), so a namespace of the run can fill its own without touching the machine's: an
nftables rule that needs connection tracking, then one UDP datagram per new flow over its
loopback until the table holds ``nf_conntrack_max`` entries and the kernel starts evicting
flows that never saw a reply (``early_drop``). No packet leaves the namespace; deleting it
frees every entry.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from overlay_agent.io import conntrack as reader
from overlay_agent.io import netns
from pytest_overlay.checks import conntrack
from pytest_overlay.naming import new_prefix
from tests.conftest import needs_root
from tests.integration import nsread

pytestmark = [needs_root]

#: an nftables table whose rule makes the namespace track its connections
TRACK = "table inet track {\n chain out {\n type filter hook output priority 0;\n" \
        " ct state new counter\n }\n}\n"
#: run inside the namespace: new UDP flows over loopback until the table is over its cap
FILL = """
import socket
cap = int(open("/proc/sys/net/netfilter/nf_conntrack_max").read())
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n = 0
for a in range(1, 255):
    for p in range(1, 65536):
        try:
            s.sendto(b"x", (f"127.0.{a}.1", p))
        except OSError:
            pass
        n += 1
        if n > cap + 2000:
            raise SystemExit(0)
"""


def _cap() -> int:
    table = reader.read()
    if not table.get("present"):
        pytest.skip("this kernel has no connection tracking (nf_conntrack)")
    if table["max"] > 1 << 21:
        pytest.skip(f"nf_conntrack_max is {table['max']}: too many entries to fill in a test")
    return int(table["max"])


def fill(ns: str) -> None:
    """Make namespace ``ns`` track connections, then fill its table past the cap."""
    netns.ip("link", "set", "lo", "up", netns=ns)
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=TRACK, text=True,
                   check=True, timeout=30)
    subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", FILL], check=True,
                   timeout=120)


def read_in(ns: str) -> dict:
    return nsread.read_in(ns, "conntrack")


def test_a_full_table_is_read_in_its_namespace_and_fails_the_host() -> None:
    cap = _cap()
    ns = f"{new_prefix()}-ct"
    netns.add(ns)
    try:
        before = read_in(ns)
        assert before["present"] and before["count"] == 0, before
        fill(ns)
        during = read_in(ns)
        machine = reader.read()
    finally:
        netns.delete(ns)
    # The namespace's own table is full and evicting; the machine's did not move.
    assert during["max"] == cap and during["count"] >= cap - 64, during
    assert during["early_drop"] - before["early_drop"] > 0, during
    assert machine["count"] < cap // 2, machine
    res = conntrack.judge("h2", before, during)
    assert res.outcome == "fail", res.message
    assert res.message.startswith("h2: the table is full (")
    assert "unanswered flows evicted during the audit" in res.message
    assert f"net.netfilter.nf_conntrack_max={2 * cap}" in res.message
    assert res.details["during_audit"]["early_drop"] == during["early_drop"]
    # The next audit of this table starts from the new counters: it passes, and says the
    # table overflowed before (and is nearly full).
    again = conntrack.judge("h2", during, {**during, "count": cap // 2})
    assert again.outcome == "pass", again.message
    assert "evicted since the table began" in again.message and "fix: sysctl" in again.message


USER_TESTS = f'''
import subprocess, sys

def test_fill_h2(overlay):
    ns = overlay.prefix + "-h2"
    subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input={TRACK!r}, text=True,
                   check=True, timeout=30)
    subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", {FILL!r}], check=True,
                   timeout=120)
'''


@pytest.mark.slow
def test_the_audit_fails_the_host_whose_table_filled(pytester: pytest.Pytester) -> None:
    _cap()
    pytester.makepyfile(test_user=USER_TESTS)
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess("test_user.py", "--overlay-local=3", "--overlay-audit", "-v",
                                           "-p", "no:cacheprovider", f"--overlay-report={report}")
    out = result.stdout.str()
    assert "overlay-audit::conntrack::h2 FAILED" in out, out[-3000:]
    assert "overlay-audit::conntrack::h1 PASSED" in out and "conntrack::h3 PASSED" in out
    data = json.loads(report.read_text())
    # Evictions admit the overlay's own new flows: every other check still passes.
    result.assert_outcomes(passed=len(data["results"]) - 1 + 1, failed=1)  # + the user's test
    h2 = next(r for r in data["results"] if r["check"] == "conntrack" and r["src"] == "h2")
    assert h2["details"]["during_audit"]["early_drop"] > 0, h2
    assert "Connection tracking" in out
