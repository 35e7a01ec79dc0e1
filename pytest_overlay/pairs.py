"""What a user's own test gets from the ``overlay_pair`` fixture: one ordered endpoint pair.

    def test_large_post(overlay_pair):                       # one test per pair: h1->h2[vni=4096]
        assert overlay_pair.tcp(nbytes=1 << 20)["ok"]
        assert overlay_pair.ping(size=1400, dont_fragment=True)["received"] == 3
"""

from __future__ import annotations

from typing import Any, Dict

from pytest_overlay.models import EndpointPlan


class Pair:
    def __init__(self, run: Any, src: EndpointPlan, dst: EndpointPlan, vni: int) -> None:
        self.run = run
        self.src = src
        self.dst = dst
        self.vni = vni

    @property
    def id(self) -> str:
        return f"{self.src.label}->{self.dst.label}[vni={self.vni}]"

    def __repr__(self) -> str:
        return f"<Pair {self.id}>"

    def ping(self, count: int = 3, size: int = 56, timeout: float = 1.0,
             dont_fragment: bool = False) -> Dict[str, Any]:
        """ICMP echo from src to dst: ``{"sent", "received", "rtts_ms", "errors"}``."""
        return dict(self.run.call(self.src.host, "ping", endpoint=self.src.name, dst=self.dst.ip,
                                  count=count, size=size, timeout=timeout,
                                  dont_fragment=dont_fragment))

    def tcp(self, nbytes: int = 65536, timeout: float = 5.0) -> Dict[str, Any]:
        """Send ``nbytes`` over TCP from src to dst's responder; ``ok`` when its SHA-256 matches."""
        return dict(self.run.call(self.src.host, "tcp_transfer", endpoint=self.src.name,
                                  dst=self.dst.ip, nbytes=nbytes, timeout=timeout))
