"""Dotted-quad IPv4 strings <-> 4 packed bytes (the address form the codecs expose)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache


@lru_cache(maxsize=4096)
def ip_to_bytes(ip: str) -> bytes:
    """``"192.0.2.1"`` -> ``b"\\xc0\\x00\\x02\\x01"``; ValueError on anything else."""
    try:
        return ipaddress.IPv4Address(ip).packed
    except ValueError as e:
        raise ValueError(f"not an IPv4 address: {ip!r} ({e})") from e


def ip_to_str(data: bytes) -> str:
    """4 packed bytes -> dotted quad; ValueError unless exactly 4 bytes."""
    if len(data) != 4:
        raise ValueError(f"an IPv4 address is 4 bytes, got {len(data)}")
    return f"{data[0]}.{data[1]}.{data[2]}.{data[3]}"
