"""Interop: the agent's userspace VTEP and a Linux kernel ``vxlan`` device on one VNI.

h1 runs the agent with one endpoint (e0, 10.10.0.2). h2 runs no agent: its namespace holds a
kernel ``vxlan`` device (VNI 4096, UDP 4789, learning on) with 10.10.0.3 and a default FDB entry
that floods to h1. Ping and TCP must pass in both directions between the two stacks, the kernel
must learn the agent's MAC behind h1's underlay address, and the agent must count the traffic
without drops. A kernel device on another VNI must not reach the agent's endpoint.

Each traffic test runs in three modes of the agent's transmit offloads:

* ``plain``: the kernel peer is an ordinary VTEP (the agent's TAP offloads stay off);
* ``tso-csum``: the agent's TAPs hand it 64 KiB TCP frames (``OVERLAY_TAP_TSO=1``) and it
  finishes every checksum itself, since the kernel peer takes no Remote Checksum Offload;
* ``rco``: the kernel device does RCO both ways (``remcsumtx remcsumrx``) and the agent is told
  so: it sends segments with unfinished checksums and the RCO fields, the kernel finishes them;
  the kernel sends RCO, the agent hands the frames on with the checksum left to its endpoint.

Everything runs inside the lab's namespaces. The processes started here are killed in ``finally``
blocks; the Python helpers also carry the run prefix on their command line, so the lab fixture's
clean-up by prefix finds them even if a test is interrupted (iperf3's cannot, it is killed by pid).
"""

from __future__ import annotations

import json
import select
import shutil
import subprocess
import sys
import time
from typing import Any, Iterator, NamedTuple

import pytest

from tests.conftest import needs_root

_MISSING = [t for t in ("ethtool", "bridge") if shutil.which(t) is None]

pytestmark = [
    needs_root,
    pytest.mark.skipif(bool(_MISSING), reason=f"needs {' and '.join(_MISSING)} (apt install "
                       "ethtool iproute2) to build and tune the kernel vxlan peer"),
]

VNI = 4096
PORT = 4789
MTU = 1450
SUBNET = "10.10.0.0/16"
AGENT_IP, AGENT_MAC = "10.10.0.2", "02:42:0a:0a:00:02"
KERNEL_IP, KERNEL_MAC = "10.10.0.3", "02:42:0a:0a:00:03"
MIB = 1 << 20
TCP_HINT = (" - if ping passes but TCP does not, check that tx checksum offload is off on the"
            " kernel vxlan device (ethtool -k)")

# A TCP server speaking the probe protocol (8-byte big-endian length, payload -> SHA-256).
# argv: bind address, port, run prefix (only so the lab fixture can find the process by prefix).
SERVER = r"""
import hashlib, socket, struct, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(8)
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    with conn:
        conn.settimeout(20)
        try:
            head = b""
            while len(head) < 8:
                chunk = conn.recv(8 - len(head))
                if not chunk:
                    break
                head += chunk
            if len(head) < 8:
                continue
            left = struct.unpack("!Q", head)[0]
            h = hashlib.sha256()
            while left:
                chunk = conn.recv(min(left, 65536))
                if not chunk:
                    break
                h.update(chunk)
                left -= len(chunk)
            if not left:
                conn.sendall(h.digest())
        except OSError as e:
            print("server:", e, file=sys.stderr, flush=True)
"""

# The matching client. argv: destination, port, byte count, run prefix. Exit 0 iff the digest
# the server returns is the SHA-256 of what was sent.
CLIENT = r"""
import hashlib, os, socket, struct, sys
dst, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = os.urandom(n)
with socket.create_connection((dst, port), timeout=10) as s:
    s.sendall(struct.pack("!Q", n) + data)
    digest = b""
    while len(digest) < 32:
        chunk = s.recv(32 - len(digest))
        if not chunk:
            break
        digest += chunk
ok = digest == hashlib.sha256(data).digest()
print("ok" if ok else "digest mismatch: got %r" % digest.hex())
sys.exit(0 if ok else 1)
"""


