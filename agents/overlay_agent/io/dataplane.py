"""The data plane: the thread(s) that move frames between TAP devices and the underlay socket.

By default one thread serves the underlay socket (unconnected: kernel VTEPs send from varying
source ports) and all TAPs in one ``epoll`` loop, reading what the kernel reports ready (once,
or in a batch while a descriptor stays busy); ``OVERLAY_DATAPLANE_THREADS=2`` gives each
direction its own thread.
The decisions are :class:`~overlay_agent.core.vtep.VtepCore`'s; this module only moves bytes.

Paths, chosen at run time (:attr:`Dataplane.features` says which):

* fast: UDP GSO on send (a run of datagrams to one VTEP in one ``sendmsg``) and UDP GRO on
  receive (several datagrams per ``recvmsg``), see :mod:`overlay_agent.io.gso`;
* receive coalescing (with UDP GRO, unless ``OVERLAY_TAP_GRO=0``): TAPs are opened with
  ``IFF_VNET_HDR`` (:attr:`Dataplane.vnet_hdr`) and consecutive TCP segments / UDP datagrams
  of one flow go to the TAP as one GSO superframe, see :mod:`overlay_agent.core.gro`;
* transmit offloads (unless ``OVERLAY_TAP_TSO=0``): the TAPs (with ``IFF_VNET_HDR``) get
  checksum offload and TSO while some member VTEP takes VXLAN Remote Checksum Offload
  (:attr:`VtepCore.remcsum`, this product's agents): the endpoint's kernel hands over 64 KiB TCP
  frames with unfinished checksums, cut here into RCO datagrams without computing a checksum,
  see :mod:`overlay_agent.core.offload`; frames for other VTEPs get their checksums finished in
  Python. ``OVERLAY_TAP_TSO=1`` keeps the offloads on even without RCO peers;
* portable: one datagram per system call, no TAP offloads. ``OVERLAY_DATAPLANE=portable`` in
  the environment (or ``fast=False``) forces it, so both can be tested on one machine.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import threading
import time
from typing import Any, Dict, FrozenSet, List, Optional, Set, Tuple

from overlay_agent.core import gro, offload, ptb
from overlay_agent.core.vtep import DELIVER_VNET, SEND, SEND_RUN, VtepCore
from overlay_agent.io import gso, heap, pmtu, tso
from overlay_agent.io.kernelvxlan import kernel_vxlan_on

_READ_BUDGET = 64
_MAX_FRAME = 65536
#: receive batches are merged across calls up to this many bytes
_JOIN_UPTO = 64 * 1024
_MAX_READ = 65536 + 256  # a TSO frame: 64 KiB of IP plus the Ethernet and virtio headers
#: a TAP read of at least this many frames, none of them a TSO frame, counts as a burst
_BURST = 4
#: the largest frame that is not a TSO frame (MTU 9000 plus Ethernet and virtio headers)
_PLAIN_FRAME = 9000 + 14 + 12
#: a descriptor reported ready again within this many seconds is busy: read in batches
_BUSY = 0.001
#: epoll events of a descriptor that will never be readable again
_GONE = select.EPOLLERR | select.EPOLLHUP
#: a plain int: ``socket.MSG_TRUNC`` is an enum.Flag, and ``flags & socket.MSG_TRUNC`` goes
#: through ``Flag.__and__`` (0.5 us warm, more when cold; seen in py-spy profiles)
_MSG_TRUNC = int(socket.MSG_TRUNC)


def _yield_mode(value: str) -> Tuple[bool, bool]:
    """OVERLAY_DATAPLANE_YIELD -> (after superframes into a TAP, after bursts to the underlay)."""
    v = value.strip().lower()
    return (v in ("1", "both", "rx"), v in ("1", "both", "tx"))


def bind_error(address: str, port: int, e: OSError) -> str:
    """Why the VTEP's socket could not be bound, and what to do about it."""
    if e.errno != errno.EADDRINUSE:
        return (f"cannot bind the VTEP to {address}:{port}: {e.strerror} (is the address on "
                "this host?)")
    devs = kernel_vxlan_on(port)
    who = (f"the kernel VXLAN device{'s' if len(devs) > 1 else ''} {', '.join(devs)}: an overlay "
           "already runs here (Docker Swarm, or a VXLAN CNI such as flannel, Calico or Cilium)"
           if devs else "another program")
    return (f"cannot bind the VTEP to {address}:{port}: the port is held by {who}. Give the "
            "audit's VTEP a free port (vxlan_port under overlay: in the inventory, e.g. 4790), "
            f"and to test the underlay for the cluster's own port add --overlay-ports={port}/udp "
            "(its probes are then watched on the receiving interfaces)")


