"""Transmit offloads for frames read from a TAP with a ``virtio_net_hdr``, and VXLAN Remote
Checksum Offload (RCO) on both ends. Sans-IO: bytes in, bytes out.

A TAP opened with ``IFF_VNET_HDR`` and ``TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4)`` lets the
endpoint's kernel hand the agent

* frames whose TCP/UDP checksum is unfinished (``NEEDS_CSUM``: the field holds the pseudo-header
  sum, not complemented; ``csum_start``/``csum_offset`` say where), and
* TCP/IPv4 frames of up to 64 KiB (``GSO_TCPV4``), to be cut into ``gso_size`` segments.

Two ways to put them on the wire:

* :func:`segment`: ordinary frames with every checksum finished in Python, for any receiver
  (a kernel VTEP, say). Correct, but a CPython checksum costs ~3 us per 1400-byte segment.
* :func:`encap_rco`: VXLAN datagrams that leave the inner checksum unfinished and say so in the
  VXLAN header (Remote Checksum Offload, draft-herbert-vxlan-rco, Linux's ``remcsumtx`` /
  ``remcsumrx``): the R flag (bit 21 of the first word, ``0x20`` in the second byte) and, in the
  VNI word's low byte (reserved in RFC 7348), the checksum start relative to the inner Ethernet
  header in units of 2 bytes (7 bits) and whether the field is UDP's (``0x80``) or TCP's. The
  receiver finishes the checksum, or hands it on unfinished (:func:`rco_vnet`). Only sent to
  VTEPs known to take it (this product's agents, or a kernel vxlan with ``remcsumrx``): a VTEP
  without RCO support must ignore reserved bits (RFC 7348) and would deliver the frame with its
  checksum unfinished, where the endpoint drops it. Integrity on the way is the outer UDP
  checksum's, which the receiving kernel verifies before the agent sees the datagram.

Cutting a TSO frame here costs ~0.4 us per segment: all full-size segments share one header
template (the frame's IPv4 ID is kept, see :func:`_segment_tcp4_rco`) and differ only in the
sequence number, so a segment is one ``join`` of template, sequence number and payload slice.
"""

from __future__ import annotations

import struct
from typing import List, Optional

VNET = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_LEN = VNET.size
#: The virtio header of an ordinary frame (checksums as on the wire, no segmentation).
PLAIN = bytes(VNET_LEN)
F_NEEDS_CSUM = 1
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_ECN = 0x80

#: RCO: the R flag in the VXLAN header's second byte, the UDP bit of the VNI word's low byte.
RCO_FLAG = 0x20
RCO_UDP = 0x80
#: The largest checksum start RCO can encode (7 bits, units of 2 bytes).
RCO_MAX_START = 0x7F << 1
TCP_CSUM_OFFSET = 16
UDP_CSUM_OFFSET = 6

_H = struct.Struct("!H")
_ETH_IPV4 = b"\x08\x00"
_FIN_PSH = 0x09
_CWR = 0x80


def _fold(s: int) -> int:
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


# -- RCO ------------------------------------------------------------------------------------------
def rco_header(base: bytes, start: int, offset: int) -> Optional[bytes]:
    """The VXLAN header ``base`` (8 bytes, reserved bits zero) with RCO for a checksum at
    ``start + offset`` of the inner frame; None if RCO cannot say it (odd or too-far start, an
    offset other than TCP's or UDP's)."""
    if start & 1 or not 0 < start <= RCO_MAX_START:
        return None
    if offset == TCP_CSUM_OFFSET:
        low = start >> 1
    elif offset == UDP_CSUM_OFFSET:
        low = (start >> 1) | RCO_UDP
    else:
        return None
    return bytes((base[0], base[1] | RCO_FLAG, base[2], base[3], base[4], base[5], base[6], low))


def rco_vnet(datagram: bytes, off: int = 0, end: Optional[int] = None) -> Optional[bytes]:
    """For a received VXLAN datagram (``datagram[off:end]``): :data:`PLAIN` if it has no RCO,
    else the virtio header that hands its inner frame on with the checksum unfinished
    (``NEEDS_CSUM``); None if the RCO fields point outside the frame (the caller drops it)."""
    length = (len(datagram) if end is None else end) - off - 8
    if length < 0 or not datagram[off + 1] & RCO_FLAG:
        return PLAIN  # a short one is the VTEP's to drop
    low = datagram[off + 7]
    start = (low & 0x7F) << 1
    offset = UDP_CSUM_OFFSET if low & RCO_UDP else TCP_CSUM_OFFSET
    if start < 14 + 20 or start + offset + 2 > length:
        return None
    return VNET.pack(F_NEEDS_CSUM, GSO_NONE, 0, 0, start, offset)


