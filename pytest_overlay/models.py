"""Pydantic models: what a run sets up (plan) and what it found (results, report)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 1
_TEST_ID = re.compile(r"^(?P<src>[^\[]+?)(?:->(?P<dst>[^\[]+))?(?:\[vni=(?P<vni>\d+)\])?$")
Outcome = Literal["pass", "fail", "error", "skip"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NetworkSpec(_Model):
    """One overlay network: a VNI with an inner subnet and MTU (Docker's defaults as ours)."""

    name: str = Field(default="overlay0", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
    vni: int = Field(default=4096, ge=1, le=0xFFFFFF)
    subnet: str = "10.10.0.0/16"
    mtu: int = Field(default=1450, ge=576, le=9000)

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, v: str) -> str:
        try:
            net = ipaddress.ip_network(v, strict=True)
        except ValueError as e:
            raise ValueError(f"{v!r} is not a subnet in CIDR form (like 10.10.0.0/16): {e}") from e
        if net.version != 4:
            raise ValueError("inner subnets are IPv4 for now")
        if net.num_addresses < 4:
            raise ValueError(f"{v} is too small for endpoints")
        return str(net)


class HostPlan(_Model):
    """A host the run uses: where its agent runs and its VTEP's underlay address."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
    underlay: str
    transport: Literal["netns", "ssh"] = "netns"
    netns: Optional[str] = None

    @field_validator("underlay")
    @classmethod
    def _addr(cls, v: str) -> str:
        return str(ipaddress.ip_address(v))


class EndpointPlan(_Model):
    """A "container": a namespace with a kernel stack on ``host``, attached to ``network``."""

    name: str
    host: str
    network: str
    ip: str
    mac: str

    @property
    def label(self) -> str:
        return self.host if self.name == "e0" else f"{self.host}/{self.name}"


class RunPlan(_Model):
    """Everything a run builds, known before anything is built (the pairs come from it)."""

    hosts: List[HostPlan]
    networks: List[NetworkSpec]
    endpoints: List[EndpointPlan]
    vxlan_port: int = Field(default=4789, ge=1, le=65535)
    probe_port: int = Field(default=7, ge=1, le=65535)
    #: path-MTU searches per host pair, each from its own source port: a multipath underlay
    #: hashes flows over its legs, and one flow sees one leg
    pmtu_flows: int = Field(default=1, ge=1, le=32)

    @model_validator(mode="after")
    def _refs(self) -> RunPlan:
        hosts = {h.name for h in self.hosts}
        nets = {n.name: n for n in self.networks}
        if len(hosts) != len(self.hosts):
            raise ValueError("host names must be unique")
        vnis = [n.vni for n in self.networks]
        if len(set(vnis)) != len(vnis):
            raise ValueError("two networks share a VNI")
        for ep in self.endpoints:
            if ep.host not in hosts:
                raise ValueError(f"endpoint {ep.name} names unknown host {ep.host}")
            net = nets.get(ep.network)
            if net is None:
                raise ValueError(f"endpoint {ep.name} names unknown network {ep.network}")
            if ipaddress.ip_address(ep.ip) not in ipaddress.ip_network(net.subnet):
                raise ValueError(f"endpoint {ep.label}: {ep.ip} is outside {net.subnet}")
        return self

    def network(self, name: str) -> NetworkSpec:
        return next(n for n in self.networks if n.name == name)


class CheckResult(_Model):
    """One judged fact: ``check`` between ``src`` and ``dst`` on ``vni``."""

    check: str
    src: Optional[str] = None
    dst: Optional[str] = None
    vni: Optional[int] = None
    outcome: Outcome
    message: str = ""
    details: Dict[str, Any] = Field(default_factory=dict)
    duration_ms: float = 0.0

    @property
    def test_id(self) -> str:
        pair = f"{self.src}->{self.dst}" if self.dst is not None else str(self.src or "all")
        return f"{pair}[vni={self.vni}]" if self.vni is not None else pair

    @classmethod
    def for_test_id(cls, check: str, test_id: str, outcome: Outcome, message: str) -> CheckResult:
        """A result for a test id (``h1->h2[vni=4096]``, ``h1[vni=4096]``, ``h1``) with no data."""
        m = _TEST_ID.match(test_id)
        src, dst, vni = (m.group("src"), m.group("dst"), m.group("vni")) if m else (test_id, None, None)
        return cls(check=check, src=src, dst=dst, vni=int(vni) if vni else None, outcome=outcome,
                   message=message)


class HostReport(_Model):
    name: str
    underlay: str
    transport: str
    status: Literal["ok", "error", "not-started"] = "not-started"
    error: Optional[str] = None
    agent_version: Optional[str] = None
    capabilities: Dict[str, Any] = Field(default_factory=dict)
    counters: Dict[str, Any] = Field(default_factory=dict)
    ssh: Dict[str, Any] = Field(default_factory=dict, description=(
        "remote mode: address, host_key (known | accepted-new), its fingerprint, jump, sudo"))


class Report(_Model):
    """The JSON report (``--overlay-report``); its schema is ``docs/report-schema.json``."""

    schema_version: int = SCHEMA_VERSION
    tool_version: str
    run_prefix: str
    mode: Literal["local", "ssh"]
    started_at: str
    finished_at: str
    hosts: List[HostReport]
    networks: List[NetworkSpec]
    results: List[CheckResult]
    summary: Dict[str, int]
    timings_s: Dict[str, float] = Field(default_factory=dict)
