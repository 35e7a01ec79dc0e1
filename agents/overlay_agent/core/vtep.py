"""The VTEP's forwarding decisions (RFC 7348), free of I/O.

The data-plane threads hand every frame read from an endpoint's TAP to :meth:`VtepCore.from_port`
and every datagram read from the underlay socket to :meth:`VtepCore.from_underlay`; both return a
list of actions for the caller to carry out:

* ``(SEND, (ip, port), datagram)`` - send a VXLAN datagram to a remote VTEP;
* ``(DELIVER, port_id, frame)`` - write an Ethernet frame to a local endpoint's TAP.

State is replaced, never mutated in place, so the data-plane threads may read it while the
control thread installs a new table (reference assignment is atomic under the GIL). Counters are
split by direction: the receive path and the transmit path each own theirs.
"""

from __future__ import annotations

import contextlib
import struct
from typing import Any, ContextManager, Dict, FrozenSet, List, Optional, Tuple

from overlay_agent.core import offload, ptb
from overlay_agent.core.probelog import PROBE_VNI, ProbeLog
from overlay_agent.wire.vxlan import FLAG_I, HEADER_LEN

SEND = 0
DELIVER = 1
#: ``(DELIVER_VNET, port_id, virtio header + frame)``: a frame as read from a TAP with offloads
#: (unfinished checksum, or 64 KiB of TCP), for another local TAP that takes it as it is
DELIVER_VNET = 2
#: ``(SEND_RUN, (ip, port), [datagram, ...])``: datagrams to one VTEP, all of the first one's
#: size but a shorter last one (a TSO frame's segments): one GSO send, or few
SEND_RUN = 3

Addr = Tuple[str, int]
Action = Tuple[int, object, bytes]

_ETH_P_ARP = b"\x08\x06"
_ARP_ETH_IPV4 = b"\x00\x01\x08\x00\x06\x04"
_MIN_FRAME = 14
_VNI = struct.Struct("!I")

# Drop reasons: stable names, they appear in counters and reports.
DROP_SHORT = "short-header"
DROP_NO_I_FLAG = "no-i-flag"
DROP_NON_MEMBER = "non-member-vtep"
DROP_UNKNOWN_VNI = "unknown-vni"
DROP_RUNT = "runt-frame"
DROP_UNKNOWN_DST = "unknown-destination"
DROP_NO_PORT = "unknown-port"
DROP_HAIRPIN = "hairpin"
DROP_NO_RECEIVERS = "no-receivers"
DROP_OFFLOAD = "bad-offload-frame"
DROP_BAD_RCO = "bad-rco"
#: refused by the underlay as larger than the path MTU (EMSGSIZE at the send; see core/ptb.py)
DROP_TOO_BIG = "too-big"

RX_KEYS = ("rx_packets", "rx_bytes")
TX_KEYS = ("tx_packets", "tx_bytes", "local_packets", "flooded", "arp_suppressed",
           "ptb_relayed")


class VniState:
    """What one VNI needs on the hot path. Built whole by :class:`VtepCore`, then only read."""

    __slots__ = ("arp", "header", "local_ports", "macs", "rco", "remote_vteps", "vni")

    def __init__(
        self,
        vni: int,
        macs: Dict[bytes, Tuple[int, object]],
        arp: Dict[bytes, bytes],
        local_ports: Tuple[int, ...],
        remote_vteps: Tuple[Addr, ...],
    ) -> None:
        self.vni = vni
        #: MAC -> (SEND, vtep address) or (DELIVER, port id)
        self.macs = macs
        #: IPv4 address (4 packed bytes) -> MAC, for ARP suppression
        self.arp = arp
        self.local_ports = local_ports
        self.remote_vteps = remote_vteps
        self.header = bytes((FLAG_I, 0, 0, 0)) + _VNI.pack(vni << 8)
        #: virtio header of a frame with an unfinished checksum -> the VXLAN header with RCO
        #: for it (b"" where RCO cannot say it); filled by the data path as headers come
        self.rco: Dict[bytes, bytes] = {}


