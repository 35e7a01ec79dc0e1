"""UDP codec: exact bytes with the pseudo-header checksum, zero checksum, errors."""

from __future__ import annotations

import pytest

from overlay_agent.wire import DecodeError, UdpDatagram

SRC, DST = "10.0.0.1", "10.0.0.2"
DGRAM = UdpDatagram(sport=1234, dport=4789, payload=b"hi")
# pseudo 0a00 0001 0a00 0002 0011 000a + header 04d2 12b5 000a 0000 + data 6869
# sum = 0x9418 -> checksum ~0x9418 = 0x6be7 (worked by hand)
WITH_CSUM = bytes.fromhex("04d212b5000a6be7") + b"hi"
NO_CSUM = bytes.fromhex("04d212b5000a0000") + b"hi"


def test_exact_bytes_with_checksum() -> None:
    assert DGRAM.encode(SRC, DST) == WITH_CSUM
    assert UdpDatagram.decode(WITH_CSUM, SRC, DST) == DGRAM
    assert UdpDatagram.decode(WITH_CSUM) == DGRAM


def test_exact_bytes_without_ips() -> None:
    assert DGRAM.encode() == NO_CSUM
    assert UdpDatagram.decode(NO_CSUM) == DGRAM
    # a zero checksum means "none" and is accepted even when IPs are given
    assert UdpDatagram.decode(NO_CSUM, SRC, DST) == DGRAM


def _payload_summing_to_zero() -> bytes:
    # pick the last two payload bytes so that the computed checksum is 0
    base = UdpDatagram(1, 2, b"\x00\x00")
    csum = int.from_bytes(base.encode(SRC, DST)[6:8], "big")
    # adding the word ``csum`` raises the sum to 0xffff -> checksum 0
    return csum.to_bytes(2, "big")


def test_computed_zero_is_sent_as_ffff() -> None:
    payload = _payload_summing_to_zero()
    raw = UdpDatagram(1, 2, payload).encode(SRC, DST)
    assert raw[6:8] == b"\xff\xff"
    assert UdpDatagram.decode(raw, SRC, DST) == UdpDatagram(1, 2, payload)


def test_trailing_bytes_ignored() -> None:
    assert UdpDatagram.decode(WITH_CSUM + b"\x00" * 6, SRC, DST) == DGRAM


@pytest.mark.parametrize("size", [0, 7])
def test_short(size: int) -> None:
    with pytest.raises(DecodeError) as info:
        UdpDatagram.decode(WITH_CSUM[:size])
    assert (info.value.layer, info.value.reason) == ("udp", "short")
    assert str(info.value) == f"udp: short header ({size} bytes, need 8)"


@pytest.mark.parametrize("length", [0, 7, 11, 0xFFFF])
def test_bad_length(length: int) -> None:
    raw = WITH_CSUM[:4] + length.to_bytes(2, "big") + WITH_CSUM[6:]
    with pytest.raises(DecodeError) as info:
        UdpDatagram.decode(raw)
    assert (info.value.layer, info.value.reason) == ("udp", "bad-length")


def test_bad_checksum() -> None:
    raw = WITH_CSUM[:-1] + b"j"
    assert UdpDatagram.decode(raw).payload == b"hj"  # unchecked without IPs
    with pytest.raises(DecodeError) as info:
        UdpDatagram.decode(raw, SRC, DST)
    assert (info.value.layer, info.value.reason) == ("udp", "bad-checksum")
    assert "10.0.0.1:1234 -> 10.0.0.2:4789" in str(info.value)
    with pytest.raises(DecodeError):
        UdpDatagram.decode(WITH_CSUM, SRC, "10.0.0.3")


def test_one_ip_is_an_error() -> None:
    with pytest.raises(ValueError, match="both"):
        DGRAM.encode(SRC)
    with pytest.raises(ValueError, match="both"):
        UdpDatagram.decode(WITH_CSUM, dst_ip=DST)


@pytest.mark.parametrize(
    "dgram",
    [UdpDatagram(-1, 1, b""), UdpDatagram(1, 0x10000, b""), UdpDatagram(1, 1, b"\x00" * 65528)],
)
def test_encode_rejects(dgram: UdpDatagram) -> None:
    with pytest.raises(ValueError):
        dgram.encode()
