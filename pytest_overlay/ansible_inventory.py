"""An Ansible inventory (INI or YAML) as the host list for ``--overlay-hosts``.

With Ansible installed, ``ansible-inventory -i FILE --list`` resolves it (groups, children,
group_vars/host_vars, plugins); without, INI and YAML files are read directly (groups,
``:children``, ``:vars`` and inline host variables). Then, per host:

=================================  ==========================================
Ansible variable                   inventory field
=================================  ==========================================
``ansible_host``                   ``address`` (default: the inventory name)
``ansible_port``                   ``port``
``ansible_user``                   ``user``
``ansible_ssh_private_key_file``   ``identity``
``ansible_become``                 ``sudo``
``overlay_underlay``               ``underlay`` (the VTEP's address)
``overlay_python``                 ``python`` (the wrapper ansible/prepare.yml installs, say)
``overlay_known_hosts``            ``known_hosts``
``overlay_jump``                   ``jump``
=================================  ==========================================

Networks come from ``overlay_networks`` (a list like the inventory's ``networks:``) in the
group ``all`` (or any host's) variables, else the default network of the command line.
``overlay_vxlan_port``, ``overlay_probe_port`` and ``overlay_pmtu_flows`` set the inventory's
``overlay:`` section the same way (the audit's own VTEP port, say 4790 on nodes where a cluster
already holds 4789). ``overlay_controller_netns`` names the namespace the controller connects
from (lab only).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

import yaml
from pydantic import ValidationError

from pytest_overlay.errors import ConfigError
from pytest_overlay.inventory import Inventory
from pytest_overlay.models import NetworkSpec

VARS = {
    "ansible_host": "address", "ansible_ssh_host": "address",
    "ansible_port": "port", "ansible_ssh_port": "port",
    "ansible_user": "user", "ansible_ssh_user": "user",
    "ansible_ssh_private_key_file": "identity", "ansible_private_key_file": "identity",
    "ansible_become": "sudo",
    "overlay_underlay": "underlay", "overlay_python": "python",
    "overlay_known_hosts": "known_hosts", "overlay_jump": "jump",
}
#: the inventory's ``overlay:`` settings, as ``overlay_<key>`` variables (all or any host)
OVERLAY_VARS = ("vxlan_port", "probe_port", "pmtu_flows")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
Listing = Tuple[Dict[str, Dict[str, Any]], Dict[str, Set[str]]]


def looks_like_ansible(path: Path, text: str) -> bool:
    """Our inventory is a YAML mapping whose ``hosts`` is a list; Ansible's is INI, or YAML
    whose top level is groups. A ``.yaml`` file that does not parse is left to our loader,
    whose error names the line."""
    yaml_suffix = path.suffix.lower() in (".yaml", ".yml", ".json")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return not yaml_suffix
    if isinstance(data, dict):
        return not isinstance(data.get("hosts"), list)
    return not yaml_suffix


# -- reading ---------------------------------------------------------------------------------
def ansible_tool(name: str) -> Optional[str]:
    """An Ansible command on PATH, or beside this Python (a virtualenv's bin, not on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else None


def _listing_from_ansible(path: Path) -> Optional[Listing]:
    exe = ansible_tool("ansible-inventory")
    if exe is None:
        return None
    proc = subprocess.run([exe, "-i", str(path), "--list"], capture_output=True, text=True,
                          timeout=60, check=False)
    if proc.returncode != 0:
        raise ConfigError(f"{path}: ansible-inventory could not read it: "
                          f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}",
                          "check it with `ansible-inventory -i FILE --list`")
    data = json.loads(proc.stdout)
    hostvars: Dict[str, Dict[str, Any]] = data.get("_meta", {}).get("hostvars", {})
    children = {g: set(v.get("children", [])) for g, v in data.items() if g != "_meta"}
    direct = {g: set(v.get("hosts", [])) for g, v in data.items() if g != "_meta"}
    groups = {g: _expand(g, direct, children) for g in direct}
    for hosts in groups.values():
        for h in hosts:
            hostvars.setdefault(h, {})
    return hostvars, groups


