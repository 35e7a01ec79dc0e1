"""Temporary UDP listeners on the extra audit ports; a thread feeds a :class:`PortLogs`.

Opened by ``listen_udp`` at the start of the port audit and closed by ``unlisten_udp`` at its
end (the controller closes them on errors too). A port already bound by someone else is left
alone and reported ``in-use``: probes to it then go to that service and cannot be observed.
"""

from __future__ import annotations

import selectors
import socket
import threading
from typing import Dict, List, Optional

from overlay_agent.core.portlogs import PortLogs
from overlay_agent.io.portprobe import bind_listener

_POLL_S = 0.2


class UdpListeners:
    def __init__(self) -> None:
        self.socks: Dict[int, socket.socket] = {}
        self.logs = PortLogs()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def open(self, address: str, ports: List[int], members: Optional[List[str]] = None
             ) -> Dict[str, str]:
        if members is not None:
            self.logs.members = PortLogs(members).members
        out: Dict[str, str] = {}
        for port in ports:
            if port in self.socks:
                out[str(port)] = "ours"
                continue
            s, out[str(port)] = bind_listener(address, port, socket.SOCK_DGRAM)
            if s is not None:
                self.socks[port] = s
        if self.socks and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._serve, args=(dict(self.socks),),
                                            name="udp-audit", daemon=True)
            self._thread.start()
        return out

    def _serve(self, socks: Dict[int, socket.socket]) -> None:
        sel = selectors.DefaultSelector()
        try:
            for port, s in socks.items():
                sel.register(s, selectors.EVENT_READ, port)
            while not self._stop.is_set():
                for key, _ in sel.select(_POLL_S):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    for _i in range(64):
                        try:
                            data, addr = sock.recvfrom(2048)
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            break
                        self.logs.offer(int(key.data), str(addr[0]), data)
        finally:
            sel.close()

    def close(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        n = len(self.socks)
        for s in self.socks.values():
            s.close()
        self.socks = {}
        return n
