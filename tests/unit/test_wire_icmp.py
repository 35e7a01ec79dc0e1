"""ICMP codec: echo, frag-needed, exact bytes and checksum errors."""

from __future__ import annotations

import pytest

from overlay_agent.wire import DecodeError, IcmpMessage, IPv4Packet
from overlay_agent.wire.icmp import (
    CODE_FRAG_NEEDED,
    ICMP_DEST_UNREACH,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_TIME_EXCEEDED,
    MAX_QUOTE,
    echo_reply,
    echo_request,
    frag_needed,
)


def test_constants() -> None:
    assert (ICMP_ECHO_REPLY, ICMP_DEST_UNREACH, ICMP_ECHO_REQUEST) == (0, 3, 8)
    assert (ICMP_TIME_EXCEEDED, CODE_FRAG_NEEDED) == (11, 4)


def test_echo_request_exact_bytes() -> None:
    # 0800 + 0001 + 0001 = 0802 -> checksum f7fd
    msg = echo_request(1, 1)
    assert msg.encode() == bytes.fromhex("0800f7fd00010001")
    assert IcmpMessage.decode(bytes.fromhex("0800f7fd00010001")) == msg
    assert (msg.ident, msg.seq) == (1, 1)


def test_echo_request_with_payload() -> None:
    # 0800 + 1234 + 0005 + 6162 + 6300 = 0xde9b -> checksum 2164
    msg = echo_request(0x1234, 5, b"abc")
    assert msg.encode() == bytes.fromhex("08002164123400056162") + b"c"
    assert IcmpMessage.decode(msg.encode()) == msg
    assert (msg.type, msg.code, msg.ident, msg.seq, msg.payload) == (8, 0, 0x1234, 5, b"abc")


def test_echo_reply() -> None:
    reply = echo_reply(echo_request(7, 9, b"ping"))
    assert reply == IcmpMessage(ICMP_ECHO_REPLY, 0, b"\x00\x07\x00\x09", b"ping")
    with pytest.raises(ValueError, match="echo request"):
        echo_reply(reply)


def test_frag_needed() -> None:
    original = IPv4Packet("10.0.0.1", "10.0.0.2", 17, b"\x00" * 1472, dont_fragment=True).encode()
    msg = frag_needed(1450, original)
    assert (msg.type, msg.code, msg.next_hop_mtu) == (ICMP_DEST_UNREACH, CODE_FRAG_NEEDED, 1450)
    assert msg.rest == b"\x00\x00\x05\xaa"
    assert msg.payload == original[:MAX_QUOTE]
    assert MAX_QUOTE == 548
    raw = msg.encode()
    assert raw[:2] == b"\x03\x04"
    assert raw[4:8] == b"\x00\x00\x05\xaa"
    assert IcmpMessage.decode(raw) == msg
    assert msg.payload[:20] == original[:20]  # the quoted header names the flow


def test_frag_needed_short_original_quoted_whole() -> None:
    original = IPv4Packet("10.0.0.1", "10.0.0.2", 17, b"12345678").encode()
    msg = frag_needed(1400, original)
    assert msg.payload == original
    assert IcmpMessage.decode(msg.encode()).next_hop_mtu == 1400


@pytest.mark.parametrize("size", [0, 4, 7])
def test_short(size: int) -> None:
    with pytest.raises(DecodeError) as info:
        IcmpMessage.decode(bytes.fromhex("0800f7fd00010001")[:size])
    assert (info.value.layer, info.value.reason) == ("icmp", "short")
    assert str(info.value) == f"icmp: short header ({size} bytes, need 8)"


def test_bad_checksum() -> None:
    raw = bytes.fromhex("0800f7fd00010002")
    with pytest.raises(DecodeError) as info:
        IcmpMessage.decode(raw)
    assert (info.value.layer, info.value.reason) == ("icmp", "bad-checksum")
    assert "0xf7fd" in str(info.value)
    assert IcmpMessage.decode(raw, verify_checksum=False).seq == 2


@pytest.mark.parametrize(
    "msg",
    [
        IcmpMessage(256, 0, b"\x00" * 4, b""),
        IcmpMessage(8, -1, b"\x00" * 4, b""),
        IcmpMessage(8, 0, b"\x00" * 3, b""),
        IcmpMessage(8, 0, b"\x00" * 5, b""),
    ],
)
def test_encode_rejects(msg: IcmpMessage) -> None:
    with pytest.raises(ValueError):
        msg.encode()


def test_frag_needed_rejects_mtu() -> None:
    with pytest.raises(ValueError, match="MTU"):
        frag_needed(0x10000, b"")
