"""TAP offloads, the system-call side: whether a TAP carries a ``virtio_net_hdr``, and turning
its checksum offload and TSO on or off (``TUNSETOFFLOAD``).

With ``TUN_F_CSUM | TUN_F_TSO4`` the endpoint's kernel may hand the agent frames whose checksum
is unfinished and TCP/IPv4 frames of up to 64 KiB; :mod:`overlay_agent.core.offload` (sans-IO)
turns them into datagrams. Writing to such a TAP needs the header too: ``offload.PLAIN`` says
"one ordinary frame, checksum as on the wire".
"""

from __future__ import annotations

import fcntl
import struct

from overlay_agent.core.offload import VNET_LEN

TUNSETOFFLOAD = 0x400454D0
TUNGETIFF = 0x800454D2
TUNSETVNETHDRSZ = 0x400454D8
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
IFF_VNET_HDR = 0x4000


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
