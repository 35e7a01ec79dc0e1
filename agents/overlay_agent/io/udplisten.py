"""Temporary UDP listeners on the extra audit ports; a thread feeds a :class:`PortLogs`.

Opened by ``listen_udp`` at the start of the port audit and closed by ``unlisten_udp`` at its
end (the controller closes them on errors too). A port already bound by someone else is left
alone: probes to it go to that service, so a filtered packet socket (:mod:`sniff`) watches them
arrive on the interface instead and the port is reported ``capture``; where no packet socket
can be had (no CAP_NET_RAW) it is ``in-use`` and probes to it cannot be observed.
"""

from __future__ import annotations

import selectors
import socket
import threading
from typing import Dict, List, Optional

from overlay_agent.core.portlogs import PortLogs
from overlay_agent.io.portprobe import bind_listener
from overlay_agent.io.sniff import PortSniffer

_POLL_S = 0.2


class UdpListeners:
    def __init__(self) -> None:
        self.socks: Dict[int, socket.socket] = {}
        self.sniffers: Dict[int, PortSniffer] = {}
        self.logs = PortLogs()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def open(self, address: str, ports: List[int], members: Optional[List[str]] = None
             ) -> Dict[str, str]:
        if members is not None:
            self.logs.members = PortLogs(members).members
        out: Dict[str, str] = {}
        for port in ports:
            if port in self.socks or port in self.sniffers:
                out[str(port)] = "ours" if port in self.socks else "capture"
                continue
            s, out[str(port)] = bind_listener(address, port, socket.SOCK_DGRAM)
            if s is not None:
                self.socks[port] = s
            elif out[str(port)] == "in-use":
                try:
                    self.sniffers[port] = PortSniffer(address, port)
                    out[str(port)] = "capture"
                except OSError:
                    pass  # no packet sockets here: the port stays "in-use", unobserved
        if (self.socks or self.sniffers) and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._serve, args=(dict(self.socks), dict(self.sniffers)),
                name="udp-audit", daemon=True)
            self._thread.start()
        return out

    def _serve(self, socks: Dict[int, socket.socket], sniffers: Dict[int, PortSniffer]) -> None:
        sel = selectors.DefaultSelector()
        try:
            for port, s in socks.items():
                sel.register(s, selectors.EVENT_READ, port)
            for port, sn in sniffers.items():
                sel.register(sn, selectors.EVENT_READ, port)
            while not self._stop.is_set():
                for key, _ in sel.select(_POLL_S):
                    port = int(key.data)
                    if isinstance(key.fileobj, PortSniffer):
                        for src, payload in key.fileobj.read():
                            self.logs.offer(port, src, payload)
                        continue
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    for _i in range(64):
                        try:
                            data, addr = sock.recvfrom(2048)
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            break
                        self.logs.offer(port, str(addr[0]), data)
        finally:
            sel.close()

    def close(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        n = len(self.socks) + len(self.sniffers)
        for s in self.socks.values():
            s.close()
        for sn in self.sniffers.values():
            sn.close()
        self.socks, self.sniffers = {}, {}
        return n
