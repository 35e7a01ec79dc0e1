"""Receive-side coalescing ("GRO in Python"): consecutive TCP segments of one flow, decapsulated
from one UDP-GRO batch of VXLAN datagrams, become one TCP superframe for a TAP with a
``virtio_net_hdr`` (``GSO_TCPV4``), so the endpoint's kernel takes ~40 segments in one write and
one pass through its stack.

Sans-IO: :func:`coalesce` gets the bytes ``recvmsg`` returned and the UDP-GRO segment size, and
returns what to hand to :meth:`VtepCore.from_underlay` and the virtio header to write with it.

What may merge follows the kernel's own TCP GRO (``tcp_gro_receive``): same VXLAN header and
inner Ethernet header, IPv4 without options, DF set, no fragment, same TOS/TTL and addresses;
TCP with the same ports, ACK number, flags (ACK set; no SYN/FIN/RST/URG/CWR; PSH only on the
last), window, urgent pointer and options (timestamps included); consecutive sequence numbers;
equal payload sizes except a shorter last one. Anything else passes through one datagram at a
time, with a zero virtio header.

The superframe carries ``NEEDS_CSUM``: its TCP checksum field holds the pseudo-header sum for the
new length (not complemented) and the kernel treats the payload as already verified. The
segments' own TCP checksums are not re-checked here (that costs ~3 us per segment in CPython):
between the two VTEPs every datagram is covered by the outer UDP checksum, which the receiving
kernel verifies before the socket sees it (a VTEP that sends a zero outer UDP checksum gives up
that cover; Linux and this agent both send one); an endpoint that sent a segment with a bad
inner checksum gets it accepted instead of dropped, the same trade a NIC with checksum offload
makes for a virtio guest.
"""

from __future__ import annotations

import struct
from typing import List, Optional, Tuple

from overlay_agent.core.offload import F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4, PLAIN, VNET, rco_vnet
from overlay_agent.wire.vxlan import HEADER_LEN

GSO_UDP_L4 = 5

_ETH = HEADER_LEN  # the inner Ethernet header, within the VXLAN datagram
_IP = _ETH + 14
_TCP = _IP + 20  # only IPv4 without options merges
_MIN = _TCP + 20
# Within the datagram: VXLAN + Ethernet + IP version/IHL/TOS, IP total length, (id), IP
# flags/fragment + TTL + protocol, (checksum), addresses + ports, seq, ack, data offset, flags,
# window, (checksum), urgent pointer.
_HEAD = struct.Struct("!24sH2x4s2x12sIIBBH2x2s")
_UHEAD = struct.Struct("!24sH2x4s2x12sH")  # ... as above, then the UDP length
_PSEUDO = struct.Struct("!HHHH")
_U32 = struct.Struct("!I")
_SYN_FIN_RST_URG_CWR = 0x02 | 0x01 | 0x04 | 0x20 | 0x80
_ACK = 0x10
_PSH = 0x08
#: The largest superframe: the IPv4 total length field's limit.
MAX_IP_LEN = 65535

#: (datagram, packets, extra bytes, virtio header; None: a datagram whose RCO fields are bad)
Item = Tuple[bytes, int, int, Optional[bytes]]


def _fold(s: int) -> int:
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


Key = Tuple[Tuple[object, ...], int, int, int, int, int]


