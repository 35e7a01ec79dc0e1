"""The Raft frame authenticator (core/raftauth.py): handshake, MACs, replays, sequence."""

from __future__ import annotations

import pytest

from overlay_agent.core.raftauth import (
    MAC_LEN,
    AuthError,
    ReplayCache,
    Session,
    derive_key,
)

KEY = derive_key(b"s" * 32, b"mac")
NOW = 1_700_000_000.0


def pair(cipher: object = None) -> tuple:
    cache = ReplayCache()
    return Session(KEY, True, ReplayCache(), cipher), Session(KEY, False, cache, cipher)


def handshake(a: Session, b: Session) -> None:
    assert b.open(a.seal(b"hello", NOW, b"A" * 16), NOW) == b"hello"
    assert a.open(b.seal(b"reply", NOW, b"B" * 16), NOW) == b"reply"


def test_a_full_exchange_passes_both_ways() -> None:
    a, b = pair()
    handshake(a, b)
    for i in range(3):
        assert b.open(a.seal(b"to-b %d" % i, NOW, b"x" * 16), NOW) == b"to-b %d" % i
        assert a.open(b.seal(b"to-a %d" % i, NOW, b"y" * 16), NOW) == b"to-a %d" % i


def test_wrong_secret_is_refused_at_the_first_frame() -> None:
    a = Session(derive_key(b"t" * 32, b"mac"), True, ReplayCache())
    b = Session(KEY, False, ReplayCache())
    with pytest.raises(AuthError, match="bad MAC"):
        b.open(a.seal(b"hello", NOW, b"A" * 16), NOW)


@pytest.mark.parametrize("pos", [0, 5, 10, -MAC_LEN - 1, -1])
def test_any_flipped_byte_is_refused(pos: int) -> None:
    a, b = pair()
    frame = bytearray(a.seal(b"hello world", NOW, b"A" * 16))
    frame[pos] ^= 0x01
    with pytest.raises(AuthError):
        b.open(bytes(frame), NOW)


def test_a_replayed_hello_is_refused_on_another_connection() -> None:
    cache = ReplayCache()
    a = Session(KEY, True, ReplayCache())
    hello = a.seal(b"hello", NOW, b"A" * 16)
    Session(KEY, False, cache).open(hello, NOW)
    with pytest.raises(AuthError, match="seen before"):
        Session(KEY, False, cache).open(hello, NOW + 1)


def test_an_old_hello_is_refused() -> None:
    a, b = pair()
    with pytest.raises(AuthError, match="off this host's clock"):
        b.open(a.seal(b"hello", NOW - 3600, b"A" * 16), NOW)


def test_data_replayed_or_reordered_is_refused() -> None:
    a, b = pair()
    handshake(a, b)
    f1 = a.seal(b"one", NOW, b"x" * 16)
    f2 = a.seal(b"two", NOW, b"x" * 16)
    with pytest.raises(AuthError, match="sequence 2, expected 1"):
        b.open(f2, NOW)
    assert b.open(f1, NOW) == b"one"
    with pytest.raises(AuthError, match="sequence 1, expected 2"):
        b.open(f1, NOW)


def test_data_from_another_connection_is_refused() -> None:
    a1, b1 = pair()
    handshake(a1, b1)
    a2, b2 = pair()
    assert b2.open(a2.seal(b"h", NOW, b"C" * 16), NOW) == b"h"
    a2.open(b2.seal(b"r", NOW, b"D" * 16), NOW)
    with pytest.raises(AuthError, match="bad MAC"):
        b2.open(a1.seal(b"moved", NOW, b"x" * 16), NOW)


def test_a_reflected_frame_is_refused() -> None:
    a, b = pair()
    handshake(a, b)
    with pytest.raises(AuthError, match="bad MAC"):
        a.open(a.seal(b"mirror", NOW, b"x" * 16), NOW)


def test_data_before_the_handshake_is_refused() -> None:
    a, b = pair()
    a.seal(b"hello", NOW, b"A" * 16)
    early = a.seal(b"early", NOW, b"x" * 16)
    with pytest.raises(AuthError):
        b.open(early, NOW)


@pytest.mark.parametrize("blob", [b"", b"OVR1", b"\x80\x02garbage" * 10, b"OVR1\x09" + b"\0" * 40])
def test_garbage_is_refused(blob: bytes) -> None:
    with pytest.raises(AuthError):
        Session(KEY, False, ReplayCache()).open(blob, NOW)
    if len(blob) < 37:
        with pytest.raises(AuthError):
            Session.peek_seq(blob)


class XorCipher:
    def encrypt(self, data: bytes) -> bytes:
        return bytes(b ^ 0x5A for b in data)

    def decrypt(self, data: bytes) -> bytes:
        return bytes(b ^ 0x5A for b in data)


def test_with_a_cipher_the_body_is_not_in_clear() -> None:
    a, b = pair(XorCipher())
    frame = a.seal(b"secret table", NOW, b"A" * 16)
    assert b"secret table" not in frame
    assert b.open(frame, NOW) == b"secret table"


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError):
        derive_key(b"short", b"mac")
