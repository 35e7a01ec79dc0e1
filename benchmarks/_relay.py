"""The floor of a userspace VTEP's round trip: the least a relay process per host can do.

``bench_rtt.py --floor`` runs this between the same two lab hosts as the agents: per host, a
TAP in a fresh endpoint namespace and a UDP socket on the host's underlay address, and a loop
that only moves frames: a frame from the TAP goes out behind a fixed 8-byte VXLAN header to the
other host; a datagram from the other host goes into the TAP without its header. No table, no
checks, no counters, nothing batched: one frame per system call. Whatever the agent adds on top
of this is its own cost; what this costs is the price of a process per host on the machine.

Two loops, the same system calls: :func:`relay` in CPython (the agent's language), and the same
in C (``--exec BINARY``: this script makes the TAP and socket, then hands them over), compiled
by :func:`build_c` into the run's temporary directory when a C compiler is there (the agent
itself stays stdlib Python: the C loop is a yardstick).

    python3 benchmarks/_relay.py TAP ENDPOINT_NS IP/PREFIX LOCAL PEER [--port N] [--exec BINARY]

Runs inside the host's namespace (the caller uses ``ip netns exec``); prints ``ready`` once the
endpoint's interface is up, then relays until killed. The TAP lives as long as the process.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agents"))
from overlay_agent.io import netns
from overlay_agent.io.tap import open_tap

#: VXLAN header: I flag, VNI 4098
HEADER = bytes([0x08, 0, 0, 0, 0x00, 0x10, 0x02, 0])

C_SOURCE = r"""
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* argv: TAP fd, socket fd, peer IPv4, port[, TAP name: only so that the run's clean-up
   finds this process by its prefix].  Same loop as the Python relay. */
int main(int argc, char **argv) {
    static unsigned char buf[65536 + 64];
    static const unsigned char hdr[8] = {0x08, 0, 0, 0, 0x00, 0x10, 0x02, 0};
    struct sockaddr_in peer;
    struct pollfd fds[2];
    if (argc < 5) return 2;
    memset(&peer, 0, sizeof peer);
    peer.sin_family = AF_INET;
    peer.sin_port = htons((unsigned short)atoi(argv[4]));
    if (inet_pton(AF_INET, argv[3], &peer.sin_addr) != 1) return 2;
    fds[0].fd = atoi(argv[1]);
    fds[1].fd = atoi(argv[2]);
    fds[0].events = fds[1].events = POLLIN;
    for (;;) {
        if (poll(fds, 2, -1) < 0) return 1;
        if (fds[0].revents & POLLIN) {
            ssize_t n = read(fds[0].fd, buf + 8, sizeof buf - 8);
            if (n > 0) {
                memcpy(buf, hdr, 8);
                sendto(fds[1].fd, buf, (size_t)n + 8, 0, (struct sockaddr *)&peer, sizeof peer);
            }
        }
        if (fds[1].revents & POLLIN) {
            ssize_t n = recv(fds[1].fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n > 8) {
                ssize_t w = write(fds[0].fd, buf + 8, (size_t)n - 8);
                (void)w;
            }
        }
        if ((fds[0].revents | fds[1].revents) & (POLLERR | POLLHUP | POLLNVAL)) return 1;
    }
}
"""


def build_c(tmp: Path) -> Optional[Path]:
    """Compile the C relay into ``tmp``; None when no C compiler is installed."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src = tmp / "relay.c"
    out = tmp / "relay"
    src.write_text(C_SOURCE)
    subprocess.run([cc, "-O2", "-o", str(out), str(src)], check=True, capture_output=True)
    return out


def relay(tap: int, sock: socket.socket, peer: tuple) -> None:  # type: ignore[type-arg]
    """The Python loop: one pass over what ``select`` reported, one frame per system call."""
    sfd = sock.fileno()
    fds = [tap, sfd]
    buf = bytearray(65536 + 64)
    view = memoryview(buf)
    while True:
        ready, _, _ = select.select(fds, [], [])
        if tap in ready:
            try:
                frame = os.read(tap, 65536)
            except BlockingIOError:
                frame = b""
            if frame:
                sock.sendto(HEADER + frame, peer)
        if sfd in ready:
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                n = 0
            if n > 8:
                os.write(tap, view[8:n])


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tap")
    p.add_argument("endpoint_ns")
    p.add_argument("ip", help="the endpoint's address with prefix length")
    p.add_argument("local")
    p.add_argument("peer")
    p.add_argument("--port", type=int, default=4791)
    p.add_argument("--mtu", type=int, default=1450)
    p.add_argument("--exec", dest="binary", help="hand the TAP and socket to this C relay")
    args = p.parse_args(argv)
    tap = open_tap(args.tap)
    netns.ip("link", "set", args.tap, "netns", args.endpoint_ns)
    netns.ip("link", "set", args.tap, "name", "eth0", "mtu", str(args.mtu),
             netns=args.endpoint_ns)
    netns.ip("addr", "add", args.ip, "dev", "eth0", netns=args.endpoint_ns)
    netns.ip("link", "set", "eth0", "up", netns=args.endpoint_ns)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.local, args.port))
    os.set_blocking(tap, False)
    sock.setblocking(False)
    print("ready", flush=True)
    if args.binary:
        os.set_inheritable(tap, True)
        os.set_inheritable(sock.fileno(), True)
        os.execv(args.binary, [args.binary, str(tap), str(sock.fileno()), args.peer,
                               str(args.port), args.tap])
    relay(tap, sock, (args.peer, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
