"""IPv4 codec: exact header bytes and checksum, fragments, options, errors."""

from __future__ import annotations

import pytest

from overlay_agent.wire import DecodeError, IPv4Packet
from overlay_agent.wire.checksum import internet_checksum
from overlay_agent.wire.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP

# The classic worked example: 192.168.0.1 -> 192.168.0.199, UDP, DF, 115 bytes.
CLASSIC_HEADER = bytes.fromhex("45000073000040004011b861c0a80001c0a800c7")
CLASSIC_PAYLOAD = bytes(range(95))
CLASSIC = IPv4Packet(
    src="192.168.0.1",
    dst="192.168.0.199",
    proto=PROTO_UDP,
    payload=CLASSIC_PAYLOAD,
    ttl=64,
    dont_fragment=True,
)


def test_constants() -> None:
    assert (PROTO_ICMP, PROTO_TCP, PROTO_UDP) == (1, 6, 17)


def test_classic_header_checksum() -> None:
    encoded = CLASSIC.encode()
    assert encoded[:20] == CLASSIC_HEADER
    assert encoded[10:12] == b"\xb8\x61"
    assert encoded[20:] == CLASSIC_PAYLOAD
    assert IPv4Packet.decode(encoded) == CLASSIC
    assert internet_checksum(CLASSIC_HEADER) == 0


def test_exact_bytes_with_fields() -> None:
    packet = IPv4Packet(
        src="10.0.0.1",
        dst="10.0.0.2",
        proto=PROTO_ICMP,
        payload=b"",
        ttl=1,
        ident=0x1234,
        more_fragments=True,
        frag_offset=1480,
        tos=0xB8,
    )
    # 1480 / 8 = 185 = 0x0b9, MF = 0x2000 -> 0x20b9; checksum worked by hand:
    # 45b8+0014+1234+20b9+0101+0a00+0001+0a00+0002 = 0x8dbd -> ~ = 0x7242
    expected = bytes.fromhex("45b80014123420b9010172420a0000010a000002")
    assert packet.encode() == expected
    assert IPv4Packet.decode(expected) == packet


def test_options() -> None:
    packet = IPv4Packet("10.0.0.1", "10.0.0.2", PROTO_UDP, b"xy", options=b"\x01\x01\x01\x00")
    raw = packet.encode()
    assert raw[0] == 0x46
    assert raw[2:4] == b"\x00\x1a"  # 24 + 2
    assert raw[20:24] == b"\x01\x01\x01\x00"
    assert internet_checksum(raw[:24]) == 0
    assert IPv4Packet.decode(raw) == packet
    assert packet.header_len == 24
    assert packet.total_len == 26


def test_trailing_padding_ignored() -> None:
    raw = CLASSIC.encode()
    assert IPv4Packet.decode(raw + b"\x00" * 10) == CLASSIC


@pytest.mark.parametrize("size", [0, 1, 19])
def test_short(size: int) -> None:
    with pytest.raises(DecodeError) as info:
        IPv4Packet.decode(CLASSIC_HEADER[:size])
    assert (info.value.layer, info.value.reason) == ("ipv4", "short")
    assert str(info.value) == f"ipv4: short header ({size} bytes, need 20)"


def test_short_options() -> None:
    raw = IPv4Packet("1.2.3.4", "5.6.7.8", 6, b"", options=b"\x00" * 8).encode()
    with pytest.raises(DecodeError) as info:
        IPv4Packet.decode(raw[:24])
    assert info.value.reason == "short"


@pytest.mark.parametrize("first", [0x65, 0x05, 0xF5])
def test_bad_version(first: int) -> None:
    with pytest.raises(DecodeError) as info:
        IPv4Packet.decode(bytes([first]) + CLASSIC.encode()[1:])
    assert (info.value.layer, info.value.reason) == ("ipv4", "bad-version")


@pytest.mark.parametrize("first", [0x40, 0x44])
def test_bad_ihl(first: int) -> None:
    with pytest.raises(DecodeError) as info:
        IPv4Packet.decode(bytes([first]) + CLASSIC.encode()[1:])
    assert info.value.reason == "bad-ihl"


@pytest.mark.parametrize("total", [0, 19, 116, 0xFFFF])
def test_bad_length(total: int) -> None:
    raw = bytearray(CLASSIC.encode())
    raw[2:4] = total.to_bytes(2, "big")
    with pytest.raises(DecodeError) as info:
        IPv4Packet.decode(bytes(raw), verify_checksum=False)
    assert (info.value.layer, info.value.reason) == ("ipv4", "bad-length")


def test_bad_checksum() -> None:
    raw = bytearray(CLASSIC.encode())
    raw[8] = 63  # TTL changed, checksum left alone
    with pytest.raises(DecodeError) as info:
        IPv4Packet.decode(bytes(raw))
    assert (info.value.layer, info.value.reason) == ("ipv4", "bad-checksum")
    assert "192.168.0.1 -> 192.168.0.199" in str(info.value)
    assert IPv4Packet.decode(bytes(raw), verify_checksum=False).ttl == 63


def test_payload_only_checksum_is_not_header_business() -> None:
    raw = bytearray(CLASSIC.encode())
    raw[-1] ^= 0xFF
    assert IPv4Packet.decode(bytes(raw)).payload[-1] == CLASSIC_PAYLOAD[-1] ^ 0xFF


@pytest.mark.parametrize(
    "kwargs",
    [
        {"options": b"\x01"},
        {"options": b"\x01" * 44},
        {"frag_offset": 7},
        {"frag_offset": 0x2000 * 8},
        {"ttl": 256},
        {"ident": -1},
        {"tos": 0x100},
        {"proto": 256},
        {"payload": b"\x00" * 65516},
        {"src": "10.0.0"},
        {"dst": "::1"},
    ],
)
def test_encode_rejects(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"src": "10.0.0.1", "dst": "10.0.0.2", "proto": 17, "payload": b""}
    fields.update(kwargs)
    with pytest.raises(ValueError):
        IPv4Packet(**fields).encode()  # type: ignore[arg-type]


def test_max_size_packet() -> None:
    packet = IPv4Packet("10.0.0.1", "10.0.0.2", 17, b"\x00" * 65515)
    assert len(packet.encode()) == 65535
