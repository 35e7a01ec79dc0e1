"""Several flows per pair in the path-MTU check: how their results become the pair's."""

from __future__ import annotations

from typing import Any, Dict

from pytest_overlay.checks import mtu, pmtu
from pytest_overlay.models import NetworkSpec


def _flow(sport: int, verdict: str = "ok", size: int = 1500, **kw: Any) -> Dict[str, Any]:
    return {"verdict": verdict, "pmtu": size, "sport": sport, **kw}


def test_flows_that_agree_give_the_first_flow_s_result() -> None:
    r = {**_flow(48000), "flows": [_flow(48000), _flow(48001), _flow(48002)]}
    got = pmtu.merge_flows(r)
    assert got["verdict"] == "ok" and got["pmtu"] == 1500 and got["flows"] == 3
    assert "ecmp" not in got
    assert pmtu.judge("h1", "198.18.0.2", got) == ("pass", "path MTU 1500: full-size packets pass")


def test_flows_that_disagree_report_the_worst_leg_and_group_the_flows() -> None:
    hole = {"hop": {"ttl": 1, "address": "198.18.1.254"}}
    flows = [_flow(48000), _flow(48001, "blackhole", 1400, **hole), _flow(48002),
             _flow(48003, "blackhole", 1400, **hole)]
    got = pmtu.merge_flows({**flows[0], "flows": flows})
    assert (got["verdict"], got["pmtu"], got["flows"]) == ("blackhole", 1400, 4)
    assert got["hop"]["address"] == "198.18.1.254"
    assert got["ecmp"] == [{"verdict": "ok", "pmtu": 1500, "sports": [48000, 48002]},
                           {"verdict": "blackhole", "pmtu": 1400, "sports": [48001, 48003]}]
    outcome, message = pmtu.judge("h1", "198.18.3.3", got)
    assert outcome == "fail"
    assert message.startswith("flows disagree (2 of 4 see ok 1500; 2 of 4 see blackhole 1400;")
    assert "connections hashed onto the worst one meet this" in message
    assert "blackhole: packets up to 1400 bytes pass" in message


def test_a_smaller_leg_that_reports_itself_is_worse_than_a_full_one() -> None:
    flows = [_flow(1), _flow(2, "ok", 1400, ptb_mtu=1400, ptb_from="198.18.3.254")]
    got = pmtu.merge_flows({**flows[0], "flows": flows})
    assert (got["verdict"], got["pmtu"]) == ("ok", 1400)
    assert pmtu.judge("h3", "198.18.1.1", got)[0] == "pass"


def test_the_mtu_verdict_names_the_multipath_pairs() -> None:
    paths = {("h1", "h3"): {"verdict": "blackhole", "pmtu": 1400,
                            "ecmp": [{"verdict": "ok", "pmtu": 1500, "sports": [1]},
                                     {"verdict": "blackhole", "pmtu": 1400, "sports": [2]}]},
             ("h3", "h1"): {"verdict": "ok", "pmtu": 1500}}
    r = mtu.verdict(NetworkSpec(), ["h1", "h3"], paths, {}, {"h1": 50, "h3": 50})
    assert r.outcome == "fail" and r.details["multipath_pairs"] == ["h1->h3"]
    assert "h1->h3 cross a multipath underlay whose legs differ" in r.message
    assert "some connections between the same hosts hang while others work" in r.message


def test_of_equally_bad_flows_the_one_that_found_the_hop_speaks() -> None:
    hole = {"hop": {"ttl": 1, "address": "2001:2:0:1::fe"}}
    flows = [_flow(1), _flow(2, "blackhole", 1400, hop={}), _flow(3, "blackhole", 1400, **hole),
             _flow(4, "blackhole", 1400, hop=None)]
    got = pmtu.merge_flows({**flows[0], "flows": flows})
    assert got["sport"] == 3 and got["hop"]["address"] == "2001:2:0:1::fe"


def test_fragments_dropped_on_any_leg_speak_for_the_pair_and_the_message_says_so() -> None:
    flows = [_flow(1, "blackhole", 1400, fragments=True), _flow(2, "blackhole", 1400,
                                                                fragments=False)]
    got = pmtu.merge_flows({**flows[0], "flows": flows})
    assert got["fragments"] is False
    outcome, message = pmtu.judge("h1", "198.18.3.3", got)
    assert outcome == "fail" and message.endswith(
        "IPv4 fragments are dropped on this path: a sender without DF (a kernel VXLAN "
        "device's default) stalls here too")
    crossing = pmtu.merge_flows({**flows[0], "flows": [flows[0], _flow(3, "blackhole", 1400)]})
    assert crossing["fragments"] is True
    assert "IPv4 fragments of full-size packets cross this path" in pmtu.judge(
        "h1", "198.18.3.3", crossing)[1]
    none = pmtu.merge_flows({**_flow(1), "flows": [_flow(1), _flow(2)]})
    assert none["fragments"] is None and "fragments" not in pmtu.judge("h1", "x", none)[1]


def test_the_path_mtu_table_shows_what_the_probes_without_df_found() -> None:
    from pytest_overlay.models import CheckResult
    from pytest_overlay.report import render
    from tests.unit.reports import report_of

    def row(dst: str, fragments: Any) -> CheckResult:
        return CheckResult(check="pmtu", src="h1", dst=dst, outcome="fail", message="blackhole",
                           details={"verdict": "blackhole", "pmtu": 1400, "fragments": fragments,
                                    "hop": {"ttl": 1, "address": "198.18.1.254"}})

    text = render(report_of([row("h2", False), row("h3", True), row("h4", None)]), width=160)
    lines = {ln.split()[3]: ln for ln in text.splitlines() if ln.startswith("│ h1 ")}
    assert "vanish after hop 1 198.18.1.254; fragments dropped" in lines["h2"]
    assert "vanish after hop 1 198.18.1.254; fragments pass" in lines["h3"]
    assert "fragments" not in lines["h4"]
