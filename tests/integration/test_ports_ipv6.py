"""Port probes over an IPv6 underlay (2001:2::/48, the lab's IPv6 range): two namespaces joined
by a veth, one agent in each. The VXLAN and random-payload probes are logged by the receiver,
the member rule holds for IPv6 sources, and TCP tells open from filtered."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pytest_overlay.naming import kill_processes, namespaces, new_prefix
from tests.conftest import needs_root
from tests.integration._vtep_lab import wait_for
from tests.integration.conftest import AgentProc

pytestmark = needs_root

A, B = "2001:2::1", "2001:2::2"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def test_probes_over_ipv6(tmp_path: Path) -> None:
    prefix = new_prefix()
    na, nb = f"{prefix}-a", f"{prefix}-b"
    agents = []
    try:
        ip("netns", "add", na)
        ip("netns", "add", nb)
        ip("-n", na, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", nb)
        for ns, addr in ((na, A), (nb, B)):
            ip("-n", ns, "addr", "add", f"{addr}/64", "dev", "eth0", "nodad")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        a, b = AgentProc(na, tmp_path / "a.log"), AgentProc(nb, tmp_path / "b.log")
        agents = [a, b]
        for agent, host, addr in ((a, "a", A), (b, "b", B)):
            agent.call("hello", protocol=1)
            agent.call("configure", host=host, prefix=prefix, underlay=addr)
        b.call("set_members", vteps=[A, B])
        assert b.call("listen_tcp", ports=[7946])["ports"] == {"7946": "ours"}
        subprocess.run(["ip", "netns", "exec", nb, "nft", "-f", "-"], check=True, text=True,
                       capture_output=True, timeout=30, input=f"""
table inet {prefix}_fault {{
  chain input {{ type filter hook input priority 0; policy accept; tcp dport 22 drop; }}
}}""")
        assert a.call("send_probes", dst=B, probe_id="v6v", kind="vxlan", count=3)["sent"] == 3
        assert a.call("send_probes", dst=B, probe_id="v6u", kind="udp", count=3)["sent"] == 3
        # On a fresh IPv6 link the first datagrams wait about 1 s for neighbour discovery.
        assert wait_for(lambda: sum(e["count"] for e in b.call(
            "probe_log", ids=["v6v", "v6u"])["probes"].values()) >= 6, 5)
        log = b.call("probe_log", ids=["v6v", "v6u"])["probes"]
        assert "v6v" in log, (b.call("counters"), b.call("vtep_stats"), a.call("counters"))
        assert log["v6v"]["kind"] == "vxlan" and log["v6v"]["count"] == 3
        assert log["v6u"]["kind"] == "udp" and log["v6u"]["src"] == A
        assert a.call("tcp_connect", dst=B, port=7946, timeout=2.0)["state"] == "open"
        assert a.call("tcp_connect", dst=B, port=22, timeout=1.0)["state"] == "timeout"
        # b does not count a as a member: the same probes are dropped, not logged.
        b.call("set_members", vteps=[B])
        a.call("send_probes", dst=B, probe_id="v6x", kind="vxlan", count=2)
        assert wait_for(lambda: b.call("counters")["drops"].get("non-member-vtep", 0) >= 2, 5)
        assert b.call("counters")["drops"]["non-member-vtep"] == 2
        assert b.call("probe_log", ids=["v6x"])["probes"] == {}
    finally:
        for agent in agents:
            agent.close()
        kill_processes(prefix)
        for ns in (na, nb):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)
        assert not namespaces(prefix)
