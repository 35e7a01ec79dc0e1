"""Lab topologies: pure data until built (hosts on underlay segments).

Every underlay address lives in 198.18.0.0/15 (RFC 2544 benchmarking range), the only range the
lab may use: the root namespace's fence rejects any packet to it.
"""

from __future__ import annotations

import ipaddress
from typing import List

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Segment(_Model):
    """An underlay L2 segment: a bridge in the lab's switch namespace."""

    name: str = Field(pattern=r"^[a-z][a-z0-9]{0,7}$")
    subnet: str = "198.18.0.0/24"
    mtu: int = Field(default=1500, ge=1280, le=9000)

    @field_validator("subnet")
    @classmethod
    def _in_lab(cls, v: str) -> str:
        net = ipaddress.ip_network(v, strict=True)
        if not net.subnet_of(LAB_RANGE):  # type: ignore[arg-type]
            raise ValueError(f"{v} is outside the lab range {LAB_RANGE}: the lab uses only it")
        return str(net)


class LabHost(_Model):
    name: str = Field(pattern=r"^[a-z][a-z0-9]{0,7}$")
    segment: str
    address: str


class LabTopology(_Model):
    segments: List[Segment]
    hosts: List[LabHost]

    @model_validator(mode="after")
    def _refs(self) -> LabTopology:
        segs = {s.name: s for s in self.segments}
        if len(segs) != len(self.segments):
            raise ValueError("segment names must be unique")
        seen = set()
        for h in self.hosts:
            if h.name in seen:
                raise ValueError(f"host {h.name} is listed twice")
            seen.add(h.name)
            seg = segs.get(h.segment)
            if seg is None:
                raise ValueError(f"host {h.name}: unknown segment {h.segment!r}")
            if ipaddress.ip_address(h.address) not in ipaddress.ip_network(seg.subnet):
                raise ValueError(f"host {h.name}: {h.address} is outside segment {seg.subnet}")
        if len(self.hosts) < 2:
            raise ValueError("a lab needs at least 2 hosts")
        return self

    @classmethod
    def flat(cls, n: int) -> LabTopology:
        """``n`` hosts h1..hN on one segment, 198.18.0.1..N."""
        if not 2 <= n <= 250:
            raise ValueError(f"--overlay-local takes 2 to 250 hosts, not {n}")
        seg = Segment(name="ul0")
        net = ipaddress.ip_network(seg.subnet)
        hosts = [LabHost(name=f"h{i}", segment=seg.name, address=str(net[i])) for i in range(1, n + 1)]
        return cls(segments=[seg], hosts=hosts)