def _expand(group: str, direct: Dict[str, Set[str]], children: Dict[str, Set[str]],
            seen: Optional[Set[str]] = None) -> Set[str]:
    seen = seen or set()
    if group in seen:
        return set()
    seen.add(group)
    out = set(direct.get(group, set()))
    for child in children.get(group, set()):
        out |= _expand(child, direct, children, seen)
    return out


def _parse_value(v: str) -> Any:
    try:
        return yaml.safe_load(v)
    except yaml.YAMLError:
        return v


def _listing_from_ini(text: str, file: str) -> Listing:
    direct: Dict[str, Set[str]] = {"all": set(), "ungrouped": set()}
    children: Dict[str, Set[str]] = {"all": set()}
    gvars: Dict[str, Dict[str, Any]] = {}
    hvars: Dict[str, Dict[str, Any]] = {}
    section, kind = "ungrouped", "hosts"
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith(("#", ";")) else ""
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ConfigError(f"{file}:{n}: bad section header {line!r}", "write [group], "
                                  "[group:vars] or [group:children]")
            section, _, kind = line[1:-1].partition(":")
            kind = kind or "hosts"
            direct.setdefault(section, set())
            children.setdefault(section, set())
            continue
        if kind == "vars":
            key, sep, value = line.partition("=")
            if not sep:
                raise ConfigError(f"{file}:{n}: [{section}:vars] expects key=value, got {line!r}",
                                  "write one variable per line, like ansible_user=ops")
            gvars.setdefault(section, {})[key.strip()] = _parse_value(value.strip())
        elif kind == "children":
            children.setdefault(section, set()).add(line)
            direct.setdefault(line, set())
        else:
            parts = shlex.split(line)
            host = parts[0]
            direct[section].add(host)
            for item in parts[1:]:
                key, sep, value = item.partition("=")
                if not sep:
                    raise ConfigError(f"{file}:{n}: host {host}: {item!r} is not key=value",
                                      "write host variables as key=value after the host name")
                hvars.setdefault(host, {})[key] = _parse_value(value)
    return _merge(direct, children, gvars, hvars)


def _listing_from_yaml(data: Dict[str, Any], file: str) -> Listing:
    direct: Dict[str, Set[str]] = {}
    children: Dict[str, Set[str]] = {}
    gvars: Dict[str, Dict[str, Any]] = {}
    hvars: Dict[str, Dict[str, Any]] = {}

    def walk(name: str, body: Any) -> None:
        body = body or {}
        if not isinstance(body, dict):
            raise ConfigError(f"{file}: group {name}: expected a mapping with hosts/children/vars",
                              "see the Ansible YAML inventory format")
        direct.setdefault(name, set())
        children.setdefault(name, set())
        for host, hv in (body.get("hosts") or {}).items():
            direct[name].add(str(host))
            hvars.setdefault(str(host), {}).update(hv or {})
        gvars.setdefault(name, {}).update(body.get("vars") or {})
        for child, cbody in (body.get("children") or {}).items():
            children[name].add(str(child))
            walk(str(child), cbody)

    for top, body in data.items():
        walk(str(top), body)
    return _merge(direct, children, gvars, hvars)


def _merge(direct: Dict[str, Set[str]], children: Dict[str, Set[str]],
           gvars: Dict[str, Dict[str, Any]], hvars: Dict[str, Dict[str, Any]]) -> Listing:
    groups = {g: _expand(g, direct, children) for g in direct}
    every = set().union(*groups.values()) if groups else set()
    groups["all"] = every

    def depth(g: str, seen: Tuple[str, ...] = ()) -> int:
        parents = [p for p, cs in children.items() if g in cs and p not in seen]
        return 1 + max((depth(p, (*seen, g)) for p in parents), default=0) if g != "all" else 0

    hostvars: Dict[str, Dict[str, Any]] = {}
    for host in every:
        merged: Dict[str, Any] = {}
        for g in sorted((g for g, hs in groups.items() if host in hs), key=depth):
            merged.update(gvars.get(g, {}))
        merged.update(hvars.get(host, {}))
        hostvars[host] = merged
    return hostvars, groups


