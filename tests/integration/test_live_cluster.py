"""The swarm-preflight recipe for nodes where an overlay already runs, over SSH.

Three SSH lab hosts, each already "running Swarm": a kernel VXLAN device holds 4789/udp (MTU
1450, but 1500 on h3) and a stand-in for dockerd holds 7946/tcp and 7946/udp. Run as a user
would at first, each host's row must name the VXLAN device; run as examples/swarm-preflight.md
says (``vxlan_port: 4790`` in the inventory, ``--overlay-raft-port=7947``,
``--overlay-ports=swarm,4789/udp``), every check must pass, with the held UDP ports watched
arriving on the receivers' interfaces, except kernel-overlays on h3, whose MTU the underlay
cannot carry.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml

from pytest_overlay.naming import new_prefix
from tests.conftest import needs_root
from tests.integration.sshlab import (
    all_pass_but_lab_host_skips,
    assert_no_trace,
    pytest_cmd,
    ssh_lab,
)

pytestmark = [needs_root, pytest.mark.slow]
__all__ = ["ssh_lab"]

#: holds 7946/tcp and 7946/udp on every address, as dockerd does, and answers nothing
DOCKERD = """
import socket, sys, time
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 7946)); t.listen(64)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 7946))
print("ready", flush=True)
time.sleep(600)
"""


def _audit(tmp: Path, inv: Path, prefix: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        pytest_cmd(tmp, f"--overlay-hosts={inv}", "--overlay-audit", "--color=no",
                   f"--overlay-report={tmp / 'report.json'}", f"--overlay-prefix={prefix}",
                   *extra),
        cwd=tmp, capture_output=True, text=True, timeout=240)


def test_the_live_cluster_recipe_where_swarm_holds_its_ports(ssh_lab,  # type: ignore[no-untyped-def]
                                                                    tmp_path: Path) -> None:
    sl = ssh_lab(3)
    standins: List[subprocess.Popen] = []
    try:
        for host, ns in sl.host_ns.items():
            addr = sl.address(host)
            # Swarm's default overlay MTU, but on h3 someone kept the kernel's 1500
            mtu = "1500" if host == "h3" else "1450"
            for args in (["link", "add", "vxsw", "mtu", mtu, "type", "vxlan", "id", "4096",
                          "dstport", "4789", "local", addr], ["link", "set", "vxsw", "up"]):
                subprocess.run(["ip", "-n", ns, *args], check=True, timeout=30)
            p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", DOCKERD, ns],
                                 stdout=subprocess.PIPE, text=True)
            standins.append(p)
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"

        data: Dict[str, Any] = sl.inventory()
        inv = tmp_path / "inv.yaml"
        inv.write_text(yaml.safe_dump(data, sort_keys=False))
        first = new_prefix()
        proc = _audit(tmp_path, inv, first)
        assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
        for h in json.loads((tmp_path / "report.json").read_text())["hosts"]:
            assert h["status"] == "error", h
            assert "held by the kernel VXLAN device vxsw" in h["error"], h["error"]
            assert "vxlan_port under overlay:" in h["error"]
        assert_no_trace(first, sl)

        inv.write_text(yaml.safe_dump({**data, "overlay": {"vxlan_port": 4790}}, sort_keys=False))
        second = new_prefix()
        proc = _audit(tmp_path, inv, second, "--overlay-raft-port=7947",
                      "--overlay-ports=swarm,4789/udp")
        assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-2000:]
        results = json.loads((tmp_path / "report.json").read_text())["results"]
        # h3's overlay MTU is too high for the 1500-byte underlay; everything else passes
        kov = {r["src"]: r for r in results if r["check"] == "kernel-overlays"}
        assert {h: r["outcome"] for h, r in kov.items()} == {"h1": "pass", "h2": "pass",
                                                              "h3": "fail"}
        assert "vxsw (VNI 4096, kernel) has MTU 1500" in kov["h3"]["message"]
        assert "which leaves 1450" in kov["h3"]["message"]
        assert "ip link set dev vxsw mtu 1450" in kov["h3"]["message"]
        assert "vxsw (VNI 4096, kernel) MTU 1450 fits (up to 1450)" in kov["h1"]["message"]
        assert "Overlays already running" in proc.stdout
        rest = [r for r in results if r["check"] != "kernel-overlays"]
        assert all_pass_but_lab_host_skips(rest) == []
        ports = [r for r in results if r["check"] == "ports"]
        assert len(ports) == 6
        for r in ports:
            probes = r["details"]["probes"]
            for held in ("4789/udp", "7946/udp"):
                assert probes[held]["listener"] == "capture", (r["src"], r["dst"], probes[held])
                assert probes[held]["verdict"] == "pass" and probes[held]["received"] == 5
            assert probes["vxlan"]["port"] == 4790 and probes["raft"]["port"] == 7947
            assert "4789/udp pass at the receiver's interface" in r["message"]
        assert_no_trace(second, sl)
    finally:
        for p in standins:
            p.kill()
            p.wait()
