"""The conntrack check: reading /proc (a fake tree and this kernel's), and the verdicts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

import pytest

from overlay_agent.io import conntrack as reader
from pytest_overlay.checks import AUDIT, conntrack
from pytest_overlay.errors import AgentError
from pytest_overlay.report import render
from tests.unit.reports import report_of

HEAD = ("entries  clashres found new invalid ignore delete chainlength insert insert_failed drop "
        "early_drop icmp_error  expect_new expect_create expect_delete search_restart\n")
ROW = "000000c8 00000001 00000000 00000000 00000004 00000000 00000000 00000000 00000000 " \
      "{insf:08x} {drop:08x} {early:08x} 00000000 00000000 00000000 00000000 00000000\n"


def _proc(tmp: Path, count: int = 200, cap: int = 1000, rows: int = 2,
          drop: int = 0, early: int = 0, insf: int = 0) -> Path:
    d = tmp / "sys/net/netfilter"
    d.mkdir(parents=True)
    (d / "nf_conntrack_count").write_text(f"{count}\n")
    (d / "nf_conntrack_max").write_text(f"{cap}\n")
    (d / "nf_conntrack_buckets").write_text("4096\n")
    (tmp / "net/stat").mkdir(parents=True)
    (tmp / "net/stat/nf_conntrack").write_text(
        HEAD + ROW.format(insf=insf, drop=drop, early=early) * rows)
    return tmp


def _table(**kw: Any) -> Dict[str, Any]:
    t = {"present": True, "count": 200, "max": 1000, "buckets": 4096, "drop": 0,
         "early_drop": 0, "insert_failed": 0, "invalid": 0, "clashres": 0}
    t.update(kw)
    return t


def test_the_reader_takes_the_count_and_sums_the_per_cpu_counters(tmp_path: Path) -> None:
    got = reader.read(_proc(tmp_path, drop=3, early=5, insf=1))
    assert got == {"present": True, "count": 200, "max": 1000, "buckets": 4096, "drop": 6,
                   "early_drop": 10, "insert_failed": 2, "invalid": 8, "clashres": 2}


def test_without_conntrack_there_is_no_table_and_a_bad_file_is_named(tmp_path: Path) -> None:
    assert reader.read(tmp_path) == {"present": False, "reason": reader.ABSENT}
    proc = _proc(tmp_path / "p")
    (proc / "net/stat/nf_conntrack").write_text(HEAD + "zz\n")
    got = reader.read(proc)
    assert got["present"] is True and "ValueError" in got["error"]


@pytest.mark.skipif(not os.path.exists("/proc/sys/net/netfilter/nf_conntrack_count"),
                    reason="this kernel has no connection tracking")
def test_this_kernel_reads() -> None:
    got = reader.read()
    assert got["present"] is True and got["max"] > 0 and 0 <= got["count"] <= got["max"]
    assert {"drop", "early_drop", "insert_failed"} <= set(got)


def test_a_quiet_table_passes_and_says_how_full_it_is() -> None:
    r = conntrack.judge("h1", _table(), _table(count=250))
    assert r.outcome == "pass"
    assert r.message == "h1: 250 of 1000 connections tracked (25.0 %), nothing lost during the audit"
    assert r.details["during_audit"] == {"drop": 0, "early_drop": 0, "insert_failed": 0}
    assert r.details["fill"] == 0.25 and "fix" not in r.details


def test_drops_during_the_audit_fail_the_host_with_the_sysctl() -> None:
    r = conntrack.judge("h2", _table(drop=4), _table(count=1000, drop=10, early_drop=2))
    assert r.outcome == "fail"
    assert r.message.startswith("h2: the table is full (1000 of 1000); 6 new connections "
                                "dropped during the audit because the table was full; 2 "
                                "unanswered flows evicted during the audit")
    assert "fix: sysctl -w net.netfilter.nf_conntrack_max=131072" in r.message
    assert r.details["during_audit"] == {"drop": 6, "early_drop": 2, "insert_failed": 0}


def test_insert_races_fail_with_their_own_fix() -> None:
    r = conntrack.judge("h3", _table(), _table(insert_failed=3))
    assert r.outcome == "fail" and "3 packets dropped during the audit on insert races" in r.message
    assert r.details["fix"] == conntrack.RACE_FIX and "nf_conntrack_max" not in r.message


def test_a_nearly_full_table_and_old_losses_pass_with_a_warning() -> None:
    r = conntrack.judge("h1", _table(count=900, early_drop=7), _table(count=900, early_drop=7))
    assert r.outcome == "pass"
    assert "the table is nearly full" in r.message
    assert "7 unanswered flows evicted since the table began" in r.message
    assert r.message.count("nf_conntrack_max=") == 1  # one fix, not one per reason


def test_a_large_table_gets_twice_its_cap() -> None:
    r = conntrack.judge("h1", _table(max=262144), _table(count=262144, max=262144))
    assert r.outcome == "fail" and "nf_conntrack_max=524288" in r.message
    assert "about 128 MiB" in r.message


def test_no_conntrack_passes_no_start_reading_says_so_and_errors_stay_errors() -> None:
    absent = conntrack.judge("h1", None, {"present": False, "reason": reader.ABSENT})
    assert absent.outcome == "pass" and reader.ABSENT in absent.message
    late = conntrack.judge("h1", None, _table())
    assert late.outcome == "pass" and "no reading from the start" in late.message
    assert late.details["during_audit"] is None
    assert conntrack.judge("h1", None, AgentError("h1", "gone")).outcome == "error"
    bad = conntrack.judge("h1", None, {"present": True, "error": "ValueError: x"})
    assert bad.outcome == "error" and "cannot be read" in bad.message


def test_it_runs_after_the_overlay_checks_and_renders_a_row_per_host() -> None:
    assert AUDIT.index("conntrack") > AUDIT.index("mtu")  # after every check that sends
    results = [conntrack.judge("h1", _table(), _table()),
               conntrack.judge("h2", _table(), _table(count=1000, early_drop=5))]
    report = report_of(results, mode="local")
    text = render(report, width=120)
    assert "Connection tracking" in text
    assert "5 early_drop" in text and "100.0 %" in text