# -- finishing checksums in software ------------------------------------------------------------
def complete_csum(frame: bytearray, start: int, offset: int) -> None:
    """Finish a partial checksum: the field at ``start + offset`` holds the pseudo-header sum."""
    pos = start + offset
    if pos + 2 > len(frame) or start >= len(frame):
        raise ValueError(f"checksum at {start}+{offset} is outside a {len(frame)}-byte frame")
    if frame[12:14] == _ETH_IPV4 and frame[23] == 17 and offset == UDP_CSUM_OFFSET:
        frame[pos:pos + 2] = b"\x00\x00"  # UDP over IPv4: "no checksum" is allowed, and free
        return
    data = memoryview(frame)[start:]
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    s = n % 0xFFFF
    frame[pos:pos + 2] = _H.pack(0xFFFF - s if s else 0xFFFF)


def finish(vnet: bytes, frame: bytes) -> bytes:
    """A frame received with a ``NEEDS_CSUM`` virtio header (no GSO), checksum finished."""
    flags, _gso, _hl, _gs, start, offset = VNET.unpack(vnet)
    if not flags & F_NEEDS_CSUM:
        return frame
    buf = bytearray(frame)
    complete_csum(buf, start, offset)
    return bytes(buf)


def segment(hdr: bytes, frame: bytes) -> List[bytes]:
    """Wire frames, every checksum finished, for one frame read behind virtio header ``hdr``.

    Raises ValueError for what this cannot segment (the caller counts and drops it).
    """
    flags, gso_type, _hl, gso_size, cstart, coff = VNET.unpack(hdr)
    gso_type &= ~GSO_ECN
    if gso_type == GSO_NONE:
        if not flags & F_NEEDS_CSUM:
            return [frame]
        buf = bytearray(frame)
        complete_csum(buf, cstart, coff)
        return [bytes(buf)]
    if gso_type != GSO_TCPV4 or frame[12:14] != _ETH_IPV4 or not gso_size:
        raise ValueError(f"unsupported GSO type {gso_type}")
    return _segment_tcp4(frame, gso_size)


def _segment_tcp4(frame: bytes, mss: int) -> List[bytes]:
    ip = 14
    ihl = (frame[ip] & 0x0F) * 4
    tcp = ip + ihl
    doff = (frame[tcp + 12] >> 4) * 4
    start = tcp + doff
    payload = memoryview(frame)[start:]
    total = len(payload)
    if total <= 0:
        raise ValueError("GSO frame without payload")
    eth = frame[:ip]
    ip_head = bytearray(frame[ip:tcp])
    tcp_head = bytearray(frame[tcp:start])
    ip_id = _H.unpack_from(ip_head, 4)[0]
    seq = struct.unpack_from("!I", tcp_head, 4)[0]
    tcp_flags = tcp_head[13]
    # Pseudo-header without the length: source, destination, zero, protocol.
    pseudo = int.from_bytes(ip_head[12:20], "big") % 0xFFFF + 6
    out: List[bytes] = []
    off = 0
    i = 0
    while off < total:
        chunk = payload[off:off + mss]
        n = len(chunk)
        last = off + n >= total
        seg_flags = tcp_flags
        if not last:
            seg_flags &= ~_FIN_PSH
        if i:
            seg_flags &= ~_CWR
        ip_head[2:4] = _H.pack(ihl + doff + n)
        ip_head[4:6] = _H.pack((ip_id + i) & 0xFFFF)
        ip_head[10:12] = b"\x00\x00"
        s = int.from_bytes(ip_head, "big") % 0xFFFF
        ip_head[10:12] = _H.pack(0xFFFF - s if s else 0xFFFF)
        struct.pack_into("!I", tcp_head, 4, (seq + off) & 0xFFFFFFFF)
        tcp_head[13] = seg_flags
        tcp_head[16:18] = b"\x00\x00"
        s = (pseudo + doff + n + int.from_bytes(tcp_head, "big")
             + (int.from_bytes(chunk, "big") << (8 if n & 1 else 0))) % 0xFFFF
        tcp_head[16:18] = _H.pack(0xFFFF - s if s else 0xFFFF)
        out.append(b"".join((eth, ip_head, tcp_head, chunk)))
        off += n
        i += 1
    return out


