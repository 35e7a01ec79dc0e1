"""The kernel-drops check: reading /proc (a fake tree and this kernel's), and the verdicts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

import pytest

from overlay_agent.io import drops as reader
from pytest_overlay.checks import AUDIT, drops
from pytest_overlay.errors import AgentError
from pytest_overlay.report import render
from tests.unit.reports import report_of

SNMP = ("Ip: Forwarding DefaultTTL InReceives\nIp: 2 64 100\n"
        "Icmp: InMsgs InErrors InCsumErrors\nIcmp: 5 0 1\n"
        "Tcp: RtoAlgorithm InSegs InCsumErrors\nTcp: 1 50 2\n"
        "Udp: InDatagrams NoPorts InErrors RcvbufErrors InCsumErrors\nUdp: 40 0 7 3 4\n")
NETSTAT = ("TcpExt: SyncookiesSent IPReversePathFilter TW\nTcpExt: 0 9 1\n"
           "IpExt: InNoRoutes InCsumErrors\nIpExt: 0 5\n")
SNMP6 = "Ip6InReceives                   \t10\nUdp6InCsumErrors                \t6\n" \
        "Udp6RcvbufErrors 0\nIcmp6InCsumErrors 0\n"


def _proc(tmp: Path, rp: Dict[str, int]) -> Path:
    (tmp / "net").mkdir(parents=True)
    (tmp / "net/snmp").write_text(SNMP)
    (tmp / "net/netstat").write_text(NETSTAT)
    (tmp / "net/snmp6").write_text(SNMP6)
    for dev, mode in rp.items():
        d = tmp / "sys/net/ipv4/conf" / dev
        d.mkdir(parents=True)
        (d / "rp_filter").write_text(f"{mode}\n")
    return tmp


def _reading(csum: int = 0, rp: int = 0, rcvbuf: int = 0, strict: str = "") -> Dict[str, Any]:
    return {"counters": {"checksum": {"Udp.InCsumErrors": csum, "Tcp.InCsumErrors": 0},
                         "rp_filter": {"TcpExt.IPReversePathFilter": rp},
                         "rcvbuf": {"Udp.RcvbufErrors": rcvbuf}},
            "rp_filter": {strict: "strict"} if strict else {}}


def test_the_reader_takes_the_counters_of_each_group(tmp_path: Path) -> None:
    got = reader.read(_proc(tmp_path, {"all": 0, "default": 1, "lo": 1, "eth0": 1, "eth1": 2,
                                       "eth2": 0}))
    assert got["counters"] == {
        "checksum": {"Udp.InCsumErrors": 4, "Udp6InCsumErrors": 6, "Tcp.InCsumErrors": 2,
                     "Icmp.InCsumErrors": 1, "Icmp6InCsumErrors": 0, "IpExt.InCsumErrors": 5},
        "rp_filter": {"TcpExt.IPReversePathFilter": 9},
        "rcvbuf": {"Udp.RcvbufErrors": 3, "Udp6RcvbufErrors": 0}}
    # the effective mode per interface; `default` and `lo` are not interfaces that receive
    assert got["rp_filter"] == {"eth0": "strict", "eth1": "loose"}
    assert "errors" not in got


def test_all_raises_every_interface_and_a_bad_file_is_named(tmp_path: Path) -> None:
    proc = _proc(tmp_path, {"all": 1, "eth0": 0})
    (proc / "net/netstat").write_text("TcpExt: A B\nTcpExt: 1\n")
    got = reader.read(proc)
    assert got["rp_filter"] == {"all": "strict", "eth0": "strict"}
    assert "net/netstat" in got["errors"][0]
    assert got["counters"]["rp_filter"] == {}  # what the file would have said is unknown


@pytest.mark.skipif(not os.path.exists("/proc/net/snmp"), reason="no /proc/net/snmp here")
def test_this_kernel_reads() -> None:
    got = reader.read()
    assert "Udp.InCsumErrors" in got["counters"]["checksum"]
    assert "TcpExt.IPReversePathFilter" in got["counters"]["rp_filter"]


def test_a_quiet_host_passes() -> None:
    r = drops.judge("h1", _reading(), _reading())
    assert r.outcome == "pass"
    assert r.message == "h1: no packet dropped for a bad checksum or by rp_filter during the audit"
    assert r.details["during_audit"]["checksum"] == {"Udp.InCsumErrors": 0, "Tcp.InCsumErrors": 0}


def test_bad_checksums_during_the_audit_fail_the_host() -> None:
    r = drops.judge("h2", _reading(csum=2), _reading(csum=7, rcvbuf=4))
    assert r.outcome == "fail"
    assert r.message.startswith("h2: 5 packets with bad checksums dropped during the audit "
                                "(Udp.InCsumErrors 5): corrupted on the way")
    assert "also 4 datagrams lost during the audit to full UDP socket buffers" in r.message
    assert r.details["fix"] == drops.CHECKSUM_FIX


def test_rp_filter_drops_fail_with_the_loose_mode_for_the_strict_interfaces() -> None:
    r = drops.judge("h3", _reading(strict="eth1"), _reading(rp=3, strict="eth1"))
    assert r.outcome == "fail"
    assert "3 packets dropped during the audit by reverse-path filtering (rp_filter)" in r.message
    assert "strict on eth1" in r.message
    assert ("sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.eth1.rp_filter=2"
            in r.details["fix"])


def test_socket_overflows_alone_and_old_drops_pass_with_a_note() -> None:
    r = drops.judge("h1", _reading(csum=3, rcvbuf=1), _reading(csum=3, rcvbuf=9, strict="eth0"))
    assert r.outcome == "pass"
    assert "8 datagrams lost during the audit to full UDP socket buffers" in r.message
    assert "rp_filter is strict on eth0" in r.message
    assert "3 packets with bad checksums dropped since the namespace began" in r.message
    assert r.details["fix"] == drops.CHECKSUM_FIX


def test_no_start_reading_no_counters_and_errors() -> None:
    late = drops.judge("h1", None, _reading())
    assert late.outcome == "pass" and "no reading from the start" in late.message
    assert late.details["during_audit"] is None
    none = drops.judge("h1", None, {"counters": {}, "errors": ["/proc/net/snmp: gone"]})
    assert none.outcome == "error" and "/proc/net/snmp: gone" in none.message
    assert drops.judge("h1", None, AgentError("h1", "gone")).outcome == "error"


def test_it_runs_last_and_renders_a_row_per_host() -> None:
    assert AUDIT[-1] == "drops"
    results = [drops.judge("h1", _reading(), _reading()),
               drops.judge("h2", _reading(), _reading(rp=5, strict="eth0"))]
    report = report_of(results, mode="local")
    text = render(report, width=120)
    table = text[text.index("Kernel drops"):]
    row = next(ln for ln in table.splitlines() if " h2 " in ln)
    assert " 5 / 5 " in row and "eth0" in row and "fail" in row
