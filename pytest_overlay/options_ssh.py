"""Options of remote mode (``--overlay-hosts``): the inventory and the SSH settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import pytest

from pytest_overlay.ansible_inventory import load_ansible_inventory, looks_like_ansible
from pytest_overlay.errors import ConfigError
from pytest_overlay.inventory import Inventory, load_inventory
from pytest_overlay.runner import OverlayRun


def _text(hosts: str) -> str:
    try:
        return Path(hosts).read_text()
    except OSError:
        return ""


def _load(config: pytest.Config, hosts: str) -> Inventory:
    """Our YAML inventory, or an Ansible inventory (INI/YAML) with ``--overlay-group``."""
    path = Path(hosts)
    try:
        text = path.read_text()
    except OSError:
        return load_inventory(hosts)  # says what is wrong with the path
    group = config.getoption("overlay_group")
    if looks_like_ansible(path, text):
        from pytest_overlay.options import default_network

        return load_ansible_inventory(path, text, group, default_network(config))
    if group is not None:
        raise ConfigError(f"--overlay-group={group}: {hosts} is not an Ansible inventory",
                          "--overlay-group selects a group of an Ansible inventory; in ours, "
                          "list a network's hosts or groups under networks[].hosts")
    return load_inventory(hosts)


_NETWORK_OPTIONS = {"overlay_vni": ("--overlay-vni", 4096), "overlay_subnet": ("--overlay-subnet", "10.10.0.0/16"),
                    "overlay_mtu": ("--overlay-mtu", 1450)}


def ssh_run(config: pytest.Config, hosts: str, prefix: Optional[str]) -> OverlayRun:
    if config.getoption("overlay_local") is not None:
        raise ConfigError("--overlay-local and --overlay-hosts exclude each other",
                          "give one: a namespace lab (--overlay-local=N) or real hosts")
    if not looks_like_ansible(Path(hosts), _text(hosts)):
        # Our inventory lists its networks; a network option would be silently ignored.
        for dest, (flag, default) in _NETWORK_OPTIONS.items():
            if config.getoption(dest) != default:
                raise ConfigError(f"{flag} does not apply with --overlay-hosts={hosts}: "
                                  "the inventory's networks: section defines the networks",
                                  f"set it in {hosts} (networks[].vni/subnet/mtu) and drop {flag}")
    inventory = _load(config, hosts)
    netns = config.getoption("overlay_ssh_netns")
    if netns is not None and not netns:
        raise ConfigError("--overlay-ssh-netns: empty namespace name", "omit it on real networks")
    ns = netns or inventory.controller.netns
    if ns and not os.path.exists(os.path.join("/run/netns", ns)):
        where = "--overlay-ssh-netns" if netns else f"{hosts}: controller.netns"
        raise ConfigError(f"{where}: no network namespace {ns!r} on this machine",
                          "name an existing namespace (`ip netns list`), or leave it unset to "
                          "connect from this machine's own network")
    return OverlayRun.from_inventory(
        inventory, prefix=prefix, accept_new=bool(config.getoption("overlay_accept_new_hostkeys")),
        netns=netns)
