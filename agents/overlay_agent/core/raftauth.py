"""Authenticated frames for the Raft transport (sans-IO): no byte is unpickled unless it passes.

pysyncobj frames every message as ``len | zlib(pickle(msg))`` and hands the bytes between the
two to its *encryptor* (``encrypt_at_time`` on send; ``extract_timestamp`` then ``decrypt`` on
receive) before anything is unpickled. A :class:`Session` is that encryptor for ONE connection:

* ``HELLO`` (initiator's first frame): wall-clock time (ms) + 16-byte nonce A. Accepted only
  within ``window`` seconds of the receiver's clock, and each nonce once (:class:`ReplayCache`).
* ``REPLY`` (acceptor's first frame): nonce B; its MAC covers nonce A, so it cannot be replayed
  into another connection.
* ``DATA``: a sequence number per direction, MAC over direction, both nonces, sequence and body.
  A frame replayed, reordered, dropped, cut or moved to another connection fails.

MAC: HMAC-SHA256 with a key derived from the run's secret; with a ``cipher`` (Fernet, where the
``cryptography`` package exists on every member) the body is encrypted, then MACed. The caller
supplies ``now`` and fresh nonces: this module reads no clock and no entropy.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any, Dict, Optional

MAGIC = b"OVR1"
HELLO, REPLY, DATA = 1, 2, 3
NONCE_LEN = 16
MAC_LEN = 32
_TS = struct.Struct("!Q")
_SEQ = struct.Struct("!Q")
_HEAD = len(MAGIC) + 1


class AuthError(Exception):
    """A frame failed authentication or arrived out of order; the connection must be dropped."""


def derive_key(secret: bytes, purpose: bytes) -> bytes:
    """A 32-byte key for ``purpose`` (b"mac", b"enc") from the run's secret."""
    if len(secret) < 16:
        raise ValueError("the Raft secret must be at least 16 bytes")
    return hmac.new(secret, b"pytest-overlay raft v1 " + purpose, hashlib.sha256).digest()


class ReplayCache:
    """HELLO nonces seen within the time window (one per node, shared by its sessions)."""

    def __init__(self, window: float = 120.0, limit: int = 100000) -> None:
        self.window = window
        self.limit = limit
        self._seen: Dict[bytes, float] = {}

    def admit(self, nonce: bytes, sent_at: float, now: float) -> None:
        if abs(now - sent_at) > self.window:
            raise AuthError(f"HELLO is {now - sent_at:+.0f} s off this host's clock "
                            f"(window {self.window:g} s): replayed, or the clocks differ")
        # HELLOs come once per connection: pruning on each one is cheap.
        self._seen = {n: t for n, t in self._seen.items() if t >= now}
        if nonce in self._seen:
            raise AuthError("HELLO nonce seen before: a replayed frame")
        if len(self._seen) >= self.limit:
            raise AuthError("too many connection attempts in the replay window")
        self._seen[nonce] = now + 2 * self.window