# -- RCO encapsulation ----------------------------------------------------------------------------
def encap_rco(base: bytes, buf: bytes) -> Optional[List[bytes]]:
    """VXLAN datagrams (header ``base`` plus RCO) for ``buf`` = virtio header + frame as read
    from a TAP, checksums left to the receiver; None if RCO cannot carry it (the caller falls
    back to :func:`segment`). Raises ValueError for a malformed GSO frame."""
    flags, gso_type, _hl, mss, cstart, coff = VNET.unpack_from(buf)
    gso_type &= ~GSO_ECN
    if not flags & F_NEEDS_CSUM:
        if gso_type == GSO_NONE:
            return [base + buf[VNET_LEN:]]
        return None
    head = rco_header(base, cstart, coff)
    if head is None:
        return None
    if gso_type == GSO_NONE:
        return [head + buf[VNET_LEN:]]
    if gso_type != GSO_TCPV4 or coff != TCP_CSUM_OFFSET:
        return None
    return _segment_tcp4_rco(head, buf, mss, cstart)


_U32 = struct.Struct("!I")


def _ip_header(head: bytearray, ip: int, length: int) -> None:
    """Set the IPv4 total length at ``head[ip:]`` and recompute its header checksum."""
    _H.pack_into(head, ip + 2, length)
    head[ip + 10:ip + 12] = b"\x00\x00"
    _H.pack_into(head, ip + 10, 0xFFFF - _fold(sum(struct.unpack_from("!10H", head, ip))))


def _segment_tcp4_rco(vx: bytes, buf: bytes, mss: int, cstart: int) -> List[bytes]:
    eth = VNET_LEN
    ip = eth + 14
    if buf[eth + 12:eth + 14] != _ETH_IPV4 or buf[ip] != 0x45 or cstart != 34:
        raise ValueError("TSO frame is not TCP over IPv4 without options")
    tcp = ip + 20
    doff = (buf[tcp + 12] >> 4) * 4
    if doff < 20 or not mss:
        raise ValueError(f"TSO frame with TCP header length {doff}, gso_size {mss}")
    start = tcp + doff
    end = len(buf)
    if end <= start:
        raise ValueError("TSO frame without payload")
    # One header template (VXLAN + Ethernet + IP + TCP); h* are offsets within it. Every
    # segment keeps the frame's IP ID (RFC 6864: the ID of an atomic datagram, DF set, carries
    # no meaning; Linux's GRO takes fixed IDs), so all full-size segments share their IP header
    # and differ only in the sequence number: a segment is template + seq + template + payload.
    head = bytearray(vx + buf[eth:start])
    hip, htcp = 8 + 14, 8 + 14 + 20
    flags = buf[tcp + 13]
    seq, = _U32.unpack_from(buf, tcp + 4)
    words = struct.unpack_from("!4H", buf, ip + 12)
    pseudo = sum(words) + 6
    mv = memoryview(buf)
    out: List[bytes] = []
    append = out.append
    join = b"".join
    u32 = _U32.pack
    off = start
    if off + mss < end:
        _ip_header(head, hip, 20 + doff + mss)
        _H.pack_into(head, htcp + 16, _fold(pseudo + doff + mss))
        pre = bytes(head[:htcp + 4])
        head[htcp + 13] = flags & ~_FIN_PSH
        append(join((pre, u32(seq), head[htcp + 8:], mv[off:off + mss])))
        off += mss
        head[htcp + 13] = flags & ~(_FIN_PSH | _CWR)
        post = bytes(head[htcp + 8:])
        while off + mss < end:
            append(join((pre, u32((seq + off - start) & 0xFFFFFFFF), post, mv[off:off + mss])))
            off += mss
        head[htcp + 13] = flags & ~_CWR
    n = end - off
    _ip_header(head, hip, 20 + doff + n)
    _H.pack_into(head, htcp + 16, _fold(pseudo + doff + n))
    _U32.pack_into(head, htcp + 4, (seq + off - start) & 0xFFFFFFFF)
    append(join((head, mv[off:end])))
    return out


__all__ = ["PLAIN", "VNET", "complete_csum", "encap_rco", "finish", "rco_header", "rco_vnet",
           "segment"]
