"""The inventory: real hosts reached over SSH, and the overlay networks to build among them.

Loaded from YAML (``--overlay-hosts=FILE``), validated by pydantic (``extra="forbid"``, frozen),
and turned into a :class:`~pytest_overlay.models.RunPlan`. Every mistake becomes one
:class:`~pytest_overlay.errors.ConfigError` naming the file, the line, the key path and the fix.
The schema is ``docs/inventory-schema.json`` (``pytest-overlay inventory-schema``).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pytest_overlay.errors import ConfigError
from pytest_overlay.models import EndpointPlan, HostPlan, NetworkSpec, RunPlan

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$")
Path_ = Tuple[Union[str, int], ...]


class InventoryRefError(ValueError):
    """A cross-reference error at ``path`` (key path inside the inventory) with a ``hint``."""

    def __init__(self, path: Path_, message: str, hint: str) -> None:
        super().__init__(message)
        self.path = path
        self.hint = hint


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_address(v: str) -> str:
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        pass
    if not _HOSTNAME.match(v) or v.replace(".", "").isdigit():
        raise ValueError(f"{v!r} is neither an IP address nor a host name")
    return v


class SshSettings(_Model):
    """How to log in; ``defaults`` holds them for all hosts, a host may override any."""

    user: Optional[str] = Field(default=None, description="login user (default: the current user)")
    port: Optional[int] = Field(default=None, ge=1, le=65535, description="SSH port (22)")
    identity: Optional[str] = Field(
        default=None, description="private key file; unset: the ssh-agent and ~/.ssh/id_* keys")
    known_hosts: Optional[str] = Field(
        default=None, description="known_hosts file the host keys are checked against "
                                  "(~/.ssh/known_hosts)")
    jump: Optional[str] = Field(
        default=None, description="jump host, like ProxyJump: [user@]host[:port]")
    sudo: Optional[bool] = Field(default=None, description="start the agent with `sudo -n`")
    python: Optional[str] = Field(
        default=None, description="the host's Python 3.8+ (python3), or the agent wrapper the "
                                  "Ansible role installs (/usr/local/libexec/pytest-overlay-agent)")
    workdir: Optional[str] = Field(
        default=None, description="remote directory for the run's private upload dir (/tmp)")
    connect_timeout: Optional[float] = Field(default=None, gt=0, le=300,
                                             description="seconds to connect and log in (10)")

    @field_validator("jump")
    @classmethod
    def _jump(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            parse_jump(v)
        return v


def parse_jump(spec: str) -> Tuple[Optional[str], str, int]:
    """``[user@]host[:port]`` -> (user, host, port)."""
    user, _, rest = spec.rpartition("@")
    host, port = rest, 22
    m = re.match(r"^\[(.+)\](?::(\d+))?$", rest) or re.match(r"^([^:]+)(?::(\d+))?$", rest)
    if not m:
        raise ValueError(f"jump host {spec!r} is not [user@]host[:port]")
    host = m.group(1)
    if m.group(2):
        port = int(m.group(2))
    _check_address(host)
    return (user or None), host, port


class HostEntry(SshSettings):
    name: str = Field(pattern=NAME, description="the host's name in test ids and reports")
    address: str = Field(description="SSH address: an IP address or a DNS name")
    underlay: Optional[str] = Field(
        default=None, description="the VTEP's underlay IP address (default: address, if an IP)")
    groups: List[str] = Field(default_factory=list, description="group names, usable in networks")
    labels: Dict[str, str] = Field(default_factory=dict, description="free-form labels")

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        return _check_address(v)

    @field_validator("underlay")
    @classmethod
    def _underlay(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address (the underlay is the VTEP's address)") from None


class NetworkEntry(_Model):
    name: str = Field(pattern=NAME)
    vni: int = Field(ge=1, le=0xFFFFFF, description="VXLAN network identifier")
    subnet: str = Field(default="10.10.0.0/16", description="inner IPv4 subnet")
    mtu: int = Field(default=1450, ge=576, le=9000, description="endpoints' MTU")
    hosts: Optional[List[str]] = Field(
        default=None, description="host or group names on this network (default: all hosts)")
    endpoints: Dict[str, str] = Field(
        default_factory=dict, description="fixed endpoint address per host (default: .2 upwards)")

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, v: str) -> str:
        return NetworkSpec(subnet=v).subnet


class Controller(_Model):
    netns: Optional[str] = Field(
        default=None, description="open SSH connections inside this local network namespace "
                                  "(for labs; leave unset on real networks)")


class OverlaySettings(_Model):
    vxlan_port: int = Field(default=4789, ge=1, le=65535)
    probe_port: int = Field(default=7, ge=1, le=65535)
    #: path-MTU searches per host pair, each its own flow (multipath underlays, see checks.md)
    pmtu_flows: int = Field(default=4, ge=1, le=32)


class Inventory(_Model):
    """An inventory file: ``defaults``, ``hosts``, ``networks``, ``overlay``, ``controller``."""

    defaults: SshSettings = Field(default_factory=SshSettings)
    hosts: List[HostEntry] = Field(min_length=2)
    networks: List[NetworkEntry] = Field(
        default_factory=lambda: [NetworkEntry(name="overlay0", vni=4096)])
    overlay: OverlaySettings = Field(default_factory=OverlaySettings)
    controller: Controller = Field(default_factory=Controller)

    @model_validator(mode="after")
    def _refs(self) -> Inventory:
        seen: Dict[str, int] = {}
        for i, h in enumerate(self.hosts):
            if h.name in seen:
                raise InventoryRefError(("hosts", i, "name"), f"host {h.name!r} is listed twice "
                                        f"(also hosts[{seen[h.name]}])", "give each host its own name")
            seen[h.name] = i
            if h.underlay is None:
                try:
                    ipaddress.ip_address(h.address)
                except ValueError:
                    raise InventoryRefError(
                        ("hosts", i, "address"),
                        f"host {h.name}: address {h.address!r} is a name, so the VTEP's underlay "
                        "address is unknown", "add `underlay: <IP address>` to the host") from None
        groups = {g for h in self.hosts for g in h.groups}
        nets: Dict[str, int] = {}
        vnis: Dict[int, str] = {}
        for i, n in enumerate(self.networks):
            if n.name in nets:
                raise InventoryRefError(("networks", i, "name"), f"network {n.name!r} is listed twice",
                                        "give each network its own name")
            nets[n.name] = i
            if n.vni in vnis:
                raise InventoryRefError(
                    ("networks", i, "vni"), f"duplicate VNI {n.vni}: networks {vnis[n.vni]!r} and "
                    f"{n.name!r} both use it", "give each network its own VNI")
            vnis[n.vni] = n.name
            for j, ref in enumerate(n.hosts or []):
                if ref not in seen and ref not in groups:
                    raise InventoryRefError(
                        ("networks", i, "hosts", j), f"network {n.name}: unknown host {ref!r}",
                        f"use a host or group name from `hosts` ({', '.join(sorted(seen))})")
            members = self.members(n)
            subnet = ipaddress.ip_network(n.subnet)
            for host, ip in n.endpoints.items():
                path: Path_ = ("networks", i, "endpoints", host)
                if host not in members:
                    raise InventoryRefError(path, f"network {n.name}: endpoint for {host!r}, which is "
                                            "not a host of this network", "list the host under `hosts`")
                try:
                    addr = ipaddress.ip_address(ip)
                except ValueError:
                    raise InventoryRefError(path, f"network {n.name}: endpoint address {ip!r} of host "
                                            f"{host} is not an IP address", "write an IPv4 address "
                                            f"inside {subnet}") from None
                if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
                    raise InventoryRefError(path, f"network {n.name}: endpoint {ip} of host {host} is "
                                            f"outside the subnet {subnet}",
                                            f"pick a host address inside {subnet}")
            if len(members) + 2 > subnet.num_addresses:
                raise InventoryRefError(("networks", i, "subnet"), f"network {n.name}: subnet "
                                        f"{subnet} has no room for {len(members)} endpoints",
                                        "use a larger subnet")
        return self

    def members(self, net: NetworkEntry) -> List[str]:
        """Host names on ``net``, in inventory order."""
        if net.hosts is None:
            return [h.name for h in self.hosts]
        refs = set(net.hosts)
        return [h.name for h in self.hosts if h.name in refs or refs & set(h.groups)]

    def host(self, name: str) -> HostEntry:
        return next(h for h in self.hosts if h.name == name)

    def settings(self, name: str) -> Dict[str, Any]:
        """A host's SSH settings: its own, else ``defaults``, else built-in defaults."""
        h = self.host(name)
        out: Dict[str, Any] = {"user": None, "port": 22, "identity": None, "known_hosts": None,
                               "jump": None, "sudo": False, "python": "python3",
                               "workdir": "/tmp", "connect_timeout": 10.0}
        for key in out:
            for src in (h, self.defaults):
                val = getattr(src, key)
                if val is not None:
                    out[key] = val
                    break
        out["address"] = h.address
        return out

    def to_plan(self) -> RunPlan:
        hosts = [HostPlan(name=h.name, underlay=h.underlay or h.address, transport="ssh")
                 for h in self.hosts]
        networks = [NetworkSpec(name=n.name, vni=n.vni, subnet=n.subnet, mtu=n.mtu)
                    for n in self.networks]
        endpoints: List[EndpointPlan] = []
        count: Dict[str, int] = {}
        for n in self.networks:
            subnet = ipaddress.ip_network(n.subnet)
            fixed = {ipaddress.ip_address(ip) for ip in n.endpoints.values()}
            free = (a for a in subnet.hosts() if a != subnet.network_address + 1 and a not in fixed)
            for host in self.members(n):
                ip = n.endpoints.get(host) or str(next(free))
                k = count.get(host, 0)
                count[host] = k + 1
                endpoints.append(EndpointPlan(name=f"e{k}", host=host, network=n.name, ip=ip,
                                              mac=_mac(ip)))
        return RunPlan(hosts=hosts, networks=networks, endpoints=endpoints,
                       vxlan_port=self.overlay.vxlan_port, probe_port=self.overlay.probe_port,
                       pmtu_flows=self.overlay.pmtu_flows)