class Session:
    """The encryptor of one TCP connection; ``initiator`` is the side that connected."""

    def __init__(self, mac_key: bytes, initiator: bool, cache: ReplayCache,
                 cipher: Optional[Any] = None) -> None:
        self._key = mac_key
        self.initiator = initiator
        self._cache = cache
        self._cipher = cipher
        self.nonce_a: Optional[bytes] = None
        self.nonce_b: Optional[bytes] = None
        self._send_seq = 0
        self._recv_seq = 0
        self.error: Optional[str] = None

    # -- sending ------------------------------------------------------------------------------
    def seal(self, body: bytes, now: float, nonce: bytes) -> bytes:
        """Frame ``body``; ``nonce`` (16 fresh random bytes) is used only by HELLO/REPLY."""
        if self._cipher is not None:
            body = self._cipher.encrypt(body)
        if self.initiator and self.nonce_a is None:
            self.nonce_a = nonce
            head = MAGIC + bytes([HELLO]) + _TS.pack(int(now * 1000)) + nonce
            return head + body + self._mac(b"H", head, body)
        if not self.initiator and self.nonce_b is None:
            if self.nonce_a is None:
                raise AuthError("acceptor asked to send before the peer's HELLO")
            self.nonce_b = nonce
            head = MAGIC + bytes([REPLY]) + nonce
            return head + body + self._mac(b"R" + self.nonce_a, head, body)
        self._send_seq += 1
        head = MAGIC + bytes([DATA]) + _SEQ.pack(self._send_seq)
        # Before the peer's REPLY the session is not bound yet: such a frame is refused there
        # (the connection is re-made), never accepted unbound.
        return head + body + self._mac(self._data_label(sending=True), head, body)

    # -- receiving ----------------------------------------------------------------------------
    @staticmethod
    def peek_seq(frame: bytes) -> int:
        """pysyncobj's "timestamp": the DATA sequence number (0 for HELLO/REPLY); no trust."""
        if len(frame) < _HEAD + MAC_LEN or frame[:4] != MAGIC:
            raise AuthError("not a pytest-overlay Raft frame")
        if frame[4] == DATA:
            return int(_SEQ.unpack_from(frame, _HEAD)[0])
        return 0

    def open(self, frame: bytes, now: float) -> bytes:
        """The body of an authentic, in-order frame; :class:`AuthError` otherwise."""
        try:
            return self._open(frame, now)
        except AuthError as e:
            self.error = str(e)
            raise

    def _open(self, frame: bytes, now: float) -> bytes:
        if len(frame) < _HEAD + MAC_LEN or frame[:4] != MAGIC:
            raise AuthError("not a pytest-overlay Raft frame")
        kind = frame[4]
        mac = frame[-MAC_LEN:]
        if kind == HELLO:
            if self.initiator or self.nonce_a is not None:
                raise AuthError("unexpected HELLO")
            cut = _HEAD + _TS.size + NONCE_LEN
            head, body = frame[:cut], frame[cut:-MAC_LEN]
            if len(frame) < cut + MAC_LEN:
                raise AuthError("short HELLO")
            self._check(mac, self._mac(b"H", head, body))
            sent_ms = _TS.unpack_from(frame, _HEAD)[0]
            nonce = frame[_HEAD + _TS.size:cut]
            self._cache.admit(nonce, sent_ms / 1000.0, now)
            self.nonce_a = nonce
        elif kind == REPLY:
            if not self.initiator or self.nonce_a is None or self.nonce_b is not None:
                raise AuthError("unexpected REPLY")
            cut = _HEAD + NONCE_LEN
            head, body = frame[:cut], frame[cut:-MAC_LEN]
            if len(frame) < cut + MAC_LEN:
                raise AuthError("short REPLY")
            self._check(mac, self._mac(b"R" + self.nonce_a, head, body))
            self.nonce_b = frame[_HEAD:cut]
        elif kind == DATA:
            if self.nonce_a is None or self.nonce_b is None:
                raise AuthError("DATA before the handshake")
            cut = _HEAD + _SEQ.size
            head, body = frame[:cut], frame[cut:-MAC_LEN]
            self._check(mac, self._mac(self._data_label(sending=False), head, body))
            seq = _SEQ.unpack_from(frame, _HEAD)[0]
            if seq != self._recv_seq + 1:
                raise AuthError(f"sequence {seq}, expected {self._recv_seq + 1}: replayed or lost")
            self._recv_seq = seq
        else:
            raise AuthError(f"unknown frame kind {kind}")
        if self._cipher is not None:
            try:
                body = self._cipher.decrypt(body)
            except Exception as e:
                raise AuthError(f"cannot decrypt an authenticated frame: {type(e).__name__}") from e
        return body

    # -- helpers ------------------------------------------------------------------------------
    def _data_label(self, sending: bool) -> bytes:
        from_initiator = self.initiator == sending
        return (b"I" if from_initiator else b"A") + (self.nonce_a or bytes(NONCE_LEN)) + (
            self.nonce_b or bytes(NONCE_LEN))

    def _mac(self, label: bytes, head: bytes, body: bytes) -> bytes:
        h = hmac.new(self._key, label, hashlib.sha256)
        h.update(head)
        h.update(body)
        return h.digest()

    @staticmethod
    def _check(got: bytes, want: bytes) -> None:
        if not hmac.compare_digest(got, want):
            raise AuthError("bad MAC: wrong secret or tampered frame")
