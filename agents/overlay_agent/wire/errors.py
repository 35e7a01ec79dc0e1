"""The one error type every wire decoder raises on malformed input."""

from __future__ import annotations

from typing import Any, Tuple


class DecodeError(ValueError):
    """Bytes that cannot be decoded as the named protocol layer.

    ``layer`` names the codec ("vxlan", "ethernet", "arp", "ipv4", "udp", "icmp"),
    ``reason`` is a short kebab-case tag that code and tests can match on
    ("short", "no-i-flag", "bad-checksum", ...), and ``detail`` is the human
    sentence shown by ``str()``, e.g. ``"vxlan: short header (5 bytes, need 8)"``.
    """

    def __init__(self, layer: str, reason: str, detail: str = "") -> None:
        self.layer = layer
        self.reason = reason
        self.detail = detail or reason
        super().__init__(f"{layer}: {self.detail}")

    def __reduce__(self) -> Tuple[Any, ...]:
        # Keep the exception picklable (e.g. across multiprocessing in tests).
        return (type(self), (self.layer, self.reason, self.detail))


def need(layer: str, what: str, have: int, want: int) -> DecodeError:
    """Build the usual "short" error: ``"<layer>: short <what> (N bytes, need M)"``."""
    return DecodeError(layer, "short", f"short {what} ({have} bytes, need {want})")
