"""Lab topology files: validation errors name the file and key; routes are computed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_overlay.lab.topology import LabTopology

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.yaml")))
def test_shipped_topologies_load(name: str) -> None:
    topo = LabTopology.load(FIXTURES / name)
    assert len(topo.hosts) >= 2


def test_war_story_routes() -> None:
    topo = LabTopology.load(FIXTURES / "war-story.yaml")
    assert topo.next_hops("h1") == {"core": "198.18.1.254", "lan2": "198.18.1.254"}
    assert topo.next_hops("r1") == {"lan2": "198.18.2.2"}
    assert topo.next_hops("h3") == {"lan1": "198.18.3.254", "core": "198.18.3.254"}
    assert topo.family == 4
    assert LabTopology.load(FIXTURES / "war-story-ipv6.yaml").family == 6


def test_ecmp_routes_keep_every_equal_cost_gateway() -> None:
    topo = LabTopology.load(FIXTURES / "ecmp.yaml")
    assert topo.ecmp
    assert topo.gateways("h1")["lan2"] == ["198.18.1.253", "198.18.1.254"]
    assert topo.gateways("h3")["lan1"] == ["198.18.3.253", "198.18.3.254"]
    assert topo.gateways("ra1") == {"coreb": ["198.18.1.254"], "lan2": ["198.18.2.2"]}
    # without ecmp the first router listed takes the tie, as before
    assert topo.next_hops("h1")["lan2"] == "198.18.1.253"
    assert not LabTopology.load(FIXTURES / "war-story.yaml").ecmp


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "t.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(("text", "message"), [
    ("segments: [{name: a, subnet: 10.0.0.0/24}]\nhosts: []", "outside the lab ranges"),
    ("segments: [{name: a, subnet: 198.18.1.0/24}]\nhosts:\n - {name: h1, segment: a, address: 198.18.1.1}\n"
     " - {name: h2, segment: b, address: 198.18.1.2}", "unknown segment 'b'"),
    ("segments: [{name: a, subnet: 198.18.1.0/24}, {name: b, subnet: 198.18.2.0/24}]\nhosts:\n"
     " - {name: h1, segment: a, address: 198.18.1.1}\n - {name: h2, segment: b, address: 198.18.2.2}",
     "cannot be reached"),
    ("segments: [{name: a, subnet: 198.18.1.0/24}]\nhosts:\n - {name: h1, segment: a, address: 198.18.1.1}\n"
     " - {name: h2, segment: a, address: 198.18.1.2}\nfaults: [{at: r9, drop: ptb}]", "no host or router"),
    ("segments: [{name: a, subnet: 198.18.1.0/24}]\nhosts:\n - {name: h1, segment: a, address: 198.18.1.1}\n"
     " - {name: h2, segment: a, address: 198.18.1.2}\nfaults: [{at: h1, drop: port, port: 4789}]",
     "needs proto"),
    ("segments: [{name: a, subnet: 198.18.1.0/24}]\nhosts:\n - {name: h1, segment: a, address: 198.18.1.1}\n"
     " - {name: h2, segment: a, address: 198.18.1.1}", "used twice"),
    ("segments: [{name: a, subnet: 198.18.1.0/24}, {name: b, subnet: '2001:2::/64'}]\nhosts: []",
     "all IPv6"),
    ("- just a list", "expected a mapping"),
])
def test_bad_topologies_say_where(tmp_path: Path, text: str, message: str) -> None:
    p = _write(tmp_path, text)
    with pytest.raises(ValueError) as e:
        LabTopology.load(p)
    assert str(p) in str(e.value) and message in str(e.value)
