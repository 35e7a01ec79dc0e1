"""The MTU verdict and its fix (pure: pmtu results in, CheckResult out)."""

from __future__ import annotations

from pytest_overlay.checks.mtu import verdict
from pytest_overlay.models import NetworkSpec, Report
from pytest_overlay.report import render

NET = NetworkSpec(name="overlay0", vni=4096, mtu=1450)
FAM = {"h1": 50, "h2": 50, "h3": 50}


def _paths(p13: int, v13: str = "ok") -> dict:
    paths = {(a, b): {"pmtu": 1500, "verdict": "ok"} for a in FAM for b in FAM if a != b}
    for pair in (("h1", "h3"), ("h2", "h3"), ("h3", "h1"), ("h3", "h2")):
        paths[pair] = {"pmtu": p13, "verdict": "ok"}
    paths[("h1", "h3")]["verdict"] = v13
    return paths


def test_too_high_fails_names_pairs_and_the_fix() -> None:
    r = verdict(NET, ["h1", "h2", "h3"], _paths(1400, "blackhole"), {}, FAM)
    assert r.outcome == "fail"
    assert r.details["recommended"] == 1350 and r.details["min_path_mtu"] == 1400
    assert r.details["blackhole_pairs"] == ["h1->h3"]
    # The VTEP relays the PTBs that do come back: only the blackhole stalls.
    assert r.details["stalling_pairs"] == ["h1->h3"]
    assert set(r.details["pmtud_pairs"]) == {"h2->h3", "h3->h1", "h3->h2"}
    assert "on h1->h3 packets above 1350 never arrive" in r.message
    assert "large payloads stall while small requests work" in r.message
    assert "ICMP blackhole" in r.message and "tail-loss probe" in r.message
    for text in ("com.docker.network.driver.mtu=1350", "flannel", "Calico", "veth_mtu",
                 "Cilium", "--mtu=1350", "ip link set dev vxlan4096 mtu 1350", "h1->h3"):
        assert text in r.message


def test_fits_passes() -> None:
    r = verdict(NET, ["h1", "h2", "h3"], _paths(1500), {}, FAM)
    assert r.outcome == "pass" and "warning" not in r.details and r.details["recommended"] == 1450


def test_much_lower_warns() -> None:
    r = verdict(NET.model_copy(update={"mtu": 1200}), ["h1", "h2", "h3"], _paths(1500), {}, FAM)
    assert r.outcome == "pass" and r.details["warning"] == "too-low"
    assert "1450" in r.message and "left on the table" in r.message


def test_measured_overhead_larger_than_expected_counts() -> None:
    r = verdict(NET, ["h1", "h2", "h3"], _paths(1500), {("h1", "h2"): 60}, FAM)
    assert r.outcome == "fail" and r.details["recommended"] == 1440


def test_ipv6_overhead_and_nothing_known() -> None:
    fam6 = {h: 70 for h in FAM}
    r = verdict(NET, ["h1", "h2", "h3"], _paths(1500), {}, fam6)
    assert r.outcome == "fail" and r.details["recommended"] == 1430
    assert verdict(NET, ["h1", "h2"], {}, {}, FAM).outcome == "skip"


def test_pmtud_everywhere_still_fails_but_nothing_stalls() -> None:
    r = verdict(NET, ["h1", "h2", "h3"], _paths(1400), {}, FAM)
    assert r.outcome == "fail" and r.details["recommended"] == 1350
    assert r.details["stalling_pairs"] == [] and r.details["blackhole_pairs"] == []
    assert len(r.details["pmtud_pairs"]) == 4
    assert "payloads stall" not in r.message and "fragmentation needed" in r.message


def test_a_path_without_a_clear_verdict_counts_as_stalling() -> None:
    r = verdict(NET, ["h1", "h2", "h3"], _paths(1400, "lossy"), {}, FAM)
    assert r.details["stalling_pairs"] == ["h1->h3"] and r.details["blackhole_pairs"] == []
    assert "may never learn why" in r.message


def test_the_table_marks_blackholes_and_the_pairs_that_recover() -> None:
    r = verdict(NET, ["h1", "h2", "h3"], _paths(1400, "blackhole"), {}, FAM)
    report = Report(tool_version="0", run_prefix="ov000000", mode="local", started_at="",
                    finished_at="", hosts=[], networks=[], results=[r], summary={})
    text = render(report, width=240)
    assert "Overlay MTU" in text and "h1->h3 (no ICMP)" in text
    assert "h2->h3 (PMTUD)" in text and "h3->h2 (PMTUD)" in text


def test_what_a_kernel_vxlan_device_meets_there_comes_from_the_fragment_probes() -> None:
    paths = _paths(1400, "blackhole")
    paths[("h1", "h3")]["fragments"] = True
    paths[("h2", "h3")]["fragments"] = False
    r = verdict(NET, ["h1", "h2", "h3"], paths, {}, FAM)
    assert r.details["fragments_cross_pairs"] == ["h1->h3"]
    assert r.details["fragments_dropped_pairs"] == ["h2->h3"]
    assert ("a kernel VXLAN device at this MTU (Docker Swarm, flannel, Calico: DF off over IPv4 "
            "unless created with df set) has its full-size frames fragmented by the small hop "
            "instead: they arrive on h1->h3, where IPv4 fragments cross; on h2->h3 the path "
            "drops IPv4 fragments, so they stall there too") in r.message
    unknown = verdict(NET, ["h1", "h2", "h3"], _paths(1400, "blackhole"), {}, FAM)
    assert "kernel VXLAN device at this MTU" not in unknown.message
