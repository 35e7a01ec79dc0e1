"""The underlay port audit against real nftables faults in the lab's host namespaces.

Three hosts. In h2, a rule drops VXLAN-looking UDP/4789 (I flag set in the first payload byte)
coming from h1 only: a "VXLAN-aware middlebox" on one direction of one pair. In h3, the Raft
port is dropped (filtered) and SSH is answered with a TCP reset (rejected). The audit must name
exactly those faults, call h1->h2 asymmetric, and pass every other probe. With
``--overlay-evidence`` the failing pairs get their folder: snapshots naming the rule, a pcap.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from pytest_overlay.checks import ports
from pytest_overlay.runner import OverlayRun
from tests.conftest import needs_root

pytestmark = needs_root


def nft(ns: str, ruleset: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset, text=True,
                   check=True, capture_output=True, timeout=30)


@pytest.fixture
def run(local_run: Callable[..., OverlayRun], tmp_path: Path) -> OverlayRun:
    return local_run(evidence_dir=tmp_path / "evidence")


def test_port_audit_names_injected_faults_and_asymmetry(run: OverlayRun, tmp_path: Path) -> None:
    run.start()
    assert run.start_error is None, run.start_error
    p = run.prefix
    raft = ports.tcp_ports(run.plan)["raft"]
    nft(f"{p}-h2", f"""
table inet {p}_fault {{
  chain input {{
    type filter hook input priority 0; policy accept;
    ip saddr 198.18.0.1 udp dport 4789 @th,64,8 & 0x08 == 0x08 counter drop
  }}
}}""")
    nft(f"{p}-h3", f"""
table inet {p}_fault {{
  chain input {{
    type filter hook input priority 0; policy accept;
    tcp dport {raft} counter drop
    tcp dport 22 counter reject with tcp reset
  }}
}}""")
    res = run.check("ports")
    assert sorted(res) == sorted(ports.test_ids(run.plan))
    verdicts = {tid: {k: v["verdict"] for k, v in r.details["probes"].items()}
                for tid, r in res.items()}

    # h1->h2: VXLAN eaten, random UDP on the same port passes; the reverse direction is clean.
    r12 = res["h1->h2"]
    assert r12.outcome == "fail"
    assert verdicts["h1->h2"] == {"vxlan": "blocked", "udp": "pass", "raft": "pass", "ssh": "pass"}
    assert r12.details["asymmetric"] == ["vxlan"]
    assert "asymmetric: h2->h1 passes" in r12.message
    assert "drops VXLAN by content" in r12.message
    assert r12.details["probes"]["vxlan"]["received"] == 0
    assert r12.details["probes"]["udp"]["received"] == ports.PROBES

    # Into h3: Raft filtered (dropped SYN), SSH rejected (RST despite a listener).
    for src in ("h1", "h2"):
        r = res[f"{src}->h3"]
        assert r.outcome == "fail", r
        assert verdicts[f"{src}->h3"] == {"vxlan": "pass", "udp": "pass", "raft": "filtered",
                                          "ssh": "rejected"}
        assert sorted(r.details["asymmetric"]) == ["raft", "ssh"]
        assert f"Raft {raft}/tcp filtered" in r.message and "SSH 22/tcp rejected" in r.message

    for tid in ("h2->h1", "h3->h1", "h3->h2"):
        assert res[tid].outcome == "pass", res[tid]
        assert set(verdicts[tid].values()) == {"pass"}

    # Evidence for exactly the failing pairs; it shows the rule and the path.
    ev = tmp_path / "evidence" / "ports"
    assert sorted(d.name for d in ev.iterdir()) == ["h1--h2", "h1--h3", "h2--h3"]
    h2_text = (ev / "h1--h2" / "h2.txt").read_text()
    assert f"table inet {p}_fault" in h2_text and "@th,64,8" in h2_text
    assert "198.18.0.1 dev eth0" in h2_text  # ip route get toward the peer
    assert "mtu 1500" in h2_text
    snap = json.loads((ev / "h1--h2" / "h1.json").read_text())
    assert "4096" in snap["vtep_counters"]["vnis"]
    assert json.loads((ev / "h1--h2" / "result.json").read_text())["outcome"] == "fail"
    # The re-probe's VXLAN datagrams are in h1's capture (leaving) but h2 logged none of them.
    pcap = (ev / "h1--h2" / "h1-underlay.pcap").read_bytes()
    assert pcap[:4] == b"\xd4\xc3\xb2\xa1" and len(pcap) > 24 + 16
    assert snap["underlay_frames_captured"] >= 3
    assert res["h1->h2"].details["evidence"].endswith("h1--h2")
    # The re-probe of h1->h3 repeated the TCP handshakes: h3's capture holds the SYNs to the
    # Raft port (dropped by its firewall after the capture point) and the reset for SSH.
    tshark = subprocess.run(["tshark", "-r", str(ev / "h1--h3" / "h3-underlay.pcap"), "-T",
                             "fields", "-e", "tcp.dstport", "-e", "tcp.flags.reset", "-Y", "tcp"],
                            capture_output=True, text=True, timeout=60)
    if tshark.returncode == 0:
        rows = {tuple(line.split("\t")) for line in tshark.stdout.splitlines()}
        assert (str(raft), "False") in rows or (str(raft), "0") in rows, rows
