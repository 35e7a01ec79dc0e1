"""Underlay port probes: their bytes, and the log a receiving VTEP keeps of them (sans-IO).

The port audit asks "does UDP/4789 get from host A to host B?" twice, because some middleboxes
drop VXLAN by content yet pass other UDP on the same port:

* a **VXLAN probe** is a well-formed VXLAN datagram (I flag set) on the reserved probe VNI
  :data:`PROBE_VNI` (0; networks use 1..16777215), carrying an Ethernet frame of the local
  experimental EtherType 0x88B5 whose payload starts with :data:`VXLAN_MAGIC`;
* a **raw probe** is UDP to the same port whose first byte has the I flag clear (so it is not a
  VXLAN header to anyone who looks) followed by :data:`RAW_MAGIC`; the rest is random padding.

Both carry a probe id (ASCII, 1..32 bytes) and a sequence number. The receiving VTEP checks the
sender is a member VTEP *first*, exactly as for data: a probe from a non-member is dropped and
counted as ``non-member-vtep`` like any other datagram, so probes open no hole in that rule.
From a member, a probe is logged here (per id: kind, source, count, sequence numbers) and never
delivered to an endpoint. The controller reads the log over RPC (``probe_log``) to learn which
probes arrived. Probes are recognised only on the VTEP's cold paths (unknown VNI, no I flag), so
the data path pays nothing for them.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Optional, Tuple

PROBE_VNI = 0
ETHERTYPE = 0x88B5  # IEEE 802 local experimental EtherType 1
PROBE_MAC = bytes.fromhex("026f76707262")  # locally administered unicast, "ovprb"
VXLAN_MAGIC = b"OVPROBE1"
RAW_MAGIC = b"OVRAWUDP"
KIND_VXLAN = "vxlan"
KIND_RAW = "udp"
MAX_ID = 32
#: ids kept in the log; the oldest is forgotten first (a flood cannot grow memory)
LOG_LIMIT = 4096
#: sequence numbers kept per id (the count keeps going)
SEQ_LIMIT = 64

_SEQ = struct.Struct("!H")
_VXLAN_HEADER = bytes((0x08, 0, 0, 0)) + (PROBE_VNI << 8).to_bytes(4, "big")
_ETH_HEADER = PROBE_MAC + PROBE_MAC + ETHERTYPE.to_bytes(2, "big")
_RAW_LEAD = b"\x00" + RAW_MAGIC
_VXLAN_LEAD = _VXLAN_HEADER + _ETH_HEADER + VXLAN_MAGIC


def _check_id(probe_id: str) -> bytes:
    raw = probe_id.encode("ascii")
    if not 1 <= len(raw) <= MAX_ID or not raw.isalnum():
        raise ValueError(f"probe id {probe_id!r} must be 1..{MAX_ID} ASCII letters or digits")
    return raw


def _body(probe_id: str, seq: int) -> bytes:
    raw = _check_id(probe_id)
    if not 0 <= seq <= 0xFFFF:
        raise ValueError(f"probe sequence {seq} is outside 0..65535")
    return bytes((len(raw),)) + raw + _SEQ.pack(seq)


def vxlan_probe(probe_id: str, seq: int, padding: bytes = b"") -> bytes:
    """The UDP payload of a VXLAN-framed probe (padded so the inner frame is >= 60 bytes)."""
    frame_tail = VXLAN_MAGIC + _body(probe_id, seq) + padding
    short = 46 - len(frame_tail)
    if short > 0:
        frame_tail += bytes(short)
    return _VXLAN_HEADER + _ETH_HEADER + frame_tail


def raw_probe(probe_id: str, seq: int, padding: bytes = b"") -> bytes:
    """The UDP payload of a random-payload probe: not VXLAN (I flag clear), then the marker."""
    return _RAW_LEAD + _body(probe_id, seq) + padding


def parse(datagram: bytes) -> Optional[Tuple[str, str, int]]:
    """``(kind, probe_id, seq)`` if ``datagram`` is a probe, else None (never raises)."""
    if datagram.startswith(_VXLAN_LEAD):
        kind, off = KIND_VXLAN, len(_VXLAN_LEAD)
    elif datagram.startswith(_RAW_LEAD):
        kind, off = KIND_RAW, len(_RAW_LEAD)
    else:
        return None
    if len(datagram) <= off:
        return None
    n = datagram[off]
    raw = datagram[off + 1:off + 1 + n]
    if not 1 <= n <= MAX_ID or len(raw) != n or not raw.isalnum() or not raw.isascii():
        return None
    tail = datagram[off + 1 + n:off + 3 + n]
    if len(tail) != 2:
        return None
    return kind, raw.decode("ascii"), _SEQ.unpack(tail)[0]


class ProbeLog:
    """Which probes arrived, per id. Written by the receive thread, read by the control side."""

    def __init__(self, limit: int = LOG_LIMIT) -> None:
        self.limit = limit
        self.total = 0
        self._entries: OrderedDict[str, Dict[str, Any]] = OrderedDict()

    def offer(self, src_ip: str, datagram: bytes) -> bool:
        """Log ``datagram`` if it is a probe (True), else leave it to the caller (False)."""
        found = parse(datagram)
        if found is None:
            return False
        kind, probe_id, seq = found
        self.total += 1
        entry = self._entries.get(probe_id)
        if entry is None:
            entry = {"kind": kind, "src": src_ip, "count": 0, "seqs": [], "bytes": len(datagram)}
            self._entries[probe_id] = entry
            while len(self._entries) > self.limit:
                self._entries.popitem(last=False)
        entry["count"] += 1
        if len(entry["seqs"]) < SEQ_LIMIT:
            entry["seqs"].append(seq)
        return True

    def snapshot(self, ids: Optional[Iterable[str]] = None) -> Dict[str, Dict[str, Any]]:
        """A JSON-ready copy of the log, or of the entries named by ``ids`` that arrived."""
        items: List[Tuple[str, Dict[str, Any]]] = list(self._entries.items())  # copied at once
        wanted = set(ids) if ids is not None else None
        return {k: {**v, "seqs": list(v["seqs"])} for k, v in items
                if wanted is None or k in wanted}

    def clear(self) -> None:
        self._entries = OrderedDict()


__all__ = ["PROBE_VNI", "ProbeLog", "parse", "raw_probe", "vxlan_probe"]
