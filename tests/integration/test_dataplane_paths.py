"""The data plane's fast path (UDP GSO/GRO) and its portable one-frame path carry the same data."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import time

import pytest

from overlay_agent.io import netns
from tests.conftest import needs_root

pytestmark = needs_root

EPS = {"h1": ("10.12.0.2", "02:42:0a:0c:00:02"), "h2": ("10.12.0.3", "02:42:0a:0c:00:03")}


def _pair(make_lab, rco=False, env=None):
    """Two agents with an endpoint each; ``rco``: told that the other takes Remote Checksum
    Offload (as the plugin tells every agent); ``env``: host -> environment for its agent."""
    lab = make_lab(2)
    agents = {h: lab.agent(h, env=(env or {}).get(h)) for h in EPS}
    for host, agent in agents.items():
        agent.call("create_network", name="ov", vni=4100, subnet="10.12.0.0/16", mtu=1450)
        ip, mac = EPS[host]
        agent.call("add_endpoint", network="ov", name="e0", ip=ip, mac=mac)
    entries = [{"mac": mac, "ip": ip, "vtep": [lab.address(h), 4789]} for h, (ip, mac) in EPS.items()]
    for agent in agents.values():
        members = [lab.address(h) for h in EPS]
        agent.call("set_members", vteps=members, remcsum=members if rco else [])
        agent.call("set_mappings", vni=4100, entries=entries,
                   vteps=[[lab.address(h), 4789] for h in EPS])
    return lab, agents


@pytest.mark.parametrize("mode", ["fast", "fast-nocoalesce", "fast-2threads", "portable"])
def test_tcp_transfer_4mib(make_lab, monkeypatch, mode):
    # The agents inherit the environment: OVERLAY_DATAPLANE picks the path, OVERLAY_TAP_GRO
    # receive coalescing into TAPs with a virtio header, OVERLAY_DATAPLANE_THREADS the loop.
    monkeypatch.setitem(os.environ, "OVERLAY_DATAPLANE", mode.split("-")[0])
    monkeypatch.setitem(os.environ, "OVERLAY_TAP_GRO", "0" if "nocoalesce" in mode else "1")
    monkeypatch.setitem(os.environ, "OVERLAY_DATAPLANE_THREADS",
                        "2" if "2threads" in mode else "1")
    _, agents = _pair(make_lab)
    for src, dst in (("h1", "h2"), ("h2", "h1")):
        res = agents[src].call("tcp_transfer", endpoint="e0", dst=EPS[dst][0], nbytes=4 << 20,
                               timeout=20)
        assert res["ok"], (mode, src, dst, res)
    c1 = agents["h1"].call("counters")
    c2 = agents["h2"].call("counters")
    v1, v2 = c1["vnis"]["4100"], c2["vnis"]["4100"]
    # What one side counted as sent the other counted as received (no loss on veth; the last
    # FIN/ACK may still be in flight when the counters are read).
    assert v2["rx_packets"] > 2900 and v1["rx_packets"] > 2900
    assert abs(v1["tx_packets"] - v2["rx_packets"]) <= 4
    assert abs(v2["tx_packets"] - v1["rx_packets"]) <= 4
    assert not c1["io_errors"] and not c2["io_errors"], (c1["io_errors"], c2["io_errors"])
    d1, d2 = c1["dataplane"], c2["dataplane"]
    coalesce = mode in ("fast", "fast-2threads")
    assert d1["features"]["coalesce"] is coalesce and d2["features"]["coalesce"] is coalesce
    if coalesce:
        # Both receivers merged segments: a 4 MiB stream comes in GRO batches of several.
        for d in (d1, d2):
            assert d["merged_writes"] > 10 and d["merged_segments"] > 2 * d["merged_writes"], d
    else:
        assert d1["merged_writes"] == 0 and d2["merged_writes"] == 0


@pytest.mark.parametrize("mode", ["fast", "mixed"])
def test_tcp_with_tso_and_remote_checksum_offload(make_lab, monkeypatch, mode):
    """Agents agreed on RCO: the sender's TAP hands over 64 KiB TCP frames, cut into segments
    whose checksums nobody computes on the way; the receiver hands them on unfinished (merged,
    or one by one) and its endpoint's kernel takes them. "mixed": the receiver h2 runs the
    portable path (plain TAPs), so it must finish every checksum itself instead."""
    monkeypatch.setitem(os.environ, "OVERLAY_DATAPLANE", "fast")
    monkeypatch.setitem(os.environ, "OVERLAY_TAP_GRO", "1")
    monkeypatch.setitem(os.environ, "OVERLAY_DATAPLANE_THREADS", "1")
    env = {"h2": {"OVERLAY_DATAPLANE": "portable"}} if mode == "mixed" else None
    _, agents = _pair(make_lab, rco=True, env=env)
    for src, dst in (("h1", "h2"), ("h2", "h1")):
        res = agents[src].call("tcp_transfer", endpoint="e0", dst=EPS[dst][0], nbytes=4 << 20,
                               timeout=20)
        assert res["ok"], (mode, src, dst, res)
    c1, c2 = agents["h1"].call("counters"), agents["h2"].call("counters")
    assert not c1["io_errors"] and not c2["io_errors"], (c1["io_errors"], c2["io_errors"])
    assert c1["drops"] == {} and c2["drops"] == {}, (c1["drops"], c2["drops"])
    d1, d2 = c1["dataplane"], c2["dataplane"]
    # h1 sent TSO frames as RCO segments and finished no checksum in Python.
    assert d1["features"]["tso"] is True, d1
    assert d1["tso_frames"] > 10 and d1["rco_datagrams"] > 20 * d1["tso_frames"] // 2, d1
    assert d1["csum_finished"] == 0, d1
    assert d2["rco_received"] > 0, d2
    if mode == "fast":
        assert d1["rco_received"] > 0, d1
        assert d2["features"]["tso"] is True and d2["csum_finished"] == 0, d2
        # One GSO send per TSO frame, one superframe per receive: ~40 segments each.
        assert d1["gso_datagrams"] > 20 * d1["gso_calls"] // 2, d1
        assert d2["merged_segments"] > 20 * d2["merged_writes"], d2
    else:
        # The portable side's plain TAPs: its endpoint finishes its own checksums, no RCO back.
        assert d2["features"]["tso"] is False and d2["merged_writes"] == 0, d2
        assert d1["rco_received"] == 0 and d2["rco_datagrams"] == 0, (d1, d2)


def _payload(seq: int) -> bytes:
    head = struct.pack("!I", seq)
    return head + hashlib.sha256(head).digest() * 43  # 4 + 1376 bytes


@pytest.mark.parametrize("yield_", ["1", "0"])
def test_udp_bursts_arrive_intact_through_coalescing(make_lab, monkeypatch, yield_):
    """UDP datagrams merged into GSO_UDP_L4 superframes reach the socket one by one, intact;
    with OVERLAY_DATAPLANE_YIELD=1 (the default) each agent gives the CPU away after a burst
    (h1 after sending one to the underlay, h2 after each superframe), with 0 never."""
    monkeypatch.setitem(os.environ, "OVERLAY_DATAPLANE", "fast")
    monkeypatch.setitem(os.environ, "OVERLAY_TAP_GRO", "1")
    monkeypatch.setitem(os.environ, "OVERLAY_DATAPLANE_YIELD", yield_)
    lab, agents = _pair(make_lab)
    with netns.inside(f"{lab.prefix}-h2-e0"):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with netns.inside(f"{lab.prefix}-h1-e0"):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
        rx.bind((EPS["h2"][0], 9100))
        rx.settimeout(0.5)
        tx.connect((EPS["h2"][0], 9100))
        got = {}
        n = 4000
        for burst in range(0, n, 40):  # bursts, so the underlay GRO has runs to hand over
            for seq in range(burst, burst + 40):
                tx.send(_payload(seq))
            time.sleep(0.002)
        deadline = time.monotonic() + 20
        while len(got) < n and time.monotonic() < deadline:
            try:
                data = rx.recv(2048)
            except socket.timeout:
                break
            seq = struct.unpack_from("!I", data)[0]
            assert data == _payload(seq), f"datagram {seq} damaged"
            got[seq] = got.get(seq, 0) + 1
    finally:
        rx.close()
        tx.close()
    d1 = agents["h1"].call("counters")["dataplane"]
    d2 = agents["h2"].call("counters")["dataplane"]
    assert all(v == 1 for v in got.values()), "duplicated datagrams"
    # Overload may drop some (UDP), but most arrive and many came in merged writes.
    assert len(got) > n * 0.5, (len(got), d2)
    assert d2["merged_writes"] > 0 and d2["merged_segments"] > 2 * d2["merged_writes"], d2
    if yield_ == "1":
        assert d2["yields_rx"] == d2["merged_writes"], d2
        # 100 bursts of 40 back-to-back sends: some TAP reads of h1 find 4 frames or more.
        assert d1["yields_tx"] > 0, d1
    else:
        assert d1["yields_rx"] == d1["yields_tx"] == d2["yields_rx"] == d2["yields_tx"] == 0


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("threads", ["1", "2"])
def test_a_vanished_tap_is_dropped_from_the_loop(make_lab, monkeypatch, threads):
    """An endpoint's TAP deleted under the agent (``ip link del`` inside the container): the
    data plane stops watching it and counts it once, instead of spinning on a descriptor that
    can never be read again, and the other endpoints keep their traffic."""
    monkeypatch.setitem(os.environ, "OVERLAY_DATAPLANE", "fast")
    monkeypatch.setitem(os.environ, "OVERLAY_DATAPLANE_THREADS", threads)
    lab, agents = _pair(make_lab)
    h2 = agents["h2"]
    h2.call("add_endpoint", network="ov", name="e1", ip="10.12.0.4", mac="02:42:0a:0c:00:04")
    netns.ip("link", "del", "eth0", netns=f"{lab.prefix}-h2-e1")
    deadline = time.monotonic() + 5
    while not h2.call("counters")["io_errors"].get("tap-read:ENODEV"):
        assert time.monotonic() < deadline, h2.call("counters")["io_errors"]
        time.sleep(0.05)
    cpu0 = _cpu_seconds(h2.proc.pid)
    time.sleep(1.0)
    used = _cpu_seconds(h2.proc.pid) - cpu0
    assert used < 0.3, f"the agent used {used:.2f} s of CPU in 1 s with a dead TAP"
    assert h2.call("counters")["io_errors"]["tap-read:ENODEV"] == 1
    res = agents["h1"].call("ping", endpoint="e0", dst=EPS["h2"][0], count=3)
    assert res["received"] == 3, res
    assert agents["h1"].call("tcp_transfer", endpoint="e0", dst=EPS["h2"][0],
                             nbytes=1 << 20, timeout=10)["ok"]