MODES = ("plain", "tso-csum", "rco")


class Pair(NamedTuple):
    lab: Any
    agent: Any
    ns: str  # h2's namespace, where the kernel vxlan device lives
    dev: str  # the kernel vxlan device's name
    ep_ns: str  # the agent endpoint's namespace
    mode: str = "plain"


def add_kernel_vtep(lab: Any, host: str, vni: int, ip: str, mac: str, remote: str,
                    rco: bool = False) -> str:
    """A kernel vxlan device in ``host``'s namespace that floods to VTEP ``remote``; with
    ``rco``, doing Remote Checksum Offload both ways."""
    dev = f"{lab.prefix}vx"
    extra = ["udpcsum", "remcsumtx", "remcsumrx"] if rco else []
    made = lab.run(host, "ip", "link", "add", dev, "type", "vxlan", "id", str(vni),
                   "dstport", str(PORT), "local", lab.address(host), "dev", "eth0", "learning",
                   *extra, check=False)
    if made.returncode != 0:
        pytest.skip(f"this kernel cannot make a vxlan device {' '.join(extra)}: "
                    f"{made.stderr.strip()}")
    lab.run(host, "ip", "link", "set", dev, "address", mac, "mtu", str(MTU))
    if not rco:
        # Over veth the kernel would leave inner TCP/UDP checksums to an offload that never
        # comes. With RCO they travel unfinished on purpose, and the receiver finishes them.
        lab.run(host, "ethtool", "-K", dev, "tx", "off")
    lab.run(host, "ip", "addr", "add", f"{ip}/16", "dev", dev)
    lab.run(host, "ip", "link", "set", dev, "up")
    lab.run(host, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", dev, "dst", remote)
    return dev


def build_pair(make_lab: Any, kernel_vni: int = VNI, mode: str = "plain") -> Pair:
    """h1: agent with endpoint e0 on ``VNI``; h2: kernel vxlan device on ``kernel_vni``."""
    lab = make_lab(2)
    env = {"OVERLAY_TAP_TSO": "1"} if mode == "tso-csum" else None
    agent = lab.agent("h1", env=env)
    agent.call("create_network", name="ov", vni=VNI, subnet=SUBNET, mtu=MTU)
    ep = agent.call("add_endpoint", network="ov", name="e0", ip=AGENT_IP, mac=AGENT_MAC)
    h1, h2 = lab.address("h1"), lab.address("h2")
    dev = add_kernel_vtep(lab, "h2", kernel_vni, KERNEL_IP, KERNEL_MAC, remote=h1,
                          rco=mode == "rco")
    members = agent.call("set_members", vteps=[h1, h2],
                         remcsum=[h2] if mode == "rco" else [])
    assert members["remcsum"] == ([h2] if mode == "rco" else []), members
    entries = [
        {"mac": AGENT_MAC, "ip": AGENT_IP, "vtep": [h1, PORT]},
        {"mac": KERNEL_MAC, "ip": KERNEL_IP, "vtep": [h2, PORT]},
    ]
    agent.call("set_mappings", vni=VNI, entries=entries, vteps=[[h2, PORT]])
    return Pair(lab, agent, lab.host_ns["h2"], dev, ep["netns"], mode)


def start(ns: str, *cmd: str) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> str:
    """Kill a process started by :func:`start`; returns its stderr (for failure messages)."""
    if proc.poll() is None:
        proc.kill()
    try:
        _, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        err = ""
    return err or ""


def wait_line(proc: subprocess.Popen, want: str, timeout: float = 5.0) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        line = proc.stdout.readline()
        if not line:
            break
        if want in line:
            return
    raise AssertionError(f"{proc.args!r} never said {want!r}: {stop(proc)}")


def wait_listening(lab: Any, ns: str, port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = lab.run("", "ss", "-Hltn", f"sport = :{port}", netns=ns).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on TCP {port} in {ns} after {timeout:g} s")


def assert_clean_counters(agent: Any, mode: str = "plain", bulk: bool = False) -> dict:
    """The agent moved packets both ways on ``VNI`` and dropped nothing; after a bulk TCP
    transfer from the agent's side, the offloads of ``mode`` did the work."""
    c = agent.call("counters")
    dp = c["dataplane"]
    assert dp["features"]["tso"] == (mode != "plain"), dp
    if mode == "plain":
        assert dp["rco_datagrams"] == dp["csum_finished"] == dp["tso_frames"] == 0, dp
    elif mode == "rco":
        assert dp["csum_finished"] == 0, dp  # nothing finished in Python: the kernel did it
        if bulk:
            assert dp["rco_datagrams"] > 0 and dp["tso_frames"] > 0, dp
    else:
        assert dp["rco_datagrams"] == 0, dp  # no RCO to a VTEP not agreed on it
        if bulk:
            assert dp["csum_finished"] > 0 and dp["tso_frames"] > 0, dp
    v = c["vnis"][str(VNI)]
    assert v["tx_packets"] > 0 and v["rx_packets"] > 0, c
    assert v["drops"] == {}, c
    assert c["drops"] == {}, c
    assert c["io_errors"] == {}, c
    return c


@pytest.fixture(params=MODES)
def pair(make_lab: Any, request: Any) -> Iterator[Pair]:
    """Name: pair / Scope: function / Depends: make_lab. Agent on h1, kernel vxlan on h2, in
    each of :data:`MODES`."""
    yield build_pair(make_lab, mode=request.param)


def test_ping_agent_to_kernel_and_back(pair: Pair) -> None:
    out = pair.agent.call("ping", endpoint="e0", dst=KERNEL_IP, count=5, timeout=1.0)
    assert out["received"] == 5, out
    k = pair.lab.run("h2", "ping", "-c", "3", "-i", "0.2", "-W", "1", AGENT_IP, check=False,
                     timeout=15)
    assert k.returncode == 0 and " 0% packet loss" in k.stdout, k.stdout + k.stderr
    # The kernel learned the agent's MAC behind h1's underlay address (outer source is right).
    fdb = pair.lab.run("h2", "bridge", "fdb", "show", "dev", pair.dev).stdout
    assert any(AGENT_MAC in line and f"dst {pair.lab.address('h1')}" in line
               for line in fdb.splitlines()), fdb
    c = assert_clean_counters(pair.agent, pair.mode)
    v = c["vnis"][str(VNI)]
    # 5 agent requests + 3 kernel replies out, 5 replies + 3 requests (+ the kernel's ARP) in.
    assert v["tx_packets"] >= 8 and v["rx_packets"] >= 8, c
    assert v["arp_suppressed"] >= 1, c


def test_full_size_frames_both_ways(pair: Pair) -> None:
    """Both VTEPs agree on the overhead: a 1450-byte inner packet with DF crosses each way."""
    payload = MTU - 28  # inner IPv4 + ICMP headers
    out = pair.agent.call("ping", endpoint="e0", dst=KERNEL_IP, count=2, size=payload,
                          dont_fragment=True, timeout=1.0)
    assert out["received"] == 2, out
    k = pair.lab.run("h2", "ping", "-c", "2", "-i", "0.2", "-W", "1", "-M", "do", "-s",
                     str(payload), AGENT_IP, check=False, timeout=15)
    assert k.returncode == 0 and " 0% packet loss" in k.stdout, k.stdout + k.stderr
    assert_clean_counters(pair.agent, pair.mode)


def test_tcp_agent_to_kernel(pair: Pair) -> None:
    port = 5007
    srv = start(pair.ns, sys.executable, "-c", SERVER, KERNEL_IP, str(port), pair.lab.prefix)
    try:
        wait_line(srv, "ready")
        out = pair.agent.call("tcp_transfer", endpoint="e0", dst=KERNEL_IP, nbytes=MIB,
                              timeout=10.0, port=port)
        assert out["ok"], f"{out} (server: {stop(srv)}){TCP_HINT}"
        assert out["sent"] == MIB, out
    finally:
        stop(srv)
    assert_clean_counters(pair.agent, pair.mode, bulk=True)


def test_tcp_kernel_to_agent(pair: Pair) -> None:
    # The agent's Responder listens on TCP 7 in the endpoint's namespace.
    r = pair.lab.run("h2", sys.executable, "-c", CLIENT, AGENT_IP, "7", str(MIB), pair.lab.prefix,
                     check=False, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr + TCP_HINT
    assert r.stdout.strip() == "ok", r.stdout
    c = assert_clean_counters(pair.agent, pair.mode)
    # The kernel's segments arrived with their checksums left to the agent's side (RCO).
    assert (c["dataplane"]["rco_received"] > 0) == (pair.mode == "rco"), c["dataplane"]


@pytest.mark.skipif(shutil.which("iperf3") is None, reason="needs iperf3 (apt install iperf3)")
def test_iperf3_both_ways(pair: Pair) -> None:
    """Kernel TCP stacks on both ends, the agent's VTEP in between, both directions.

    An iperf3 run of ``-n`` bytes ends when the sender has written them: the receiver stops
    counting (and resets the data connection) when the end-of-test message overtakes data still
    in flight (esnet/iperf#382), so ``sum_received`` may be short of ``-n``. The test asks that
    the sender wrote it all, the receiver got data, and the VTEP carried at least what the
    receiver counted (frames include headers, so its byte counter can only be higher).
    """
    port = 5201
    # iperf3's command line cannot carry the prefix, so it is killed by pid in ``finally``.
    srv = start(pair.ep_ns, "iperf3", "-s", "-B", AGENT_IP, "-p", str(port))
    try:
        wait_listening(pair.lab, pair.ep_ns, port)
        # kernel -> agent (the agent receives), then agent -> kernel (-R: the agent sends)
        for reverse, key in (([], "rx_bytes"), (["-R"], "tx_bytes")):
            before = pair.agent.call("counters")["vnis"][str(VNI)][key]
            args = ["iperf3", "-c", AGENT_IP, "-p", str(port), "-n", str(MIB), "-J", *reverse]
            r = pair.lab.run("h2", *args, check=False, timeout=20)
            assert r.returncode == 0, f"{args}: {r.stdout[-2000:]} {r.stderr}"
            end = json.loads(r.stdout)["end"]
            sent, got = end["sum_sent"]["bytes"], end["sum_received"]["bytes"]
            assert sent >= MIB and got > 0, f"{args}: sent {sent}, received {got}"
            carried = pair.agent.call("counters")["vnis"][str(VNI)][key] - before
            assert carried >= got, f"{args}: received {got} but the VTEP's {key} grew {carried}"
    finally:
        stop(srv)
    assert_clean_counters(pair.agent, pair.mode, bulk=True)


def test_kernel_on_other_vni_is_isolated(make_lab: Any) -> None:
    """A kernel device on VNI 4097 neither reaches e0 (VNI 4096) nor is reached by it."""
    p = build_pair(make_lab, kernel_vni=VNI + 1)
    k = p.lab.run("h2", "ping", "-c", "1", "-w", "1", AGENT_IP, check=False, timeout=15)
    assert k.returncode != 0, k.stdout
    out = p.agent.call("ping", endpoint="e0", dst=KERNEL_IP, count=2, timeout=0.3)
    assert out["received"] == 0, out
    c = p.agent.call("counters")
    # The kernel's ARP requests arrived on VNI 4097, which the agent does not serve.
    assert c["drops"].get("unknown-vni", 0) >= 1, c
    assert str(VNI + 1) not in c["vnis"], c
    assert c["vnis"][str(VNI)]["rx_packets"] == 0, c
    # Nothing from VNI 4096 was taken in by the kernel device either.
    fdb = p.lab.run("h2", "bridge", "fdb", "show", "dev", p.dev).stdout
    assert AGENT_MAC not in fdb, fdb