class Counters:
    """Per-VNI counters for one direction, plus drops by reason."""

    def __init__(self, keys: Tuple[str, ...]) -> None:
        self.keys = keys
        self.per_vni: Dict[int, Dict[str, int]] = {}
        self.drops: Dict[str, int] = {}
        self.vni_drops: Dict[int, Dict[str, int]] = {}

    def vni(self, vni: int) -> Dict[str, int]:
        c = self.per_vni.get(vni)
        if c is None:
            c = self.per_vni[vni] = dict.fromkeys(self.keys, 0)
        return c

    def drop(self, reason: str, vni: Optional[int] = None) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1
        if vni is not None:
            d = self.vni_drops.setdefault(vni, {})
            d[reason] = d.get(reason, 0) + 1


class VtepCore:
    """Forwarding state of one VTEP: local ports, remote mappings, accepted member VTEPs."""

    def __init__(self, lock: Optional[ContextManager[Any]] = None) -> None:
        """``lock``: held around every control-side change (an ``RLock`` where more than one
        thread configures: the agent's RPC thread and its Raft sync thread). Each change copies
        the state and swaps it in; without the lock two concurrent changes could each swap in a
        copy that lacks the other's. The data path never takes it."""
        self._lock: ContextManager[Any] = lock if lock is not None else contextlib.nullcontext()
        self.vnis: Dict[int, VniState] = {}
        #: port id -> (vni, mac)
        self.ports: Dict[int, Tuple[int, bytes]] = {}
        self.members: FrozenSet[str] = frozenset()
        #: member VTEPs (underlay IPs) that take VXLAN Remote Checksum Offload (core/offload.py)
        self.remcsum: FrozenSet[str] = frozenset()
        self.rx = Counters(RX_KEYS)
        self.tx = Counters(TX_KEYS)
        #: offloads (data side only): TSO frames cut, datagrams sent with RCO, frames whose
        #: checksums were finished here (for a VTEP without RCO), datagrams received with RCO
        self.offload = {"tso_frames": 0, "rco_datagrams": 0, "csum_finished": 0,
                        "rco_received": 0}
        #: underlay port probes that arrived from member VTEPs (see core/probelog.py)
        self.probes = ProbeLog()
        #: when an endpoint is owed ICMP "fragmentation needed" (data side, transmit path)
        self.ptb = ptb.Limiter()
        self._ptb_ident = 0
        # The configuration the VniStates are built from (control side only).
        self._networks: Dict[int, Dict[str, object]] = {}

    # -- control side: every change under the lock ------------------------------------------
    def add_network(self, vni: int) -> None:
        with self._lock:
            self._add_network(vni)

    def remove_network(self, vni: int) -> None:
        with self._lock:
            self._remove_network(vni)

    def add_port(self, port_id: int, vni: int, mac: bytes, ip: Optional[bytes]) -> None:
        """A local endpoint on ``vni`` with its MAC and packed IPv4 address."""
        with self._lock:
            self._add_port(port_id, vni, mac, ip)

    def remove_port(self, port_id: int) -> None:
        with self._lock:
            self._remove_port(port_id)

    def set_remote(
        self, vni: int, entries: List[Tuple[bytes, Optional[bytes], Addr]], vteps: List[Addr]
    ) -> None:
        """Replace what ``vni`` knows of remote endpoints: (MAC, packed IP or None, VTEP)."""
        with self._lock:
            self._set_remote(vni, entries, vteps)

    def set_members(self, ips: List[str], remcsum: Optional[List[str]] = None) -> None:
        """The underlay addresses from which VXLAN is accepted, and those of them that take
        Remote Checksum Offload (RCO is never sent to an address outside ``ips``)."""
        with self._lock:
            self._set_members(ips, remcsum)

    # -- control side -------------------------------------------------------------------------
    def _add_network(self, vni: int) -> None:
        if vni not in self._networks:
            self._networks[vni] = {"local": {}, "remote": {}}
            self._rebuild(vni)

    def _remove_network(self, vni: int) -> None:
        self._networks.pop(vni, None)
        self.ports = {p: v for p, v in self.ports.items() if v[0] != vni}
        vnis = dict(self.vnis)
        vnis.pop(vni, None)
        self.vnis = vnis

    def _add_port(self, port_id: int, vni: int, mac: bytes, ip: Optional[bytes]) -> None:
        """A local endpoint on ``vni`` with its MAC and packed IPv4 address."""
        net = self._network(vni)
        if port_id in self.ports:
            raise ValueError(f"port {port_id} is in use (VNI {self.ports[port_id][0]})")
        local: Dict[int, Tuple[bytes, Optional[bytes]]] = net["local"]  # type: ignore[assignment]
        local[port_id] = (mac, ip)
        ports = dict(self.ports)
        ports[port_id] = (vni, mac)
        self.ports = ports
        self._rebuild(vni)

    def _remove_port(self, port_id: int) -> None:
        entry = self.ports.get(port_id)
        if entry is None:
            return
        vni = entry[0]
        ports = dict(self.ports)
        del ports[port_id]
        self.ports = ports
        local = self._networks[vni]["local"]
        local.pop(port_id, None)  # type: ignore[attr-defined]
        self._rebuild(vni)

    def _set_remote(
        self, vni: int, entries: List[Tuple[bytes, Optional[bytes], Addr]], vteps: List[Addr]
    ) -> None:
        """Replace what ``vni`` knows of remote endpoints: (MAC, packed IP or None, VTEP)."""
        net = self._network(vni)
        net["remote"] = {mac: (ip, (str(a[0]), int(a[1]))) for mac, ip, a in entries}
        net["vteps"] = tuple(sorted({(str(a[0]), int(a[1])) for a in vteps}))
        self._rebuild(vni)

    def _set_members(self, ips: List[str], remcsum: Optional[List[str]] = None) -> None:
        members = frozenset(ips)
        self.members = members
        self.remcsum = frozenset(remcsum or ()) & members

    def _network(self, vni: int) -> Dict[str, object]:
        net = self._networks.get(vni)
        if net is None:
            raise KeyError(f"VNI {vni} is not configured on this VTEP")
        return net

    def _rebuild(self, vni: int) -> None:
        net = self._networks[vni]
        local: Dict[int, Tuple[bytes, Optional[bytes]]] = net["local"]  # type: ignore[assignment]
        remote: Dict[bytes, Tuple[Optional[bytes], Addr]] = net["remote"]  # type: ignore[assignment]
        vteps: Tuple[Addr, ...] = net.get("vteps", ())  # type: ignore[assignment]
        macs: Dict[bytes, Tuple[int, object]] = {}
        arp: Dict[bytes, bytes] = {}
        for mac, (ip, addr) in remote.items():
            macs[mac] = (SEND, addr)
            if ip is not None:
                arp[ip] = mac
        for port_id, (mac, ip) in local.items():
            macs[mac] = (DELIVER, port_id)
            if ip is not None:
                arp[ip] = mac
        flood = set(vteps) | {addr for _, addr in remote.values()}
        state = VniState(vni, macs, arp, tuple(sorted(local)), tuple(sorted(flood)))
        vnis = dict(self.vnis)
        vnis[vni] = state
        self.vnis = vnis

    # -- data side ----------------------------------------------------------------------------
    def from_port(self, port_id: int, frame: bytes) -> List[Action]:
        """A frame an endpoint sent: encapsulate, deliver locally, or answer ARP for it."""
        entry = self.ports.get(port_id)
        if entry is None:
            self.tx.drop(DROP_NO_PORT)
            return []
        vni = entry[0]
        state = self.vnis.get(vni)
        if state is None:  # the network was removed under us
            self.tx.drop(DROP_NO_PORT)
            return []
        if len(frame) < _MIN_FRAME:
            self.tx.drop(DROP_RUNT, vni)
            return []
        c = self.tx.vni(vni)
        dst = frame[:6]
        hit = state.macs.get(dst)
        if hit is not None:
            kind, where = hit
            if kind == SEND:
                c["tx_packets"] += 1
                c["tx_bytes"] += len(frame)
                return [(SEND, where, state.header + frame)]
            if where == port_id:
                self.tx.drop(DROP_HAIRPIN, vni)
                return []
            c["local_packets"] += 1
            return [(DELIVER, where, frame)]
        if not dst[0] & 1:
            self.tx.drop(DROP_UNKNOWN_DST, vni)
            return []
        # Broadcast or multicast. An ARP request for a known address is answered right here.
        if (frame[12:14] == _ETH_P_ARP and len(frame) >= 42 and frame[14:20] == _ARP_ETH_IPV4
                and frame[20:22] == b"\x00\x01"):  # an Ethernet/IPv4 ARP request
            mac = state.arp.get(frame[38:42])
            # A request for the sender's own address (a conflict probe, or gratuitous) is not
            # ours to answer: it goes out like any broadcast.
            if mac is not None and frame[28:32] != frame[38:42]:
                c["arp_suppressed"] += 1
                return [(DELIVER, port_id, _arp_reply(frame, mac))]
        actions: List[Action] = []
        if state.remote_vteps:
            packet = state.header + frame
            for addr in state.remote_vteps:
                actions.append((SEND, addr, packet))
            c["flooded"] += 1
            c["tx_packets"] += len(state.remote_vteps)
            c["tx_bytes"] += len(frame) * len(state.remote_vteps)
        for other in state.local_ports:
            if other != port_id:
                actions.append((DELIVER, other, frame))
        if not actions:
            self.tx.drop(DROP_NO_RECEIVERS, vni)
        return actions

    def from_port_batch(self, port_id: int, frames: List[bytes]) -> List[Action]:
        """:meth:`from_port` for several frames of one port, in order: the same actions and
        counters, with the lookups per port and the counter updates done once per batch."""
        state = self._port_state(port_id)
        if state is None:  # unknown port: each frame is dropped and counted
            return [a for frame in frames for a in self.from_port(port_id, frame)]
        macs = state.macs
        header = state.header
        out: List[Action] = []
        sent = nbytes = 0
        for frame in frames:
            hit = macs.get(frame[:6])
            if hit is not None and hit[0] == SEND and len(frame) >= _MIN_FRAME:
                out.append((SEND, hit[1], header + frame))
                sent += 1
                nbytes += len(frame)
            else:
                out.extend(self.from_port(port_id, frame))
        if sent:
            c = self.tx.vni(state.vni)
            c["tx_packets"] += sent
            c["tx_bytes"] += nbytes
        return out

    def from_port_vnet_batch(self, port_id: int, bufs: List[bytes]) -> List[Action]:
        """:meth:`from_port_vnet` for several frames of one port, in order; the common ones
        (an ordinary frame, or one with an unfinished checksum for an RCO-capable VTEP) take a
        short path, the rest (TSO frames, local delivery, flooding) the full one."""
        state = self._port_state(port_id)
        if state is None:
            return [a for buf in bufs for a in self.from_port_vnet(port_id, buf)]
        macs = state.macs
        header = state.header
        rco = state.rco
        remcsum = self.remcsum
        plain = offload.PLAIN
        vlen = offload.VNET_LEN
        out: List[Action] = []
        sent = nbytes = rco_sent = 0
        for buf in bufs:
            hit = macs.get(buf[vlen:vlen + 6])
            if hit is not None and hit[0] == SEND and len(buf) >= vlen + _MIN_FRAME:
                head = buf[:vlen]
                if head == plain:
                    out.append((SEND, hit[1], header + buf[vlen:]))
                    sent += 1
                    nbytes += len(buf) - vlen
                    continue
                if head[1] == offload.GSO_NONE and hit[1][0] in remcsum:  # type: ignore[index]
                    h = rco.get(head)
                    if h is None:
                        if len(rco) > 64:
                            rco.clear()
                        _f, _g, _hl, _gs, start, off = offload.VNET.unpack(head)
                        h = rco[head] = offload.rco_header(header, start, off) or b""
                    if h:
                        out.append((SEND, hit[1], h + buf[vlen:]))
                        sent += 1
                        rco_sent += 1
                        nbytes += len(buf) - vlen
                        continue
            out.extend(self.from_port_vnet(port_id, buf))
        if rco_sent:
            self.offload["rco_datagrams"] += rco_sent
        if sent:
            c = self.tx.vni(state.vni)
            c["tx_packets"] += sent
            c["tx_bytes"] += nbytes
        return out

    def _port_state(self, port_id: int) -> Optional[VniState]:
        entry = self.ports.get(port_id)
        return self.vnis.get(entry[0]) if entry is not None else None

    def from_port_vnet(self, port_id: int, buf: bytes) -> List[Action]:
        """A frame read behind a virtio header with offloads (``buf`` = header + frame): to an
        RCO-capable VTEP as datagrams with RCO (a 64 KiB TCP frame cut into segments, no
        checksum computed here); to another local TAP as it is (:data:`DELIVER_VNET`); to
        anyone else as ordinary frames with finished checksums, through :meth:`from_port`."""
        state = self._port_state(port_id)
        if state is not None and len(buf) >= offload.VNET_LEN + _MIN_FRAME:
            hit = state.macs.get(buf[offload.VNET_LEN:offload.VNET_LEN + 6])
            if hit is not None:
                kind, where = hit
                try:
                    if kind == SEND and where[0] in self.remcsum:  # type: ignore[index]
                        datagrams = offload.encap_rco(state.header, buf)
                        if datagrams is not None:
                            stats = self.offload
                            stats["rco_datagrams"] += len(datagrams)
                            if buf[1] & ~offload.GSO_ECN:
                                stats["tso_frames"] += 1
                            c = self.tx.vni(state.vni)
                            c["tx_packets"] += len(datagrams)
                            c["tx_bytes"] += sum(map(len, datagrams)) - 8 * len(datagrams)
                            if len(datagrams) == 1:
                                return [(SEND, where, datagrams[0])]
                            return [(SEND_RUN, where, datagrams)]  # type: ignore[list-item]
                    elif kind == DELIVER and where != port_id:
                        self.tx.vni(state.vni)["local_packets"] += 1
                        return [(DELIVER_VNET, where, buf)]
                except (ValueError, IndexError, struct.error):
                    self.tx.drop(DROP_OFFLOAD, state.vni)
                    return []
        try:
            frames = offload.segment(buf[:offload.VNET_LEN], buf[offload.VNET_LEN:])
        except (ValueError, IndexError, struct.error):
            self.tx.drop(DROP_OFFLOAD, state.vni if state is not None else None)
            return []
        if buf[0] & offload.F_NEEDS_CSUM:
            self.offload["csum_finished"] += len(frames)
        if buf[1] & ~offload.GSO_ECN:
            self.offload["tso_frames"] += 1
        out: List[Action] = []
        for frame in frames:
            out.extend(self.from_port(port_id, frame))
        return out

    def from_underlay(self, src_ip: str, datagram: bytes, packets: int = 1,
                      extra_bytes: int = 0) -> List[Action]:
        """A datagram from the underlay: check who sent it and what it is, then decapsulate.

        A datagram merged from several (:mod:`overlay_agent.core.gro`) counts as ``packets``
        frames of ``extra_bytes`` more than its own length.
        """
        if src_ip not in self.members:
            self.rx.drop(DROP_NON_MEMBER)
            return []
        if len(datagram) < HEADER_LEN:
            self.rx.drop(DROP_SHORT)
            return []
        if not datagram[0] & FLAG_I:
            # Not VXLAN; from a member it may be a random-payload port probe (logged, not sent on).
            if not self.probes.offer(src_ip, datagram):
                self.rx.drop(DROP_NO_I_FLAG)
            return []
        vni = _VNI.unpack_from(datagram, 4)[0] >> 8
        state = self.vnis.get(vni)
        if state is None:
            # The probe VNI is never a network: a VXLAN port probe is logged, never delivered.
            if vni != PROBE_VNI or not self.probes.offer(src_ip, datagram):
                self.rx.drop(DROP_UNKNOWN_VNI)
            return []
        # A merged superframe (~64 KiB) is handed on as a view, not copied once more.
        frame: Any = datagram[HEADER_LEN:] if packets == 1 else memoryview(datagram)[HEADER_LEN:]
        if len(frame) < _MIN_FRAME:
            self.rx.drop(DROP_RUNT, vni)
            return []
        if datagram[1] & offload.RCO_FLAG and src_ip in self.remcsum:
            # (From a VTEP not agreed on RCO the reserved bits are ignored, as RFC 7348 says.)
            if packets == 1 and offload.rco_vnet(datagram) is None:
                # Remote checksum offload pointing outside the frame: nothing could finish it.
                self.rx.drop(DROP_BAD_RCO, vni)
                return []
            self.offload["rco_received"] += packets
        dst = datagram[HEADER_LEN:HEADER_LEN + 6]  # bytes (a view's slice hashes slowly)
        c = self.rx.vni(vni)
        if dst[0] & 1:
            if not state.local_ports:
                self.rx.drop(DROP_NO_RECEIVERS, vni)
                return []
            c["rx_packets"] += packets
            c["rx_bytes"] += len(frame) + extra_bytes
            return [(DELIVER, p, frame) for p in state.local_ports]
        hit = state.macs.get(dst)
        if hit is None or hit[0] != DELIVER:
            self.rx.drop(DROP_UNKNOWN_DST, vni)
            return []
        c["rx_packets"] += packets
        c["rx_bytes"] += len(frame) + extra_bytes
        return [(DELIVER, hit[1], frame)]

    # -- the path MTU (transmit side) --------------------------------------------------------
    def too_big(self, datagram: bytes, now: float) -> bool:
        """A datagram the underlay refused as larger than the path MTU (EMSGSIZE at the send):
        counted as a ``too-big`` drop of its VNI. True when its endpoint is owed ICMP
        "fragmentation needed" now; the caller then reads the path MTU to the VTEP it was for
        and calls :meth:`relay_too_big`."""
        vni = _vni_of(datagram)
        self.tx.drop(DROP_TOO_BIG, vni if vni in self.vnis else None)
        key = ptb.candidate(datagram)
        return key is not None and self.ptb.allow(key, now)

    def relay_too_big(self, datagram: bytes, inner_mtu: int) -> List[Action]:
        """The ICMP "fragmentation needed" for a refused datagram, to the local endpoint that
        sent it, advertising ``inner_mtu`` (what the path leaves for the inner IP packet)."""
        vni = _vni_of(datagram)
        src_mac = bytes(datagram[14:20])
        port = next((p for p, (v, mac) in self.ports.items() if v == vni and mac == src_mac),
                    None)
        if port is None:
            return []
        self._ptb_ident = (self._ptb_ident + 1) & 0xFFFF
        frame = ptb.frag_needed_frame(datagram, inner_mtu, self._ptb_ident)
        if frame is None:
            return []
        self.tx.vni(vni)["ptb_relayed"] += 1
        return [(DELIVER, port, frame)]

    # -- reporting ----------------------------------------------------------------------------
    def counters(self) -> Dict[str, object]:
        """A JSON-ready snapshot: per VNI rx/tx counts and drops, and drops before any VNI."""
        vnis: Dict[str, Dict[str, object]] = {}
        for vni in sorted(set(self.vnis) | set(self.rx.per_vni) | set(self.tx.per_vni)):
            row: Dict[str, object] = dict.fromkeys(RX_KEYS + TX_KEYS, 0)
            row.update(self.rx.per_vni.get(vni, {}))
            row.update(self.tx.per_vni.get(vni, {}))
            drops: Dict[str, int] = {}
            for src in (self.rx.vni_drops.get(vni, {}), self.tx.vni_drops.get(vni, {})):
                for k, v in list(src.items()):  # copied at once: the data plane may add keys
                    drops[k] = drops.get(k, 0) + v
            row["drops"] = drops
            vnis[str(vni)] = row
        drops_all: Dict[str, int] = {}
        for src in (self.rx.drops, self.tx.drops):
            for k, v in list(src.items()):
                drops_all[k] = drops_all.get(k, 0) + v
        return {"vnis": vnis, "drops": drops_all}


def _vni_of(datagram: bytes) -> int:
    """The VNI of a VXLAN datagram this VTEP built (-1 if it is too short to have one)."""
    return int.from_bytes(datagram[4:7], "big") if len(datagram) >= HEADER_LEN else -1


def _arp_reply(request: bytes, mac: bytes) -> bytes:
    """The Ethernet frame answering an ARP request (already checked to be Ethernet/IPv4)."""
    sender_mac = request[22:28]
    sender_ip = request[28:32]
    target_ip = request[38:42]
    return (
        sender_mac
        + mac
        + _ETH_P_ARP
        + _ARP_ETH_IPV4
        + b"\x00\x02"
        + mac
        + target_ip
        + sender_mac
        + sender_ip
    )


__all__ = ["DELIVER", "SEND", "VtepCore"]
