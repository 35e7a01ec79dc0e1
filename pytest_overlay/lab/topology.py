"""Lab topologies: pure data until built (hosts on underlay segments, routers, faults).

Every underlay address lives in 198.18.0.0/15 (RFC 2544 benchmarking range) or, over IPv6, in
2001:2::/48 (RFC 5180): the only ranges the lab may use; the root namespace's fence rejects any
packet to them.

A topology file (YAML, ``--overlay-local=PATH``) looks like this (see ``fixtures/*.yaml``)::

    segments:                       # L2 segments (a bridge each); mtu applies to every port on it
      - {name: lan1, subnet: 198.18.1.0/24}
      - {name: core, subnet: 198.18.2.0/24, mtu: 1400}
    routers:                        # a namespace with forwarding on, one interface per segment
      - {name: r1, interfaces: {lan1: 198.18.1.254, core: 198.18.2.1}}
    hosts:                          # an agent runs on each; routes to other segments are computed
      - {name: h1, segment: lan1, address: 198.18.1.1}
    faults:                         # nftables rules in the namespace of a router or host
      - {at: r1, drop: ptb, dst: h1}  # r1 never tells h1 "fragmentation needed"

Faults on a router filter what it forwards and what it sends itself (its ICMP errors); faults
on a host filter what arrives at it. ``src``/``dst`` (host names) make a fault one-directional.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from pathlib import Path
from typing import Dict, List, Literal, Optional, Set, Tuple, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
LAB_RANGE6 = ipaddress.ip_network("2001:2::/48")
_NAME = r"^[a-z][a-z0-9]{0,7}$"
_Net = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _in_lab(net: _Net) -> bool:
    return net.subnet_of(LAB_RANGE if net.version == 4 else LAB_RANGE6)  # type: ignore[arg-type]


class Segment(_Model):
    """An underlay L2 segment: a bridge in the lab's switch namespace; every port has ``mtu``."""

    name: str = Field(pattern=_NAME)
    subnet: str = "198.18.0.0/24"
    mtu: int = Field(default=1500, ge=1280, le=9000)

    @field_validator("subnet")
    @classmethod
    def _in_lab(cls, v: str) -> str:
        net = ipaddress.ip_network(v, strict=True)
        if not _in_lab(net):
            raise ValueError(f"{v} is outside the lab ranges {LAB_RANGE} and {LAB_RANGE6}: "
                             "the lab uses only them")
        return str(net)


class LabHost(_Model):
    name: str = Field(pattern=_NAME)
    segment: str
    address: str


class Router(_Model):
    """A namespace with IP forwarding on and one interface (``e-<segment>``) per segment."""

    name: str = Field(pattern=_NAME)
    interfaces: Dict[str, str] = Field(min_length=2)


class Fault(_Model):
    """One nftables rule: what to drop, where, and (optionally) in which direction only.

    * ``ptb``: ICMP "fragmentation needed" (type 3 code 4) and ICMPv6 "packet too big"
    * ``port``: ``proto``/``port`` (e.g. udp 4789)
    * ``fragments``: IPv4 fragments and IPv6 fragment headers
    * ``loss``: ``percent`` of all packets at random (``numgen random mod 100``)
    """

    at: str
    drop: Literal["ptb", "port", "fragments", "loss"]
    proto: Optional[Literal["udp", "tcp"]] = None
    port: Optional[int] = Field(default=None, ge=1, le=65535)
    percent: Optional[int] = Field(default=None, ge=1, le=100)
    src: Optional[str] = None
    dst: Optional[str] = None

    @model_validator(mode="after")
    def _fields(self) -> Fault:
        if self.drop == "port" and (self.proto is None or self.port is None):
            raise ValueError(f"fault at {self.at}: drop: port needs proto (udp|tcp) and port")
        if self.drop != "port" and (self.proto is not None or self.port is not None):
            raise ValueError(f"fault at {self.at}: proto/port only go with drop: port")
        if (self.drop == "loss") != (self.percent is not None):
            raise ValueError(f"fault at {self.at}: percent goes with drop: loss (and it needs one)")
        return self


