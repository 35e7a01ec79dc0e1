"""Probes to a UDP port another program holds, seen where they arrive: a filtered packet socket.

When the port audit cannot bind an extra UDP port because something else holds it (dockerd's
gossip on 7946/udp, a kernel VXLAN device on 4789/udp of a node that already runs the overlay),
the probes go to that program and no socket of ours can read them. A packet socket sees them
arrive on the interface instead. It is cooked (``SOCK_DGRAM``: each packet from its IP header
on, whatever the link) and carries a classic BPF filter that keeps only UDP to this address and
port whose payload starts like a random-payload port probe, so the busy production port costs
nothing and the kernel queues nothing else for us.

What it cannot see is what the host does after the interface: its own firewall, and the
program that holds the port. The check says so with the verdict.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
import struct
from typing import List, Optional, Tuple

from overlay_agent.core.probelog import RAW_MAGIC

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
#: the first four payload bytes of a random-payload probe (I flag clear, then the magic)
LEAD = b"\x00" + RAW_MAGIC[:3]

# classic BPF opcodes (linux/filter.h)
_LD_W_ABS, _LD_H_ABS, _LD_B_ABS = 0x20, 0x28, 0x30
_LD_W_IND, _LD_H_IND = 0x40, 0x48
_LDX_B_MSH = 0xB1
_JEQ_K, _JSET_K = 0x15, 0x45
_RET_K = 0x06
_DROP = -1  # jump target placeholder: the final "ret 0"


def program(address: str, port: int) -> List[Tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions, offsets from the IP header."""
    ip = ipaddress.ip_address(address)
    lead = struct.unpack("!I", LEAD)[0]
    raw: List[Tuple[int, int, int, int]] = []
    if ip.version == 4:
        raw += [(_LD_W_ABS, 0, 0, 16), (_JEQ_K, 0, _DROP, int(ip)),  # destination
                (_LD_B_ABS, 0, 0, 9), (_JEQ_K, 0, _DROP, socket.IPPROTO_UDP),
                (_LD_H_ABS, 0, 0, 6), (_JSET_K, _DROP, 0, 0x1FFF),  # no later fragments
                (_LDX_B_MSH, 0, 0, 0),  # X = header length
                (_LD_H_IND, 0, 0, 2), (_JEQ_K, 0, _DROP, port),
                (_LD_W_IND, 0, 0, 8), (_JEQ_K, 0, _DROP, lead)]
    else:
        raw += [(_LD_B_ABS, 0, 0, 6), (_JEQ_K, 0, _DROP, socket.IPPROTO_UDP)]
        for i, (word,) in enumerate(struct.iter_unpack("!I", ip.packed)):
            raw += [(_LD_W_ABS, 0, 0, 24 + 4 * i), (_JEQ_K, 0, _DROP, word)]
        raw += [(_LD_H_ABS, 0, 0, 42), (_JEQ_K, 0, _DROP, port),
                (_LD_W_ABS, 0, 0, 48), (_JEQ_K, 0, _DROP, lead)]
    raw += [(_RET_K, 0, 0, 0xFFFF), (_RET_K, 0, 0, 0)]
    drop = len(raw) - 1
    return [(code, drop - i - 1 if jt == _DROP else jt, drop - i - 1 if jf == _DROP else jf, k)
            for i, (code, jt, jf, k) in enumerate(raw)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _attach(sock: socket.socket, prog: List[Tuple[int, int, int, int]]) -> None:
    code = b"".join(struct.pack("=HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = _SockFprog(len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))  # copied by the kernel


class PortSniffer:
    """Probe datagrams to ``address:port`` as they arrive on any interface of this namespace."""

    def __init__(self, address: str, port: int) -> None:
        self.port = port
        self.v6 = ipaddress.ip_address(address).version == 6
        proto = ETH_P_IPV6 if self.v6 else ETH_P_IP
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(proto))
        try:
            _attach(self.sock, program(address, port))
            self.sock.setblocking(False)
            self.read()  # what arrived before the filter was on: not ours to judge
        except OSError:
            self.sock.close()
            raise

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, limit: int = 64) -> List[Tuple[str, bytes]]:
        """Up to ``limit`` (source address, UDP payload) pairs the kernel holds."""
        out: List[Tuple[str, bytes]] = []
        for _ in range(limit):
            try:
                pkt, addr = self.sock.recvfrom(2048)
            except OSError:  # drained (EAGAIN), or closed under the reader
                break
            got = self._parse(pkt, addr[2])
            if got is not None:
                out.append(got)
        return out

    def _parse(self, pkt: bytes, pkttype: int) -> Optional[Tuple[str, bytes]]:
        if pkttype == PACKET_OUTGOING:
            return None
        if self.v6:
            return (str(ipaddress.IPv6Address(pkt[8:24])), pkt[48:]) if len(pkt) >= 48 else None
        ihl = (pkt[0] & 0x0F) * 4 if pkt else 0
        if len(pkt) < ihl + 8 or ihl < 20:
            return None
        return str(ipaddress.IPv4Address(pkt[12:16])), pkt[ihl + 8:]

    def close(self) -> None:
        self.sock.close()