class Dataplane:
    """Owns the underlay UDP socket and the TAP descriptors of the local endpoints."""

    def __init__(self, core: VtepCore, address: str, port: int,
                 fast: Optional[bool] = None) -> None:
        self.core = core
        if fast is None:
            fast = os.environ.get("OVERLAY_DATAPLANE", "").lower() != "portable"
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        _set_buffers(self.sock, 4 << 20)
        try:
            self.sock.bind((address, port))
        except OSError as e:
            self.sock.close()
            raise OSError(e.errno, bind_error(address, port, e)) from e
        self.sock.setblocking(False)
        pmtu.set_outer_df(self.sock)  # DF on the outer packets; see docs/checks.md
        feats = gso.enable(self.sock) if fast else {"gso": False, "gro": False}
        feats["tso"] = False
        #: what the fast path uses here (empty values: the portable path)
        self.features: Dict[str, bool] = feats
        # Frames refused as too big for the path are answered into their endpoint (ICMP
        # "fragmentation needed", core/ptb.py); OVERLAY_PTB_RELAY=0 only counts them.
        relay = os.environ.get("OVERLAY_PTB_RELAY", "1") != "0"
        self._sender = gso.GsoSender(self.sock, self._error, enabled=feats["gso"],
                                     too_big=self._too_big if relay else None)
        # TAP checksum offload + TSO: "auto" (on while some member takes RCO: no checksum is
        # computed here then), "1" always (checksums finished in Python for other VTEPs: slower
        # than plain frames on CPython), "0" never.
        mode = os.environ.get("OVERLAY_TAP_TSO", "auto")
        self._tso_mode = "off" if not fast or mode == "0" else ("on" if mode == "1" else "auto")
        # Receive coalescing (core/gro.py) needs UDP GRO and TAPs with a virtio header;
        # OVERLAY_TAP_GRO=0 turns it off.
        self._gro_wanted = (bool(fast) and feats["gro"]
                            and os.environ.get("OVERLAY_TAP_GRO", "1") != "0")
        feats["coalesce"] = False
        #: whether to open TAPs with IFF_VNET_HDR (either path handles such TAPs, and turns
        #: their offloads on only when TSO is wanted)
        self.vnet_hdr = self._tso_mode != "off" or self._gro_wanted
        self._vnet: FrozenSet[int] = frozenset()  # TAP fds that carry a virtio header
        self.address = address
        self.port = port
        self.taps: Dict[int, int] = {}
        self.io_errors: Dict[str, int] = {}
        #: receive coalescing: superframes written, segments they carried
        self.merged = [0, 0]
        # Give the CPU away after handing on a burst (sched_yield): after a superframe went
        # into a TAP (the endpoint's reader, just woken, runs instead of this loop's next
        # batch) and after a burst of plain frames went to the underlay (the receiving side
        # runs instead of this loop reading more than the pipeline can carry). Under overload
        # on shared CPUs, what the endpoints receive is bound by their share of the CPU; see
        # docs/benchmarks.md. OVERLAY_DATAPLANE_YIELD: 1 (default), rx, tx or 0.
        self._yield_rx, self._yield_tx = _yield_mode(
            os.environ.get("OVERLAY_DATAPLANE_YIELD", "1"))
        self._burst = False
        #: sched_yield calls made (rx, tx)
        self.yields = [0, 0]
        # One wake-up pipe per thread: the control side writes, the thread drains its own.
        self._pipes = {name: os.pipe() for name in ("rx", "tx")}
        self._null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self._retired: List[int] = []
        for r, _ in self._pipes.values():
            os.set_blocking(r, False)
        self._stopping = False
        #: 1: one thread serves the socket and the TAPs (fewer wake-ups per round trip);
        #: 2: one thread per direction. OVERLAY_DATAPLANE_THREADS overrides.
        self.threads = 1 if os.environ.get("OVERLAY_DATAPLANE_THREADS", "1") == "1" else 2
        self._threads: List[threading.Thread] = []

    # -- control ------------------------------------------------------------------------------
    def start(self) -> None:
        loops = [("vtep-rx", self._rx_loop), ("vtep-tx", self._tx_loop)]
        if self.threads == 1:
            loops = [("vtep", self._loop)]
        for name, target in loops:
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _tso_wanted(self) -> bool:
        if self._tso_mode == "auto":
            return bool(self.core.remcsum)
        return self._tso_mode == "on"

    def refresh_offload(self) -> None:
        """Turn the TAPs' offloads on or off after the member VTEPs (and RCO peers) changed."""
        want = self._tso_wanted()
        if want == self.features["tso"]:
            return
        ok = bool(self._vnet)
        for fd in list(self._vnet):
            ok = tso.set_offload(fd, want) == want and ok
        self.features["tso"] = want and ok

    def add_tap(self, port_id: int, fd: int) -> None:
        if tso.has_vnet_hdr(fd):
            want = self._tso_wanted()
            got = tso.set_offload(fd, want)
            self.features["tso"] = got if not self._vnet else self.features["tso"] and got
            self._vnet = self._vnet | {fd}
        taps = dict(self.taps)
        taps[port_id] = fd
        self.taps = taps
        self._update_coalesce()
        self._wake()

    def remove_tap(self, port_id: int) -> Optional[int]:
        taps = dict(self.taps)
        fd = taps.pop(port_id, None)
        self.taps = taps
        if fd is not None:
            self._vnet = self._vnet - {fd}
        self._update_coalesce()
        self._wake()
        return fd

    def retire_tap(self, port_id: int, fd: int) -> None:
        """Take an endpoint's TAP out of service and destroy it, safely for the data threads.

        They may still hold the descriptor's number from a snapshot taken before the removal;
        were it closed, the number could be reused at once by a blocking descriptor (a pipe of
        the next ``ip`` command) and a read there would hang the data plane. So the number is
        kept, pointing at /dev/null (``dup2`` drops the TAP, which removes the device; reads
        then return EOF), and closed only when the data plane stops.
        """
        self.remove_tap(port_id)
        try:
            os.dup2(self._null, fd)
            self._retired.append(fd)
        except OSError:
            pass

    def stats(self) -> Dict[str, object]:
        """Features in use and how the fast path did (JSON-ready)."""
        return {"features": dict(self.features), "heap_kept": heap.kept,
                "merged_writes": self.merged[0],
                "merged_segments": self.merged[1], "gso_calls": self._sender.calls,
                "gso_datagrams": self._sender.datagrams, "yields_rx": self.yields[0],
                "yields_tx": self.yields[1], **self.core.offload}

    def _update_coalesce(self) -> None:
        # Merged frames need a virtio header on every TAP they could go to.
        on = self._gro_wanted and bool(self.taps) and all(
            fd in self._vnet for fd in self.taps.values())
        self.features["coalesce"] = on

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
        for fd in [*self._retired, self._null]:
            try:
                os.close(fd)
            except OSError:
                pass
        self._retired = []

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

    def _too_big(self, dest: Tuple[str, int], datagram: bytes) -> None:
        """The kernel refused a datagram as larger than the path MTU to ``dest``: tell its
        endpoint (ICMP "fragmentation needed", core/ptb.py), at most once per flow and 100 ms."""
        if not self.core.too_big(datagram, time.monotonic()):
            return
        mtu = pmtu.route_mtu(dest)
        if mtu is None:
            return
        self._perform(self.core.relay_too_big(
            datagram, ptb.inner_mtu(mtu, self.sock.family == socket.AF_INET6)))

    # -- the two directions -------------------------------------------------------------------
    def _perform(self, actions: List[Tuple[int, object, bytes]],
                 vnet: bytes = gro.PLAIN) -> None:
        for kind, where, data in actions:
            if kind == SEND:
                self._sender.add(where, data)  # type: ignore[arg-type]
                continue
            if kind == SEND_RUN:
                self._sender.add_run(where, data)  # type: ignore[arg-type]
                continue
            fd = self.taps.get(where)  # type: ignore[call-overload]
            if fd is None:
                continue
            try:
                if kind == DELIVER_VNET:  # header + frame, from a TAP with offloads
                    if fd in self._vnet:
                        os.write(fd, data)
                    else:
                        for frame in offload.segment(data[:offload.VNET_LEN],
                                                     data[offload.VNET_LEN:]):
                            os.write(fd, frame)
                elif fd in self._vnet:
                    os.writev(fd, (vnet, data))
                elif vnet == gro.PLAIN:
                    os.write(fd, data)
                else:  # checksum left to us (RCO), and this TAP cannot hand it on unfinished
                    os.write(fd, offload.finish(vnet, data))
            except (ValueError, struct.error) as e:
                self._error("tap-write", OSError(errno.EPROTONOSUPPORT, str(e)))
            except OSError as e:
                self._error("tap-write", e)

    def _deliver(self, actions: List[Tuple[int, object, bytes]], vnet: Optional[bytes]) -> None:
        """Received frames' actions, with the virtio header their datagram's RCO asks for."""
        if vnet is None:  # bad RCO fields: VtepCore.from_underlay has dropped and counted it
            self._error("rco", OSError(errno.EINVAL, "bad remote checksum offload"))
            return
        self._perform(actions, vnet)

    def _rx_loop(self) -> None:
        sock = self.sock
        wake = self._pipes["rx"][0]
        receive = self._receive_gro if self.features["gro"] else self._receive_one
        while not self._stopping:
            try:
                select.select([sock, wake], [], [], 1.0)  # type: ignore[type-var]
            except (OSError, ValueError):
                return
            self._drain(wake)
            for _ in range(_READ_BUDGET * 4):
                try:
                    if not receive():
                        break
                except OSError as e:
                    # ICMP errors for earlier sends surface here (ECONNREFUSED etc.): count them.
                    self._error("recv", e)

    def _receive_one(self) -> bool:
        try:
            data, addr = self.sock.recvfrom(_MAX_FRAME)
        except BlockingIOError:
            return False
        actions = self.core.from_underlay(addr[0], data)
        if actions:
            self._deliver(actions, self._rco_vnet(addr[0], data))
        return True

    def _rco_vnet(self, src: str, datagram: bytes) -> Optional[bytes]:
        """The virtio header a received datagram's RCO asks for (only from RCO peers)."""
        return offload.rco_vnet(datagram) if src in self.core.remcsum else gro.PLAIN

    def _receive_gro(self) -> bool:
        try:
            data, anc, flags, addr = self.sock.recvmsg(_MAX_FRAME, gso.CMSG_SPACE)
        except BlockingIOError:
            return False
        if flags & _MSG_TRUNC:
            self._error("recv", OSError(errno.EMSGSIZE, "datagram truncated"))
            return True
        size = gso.gro_size(anc) if anc else 0
        if size and self.features["coalesce"]:
            # The kernel hands over one GSO send (or less) per call: a TSO frame of the
            # endpoint's, or part of one. While the next batches are of the same VTEP and size,
            # merge across them (up to a 64 KiB superframe): fewer TAP writes, and the
            # endpoint's TCP, which acknowledges per superframe, sends bigger TSO frames back.
            parts = [data]
            total = len(data)
            while total % size == 0 and total + size <= _JOIN_UPTO:
                try:
                    d2, anc2, flags2, addr2 = self.sock.recvmsg(_MAX_FRAME, gso.CMSG_SPACE)
                except BlockingIOError:
                    break
                size2 = gso.gro_size(anc2) if anc2 else 0
                if (addr2 == addr and not flags2 & _MSG_TRUNC
                        and (size2 == size or (not size2 and len(d2) <= size))):
                    parts.append(d2)
                    total += len(d2)
                    continue
                self._receive_batch(b"".join(parts) if len(parts) > 1 else data, size, addr[0])
                if flags2 & _MSG_TRUNC:
                    self._error("recv", OSError(errno.EMSGSIZE, "datagram truncated"))
                    return True
                parts, data, size, addr = [], d2, size2, addr2
                break
            if len(parts) > 1:
                data = b"".join(parts)
        self._receive_batch(data, size, addr[0])
        return True

    def _receive_batch(self, data: bytes, size: int, src: str) -> None:
        """Datagrams of one VTEP, back to back, all ``size`` bytes but a shorter last one."""
        core = self.core
        if not size or size >= len(data):
            actions = core.from_underlay(src, data)
            if actions:
                self._deliver(actions, self._rco_vnet(src, data))
            return
        if self.features["coalesce"]:
            merged = self.merged
            for dgram, packets, extra, vnet in gro.coalesce(data, size, src in core.remcsum):
                actions = core.from_underlay(src, dgram, packets, extra)
                if actions:
                    self._deliver(actions, vnet)
                if packets > 1:
                    merged[0] += 1
                    merged[1] += packets
                    if self._yield_rx:
                        self.yields[0] += 1
                        os.sched_yield()
            return
        for off in range(0, len(data), size):
            dgram = data[off:off + size]
            actions = core.from_underlay(src, dgram)
            if actions:
                self._deliver(actions, self._rco_vnet(src, dgram))

    def _loop(self) -> None:
        """Both directions in one thread: what the underlay brings is written to a TAP, what a
        TAP brings goes to the underlay. Descriptors are watched with epoll and read when the
        kernel reports them ready: once, or, if a descriptor was ready within the last ms too
        (a busy one), until the kernel has nothing more or a budget is spent. An idle path thus
        makes no empty reads (each a system call: ~5 us on a CPU that has been idle for a few
        ms, several per round trip) and a busy one still takes its frames in batches."""
        sfd = self.sock.fileno()
        wakes = (self._pipes["rx"][0], self._pipes["tx"][0])
        receive = self._receive_gro if self.features["gro"] else self._receive_one
        flush = self._sender.flush
        read_tap = self._read_tap
        error = self._error
        ep = select.epoll()
        try:
            ep.register(sfd, select.EPOLLIN)
            for w in wakes:
                ep.register(w, select.EPOLLIN)
            ports: Dict[int, int] = {}  # registered TAP fd -> port
            seen: Optional[Dict[int, int]] = None
            last: Dict[int, float] = {}  # fd -> when it was last reported ready
            clock = time.monotonic
            while not self._stopping:
                taps = self.taps  # replaced, never changed in place: a snapshot
                if taps is not seen:
                    seen = taps
                    ports = _sync_epoll(ep, ports, {fd: port for port, fd in taps.items()})
                try:
                    events = ep.poll(1.0)
                except OSError:
                    if self._stopping:
                        return
                    continue
                now = clock()
                for fd, mask in events:
                    # Busy (also ready within the last ms): read it out; else one read.
                    budget = _READ_BUDGET if now - last.get(fd, -1.0) < _BUSY else 1
                    last[fd] = now
                    if fd == sfd:
                        for _ in range(budget):
                            try:
                                if not receive():
                                    break
                            except OSError as e:
                                error("recv", e)
                    elif fd in wakes:
                        self._drain(fd)
                    elif fd in ports:
                        if mask & _GONE:  # the TAP's device was deleted under us: stop watching
                            error("tap-read", OSError(errno.ENODEV, "TAP device gone"))
                            ports = _sync_epoll(ep, ports, {f: p for f, p in ports.items()
                                                            if f != fd})
                            continue
                        read_tap(ports[fd], fd, budget)
                flush()
                if self._burst:
                    self._burst = False
                    self.yields[1] += 1
                    os.sched_yield()
        finally:
            ep.close()

    def _read_tap(self, port: int, fd: int, budget: int = _READ_BUDGET) -> int:
        """Forward up to ``budget`` frames from one TAP; returns how many were read."""
        frames: List[bytes] = []
        n = 0
        read = os.read
        for n in range(budget):  # noqa: B007
            try:
                frame = read(fd, _MAX_READ)
            except BlockingIOError:
                break
            except OSError as e:
                self._error("tap-read", e)
                break
            if not frame:  # a retired TAP (now /dev/null): nothing more will come
                break
            frames.append(frame)
        else:
            n = budget
        if frames:
            if self._yield_tx and n >= _BURST and len(frames[0]) <= _PLAIN_FRAME:
                self._burst = True
            if fd in self._vnet:  # behind virtio headers: offloads (RCO, TSO) or plain
                self._send_actions(self.core.from_port_vnet_batch(port, frames))
            else:
                self._send_actions(self.core.from_port_batch(port, frames))
        return n

    def _send_actions(self, actions: List[Tuple[int, object, bytes]]) -> None:
        """Actions of frames read from a TAP: datagrams to the sender, the rest one by one."""
        add = self._sender.add
        for kind, where, data in actions:
            if kind == SEND:
                add(where, data)  # type: ignore[arg-type]
            elif kind == SEND_RUN:
                self._sender.add_run(where, data)  # type: ignore[arg-type]
            else:
                self._perform([(kind, where, data)])

    def _tx_loop(self) -> None:
        core = self.core
        wake = self._pipes["tx"][0]
        flush = self._sender.flush
        gone: Set[int] = set()  # TAPs whose device was deleted under us: never readable again
        while not self._stopping:
            taps = self.taps
            by_fd = {fd: port for port, fd in taps.items() if fd not in gone}
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
                vnet = fd in self._vnet
                for _ in range(_READ_BUDGET):
                    try:
                        frame = os.read(fd, _MAX_READ)
                    except BlockingIOError:
                        break
                    except OSError as e:
                        if e.errno == errno.EBADFD:  # detached: its device was deleted
                            gone.add(fd)
                            e = OSError(errno.ENODEV, "TAP device gone")
                        self._error("tap-read", e)
                        break
                    if not frame:  # a retired TAP (now /dev/null)
                        break
                    if vnet:
                        self._from_vnet_tap(port, frame)
                        continue
                    actions = core.from_port(port, frame)
                    if actions:
                        self._perform(actions)
            flush()

    def _from_vnet_tap(self, port: int, data: bytes) -> None:
        """A frame behind a virtio header (plain, unfinished checksum, or TSO)."""
        self._send_actions(self.core.from_port_vnet(port, data))


def _sync_epoll(ep: Any, have: Dict[int, int], want: Dict[int, int]) -> Dict[int, int]:
    """Make ``ep`` watch the TAP descriptors of ``want`` (fd -> port) instead of ``have``.

    A retired TAP's number now points at /dev/null (see :meth:`Dataplane.retire_tap`): the kernel
    dropped its registration when the TAP itself was closed, so unregistering it may fail; and a
    TAP retired right after the snapshot ``want`` was taken cannot be registered (/dev/null is
    not pollable): it is left out, and the next snapshot no longer has it."""
    for fd in have:
        if fd not in want:
            try:
                ep.unregister(fd)
            except OSError:
                pass
    now = {}
    for fd, port in want.items():
        if fd not in have:
            try:
                ep.register(fd, select.EPOLLIN)
            except OSError:
                continue
        now[fd] = port
    return now


def _set_buffers(sock: socket.socket, size: int) -> None:
    """Socket buffers of ``size`` bytes; the FORCE options pass ``net.core.[rw]mem_max`` (root)."""
    for force, plain in ((33, socket.SO_RCVBUF), (32, socket.SO_SNDBUF)):  # SO_*BUFFORCE
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, size)
