"""tshark, an independent dissector, reads the agent's packets as VXLAN with the right VNI.

The pair is the one of ``test_interop_kernel``: the agent on h1 (endpoint e0, VNI 4096), a kernel
vxlan device on h2. tshark captures and dissects live on h2's underlay interface (inside h2's
namespace) while the agent pings the kernel endpoint and ARPs for an address nobody has (a
flooded broadcast); the test then checks every VXLAN datagram the agent sent.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import pytest

from tests.conftest import needs_root
from tests.integration.test_interop_kernel import (
    AGENT_IP,
    AGENT_MAC,
    KERNEL_IP,
    KERNEL_MAC,
    PORT,
    VNI,
    build_pair,
)

_MISSING = [t for t in ("tshark", "ethtool", "bridge") if shutil.which(t) is None]

pytestmark = [
    needs_root,
    pytest.mark.skipif(bool(_MISSING), reason=f"needs {' and '.join(_MISSING)} (apt install "
                       "tshark ethtool iproute2) to capture and dissect the agent's VXLAN"),
]

NOBODY_IP = "10.10.0.99"  # on the overlay subnet, mapped nowhere: the agent floods its ARP
FIELDS = [
    "frame.number", "frame.protocols", "eth.src", "eth.dst", "ip.src", "ip.dst", "udp.srcport",
    "udp.dstport", "vxlan.flags", "vxlan.flag_i", "vxlan.reserved8", "vxlan.vni", "icmp.type",
    "icmp.checksum.status", "icmp.seq", "arp.opcode", "arp.src.hw_mac", "arp.dst.proto_ipv4",
]


class Capture:
    """tshark dissecting live on ``host``'s underlay interface, inside its namespace.

    A reader thread collects one row per packet (field -> occurrences, outer header first). A
    capture that has just started may miss its first packets, so :meth:`start` sends probes
    until one shows up: what follows is seen whole.
    """

    def __init__(self, lab: Any, host: str) -> None:
        self.ns = lab.host_ns[host]
        args = ["ip", "netns", "exec", self.ns, "tshark", "-n", "-l", "-i", "eth0",
                "-f", f"udp port {PORT}", "-a", "duration:30", "-T", "fields",
                "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"]
        for f in FIELDS:
            args += ["-e", f]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.rows: List[Dict[str, List[str]]] = []
        self.stderr = ""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            cols = line.rstrip("\n").split("\t")
            row = {f: (c.split(",") if c else []) for f, c in zip(FIELDS, cols)}
            with self._lock:
                self.rows.append(row)

    def snapshot(self) -> List[Dict[str, List[str]]]:
        with self._lock:
            return list(self.rows)

    def wait_for(self, pred: Callable[[List[Dict[str, List[str]]]], bool], timeout: float,
                 poke: Optional[Callable[[], None]] = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.snapshot()):
                return True
            if self.proc.poll() is not None:
                break
            if poke is not None:
                poke()
            time.sleep(0.05)
        return pred(self.snapshot())

    def stop(self) -> None:
        """Stop tshark as Ctrl-C does (it prints what it still holds), then reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()


def test_tshark_dissects_agent_vxlan(make_lab: Any) -> None:
    p = build_pair(make_lab)
    h1, h2 = p.lab.address("h1"), p.lab.address("h2")
    cap = Capture(p.lab, "h2")
    try:
        # Warm up with the kernel's own pings to e0 until tshark shows one of them.
        def kernel_ping() -> None:
            p.lab.run("h2", "ping", "-c", "1", "-W", "0.2", AGENT_IP, check=False)

        live = cap.wait_for(lambda rows: any(r["ip.src"][:1] == [h2] for r in rows), 10,
                            poke=kernel_ping)
        assert live, f"tshark in {cap.ns} saw nothing: {cap.proc.poll()} {cap.snapshot()}"
        out = p.agent.call("ping", endpoint="e0", dst=KERNEL_IP, count=3, timeout=1.0)
        assert out["received"] == 3, out
        miss = p.agent.call("ping", endpoint="e0", dst=NOBODY_IP, count=1, timeout=0.3)
        assert miss["received"] == 0, miss

        def done(rows: List[Dict[str, List[str]]]) -> bool:
            return sum(r["icmp.type"] == ["8"] and r["ip.src"][:1] == [h1] for r in rows) >= 3 \
                and any(r["arp.dst.proto_ipv4"] == [NOBODY_IP] for r in rows)

        cap.wait_for(done, 5)
    finally:
        cap.stop()
    rows = cap.snapshot()
    ours = [r for r in rows if r["ip.src"][:1] == [h1]]
    assert ours, f"no datagram from the agent's VTEP {h1} in the capture: {rows}"
    for r in ours:
        where = f"frame {r['frame.number']}: {r}"
        protos = r["frame.protocols"][0].split(":")
        assert protos[:5] == ["eth", "ethertype", "ip", "udp", "vxlan"], where
        assert "_ws.malformed" not in protos and "_ws.short" not in protos, where
        assert r["ip.dst"][0] == h2 and r["udp.dstport"] == [str(PORT)], where
        assert r["vxlan.vni"] == [str(VNI)], where
        # RFC 7348: flags 0x08 (I) and every reserved bit zero
        assert r["vxlan.flags"] == ["0x0800"] and r["vxlan.flag_i"] == ["1"], where
        assert r["vxlan.reserved8"] == ["0"], where
        # the inner frame is e0's own
        assert r["eth.src"][1:2] == [AGENT_MAC], where

    requests = [r for r in ours if r["icmp.type"] == ["8"]]
    assert len(requests) == 3, f"want the 3 echo requests e0 sent, got {requests}"
    for r in requests:
        assert r["ip.src"][1:] == [AGENT_IP] and r["ip.dst"][1:] == [KERNEL_IP], r
        assert r["eth.dst"][1:] == [KERNEL_MAC], r
        assert r["icmp.checksum.status"] == ["1"], f"inner ICMP checksum not good: {r}"

    arps = [r for r in ours if r["arp.opcode"] == ["1"]]
    assert any(r["arp.dst.proto_ipv4"] == [NOBODY_IP] and r["arp.src.hw_mac"] == [AGENT_MAC]
               and r["eth.dst"][1:] == ["ff:ff:ff:ff:ff:ff"] for r in arps), \
        f"no flooded ARP request for {NOBODY_IP} in {ours}"
    # ARP for the kernel endpoint was suppressed by the agent: none went over the underlay.
    assert not [r for r in arps if r["arp.dst.proto_ipv4"] == [KERNEL_IP]], arps

    # The kernel's replies dissect the same way (the capture reads both VTEPs alike).
    replies = [r for r in rows if r["ip.src"][:1] == [h2] and r["icmp.type"] == ["0"]]
    assert len(replies) == 3 and all(r["vxlan.vni"] == [str(VNI)] for r in replies), replies
