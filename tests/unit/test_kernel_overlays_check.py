"""The kernel-overlays verdicts: each running overlay's MTU against the measured paths."""

from __future__ import annotations

from typing import Any, Dict

from pytest_overlay.checks import AUDIT, kernel_overlays
from pytest_overlay.errors import AgentError
from pytest_overlay.models import HostPlan, Report, RunPlan
from pytest_overlay.report import render


def _dev(name: str = "flannel.1", mtu: int = 1450, vni: int = 1, where: str = "host",
         **kw: Any) -> Dict[str, Any]:
    return {"name": name, "where": where, "mtu": mtu, "vni": vni, "port": 8472,
            "local": "192.0.2.1", "external": False, "up": True, "df": "unset", **kw}


PATHS = {("h1", "h2"): {"pmtu": 1500, "verdict": "ok", "local_mtu": 1500},
         ("h1", "h3"): {"pmtu": 1400, "verdict": "blackhole", "local_mtu": 1500},
         ("h1", "h4"): {"pmtu": 1400, "verdict": "ok", "local_mtu": 1500}}


def _judge(*devs: Dict[str, Any], peers: Any = None) -> Any:
    return kernel_overlays.judge("h1", {"devices": list(devs), "errors": []}, PATHS,
                                 peers or {}, ["h2", "h3", "h4"], 50)


def test_a_device_within_the_smallest_path_passes() -> None:
    r = _judge(_dev(mtu=1350))
    assert r.outcome == "pass" and "flannel.1 (VNI 1, flannel) MTU 1350 fits (up to 1350)" in r.message
    assert r.details["devices"][0]["fits"] == 1350


def test_a_device_with_df_above_it_fails_with_the_stalling_pairs_and_the_tool_s_fix() -> None:
    r = _judge(_dev(mtu=1450, df="set"))
    assert r.outcome == "fail"
    assert "has MTU 1450, but the smallest path MTU from h1 is 1400 (h1->h3, h1->h4)" in r.message
    assert "on h1->h3 packets above 1350 are lost" in r.message  # the blackhole, not h1->h4
    assert "on h1->h4 the path reports the drops" in r.message
    assert "\"mtu\": 1350 in flannel's CNI delegate" in r.message
    assert r.details["devices"][0]["stalling_pairs"] == ["h1->h3"]
    inherit = _judge(_dev(mtu=1450, df="inherit"))
    assert "on h1->h3 packets above 1350 are lost and nothing tells the sender (df inherit: " \
        "TCP's packets carry DF)" in inherit.message


def test_without_df_over_ipv4_routers_fragment_instead_of_a_blackhole() -> None:
    """The kernel's default (df unset): the hop that eats its ICMP fragments the outer packet
    instead, so the verdict says fragments, not a stall (the kernel's behaviour is checked in
    tests/integration/test_kernel_overlays_df.py)."""
    for dev in (_dev(mtu=1450), _dev(mtu=1450, df=None)):
        r = _judge(dev)
        assert r.outcome == "fail"  # too big still: every full-size frame is two packets
        assert "are lost" not in r.message and "stall while" not in r.message
        assert ("without DF (df unset, the kernel's default)" in r.message) == (dev["df"] is not None)
        assert "on h1->h3, h1->h4 frames above 1350 are fragmented on the way" in r.message
        assert "stall where a firewall, NAT or load balancer drops fragments" in r.message
        d = r.details["devices"][0]
        assert d["fragmenting_pairs"] == ["h1->h3", "h1->h4"] and d["stalling_pairs"] == []


def test_a_limit_at_the_host_s_own_link_is_reported_by_its_kernel_and_ipv6_never_fragments() -> None:
    paths = {("h1", "h2"): {"pmtu": 1400, "verdict": "ok", "local_mtu": 1400},
             ("h1", "h3"): {"pmtu": 1400, "verdict": "blackhole", "local_mtu": 1500}}
    own = kernel_overlays.judge("h1", {"devices": [_dev(mtu=1450)], "errors": []}, paths,
                                {1: ["h1", "h2"]}, ["h2", "h3"], 50)
    assert "on h1->h2 the path reports the drops" in own.message and "fragmented" not in own.message
    v6 = kernel_overlays.judge("h1", {"devices": [_dev(mtu=1430, local="2001:db8::1")],
                                      "errors": []}, paths, {1: ["h1", "h3"]}, ["h2", "h3"], 70)
    assert "on h1->h3 packets above 1330 are lost" in v6.message and "fragmented" not in v6.message


