"""An answer longer than asyncio's default line limit (64 KiB) reaches the controller.

Evidence captures travel as one base64 line; an 80 KiB pcap used to end the connection, and the
controller then reported a live agent "gone mid-run" (seen with --overlay-evidence on a lab
where eleven hosts could not reach a twelfth)."""

from __future__ import annotations

import base64
import struct
from typing import Any, Callable

from pytest_overlay.rpc import LINE_LIMIT
from tests.conftest import needs_root

pytestmark = needs_root


def test_a_capture_of_a_megabyte_transfer_comes_back_whole(local_run: Callable[..., Any]) -> None:
    run = local_run()
    run.start()
    assert run.start_error is None, run.start_error
    src, dst = run.plan.endpoints[0], run.plan.endpoints[1]
    peer = next(h.underlay for h in run.plan.hosts if h.name == dst.host)
    run.call(src.host, "evidence_capture_start", peer=peer)
    moved = run.call(src.host, "tcp_transfer", endpoint=src.name, dst=dst.ip, nbytes=1 << 20)
    assert moved["ok"], moved
    cap = run.call(src.host, "evidence_capture_stop", peer=peer)
    pcap = base64.b64decode(cap["pcap_b64"])
    assert len(cap["pcap_b64"]) > 1 << 16, len(cap["pcap_b64"])  # past asyncio's default limit
    assert len(cap["pcap_b64"]) < LINE_LIMIT
    # The sending side sees the VTEP's GSO sends whole: tens of frames for a megabyte.
    assert struct.unpack_from("<I", pcap)[0] == 0xA1B2C3D4 and cap["frames"] >= 10, cap["frames"]
    assert len(pcap) > 512 << 10, len(pcap)
    # ... and the agent is still there for the next call.
    assert run.call(src.host, "counters")["vnis"]["4096"]["tx_packets"] > 100


def test_a_capture_keeps_within_its_limit_and_counts_the_rest(local_run: Callable[..., Any]) -> None:
    run = local_run()
    src, dst = run.plan.endpoints[0], run.plan.endpoints[1]
    peer = next(h.underlay for h in run.plan.hosts if h.name == dst.host)
    run.call(src.host, "evidence_capture_start", peer=peer, limit=5)
    assert run.call(src.host, "tcp_transfer", endpoint=src.name, dst=dst.ip, nbytes=1 << 20)["ok"]
    cap = run.call(src.host, "evidence_capture_stop", peer=peer)
    assert cap["frames"] == 5 and cap["dropped"] > 0, {k: cap[k] for k in ("frames", "dropped")}
