"""Fuzz: 10^5 random and mutated datagrams at a running VTEP from a member address in the lab.

Afterwards the agent still answers, the overlay still forwards a ping both ways, and the VTEP's
receive counters account for every datagram exactly once (delivered + dropped by reason +
probes == sent, plus what h2's own VTEP sent meanwhile). The sender goes in chunks and waits until each chunk is accounted for, so the
kernel's socket buffer never overflows (if it did, RcvbufErrors in h1's namespace says so).
"""

from __future__ import annotations

import random
import struct
from typing import Callable, List

from overlay_agent.core.probelog import raw_probe, vxlan_probe
from tests.conftest import needs_root
from tests.integration._vtep_lab import (
    EPS,
    VNI,
    rx_accounted,
    sender_in,
    two_vteps,
    udp_errors,
    wait_for,
)

pytestmark = needs_root

FRAMES = 100_000
CHUNK = 1000
SEED = 4789


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def templates() -> List[bytes]:
    """Well-formed datagrams the mutations start from."""
    hdr = b"\x08\x00\x00\x00" + struct.pack("!I", VNI << 8)
    (ip1, mac1), (ip2, mac2) = EPS["h1"], EPS["h2"]
    ipv4 = (b"\x45\x00\x00\x20\x00\x01\x00\x00\x40\x11\x00\x00" + bytes(map(int, ip2.split(".")))
            + bytes(map(int, ip1.split("."))))
    udp = b"\x9c\x40\x00\x07\x00\x0c\x00\x00fuzz"
    unicast = hdr + _mac(mac1) + _mac(mac2) + b"\x08\x00" + ipv4 + udp
    arp = (hdr + b"\xff" * 6 + _mac(mac2) + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01"
           + _mac(mac2) + bytes(map(int, ip2.split("."))) + bytes(6) + bytes(map(int, ip1.split("."))))
    return [unicast, arp, vxlan_probe("fuzz1", 1), raw_probe("fuzz2", 2, b"x" * 20)]


def mutators(rng: random.Random, bases: List[bytes]) -> List[Callable[[], bytes]]:
    def flip() -> bytes:
        b = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)

    def truncate() -> bytes:
        b = rng.choice(bases)
        return b[:rng.randrange(len(b))]

    def extend() -> bytes:
        return rng.choice(bases) + rng.randbytes(rng.randint(1, 1300))

    def flags() -> bytes:
        b = rng.choice(bases)
        return bytes((rng.randrange(256),)) + b[1:]

    def vni() -> bytes:
        b = rng.choice(bases)
        return b[:4] + rng.randbytes(3) + b[7:]

    def noise() -> bytes:
        return rng.randbytes(rng.choice((rng.randint(0, 16), rng.randint(0, 120), rng.randint(0, 1400))))

    def probe_noise() -> bytes:
        lead = rng.choice(bases[2:])
        return lead[:rng.randint(0, 40)] + rng.randbytes(rng.randint(0, 40))

    return [flip, flip, truncate, extend, flags, vni, noise, noise, probe_noise]


def tx_total(agent) -> int:  # type: ignore[no-untyped-def]
    return sum(int(v["tx_packets"]) for v in agent.call("counters")["vnis"].values())


def test_fuzz_hundred_thousand_frames(make_lab) -> None:  # type: ignore[no-untyped-def]
    lab = make_lab(2)
    a1, a2 = two_vteps(lab)
    rng = random.Random(SEED)
    make = mutators(rng, templates())
    sock = sender_in(lab, "h2")
    dst = (lab.address("h1"), 4789)
    before = a1.call("vtep_stats")
    h2_tx_before = tx_total(a2)
    udp_before = udp_errors(lab, "h1")
    base = rx_accounted(before)
    sent = 0
    try:
        while sent < FRAMES:
            for _ in range(CHUNK):
                sock.sendto(rng.choice(make)(), dst)
            sent += CHUNK
            target = base + sent
            if not wait_for(lambda t=target: rx_accounted(a1.call("vtep_stats")) >= t, 30):
                lost = udp_errors(lab, "h1").get("RcvbufErrors", 0) - udp_before.get("RcvbufErrors", 0)
                raise AssertionError(
                    f"after {sent} datagrams the VTEP accounted for "
                    f"{rx_accounted(a1.call('vtep_stats')) - base}; RcvbufErrors in h1: {lost}")
    finally:
        sock.close()
    after = a1.call("vtep_stats")
    # Exactly once each: the fuzz, plus whatever h2's own VTEP sent h1 meanwhile (h1's endpoint
    # answers some delivered fuzz, e.g. ARP, and h2's endpoint may answer back).
    assert wait_for(lambda: rx_accounted(a1.call("vtep_stats")) - base
                    == FRAMES + tx_total(a2) - h2_tx_before, 5)
    after = a1.call("vtep_stats")
    assert rx_accounted(after) - base == FRAMES + tx_total(a2) - h2_tx_before
    drops = {k: v - before["rx_drops"].get(k, 0) for k, v in after["rx_drops"].items()}
    # The mix reached every rejecting branch, some frames were delivered, some were probes.
    for reason in ("short-header", "no-i-flag", "unknown-vni", "runt-frame", "unknown-destination"):
        assert drops.get(reason, 0) > 0, (reason, drops)
    assert after["rx_packets"] > before["rx_packets"]
    assert after["probes"] > before["probes"]
    assert "non-member-vtep" not in drops  # h2 is a member: its datagrams were all looked at
    # No crash: the agent answers and the overlay forwards both ways.
    assert a1.call("hello", protocol=1)["pid"]
    assert a1.call("ping", endpoint="e0", dst=EPS["h2"][0], count=3)["received"] == 3
    assert a2.call("ping", endpoint="e0", dst=EPS["h1"][0], count=3)["received"] == 3
    assert not [k for k in a1.call("counters")["io_errors"] if k.startswith("recv")]