def test_only_the_hosts_that_share_the_vni_count() -> None:
    r = _judge(_dev(mtu=1450), peers={1: ["h1", "h2"]})  # h3, h4 are not in this overlay
    assert r.outcome == "pass" and "fits (up to 1450)" in r.message


def test_docker_s_overlay_is_named_and_told_how_to_fix_it() -> None:
    r = _judge(_dev(name="vx-001001-abcd", vni=4097, where="docker:1-abcd", mtu=1450))
    assert r.outcome == "fail"
    assert "(VNI 4097, Docker Swarm (overlay namespace 1-abcd))" in r.message
    assert "--opt com.docker.network.driver.mtu=1350" in r.message


def test_metadata_mode_is_listed_not_judged_and_ipv6_costs_70() -> None:
    r = _judge(_dev(name="cilium_vxlan", external=True, mtu=65520),
               _dev(name="vxlan-v6.calico", local="2001:db8::1", mtu=1330, vni=2))
    assert r.outcome == "pass"
    assert "cilium_vxlan (VNI 1, Cilium) is in metadata mode" in r.message
    assert "vxlan-v6.calico (VNI 2, Calico) MTU 1330 fits (up to 1330)" in r.message


def test_no_device_is_a_skip_and_a_dead_agent_an_error() -> None:
    assert _judge().outcome == "skip" and "no overlay runs here" in _judge().message
    err = kernel_overlays.judge("h1", AgentError("h1", "gone"), PATHS, {}, ["h2"], 50)
    assert err.outcome == "error"


def test_only_remote_hosts_get_a_test_and_the_table_shows_each_device() -> None:
    lab = RunPlan(hosts=[HostPlan(name="h1", underlay="198.18.0.1")], networks=[], endpoints=[])
    assert kernel_overlays.test_ids(lab) == []
    ssh = RunPlan(hosts=[HostPlan(name="h1", underlay="192.0.2.1", transport="ssh")],
                  networks=[], endpoints=[])
    assert kernel_overlays.test_ids(ssh) == ["h1"]
    assert AUDIT.index("mtu") < AUDIT.index("kernel-overlays")  # after pmtu has measured
    results = [_judge(_dev(mtu=1450), _dev(name="cilium_vxlan", external=True))]
    report = Report(tool_version="0", run_prefix="ov000000", mode="ssh", started_at="t",
                    finished_at="t", hosts=[], networks=[], results=results, summary={})
    text = render(report, width=80)
    assert "Overlays already running" in text and "too high" in text and "…" not in text


def test_what_the_probes_without_df_found_makes_the_fragment_verdict_definite() -> None:
    paths = {("h1", "h3"): {**PATHS[("h1", "h3")], "fragments": True},
             ("h1", "h4"): {**PATHS[("h1", "h4")], "fragments": False}}
    r = kernel_overlays.judge("h1", {"devices": [_dev(mtu=1450)], "errors": []}, paths,
                              {1: ["h1", "h3", "h4"]}, ["h3", "h4"], 50)
    assert r.outcome == "fail"
    assert ("on h1->h3 frames above 1350 are fragmented on the way instead of dropped and "
            "arrive (the pmtu check's probes without DF crossed)") in r.message
    assert ("on h1->h4 frames above 1350 are fragmented on the way and the path drops the "
            "fragments") in r.message and "stall while small requests work" in r.message
    assert "where a firewall, NAT or load balancer" not in r.message  # nothing left unknown
    d = r.details["devices"][0]
    assert d["fragmenting_pairs"] == ["h1->h3", "h1->h4"] and d["stalling_pairs"] == ["h1->h4"]
