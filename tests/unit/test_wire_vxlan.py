"""VXLAN header codec (RFC 7348): exact bytes, flags, reserved bits, errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from overlay_agent.wire import DecodeError
from overlay_agent.wire.vxlan import (
    FLAG_I,
    HEADER_LEN,
    MAX_VNI,
    VXLAN_PORT,
    VxlanHeader,
    decap,
    encap,
    header_bytes,
)

vnis = st.integers(min_value=0, max_value=MAX_VNI)


def test_constants() -> None:
    assert (VXLAN_PORT, HEADER_LEN, FLAG_I, MAX_VNI) == (4789, 8, 0x08, 0xFFFFFF)


@pytest.mark.parametrize(
    ("vni", "expected"),
    [
        (4096, b"\x08\x00\x00\x00\x00\x10\x00\x00"),
        (0, b"\x08\x00\x00\x00\x00\x00\x00\x00"),
        (1, b"\x08\x00\x00\x00\x00\x00\x01\x00"),
        (100, b"\x08\x00\x00\x00\x00\x00\x64\x00"),
        (0x123456, b"\x08\x00\x00\x00\x12\x34\x56\x00"),
        (MAX_VNI, b"\x08\x00\x00\x00\xff\xff\xff\x00"),
    ],
)
def test_exact_bytes(vni: int, expected: bytes) -> None:
    assert VxlanHeader(vni).encode() == expected
    assert header_bytes(vni) == expected
    assert encap(vni, b"") == expected
    assert VxlanHeader.decode(expected) == VxlanHeader(vni=vni, flags=FLAG_I)
    assert decap(expected) == (vni, b"")


def test_encap_decap_frame() -> None:
    frame = bytes(range(60))
    datagram = encap(4096, frame)
    assert datagram == b"\x08\x00\x00\x00\x00\x10\x00\x00" + frame
    assert decap(datagram) == (4096, frame)
    # decode looks at the header only
    assert VxlanHeader.decode(datagram) == VxlanHeader(4096)


@given(vnis)
def test_i_flag_set_and_reserved_zero_on_send(vni: int) -> None:
    for data in (VxlanHeader(vni).encode(), header_bytes(vni), encap(vni, b"x")[:8]):
        assert len(data) == HEADER_LEN
        assert data[0] == FLAG_I  # I set, the 7 reserved flag bits zero
        assert data[1:4] == b"\x00\x00\x00"
        assert data[7] == 0
        assert int.from_bytes(data[4:7], "big") == vni


@given(
    vni=vnis,
    flags=st.integers(0, 0xFF).map(lambda f: f | FLAG_I),
    reserved=st.binary(min_size=3, max_size=3),
    last=st.integers(0, 0xFF),
    payload=st.binary(max_size=32),
)
def test_reserved_bits_ignored_on_receive(
    vni: int, flags: int, reserved: bytes, last: int, payload: bytes
) -> None:
    data = bytes([flags]) + reserved + vni.to_bytes(3, "big") + bytes([last]) + payload
    header = VxlanHeader.decode(data)
    assert header.vni == vni
    assert header.flags == flags
    assert header.reserved_flags == flags & ~FLAG_I
    assert decap(data) == (vni, payload)


@pytest.mark.parametrize("size", range(HEADER_LEN))
def test_short_header(size: int) -> None:
    data = b"\x08" * size
    for decode in (VxlanHeader.decode, decap):
        with pytest.raises(DecodeError) as info:
            decode(data)
        err = info.value
        assert (err.layer, err.reason) == ("vxlan", "short")
        assert str(err) == f"vxlan: short header ({size} bytes, need 8)"


def test_short_header_message_example() -> None:
    with pytest.raises(DecodeError, match=r"^vxlan: short header \(5 bytes, need 8\)$"):
        decap(b"\x08\x00\x00\x00\x00")


@pytest.mark.parametrize("flags", [0x00, 0x80, 0x04, 0xF7])
def test_missing_i_flag(flags: int) -> None:
    data = bytes([flags]) + b"\x00\x00\x00\x00\x10\x00\x00"
    for decode in (VxlanHeader.decode, decap):
        with pytest.raises(DecodeError) as info:
            decode(data)
        err = info.value
        assert (err.layer, err.reason) == ("vxlan", "no-i-flag")
        assert str(err).startswith("vxlan: I flag (0x08) not set")
        assert f"{flags:#04x}" in str(err)
        assert isinstance(err, ValueError)


@pytest.mark.parametrize("vni", [-1, MAX_VNI + 1, 1 << 32])
def test_vni_out_of_range(vni: int) -> None:
    with pytest.raises(ValueError, match="VNI"):
        VxlanHeader(vni).encode()
    with pytest.raises(ValueError, match="VNI"):
        header_bytes(vni)
    with pytest.raises(ValueError, match="VNI"):
        encap(vni, b"")


def test_flags_out_of_range() -> None:
    with pytest.raises(ValueError, match="flags"):
        VxlanHeader(1, flags=0x108).encode()


def test_crafted_flags_are_sent_as_given() -> None:
    # encode writes flags as given so tests can craft odd headers on purpose
    assert VxlanHeader(7, flags=0x0C).encode() == b"\x0c\x00\x00\x00\x00\x00\x07\x00"


def test_header_bytes_is_cached() -> None:
    assert header_bytes(4242) is header_bytes(4242)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    raw = b"\x08\x00\x00\x00\x00\x10\x00\x00abc"
    for data in (bytearray(raw), memoryview(raw)):
        # typed as bytes; buffers from recv_into work too
        assert VxlanHeader.decode(data) == VxlanHeader(4096)  # type: ignore[arg-type]
        vni, frame = decap(data)  # type: ignore[arg-type]
        assert vni == 4096
        assert bytes(frame) == b"abc"


def test_header_is_frozen() -> None:
    header = VxlanHeader(1)
    with pytest.raises(AttributeError):
        header.vni = 2  # type: ignore[misc]