class LabTopology(_Model):
    segments: List[Segment]
    hosts: List[LabHost]
    routers: List[Router] = Field(default_factory=list)
    faults: List[Fault] = Field(default_factory=list)
    #: equal-cost paths become multipath routes hashed on the 5-tuple (as in a leaf-spine
    #: fabric), instead of the first router listed taking them all
    ecmp: bool = False

    @model_validator(mode="after")
    def _refs(self) -> LabTopology:
        segs = {s.name: s for s in self.segments}
        if len(segs) != len(self.segments):
            raise ValueError("segment names must be unique")
        versions = {ipaddress.ip_network(s.subnet).version for s in self.segments}
        if len(versions) > 1:
            raise ValueError("all segments must be IPv4 or all IPv6 (one underlay family per lab)")
        names: Set[str] = set()
        addrs: Set[str] = set()

        def claim(node: str, seg_name: str, address: str) -> None:
            seg = segs.get(seg_name)
            if seg is None:
                raise ValueError(f"{node}: unknown segment {seg_name!r} (known: {', '.join(segs)})")
            addr = ipaddress.ip_address(address)
            if addr not in ipaddress.ip_network(seg.subnet):
                raise ValueError(f"{node}: {address} is outside segment {seg_name} ({seg.subnet})")
            if str(addr) in addrs:
                raise ValueError(f"{node}: address {address} is used twice")
            addrs.add(str(addr))

        for name in [h.name for h in self.hosts] + [r.name for r in self.routers]:
            if name in names:
                raise ValueError(f"{name} is listed twice (host and router names share a space)")
            names.add(name)
        for h in self.hosts:
            claim(f"host {h.name}", h.segment, h.address)
        for r in self.routers:
            for seg_name, address in r.interfaces.items():
                claim(f"router {r.name}", seg_name, address)
        if len(self.hosts) < 2:
            raise ValueError("a lab needs at least 2 hosts")
        host_names = {h.name for h in self.hosts}
        for i, f in enumerate(self.faults):
            if f.at not in names:
                raise ValueError(f"faults[{i}]: at: {f.at!r} is no host or router")
            for key in ("src", "dst"):
                v = getattr(f, key)
                if v is not None and v not in host_names:
                    raise ValueError(f"faults[{i}]: {key}: {v!r} is no host")
        for h in self.hosts[1:]:
            if self.next_hops(self.hosts[0].name).get(h.segment, "") is None:
                raise ValueError(f"host {h.name} cannot be reached from {self.hosts[0].name}: "
                                 "no chain of routers joins their segments")
        return self

    # -- queries ------------------------------------------------------------------------------
    @property
    def family(self) -> int:
        return ipaddress.ip_network(self.segments[0].subnet).version

    def address_of(self, name: str) -> str:
        return next(h.address for h in self.hosts if h.name == name)

    def segments_of(self, node: str) -> Dict[str, str]:
        """Segment -> address of a host or router."""
        for h in self.hosts:
            if h.name == node:
                return {h.segment: h.address}
        return dict(next(r for r in self.routers if r.name == node).interfaces)

    def next_hops(self, node: str) -> Dict[str, Optional[str]]:
        """For every segment ``node`` is not on: the gateway address to use (None: unreachable).

        Shortest path in router hops; ties go to the router listed first (deterministic).
        """
        return {seg: (gws[0] if gws else None) for seg, gws in self.gateways(node).items()}

    def gateways(self, node: str) -> Dict[str, List[str]]:
        """For every segment ``node`` is not on: the gateways of the shortest paths there, in
        the order the routers are listed (empty: unreachable). Without ``ecmp`` only the first
        is used; with it, all of them, as one multipath route."""
        mine = self.segments_of(node)
        dist = self._distances()
        out: Dict[str, List[str]] = {}
        for seg in self.segments:
            if seg.name in mine:
                continue
            found: List[Tuple[int, str]] = []
            for r in self.routers:
                if r.name == node:
                    continue
                shared = [s for s in r.interfaces if s in mine]
                if not shared:
                    continue
                d = min(dist.get((s2, seg.name), 1 << 30) for s2 in r.interfaces)
                if d < (1 << 30):
                    found.append((d, r.interfaces[shared[0]]))
            least = min((d for d, _gw in found), default=None)
            out[seg.name] = [gw for d, gw in found if d == least]
        return out

    def _distances(self) -> Dict[Tuple[str, str], int]:
        adj: Dict[str, Set[str]] = {s.name: set() for s in self.segments}
        for r in self.routers:
            for a in r.interfaces:
                adj[a] |= set(r.interfaces) - {a}
        dist: Dict[Tuple[str, str], int] = {}
        for start in adj:
            seen = {start: 0}
            todo = deque([start])
            while todo:
                cur = todo.popleft()
                for nxt in adj[cur]:
                    if nxt not in seen:
                        seen[nxt] = seen[cur] + 1
                        todo.append(nxt)
            for seg, d in seen.items():
                dist[(start, seg)] = d
        return dist

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def flat(cls, n: int) -> LabTopology:
        """``n`` hosts h1..hN on one segment, 198.18.0.1..N."""
        if not 2 <= n <= 250:
            raise ValueError(f"--overlay-local takes 2 to 250 hosts, not {n}")
        seg = Segment(name="ul0")
        net = ipaddress.ip_network(seg.subnet)
        hosts = [LabHost(name=f"h{i}", segment=seg.name, address=str(net[i])) for i in range(1, n + 1)]
        return cls(segments=[seg], hosts=hosts)

    @classmethod
    def load(cls, path: Union[str, Path]) -> LabTopology:
        """Read a topology file; a :class:`ValueError` names the file, the key and the fix."""
        import yaml

        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text())
        except OSError as e:
            raise ValueError(f"{p}: cannot read the topology file: {e.strerror}") from e
        except yaml.YAMLError as e:
            raise ValueError(f"{p}: not valid YAML: {e}") from e
        if not isinstance(data, dict):
            raise ValueError(f"{p}: expected a mapping with segments, hosts, routers, faults")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "(top level)"
            raise ValueError(f"{p}:{where}: {err['msg']}") from None
