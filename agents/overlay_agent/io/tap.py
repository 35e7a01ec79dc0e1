"""TAP devices through /dev/net/tun (Ethernet frames in and out of a file descriptor)."""

from __future__ import annotations

import fcntl
import os
import struct

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFNAMSIZ = 16


class TapError(OSError):
    """A TAP device could not be made; the message says why and what to check."""


def open_tap(name: str, vnet_hdr: bool = False) -> int:
    """Create TAP ``name`` and return its non-blocking file descriptor.

    The device lives as long as the descriptor is open, even after it is moved into another
    network namespace, and disappears with it: closing the fd is the whole clean-up.
    """
    if len(name.encode()) >= IFNAMSIZ:
        raise TapError(f"TAP name {name!r} is longer than {IFNAMSIZ - 1} bytes")
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise TapError(
            f"cannot open /dev/net/tun ({e.strerror}): the agent needs root and the tun driver"
        ) from e
    flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
    except OSError as e:
        os.close(fd)
        raise TapError(f"cannot create TAP {name!r}: {e.strerror}") from e
    return fd
