"""The neighbour-table check: reading /proc (a fake tree and this kernel's), and the verdicts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

import pytest

from overlay_agent.io import neighbours as reader
from pytest_overlay.checks import AUDIT, neighbours
from pytest_overlay.errors import AgentError
from pytest_overlay.models import Report
from pytest_overlay.report import render

STAT = ("entries  allocs   destroys hash_grows lookups  hits     res_failed rcv_probes_mcast "
        "rcv_probes_ucast periodic_gc_runs forced_gc_runs unresolved_discards table_fulls\n"
        "0000002a 00000100 000000f0 00000001 00000010 00000008 00000000 00000000 00000000 "
        "00000000 00000003 00000000 00000005\n"
        "0000002a 00000010 00000001 00000000 00000002 00000001 00000000 00000000 00000000 "
        "00000000 00000001 00000000 00000002\n")


def _proc(tmp: Path, arp: str = STAT, ndisc: bool = True) -> Path:
    for fam, stat, text in (("ipv4", "arp_cache", arp), ("ipv6", "ndisc_cache", STAT)):
        if fam == "ipv6" and not ndisc:
            continue
        d = tmp / "sys/net" / fam / "neigh/default"
        d.mkdir(parents=True)
        (d / "gc_thresh2").write_text("512\n")
        (d / "gc_thresh3").write_text("1024\n")
        (tmp / "net/stat").mkdir(parents=True, exist_ok=True)
        (tmp / "net/stat" / stat).write_text(text)
    return tmp


def test_the_reader_takes_entries_once_and_sums_the_per_cpu_counters(tmp_path: Path) -> None:
    got = reader.read(_proc(tmp_path))
    assert got["visible"] is True
    assert got["tables"]["arp"] == {"entries": 42, "table_fulls": 7, "forced_gc_runs": 4,
                                    "gc_thresh2": 512, "gc_thresh3": 1024}
    assert set(got["tables"]) == {"arp", "ndisc"}


def test_a_family_that_is_off_is_left_out_and_a_bad_file_is_named(tmp_path: Path) -> None:
    got = reader.read(_proc(tmp_path, arp="entries\nzz\n", ndisc=False))
    assert set(got["tables"]) == {"arp"}
    assert "ValueError" in got["tables"]["arp"]["error"]


def test_outside_the_initial_namespace_nothing_is_visible(tmp_path: Path) -> None:
    got = reader.read(tmp_path)  # what a container or a lab namespace sees: no such files
    assert got == {"visible": False, "reason": reader.NOT_VISIBLE}


@pytest.mark.skipif(not os.path.exists("/proc/net/stat/arp_cache"),
                    reason="this process is not in the initial network namespace")
def test_this_kernel_reads() -> None:
    got = reader.read()
    arp = got["tables"]["arp"]
    assert arp["gc_thresh3"] >= arp["gc_thresh2"] > 0 and arp["entries"] >= 0


def _snap(fulls: int, entries: int = 42, shared: bool = False) -> Dict[str, Any]:
    table = {"entries": entries, "table_fulls": fulls, "forced_gc_runs": 0,
             "gc_thresh2": 512, "gc_thresh3": 1024}
    return {"visible": True, "tables": {"arp": table}, "shared": shared}


def test_an_overflow_during_the_audit_fails_with_the_fix() -> None:
    r = neighbours.judge("h1", _snap(3), _snap(10, entries=1024))
    assert r.outcome == "fail"
    assert "overflowed 7 times during the audit" in r.message
    assert "gc_thresh3=4096" in r.message and "gc_thresh2=2048" in r.message
    assert r.details["tables"]["arp"]["table_fulls_during_audit"] == 7


def test_no_overflow_passes_and_an_old_one_is_reported_with_the_fix() -> None:
    clean = neighbours.judge("h1", _snap(0), _snap(0))
    assert clean.outcome == "pass" and "ARP 42 of 1024 entries" in clean.message
    assert "fix" not in clean.details
    old = neighbours.judge("h1", _snap(5), _snap(5, entries=600))
    assert old.outcome == "pass"
    assert "overflowed 5 times since boot" in old.message
    assert "over gc_thresh2=512" in old.message and "gc_thresh3=4096" in old.details["fix"]


def test_without_a_start_the_audit_s_share_is_unknown_not_zero() -> None:
    r = neighbours.judge("h1", None, _snap(9))
    assert r.outcome == "pass"
    assert r.details["tables"]["arp"]["table_fulls_during_audit"] is None


def test_an_agent_in_a_namespace_is_a_skip_and_a_dead_one_an_error() -> None:
    skip = neighbours.judge("h1", None, {"visible": False, "reason": reader.NOT_VISIBLE})
    assert skip.outcome == "skip" and "initial network namespace" in skip.message
    err = neighbours.judge("h1", None, AgentError("h1", "the agent is gone"))
    assert err.outcome == "error"


def test_it_runs_after_the_overlay_checks_and_a_shared_kernel_renders_once() -> None:
    assert AUDIT.index("neighbours") > AUDIT.index("mtu")  # after every check that sends
    results = [neighbours.judge(h, _snap(0, shared=True), _snap(0, shared=True))
               for h in ("h1", "h2", "h3")]
    report = Report(tool_version="0", run_prefix="ov000000", mode="local", started_at="t",
                    finished_at="t", hosts=[], networks=[], results=results,
                    summary={"pass": 3})
    text = render(report, width=80)
    table = text[text.index("Neighbour tables"):]
    assert table.count(" ARP ") == 1 and " all " in table
    assert "…" not in table