def _key(buf: bytes, off: int, end: int) -> Optional[Key]:
    """For ``buf[off:end]``: (the fields that must match for it to join a run, sequence number,
    payload length, PSH, L4 header length, how far the next sequence number is); None if it is
    no mergeable TCP segment or UDP datagram."""
    if end - off < _MIN or buf[off + 20:off + 23] != b"\x08\x00\x45":
        return None
    proto = buf[off + 31]
    if proto == 17:
        pre, tot, fragttl, addrs, ulen = _UHEAD.unpack_from(buf, off)
        if fragttl[0] != 0x40 or fragttl[1] or tot != end - off - _IP or ulen != tot - 20:
            return None
        return ((pre, fragttl, addrs), 0, ulen - 8, 0, 8, 0)
    if proto != 6:
        return None
    pre, tot, fragttl, addrs, seq, ack, doff, flags, win, urg = _HEAD.unpack_from(buf, off)
    if fragttl[0] != 0x40 or fragttl[1] or tot != end - off - _IP:
        return None  # DF clear, fragment, or padding / length mismatch
    if flags & _SYN_FIN_RST_URG_CWR or not flags & _ACK or doff & 0x0F:
        return None
    hlen = (doff >> 4) * 4
    plen = tot - 20 - hlen
    if hlen < 20 or plen <= 0:
        return None
    opts = buf[off + _TCP + 20:off + _TCP + hlen]
    return ((pre, fragttl, addrs, ack, doff, flags & ~_PSH, win, urg, opts), seq, plen,
            flags & _PSH, hlen, plen)


def superframe(buf: bytes, offs: List[Tuple[int, int]], hlen: int) -> Tuple[bytes, bytes]:
    """One VXLAN datagram carrying the merged frame of the segments ``buf[a:b]`` for ``(a, b)``
    in ``offs`` (already checked to merge), and its virtio header."""
    a0, b0 = offs[0]
    head = bytearray(buf[a0:a0 + _TCP + hlen])
    payload_start = _TCP + hlen
    mss = b0 - a0 - payload_start
    mv = memoryview(buf)
    parts: List[object] = [head]
    parts += [mv[a + payload_start:b] for a, b in offs]
    total = (len(offs) - 1) * mss + offs[-1][1] - offs[-1][0] - payload_start
    ip_len = 20 + hlen + total
    udp = head[_IP + 9] == 17
    if udp:
        struct.pack_into("!H", head, _TCP + 4, 8 + total)
    else:
        head[_TCP + 13] |= buf[offs[-1][0] + _TCP + 13] & _PSH
    struct.pack_into("!H", head, _IP + 2, ip_len)
    head[_IP + 10:_IP + 12] = b"\x00\x00"
    s = _fold(sum(struct.unpack_from("!10H", head, _IP)))
    struct.pack_into("!H", head, _IP + 10, 0xFFFF - s)
    # L4 checksum: the pseudo-header sum for the new length, not complemented (NEEDS_CSUM).
    s = _fold(sum(_PSEUDO.unpack_from(head, _IP + 12)) + head[_IP + 9] + hlen + total)
    struct.pack_into("!H", head, _TCP + (6 if udp else 16), s)
    vnet = VNET.pack(F_NEEDS_CSUM, GSO_UDP_L4 if udp else GSO_TCPV4, 14 + 20 + hlen, mss,
                     14 + 20, 6 if udp else 16)
    return b"".join(parts), vnet  # type: ignore[arg-type]


