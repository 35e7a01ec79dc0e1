"""RFC 1071 Internet checksum, computed with one big-integer remainder.

Since ``2**16 == 1 (mod 0xFFFF)``, a byte string read as one big-endian integer
is congruent modulo 0xFFFF to the sum of its 16-bit words, which is what the
one's-complement sum with end-around carry computes.  The only difference is
that the one's-complement sum of non-zero data is never 0: it is 0xFFFF
("negative zero") where the remainder says 0.  ``int.from_bytes`` and ``%``
run in C, so this is far faster than a Python loop over words.
"""

from __future__ import annotations

from .ipaddr import ip_to_bytes


def ones_complement_sum(data: bytes) -> int:
    """The 16-bit one's-complement sum of ``data`` (odd length padded with a zero byte)."""
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8  # same as appending one zero byte
    s = n % 0xFFFF
    if s == 0 and n:
        return 0xFFFF
    return s


def internet_checksum(data: bytes) -> int:
    """RFC 1071 checksum of ``data``: the complement of its one's-complement sum.

    Over data that already holds a correct checksum field the result is 0.
    """
    return ~ones_complement_sum(data) & 0xFFFF


def ipv4_pseudo_header(src_ip: str, dst_ip: str, proto: int, length: int) -> bytes:
    """The 12-byte IPv4 pseudo-header used by the UDP and TCP checksums."""
    return ip_to_bytes(src_ip) + ip_to_bytes(dst_ip) + bytes((0, proto)) + length.to_bytes(2, "big")