def read_listing(path: Path, text: str) -> Listing:
    listing = _listing_from_ansible(path)
    if listing is not None:
        return listing
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    if isinstance(data, dict):
        return _listing_from_yaml(data, str(path))
    return _listing_from_ini(text, str(path))


# -- mapping -------------------------------------------------------------------------------
def _coerce(file: str, host: str, var: str, field: str, value: Any) -> Any:
    if field == "port":
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{file}: host {host}: {var}={value!r} is not a port number",
                              f"set {var} to a number from 1 to 65535") from None
    if field == "sudo":
        s = str(value).strip().lower()
        if isinstance(value, bool) or s in _TRUE | _FALSE:
            return value if isinstance(value, bool) else s in _TRUE
        raise ConfigError(f"{file}: host {host}: {var}={value!r} is not a boolean",
                          f"set {var} to true or false")
    return str(value)


def load_ansible_inventory(path: Path, text: str, group: Optional[str],
                           default_network: NetworkSpec) -> Inventory:
    file = str(path)
    hostvars, groups = read_listing(path, text)
    if group is not None and group not in groups:
        raise ConfigError(f"{file}: --overlay-group={group}: no such group",
                          f"groups in the inventory: {', '.join(sorted(groups)) or '(none)'}")
    names = sorted(groups.get(group or "all", set()))
    if len(names) < 2:
        raise ConfigError(f"{file}: {'group ' + group if group else 'the inventory'} has "
                          f"{len(names)} host(s); an overlay needs at least 2",
                          "add hosts or pick another group with --overlay-group")
    hosts: List[Dict[str, Any]] = []
    networks: Any = None
    netns: Any = None
    overlay: Dict[str, Any] = {}
    for name in names:
        hv = hostvars.get(name, {})
        entry: Dict[str, Any] = {"name": name, "address": name,
                                 "groups": sorted(g for g, hs in groups.items()
                                                  if name in hs and g not in ("all", "ungrouped"))}
        for var, field in VARS.items():
            if var in hv and hv[var] is not None and not (field in entry and var.startswith("ansible_ssh_")):
                entry[field] = _coerce(file, name, var, field, hv[var])
        hosts.append(entry)
        networks = networks if networks is not None else hv.get("overlay_networks")
        netns = netns if netns is not None else hv.get("overlay_controller_netns")
        for key in OVERLAY_VARS:
            if key not in overlay and hv.get(f"overlay_{key}") is not None:
                overlay[key] = hv[f"overlay_{key}"]
    if networks is None:
        networks = [default_network.model_dump()]
    data: Dict[str, Any] = {"hosts": hosts, "networks": networks}
    if overlay:
        data["overlay"] = overlay
    if netns:
        data["controller"] = {"netns": str(netns)}
    try:
        return Inventory.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = list(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        where = ("overlay_networks" if loc and loc[0] == "networks"
                 else f"overlay_{loc[1]}" if loc[:1] == ["overlay"] and len(loc) > 1
                 else "host variables")
        if loc[:1] == ["hosts"] and len(loc) > 2 and isinstance(loc[1], int):
            host = hosts[loc[1]]["name"]
            field = str(loc[2])
            var = next((v for v, f in VARS.items() if f == field), field)
            raise ConfigError(f"{file}: host {host}: {var}: {msg}",
                              f"fix {var} for {host} (host_vars, group_vars or the inventory line)") from None
        raise ConfigError(f"{file}: {where}: {'.'.join(map(str, loc))}: {msg}",
                          "see docs/inventory.md (Ansible inventories)") from None