def _mac(ip: str) -> str:
    from pytest_overlay.session import mac_for

    return mac_for(ip)


def inventory_schema() -> Dict[str, Any]:
    schema = Inventory.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pytest-overlay inventory"
    return schema


# -- loading --------------------------------------------------------------------------------
def _lines(node: Any, path: Path_, out: Dict[Path_, int]) -> None:
    """Key path -> 1-based line, from PyYAML's composed node tree."""
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k.value)
            out[(*path, key)] = k.start_mark.line + 1
            _lines(v, (*path, key), out)
            out[(*path, key)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _lines(v, (*path, i), out)


def _where(file: str, lines: Dict[Path_, int], path: Path_) -> str:
    p = tuple(path)
    while p and p not in lines:
        p = p[:-1]
    line = lines.get(p)
    return f"{file}:{line}" if line else file


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_HINTS = {
    "extra_forbidden": "remove the key or fix its spelling; see docs/inventory-schema.json",
    "missing": "add the key; see examples/inventory.yaml",
}


def parse_inventory(text: str, file: str = "<inventory>") -> Inventory:
    """Validate inventory YAML ``text``; :class:`ConfigError` on any mistake."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark is not None else file
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}: not valid YAML: {problem}",
                          "fix the YAML syntax (indentation, colons, quotes)") from None
    lines: Dict[Path_, int] = {}
    if node is not None:
        _lines(node, (), lines)
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the inventory must be a mapping with `hosts:` and `networks:`",
                          "see examples/inventory.yaml")
    try:
        return Inventory.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, InventoryRefError):
            raise ConfigError(f"{_where(file, lines, cause.path)}: {_dotted(cause.path)}: {cause}",
                              cause.hint) from None
        loc = tuple(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        hint = _HINTS.get(err["type"], "see docs/inventory-schema.json and examples/inventory.yaml")
        if loc and loc[-1] in ("address", "underlay") and err["type"] == "value_error":
            msg = f"bad address: {msg}"
            hint = "write an IPv4/IPv6 address or a DNS name (underlay: an IP address)"
        raise ConfigError(f"{_where(file, lines, loc)}: {_dotted(loc)}: {msg}", hint) from None


def load_inventory(path: Union[str, Path]) -> Inventory:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"--overlay-hosts={path}: cannot read the inventory: {e.strerror}",
                          "give the path of an inventory file, e.g. examples/inventory.yaml") from None
    return parse_inventory(text, str(path))
