"""DecodeError: attributes, message shape, pickling, package re-export."""

from __future__ import annotations

import pickle

import overlay_agent.wire as wire
from overlay_agent.wire import DecodeError
from overlay_agent.wire.errors import DecodeError as DecodeErrorFromModule


def test_reexported() -> None:
    assert DecodeError is DecodeErrorFromModule
    assert "DecodeError" in wire.__all__
    for name in wire.__all__:
        assert hasattr(wire, name)


def test_attributes_and_message() -> None:
    err = DecodeError("vxlan", "short", "short header (5 bytes, need 8)")
    assert isinstance(err, ValueError)
    assert (err.layer, err.reason, err.detail) == (
        "vxlan",
        "short",
        "short header (5 bytes, need 8)",
    )
    assert str(err) == "vxlan: short header (5 bytes, need 8)"


def test_detail_defaults_to_reason() -> None:
    assert str(DecodeError("udp", "bad-length")) == "udp: bad-length"


def test_pickles() -> None:
    err = pickle.loads(pickle.dumps(DecodeError("ipv4", "bad-checksum", "checksum 0x1234 wrong")))
    assert (err.layer, err.reason, str(err)) == (
        "ipv4",
        "bad-checksum",
        "ipv4: checksum 0x1234 wrong",
    )