def coalesce(buf: bytes, size: int, rco: bool = False) -> List[Item]:
    """Split a UDP-GRO buffer (datagrams of ``size`` bytes, the last possibly shorter) into
    ``(datagram, packets, extra_bytes, vnet_header)``: a datagram as received (1 packet, 0,
    :data:`PLAIN`, or for one with Remote Checksum Offload the header that hands its checksum
    on unfinished, if ``rco`` (the sender is agreed on RCO; from others the reserved bits are
    ignored); None if its RCO fields are bad), or a merged one standing for ``packets``
    frames whose Ethernet/IP/TCP headers (``extra_bytes`` in all) it no longer repeats.

    A full-size datagram joins a run by comparing raw header bytes with the run's first (the
    fields :func:`_key` checks, minus what varies: IP ID and checksum, TCP checksum, and the
    sequence number, which must be the next one); anything else goes through :func:`_key`."""
    n = len(buf)
    if size <= 0 or size >= n:
        return [(buf, 1, 0, rco_vnet(buf) if rco else PLAIN)]
    out: List[Item] = []
    run: List[Tuple[int, int]] = []
    run_key: Tuple[object, ...] = ()
    next_seq = run_plen = run_len = hlen = step = 0
    # Fast check for a full-size datagram joining a run: the header bytes that must equal the
    # run's first (the same fields _key compares, without building its tuple).
    # t0/t3: the same with the IP ID, IP checksum and TCP checksum equal too (what this agent's
    # own TSO sends: one IP header for all full-size segments), two compares instead of five.
    t0 = t3 = c0 = c1 = c2 = c3 = c4 = b""
    udp = False
    sw = buf.startswith
    u32 = _U32.pack
    for off in range(0, n, size):
        end = off + size
        if run and end <= n and run_len + run_plen <= MAX_IP_LEN and (
                (sw(t0, off) or (sw(c0, off) and sw(c1, off + 28) and sw(c2, off + 34)))
                if udp else
                (sw(t0 + u32(next_seq) + t3, off)
                 or ((sw(t0, off) or (sw(c0, off) and sw(c1, off + 28) and sw(c2, off + 34)))
                     and (sw(t3, off + 50) or (sw(c3, off + 50) and sw(c4, off + 60)))
                     and sw(u32(next_seq), off + 46)))):
            run.append((off, end))
            run_len += run_plen
            next_seq = (next_seq + step) & 0xFFFFFFFF
            continue
        if end > n:
            end = n
        k = _key(buf, off, end)
        if run:
            if (k is not None and k[0] == run_key and k[1] == next_seq and k[2] <= run_plen
                    and run_len + k[2] <= MAX_IP_LEN):
                run.append((off, end))
                run_len += k[2]
                next_seq = (next_seq + k[5]) & 0xFFFFFFFF
                if k[3] or k[2] < run_plen:  # PSH or a short segment ends the run
                    _flush(buf, run, hlen, out, rco)
                    run = []
                continue
            _flush(buf, run, hlen, out, rco)
            run = []
        if k is None or k[3]:
            out.append((buf[off:end], 1, 0, rco_vnet(buf, off, end) if rco else PLAIN))
            continue
        run = [(off, end)]
        run_key, seq, run_plen, _, hlen, step = k
        run_len = 20 + hlen + run_plen
        next_seq = (seq + step) & 0xFFFFFFFF
        if end - off == size:  # only a full-size first datagram can have full-size followers
            udp = hlen == 8
            c0 = buf[off:off + 26]  # VXLAN, Ethernet, IP version/TOS/total length
            c1 = buf[off + 28:off + 32]  # IP flags/fragment, TTL, protocol
            c2 = buf[off + 34:off + (48 if udp else 46)]  # addresses, ports (+ UDP length)
            c3 = buf[off + 50:off + 58]  # ACK number, data offset, flags, window
            c4 = buf[off + 60:off + _TCP + hlen]  # urgent pointer, options
            t0 = buf[off:off + (48 if udp else 46)]
            t3 = buf[off + 50:off + _TCP + hlen]
        else:
            # never matches: the run is over at its first datagram
            t0 = c0 = b"\xff" * (size + 1)
    if run:
        _flush(buf, run, hlen, out, rco)
    return out


def _flush(buf: bytes, run: List[Tuple[int, int]], hlen: int, out: List[Item],
           rco: bool) -> None:
    if len(run) == 1:
        a, b = run[0]
        out.append((buf[a:b], 1, 0, rco_vnet(buf, a, b) if rco else PLAIN))
        return
    data, vnet = superframe(buf, run, hlen)
    out.append((data, len(run), (len(run) - 1) * (14 + 20 + hlen), vnet))


__all__ = ["F_NEEDS_CSUM", "GSO_NONE", "GSO_TCPV4", "GSO_UDP_L4", "PLAIN", "VNET", "coalesce",
           "superframe"]
