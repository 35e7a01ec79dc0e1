"""The data plane: threads that move frames between TAP devices and the underlay socket.

One thread receives VXLAN from the underlay socket (unconnected: kernel VTEPs send from varying
source ports) and writes frames to TAPs; one thread reads the TAPs and sends. Each reads until
the kernel has nothing more before it sleeps in ``select``, so a busy path costs one system call
per frame and none for waiting. The decisions are :class:`~overlay_agent.core.vtep.VtepCore`'s.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
from typing import Dict, List, Optional, Tuple

from overlay_agent.core.vtep import DELIVER, SEND, VtepCore

_READ_BUDGET = 64
_MAX_FRAME = 65536


class Dataplane:
    """Owns the underlay UDP socket and the TAP descriptors of the local endpoints."""

    def __init__(self, core: VtepCore, address: str, port: int) -> None:
        self.core = core
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        try:
            self.sock.bind((address, port))
        except OSError as e:
            self.sock.close()
            raise OSError(
                e.errno, f"cannot bind the VTEP to {address}:{port}: {e.strerror}"
                " (is the address on this host, and is the port free?)"
            ) from e
        self.sock.setblocking(False)
        self.address = address
        self.port = port
        self.taps: Dict[int, int] = {}
        self.io_errors: Dict[str, int] = {}
        # One wake-up pipe per thread: the control side writes, the thread drains its own.
        self._pipes = {name: os.pipe() for name in ("rx", "tx")}
        for r, _ in self._pipes.values():
            os.set_blocking(r, False)
        self._stopping = False
        self._threads: List[threading.Thread] = []

    # -- control ------------------------------------------------------------------------------
    def start(self) -> None:
        for name, target in (("vtep-rx", self._rx_loop), ("vtep-tx", self._tx_loop)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def add_tap(self, port_id: int, fd: int) -> None:
        taps = dict(self.taps)
        taps[port_id] = fd
        self.taps = taps
        self._wake()

    def remove_tap(self, port_id: int) -> Optional[int]:
        taps = dict(self.taps)
        fd = taps.pop(port_id, None)
        self.taps = taps
        self._wake()
        return fd

    def stop(self) -> None:
        self._stopping = True
        self._wake("rx")
        self._wake("tx")
        for t in self._threads:
            t.join(timeout=2)
        self.sock.close()
        for r, w in self._pipes.values():
            os.close(r)
            os.close(w)

    def _wake(self, which: str = "tx") -> None:
        try:
            os.write(self._pipes[which][1], b"x")
        except OSError:
            pass

    @staticmethod
    def _drain(fd: int) -> None:
        try:
            while os.read(fd, 512):
                pass
        except OSError:
            pass

    def _error(self, what: str, e: OSError) -> None:
        key = f"{what}:{errno.errorcode.get(e.errno or 0, e.errno)}"
        self.io_errors[key] = self.io_errors.get(key, 0) + 1

    # -- the two directions -------------------------------------------------------------------
    def _perform(self, actions: List[Tuple[int, object, bytes]]) -> None:
        for kind, where, data in actions:
            if kind == SEND:
                try:
                    self.sock.sendto(data, where)  # type: ignore[arg-type]
                except OSError as e:
                    self._error("send", e)
            elif kind == DELIVER:
                fd = self.taps.get(where)  # type: ignore[arg-type]
                if fd is None:
                    continue
                try:
                    os.write(fd, data)
                except OSError as e:
                    self._error("tap-write", e)

    def _rx_loop(self) -> None:
        sock = self.sock
        core = self.core
        recvfrom = sock.recvfrom
        wake = self._pipes["rx"][0]
        while not self._stopping:
            try:
                select.select([sock, wake], [], [], 1.0)
            except (OSError, ValueError):
                return
            self._drain(wake)
            for _ in range(_READ_BUDGET * 4):
                try:
                    data, addr = recvfrom(_MAX_FRAME)
                except BlockingIOError:
                    break
                except OSError as e:
                    # ICMP errors for earlier sends surface here (ECONNREFUSED etc.): count them.
                    self._error("recv", e)
                    continue
                actions = core.from_underlay(addr[0], data)
                if actions:
                    self._perform(actions)

    def _tx_loop(self) -> None:
        core = self.core
        wake = self._pipes["tx"][0]
        while not self._stopping:
            taps = self.taps
            by_fd = {fd: port for port, fd in taps.items()}
            try:
                ready, _, _ = select.select([wake, *by_fd], [], [], 1.0)
            except (OSError, ValueError):
                # A TAP was closed under us; the next round takes the new set.
                continue
            for fd in ready:
                if fd == wake:
                    self._drain(wake)
                    continue
                port = by_fd[fd]
                for _ in range(_READ_BUDGET):
                    try:
                        frame = os.read(fd, _MAX_FRAME)
                    except BlockingIOError:
                        break
                    except OSError as e:
                        self._error("tap-read", e)
                        break
                    actions = core.from_port(port, frame)
                    if actions:
                        self._perform(actions)
