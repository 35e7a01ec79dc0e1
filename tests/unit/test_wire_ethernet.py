"""Ethernet II frames and MAC helpers: exact bytes and errors."""

from __future__ import annotations

import pytest

from overlay_agent.wire import DecodeError
from overlay_agent.wire.ethernet import (
    BROADCAST,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_IPV6,
    HEADER_LEN,
    EthernetFrame,
    is_multicast,
    mac_to_bytes,
    mac_to_str,
)

MAC1 = b"\x02\x00\x00\x00\x00\x01"


def test_constants() -> None:
    assert (ETH_P_IP, ETH_P_ARP, ETH_P_IPV6, HEADER_LEN) == (0x0800, 0x0806, 0x86DD, 14)
    assert BROADCAST == b"\xff\xff\xff\xff\xff\xff"


@pytest.mark.parametrize(
    ("text", "raw"),
    [
        ("02:00:00:00:00:01", MAC1),
        ("AA:bb:CC:dd:EE:ff", b"\xaa\xbb\xcc\xdd\xee\xff"),
        ("aa-bb-cc-dd-ee-0f", b"\xaa\xbb\xcc\xdd\xee\x0f"),
        ("ff:ff:ff:ff:ff:ff", BROADCAST),
    ],
)
def test_mac_to_bytes(text: str, raw: bytes) -> None:
    assert mac_to_bytes(text) == raw


def test_mac_to_str_is_lowercase_colon_form() -> None:
    assert mac_to_str(b"\xaa\xbb\xcc\xdd\xee\x0f") == "aa:bb:cc:dd:ee:0f"
    assert mac_to_str(MAC1) == "02:00:00:00:00:01"
    assert mac_to_bytes(mac_to_str(BROADCAST)) == BROADCAST


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "02:00:00:00:00",
        "02:00:00:00:00:01:02",
        "02:00:00:00:00:1",
        "02:00:00:00:00:0g",
        "0200.0000.0001",
        "02:00:00-00:00:01",
        " 02:00:00:00:00:01",
        "+2:00:00:00:00:01",
    ],
)
def test_mac_to_bytes_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="MAC"):
        mac_to_bytes(bad)


@pytest.mark.parametrize("bad", [b"", b"\x00" * 5, b"\x00" * 7, "02:00:00:00:00:01"])
def test_mac_to_str_rejects(bad: bytes) -> None:
    with pytest.raises(ValueError, match="MAC"):
        mac_to_str(bad)


def test_is_multicast() -> None:
    assert is_multicast(BROADCAST)
    assert is_multicast(b"\x01\x00\x5e\x00\x00\x01")  # IPv4 multicast
    assert is_multicast(b"\x33\x33\x00\x00\x00\x01")  # IPv6 multicast
    assert not is_multicast(MAC1)
    assert not is_multicast(b"\x00\x11\x22\x33\x44\x55")


def test_exact_bytes() -> None:
    frame = EthernetFrame(dst=BROADCAST, src=MAC1, ethertype=ETH_P_ARP, payload=b"\xde\xad")
    expected = b"\xff\xff\xff\xff\xff\xff\x02\x00\x00\x00\x00\x01\x08\x06\xde\xad"
    assert frame.encode() == expected
    assert EthernetFrame.decode(expected) == frame


def test_decode_header_only() -> None:
    raw = MAC1 + BROADCAST + b"\x86\xdd"
    assert EthernetFrame.decode(raw) == EthernetFrame(MAC1, BROADCAST, ETH_P_IPV6, b"")


@pytest.mark.parametrize("size", [0, 1, 6, 13])
def test_short(size: int) -> None:
    with pytest.raises(DecodeError) as info:
        EthernetFrame.decode(b"\x00" * size)
    assert (info.value.layer, info.value.reason) == ("ethernet", "short")
    assert str(info.value) == f"ethernet: short header ({size} bytes, need 14)"


@pytest.mark.parametrize(
    "frame",
    [
        EthernetFrame(b"\x00" * 5, MAC1, ETH_P_IP, b""),
        EthernetFrame(MAC1, b"\x00" * 7, ETH_P_IP, b""),
        EthernetFrame(MAC1, MAC1, 0x10000, b""),
        EthernetFrame(MAC1, MAC1, -1, b""),
    ],
)
def test_encode_rejects(frame: EthernetFrame) -> None:
    with pytest.raises(ValueError):
        frame.encode()
