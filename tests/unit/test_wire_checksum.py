"""RFC 1071 checksum: the big-integer shortcut against a plain word loop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from overlay_agent.wire import internet_checksum
from overlay_agent.wire.checksum import ipv4_pseudo_header, ones_complement_sum


def naive_sum(data: bytes) -> int:
    """One's-complement sum of 16-bit big-endian words, the textbook way."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def naive_checksum(data: bytes) -> int:
    return ~naive_sum(data) & 0xFFFF


def test_rfc1071_example() -> None:
    # RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_complement_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x00\x00",
        b"\x00" * 31,
        b"\xff",
        b"\xff\xff",
        b"\xff" * 64,
        b"\xff\xfe\x00\x01",  # sums to 0xffff
        b"\x80\x00\x80\x00",  # carry out of the top
        b"\x01",
        b"\x01\x02\x03",
        bytes(range(256)) * 5,
    ],
)
def test_edges_match_naive(data: bytes) -> None:
    assert ones_complement_sum(data) == naive_sum(data)
    assert internet_checksum(data) == naive_checksum(data)


@given(st.binary(max_size=2000))
def test_matches_naive(data: bytes) -> None:
    assert internet_checksum(data) == naive_checksum(data)


@given(st.lists(st.sampled_from([b"\x00\x00", b"\xff\xff", b"\x00\x01", b"\xff\xfe"]), max_size=40))
def test_matches_naive_on_edge_words(words: list[bytes]) -> None:
    data = b"".join(words)
    assert internet_checksum(data) == naive_checksum(data)


@given(st.binary(max_size=600).filter(lambda d: len(d) % 2 == 0))
def test_inserting_checksum_verifies_to_zero(data: bytes) -> None:
    csum = internet_checksum(data)
    assert internet_checksum(data + csum.to_bytes(2, "big")) == 0


def test_odd_length_is_padded() -> None:
    assert internet_checksum(b"\x12\x34\x56") == internet_checksum(b"\x12\x34\x56\x00")


def test_pseudo_header() -> None:
    assert ipv4_pseudo_header("10.0.0.1", "10.0.0.2", 17, 10) == bytes.fromhex(
        "0a0000010a0000020011000a"
    )
