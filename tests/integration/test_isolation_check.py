"""The isolation check on a real lab: overlapping subnets on two VNIs, then everything removed."""

from __future__ import annotations

from typing import Callable

import pytest

from pytest_overlay.checks import isolation
from pytest_overlay.naming import namespaces
from pytest_overlay.runner import OverlayRun
from tests.conftest import needs_root

pytestmark = needs_root


@pytest.fixture
def run(local_run: Callable[..., OverlayRun]) -> OverlayRun:
    return local_run()


def test_isolation_check_passes_and_removes_its_network(run: OverlayRun) -> None:
    res = run.check("isolation")
    assert sorted(res) == sorted(isolation.test_ids(run.plan))
    assert {r.outcome for r in res.values()} == {"pass"}, [r.message for r in res.values()]
    pair = res["h1->h2[vni=4097]"]
    assert pair.details["delivered"] is True and pair.details["leaks"] == []
    assert pair.details["dst_ip"] == "10.10.0.3"  # the same address as h2's endpoint on 4096
    counters = res["counters[vni=4097]"].details
    assert counters["busy_vni"] == 4096 and counters["busy_rx_packets"] >= 6 * isolation.MARKS
    assert set(counters["counter_deltas"].values()) == {0}
    # The mirror endpoints are gone, the first network still works.
    assert not [n for n in namespaces(run.prefix) if n.endswith("-iso")]
    reach = run.check("reachability")
    assert {r.outcome for r in reach.values()} == {"pass"}, [
        f"{tid}: {r.message}" for tid, r in reach.items() if r.outcome != "pass"]
    # Captures were closed with the endpoints; a second capture_read has nothing to read.
    with pytest.raises(Exception, match="no capture running"):
        run.call("h1", "capture_read", endpoint="e0")
