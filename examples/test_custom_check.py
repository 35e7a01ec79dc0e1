"""A user's own checks with pytest-overlay's fixtures. Copy it next to your tests and run:

    sudo .venv/bin/pytest examples/test_custom_check.py --overlay-local=3

(or with ``--overlay-hosts=inventory.yaml`` against real machines). Every test that takes
``overlay_pair`` runs once per ordered pair of endpoints, with ids like ``h1->h2[vni=4096]``.
"""

from __future__ import annotations

# Our service posts JSON documents of up to 2 MiB; they must cross every pair.
PAYLOAD_BYTES = 2 * 1024 * 1024


def test_large_json_payload_crosses_the_overlay(overlay_pair):
    result = overlay_pair.tcp(nbytes=PAYLOAD_BYTES, timeout=10.0)
    assert result["ok"], f"{overlay_pair.id}: {result.get('error')}"


def test_latency_budget(overlay_pair):
    """p100 of 5 pings under 20 ms: generous for one machine, tighten for your fabric."""
    result = overlay_pair.ping(count=5)
    assert result["received"] == 5, result
    assert max(result["rtts_ms"]) < 20.0, result["rtts_ms"]


def test_full_size_packets_pass_without_fragmentation(overlay_pair):
    """A packet of exactly the overlay MTU, DF set: it passes or the MTU is wrong somewhere."""
    mtu = next(n.mtu for n in overlay_pair.run.plan.networks if n.vni == overlay_pair.vni)
    result = overlay_pair.ping(count=2, size=mtu - 28, dont_fragment=True)
    assert result["received"] == 2, f"{overlay_pair.id}: {mtu}-byte packets do not cross: {result}"
