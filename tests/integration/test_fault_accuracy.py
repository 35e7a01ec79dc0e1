"""Accuracy of the audit on every shipped fault topology: its verdicts equal the injected
faults exactly, and pairs without a fault show no failure (no false alarms).

Each topology runs as a user runs it (``pytest --overlay-local=fixtures/X.yaml --overlay-audit``)
and the JSON report is compared with what the topology file injects, written out by hand below.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import pytest

from pytest_overlay.cli import leftovers
from pytest_overlay.models import Report
from pytest_overlay.naming import new_prefix
from pytest_overlay.report import render
from tests.conftest import needs_root

pytestmark = [needs_root, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
HOSTS3 = ("h1", "h2", "h3")
CROSSING = {("h1", "h3"), ("h2", "h3"), ("h3", "h1"), ("h3", "h2")}


class Expect:
    def __init__(self, hosts: Tuple[str, ...], pmtu: Dict[Tuple[str, str], Tuple[str, int]],
                 fails: Set[str], mtu_fits: int, hops: Optional[Dict[Tuple[str, str], str]] = None,
                 overhead: int = 50, args: Tuple[str, ...] = (), skips: Set[str] = frozenset(),  # type: ignore[assignment]
                 file: str = "", maybe: Set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.file = file
        #: failures that depend on which leg of a multipath underlay a flow is hashed onto
        self.maybe = maybe
        self.hosts, self.pmtu, self.fails, self.mtu_fits = hosts, pmtu, fails, mtu_fits
        self.hops = hops or {}
        self.overhead, self.args, self.skips = overhead, args, skips

    def pmtu_of(self, a: str, b: str) -> Tuple[str, int]:
        return self.pmtu.get((a, b), ("ok", 1500))


def _reach(pairs: Set[Tuple[str, str]]) -> Set[str]:
    return {f"reachability:{a}->{b}[vni=4096]" for a, b in pairs}


WAR = {p: ("ok", 1400) for p in CROSSING} | {("h1", "h3"): ("blackhole", 1400)}
ECMP = {p: ("ok", 1400) for p in CROSSING} | {("h1", "h3"): ("blackhole", 1400),
                                              ("h2", "h3"): ("blackhole", 1400)}
# With the MTU too high, large payloads stall only behind the blackhole: on the other crossing
# pairs the PTB comes back and the VTEP relays it into the endpoint (docs/checks.md).
EXPECT: Dict[str, Expect] = {
    "clean.yaml": Expect(HOSTS3, {}, set(), 1450),
    "war-story.yaml": Expect(
        HOSTS3, WAR, {"pmtu:h1->h3", "mtu:overlay0[vni=4096]"} | _reach({("h1", "h3")}), 1350,
        hops={("h1", "h3"): "198.18.1.254"}),
    "war-story-ipv6.yaml": Expect(
        HOSTS3, WAR, {"pmtu:h1->h3", "mtu:overlay0[vni=4096]"} | _reach({("h1", "h3")}), 1330,
        hops={("h1", "h3"): "2001:2:0:1::fe"}, overhead=70, args=("--overlay-mtu=1430",)),
    # The port audit names the blocked direction (into h3); isolation cannot judge pairs whose
    # traffic is not delivered at all, so those are skips, not alarms.
    "vxlan-port-blocked.yaml": Expect(
        HOSTS3, {}, _reach(CROSSING) | {"ports:h1->h3", "ports:h2->h3"}, 1450,
        skips={f"overhead:{a}->{b}[vni=4096]" for a, b in CROSSING}
        | {f"isolation:{a}->h3[vni={v}]" for a in ("h1", "h2") for v in (4096, 4097)}),
    "asymmetric.yaml": Expect(
        ("h1", "h2"), {("h1", "h2"): ("ok", 1400), ("h2", "h1"): ("blackhole", 1400)},
        {"pmtu:h2->h1", "mtu:overlay0[vni=4096]"} | _reach({("h2", "h1")}), 1350,
        hops={("h2", "h1"): "198.18.3.254"}),
    # Two equal-cost legs, one of them 1400 and eating PTBs towards lan1: the pmtu check's
    # flows see both legs and report the worst; the VTEP's own flow of a pair takes one leg,
    # so whether that pair's 64 KiB transfer stalls depends on the hash (fixed per lab).
    "ecmp.yaml": Expect(
        HOSTS3, ECMP, {"pmtu:h1->h3", "pmtu:h2->h3", "mtu:overlay0[vni=4096]"}, 1350,
        hops={("h1", "h3"): "198.18.1.254", ("h2", "h3"): "198.18.1.254"},
        maybe=_reach({("h1", "h3"), ("h2", "h3")})),
    "ecmp-ipv6.yaml": Expect(
        HOSTS3, ECMP, {"pmtu:h1->h3", "pmtu:h2->h3", "mtu:overlay0[vni=4096]"}, 1330,
        hops={("h1", "h3"): "2001:2:0:1::fe", ("h2", "h3"): "2001:2:0:1::fe"}, overhead=70,
        args=("--overlay-mtu=1430",), maybe=_reach({("h1", "h3"), ("h2", "h3")})),
    # The fix applied: with the recommended MTU every pair carries large payloads; the
    # blackhole is still reported (it bites the next thing that sends full-size packets).
    "war-story.yaml, fixed": Expect(
        HOSTS3, WAR, {"pmtu:h1->h3"}, 1350, hops={("h1", "h3"): "198.18.1.254"},
        args=("--overlay-mtu=1350",), file="war-story.yaml"),
}


def test_every_shipped_topology_has_expectations() -> None:
    assert sorted(p.name for p in FIXTURES.glob("*.yaml")) == sorted(
        k for k, e in EXPECT.items() if not e.file)


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_audit_verdicts_equal_injected_faults(name: str, tmp_path: Path) -> None:
    exp = EXPECT[name]
    prefix = new_prefix()
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         f"--overlay-local={FIXTURES / (exp.file or name)}", "--overlay-audit", f"--overlay-report={report}",
         f"--overlay-prefix={prefix}", "--color=no", *exp.args],
        cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert leftovers(prefix) == {}, f"run {prefix} left things behind"
    assert report.exists(), proc.stdout[-3000:] + proc.stderr[-2000:]
    data = json.loads(report.read_text())
    results = data["results"]
    problems: List[str] = []

    def key(r: dict) -> str:
        pair = f"{r['src']}->{r['dst']}" if r.get("dst") else r["src"]
        return f"{r['check']}:{pair}" + (f"[vni={r['vni']}]" if r.get("vni") is not None else "")

    got_fails = {key(r) for r in results if r["outcome"] in ("fail", "error")}
    got_skips = {key(r) for r in results if r["outcome"] == "skip"}
    if not exp.fails <= got_fails <= exp.fails | exp.maybe:
        problems.append(f"failures: missing {sorted(exp.fails - got_fails)}, "
                        f"false alarms {sorted(got_fails - exp.fails - exp.maybe)}")
    if got_skips != set(exp.skips):
        problems.append(f"skips: expected {sorted(exp.skips)}, got {sorted(got_skips)}")
    pm = {(r["src"], r["dst"]): r for r in results if r["check"] == "pmtu"}
    assert len(pm) == len(exp.hosts) * (len(exp.hosts) - 1)
    for (a, b), r in sorted(pm.items()):
        want = exp.pmtu_of(a, b)
        got = (r["details"]["verdict"], r["details"]["pmtu"])
        if got != want:
            problems.append(f"pmtu {a}->{b}: expected {want}, got {got} ({r['message']})")
        hop = (r["details"].get("hop") or {}).get("address")
        if hop != exp.hops.get((a, b)):
            problems.append(f"pmtu {a}->{b}: hop expected {exp.hops.get((a, b))}, got {hop}")
    for r in results:
        if (r["check"] == "overhead" and r["outcome"] == "pass"
                and r["details"]["overhead"] not in (exp.overhead, None)):
            problems.append(f"overhead {r['src']}->{r['dst']}: {r['details']['overhead']}")
    if not any(r["check"] == "overhead" and r["details"].get("overhead") == exp.overhead
               for r in results):
        problems.append(f"overhead: no pair measured {exp.overhead} bytes")
    (mtu,) = [r for r in results if r["check"] == "mtu"]
    if mtu["details"].get("recommended") != exp.mtu_fits:
        problems.append(f"mtu: recommended {mtu['details'].get('recommended')}, want {exp.mtu_fits}")
    if mtu["outcome"] == "fail":
        # the pairs the mtu check says stall are the pairs whose transfer did stall
        stalled = {k.split(":")[1].split("[")[0] for k in got_fails if k.startswith("reach")}
        may = {k.split(":")[1].split("[")[0] for k in exp.maybe}
        if not stalled <= set(mtu["details"]["stalling_pairs"]) <= stalled | may:
            problems.append(f"mtu: stalling pairs {mtu['details']['stalling_pairs']}, "
                            f"want {sorted(stalled)}")
    assert not problems, "\n".join(problems) + "\n" + proc.stdout[-4000:]
    # The tables as a CI log shows them (no terminal: 80 columns): nothing is cut off.
    narrow = render(Report.model_validate(data), width=80)
    assert "\u2026" not in narrow, [line for line in narrow.splitlines() if "\u2026" in line]
    if name.startswith("ecmp"):
        # Every crossing pair's flows saw both legs, and the verdicts say so.
        for a, b in CROSSING:
            groups = pm[(a, b)]["details"]["ecmp"]
            assert {g["pmtu"] for g in groups} == {1400, 1500}, (a, b, groups)
            assert pm[(a, b)]["details"]["flows"] == 8
            assert pm[(a, b)]["message"].startswith("flows disagree")
        assert "cross a multipath underlay whose legs differ" in mtu["message"]
    if name == "war-story.yaml":
        # The whole story in one run: the blackhole, its hop, and the fix.
        out = proc.stdout
        assert "blackhole" in out and "198.18.1.254" in out
        assert "com.docker.network.driver.mtu=1350" in out
        # ... and per pair, what the sending endpoint's TCP knew: behind the blackhole it
        # still used the full MTU; where the PTB came back, the VTEP had told it 1350.
        reach = {(r["src"], r["dst"]): r for r in results if r["check"] == "reachability"}
        assert "nothing told it the path is smaller" in reach[("h1", "h3")]["message"]
        assert reach[("h1", "h3")]["details"]["tcp"]["tcp_info"]["pmtu"] == 1450
        assert "0 of 65536 bytes acknowledged by the receiver" in reach[("h1", "h3")]["message"]
        for pair in CROSSING - {("h1", "h3")}:
            assert "path MTU is 1350, below its MTU of 1450" in reach[pair]["message"], pair
