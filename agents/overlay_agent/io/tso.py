"""TAP offloads: TCP segmentation and checksums in software, so the endpoint's kernel can hand
the agent 64 KiB TCP frames (one read instead of ~45).

A TAP opened with ``IFF_VNET_HDR`` prefixes every frame with a ``virtio_net_hdr``. With
``TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4)`` the kernel may then give us

* frames whose checksum is still to be done (``NEEDS_CSUM``: the field holds the pseudo-header
  sum, the rest is ours to add), and
* TCP/IPv4 frames larger than the MTU (``GSO_TCPV4``), to be cut into ``gso_size`` segments,

and :func:`segment` turns either into ordinary wire frames with correct checksums (a kernel VTEP
on the other side verifies them). Writing to such a TAP needs the header too: :data:`PLAIN`
says "one ordinary frame, checksum as on the wire".
"""

from __future__ import annotations

import fcntl
import struct
from typing import List

TUNSETOFFLOAD = 0x400454D0
TUNGETIFF = 0x800454D2
TUNSETVNETHDRSZ = 0x400454D8
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
IFF_VNET_HDR = 0x4000

F_NEEDS_CSUM = 1
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_ECN = 0x80

VNET = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_LEN = VNET.size
PLAIN = bytes(VNET_LEN)
_H = struct.Struct("!H")
_IP_ID = struct.Struct("!H")
_SEQ = struct.Struct("!I")
_ETH_IPV4 = b"\x08\x00"
_FIN_PSH = 0x09
_CWR = 0x80


def has_vnet_hdr(fd: int) -> bool:
    """Whether the TAP behind ``fd`` was opened with ``IFF_VNET_HDR``."""
    try:
        ifr = fcntl.ioctl(fd, TUNGETIFF, bytes(40))
    except OSError:
        return False
    return bool(struct.unpack_from("H", ifr, 16)[0] & IFF_VNET_HDR)


def set_offload(fd: int, on: bool) -> bool:
    """Ask for checksum offload and TSO4 (``on``) or none; returns what is now in force."""
    try:
        fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_LEN))
        fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 if on else 0)
    except OSError:
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, 0)
        except OSError:
            pass
        return False
    return on


def complete_csum(frame: bytearray, start: int, offset: int) -> None:
    """Finish a partial checksum: the field at ``start + offset`` holds the pseudo-header sum."""
    pos = start + offset
    if frame[12:14] == _ETH_IPV4 and frame[23] == 17 and offset == 6:
        frame[pos:pos + 2] = b"\x00\x00"  # UDP over IPv4: "no checksum" is allowed, and free
        return
    data = memoryview(frame)[start:]
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    s = n % 0xFFFF
    frame[pos:pos + 2] = _H.pack(0xFFFF - s if s else 0xFFFF)


def segment(hdr: bytes, frame: bytes) -> List[bytes]:
    """Wire frames for one frame read from a TAP with offloads; ``hdr`` is its virtio header.

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
    ip_id = _IP_ID.unpack_from(ip_head, 4)[0]
    seq = _SEQ.unpack_from(tcp_head, 4)[0]
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
        # IPv4 header: total length, id, checksum.
        ip_head[2:4] = _H.pack(ihl + doff + n)
        ip_head[4:6] = _H.pack((ip_id + i) & 0xFFFF)
        ip_head[10:12] = b"\x00\x00"
        s = int.from_bytes(ip_head, "big") % 0xFFFF
        ip_head[10:12] = _H.pack(0xFFFF - s if s else 0xFFFF)
        # TCP header: sequence number, flags, checksum over pseudo-header + segment.
        _SEQ.pack_into(tcp_head, 4, (seq + off) & 0xFFFFFFFF)
        tcp_head[13] = seg_flags
        tcp_head[16:18] = b"\x00\x00"
        s = (pseudo + doff + n + int.from_bytes(tcp_head, "big")
             + (int.from_bytes(chunk, "big") << (8 if n & 1 else 0))) % 0xFFFF
        tcp_head[16:18] = _H.pack(0xFFFF - s if s else 0xFFFF)
        out.append(b"".join((eth, ip_head, tcp_head, chunk)))
        off += n
        i += 1
    return out
