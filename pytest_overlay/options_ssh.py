"""Options of remote mode (``--overlay-hosts``): the inventory and the SSH settings."""

from __future__ import annotations

import os
from typing import Optional

import pytest

from pytest_overlay.errors import ConfigError
from pytest_overlay.inventory import load_inventory
from pytest_overlay.runner import OverlayRun


def ssh_run(config: pytest.Config, hosts: str, prefix: Optional[str]) -> OverlayRun:
    if config.getoption("overlay_local") is not None:
        raise ConfigError("--overlay-local and --overlay-hosts exclude each other",
                          "give one: a namespace lab (--overlay-local=N) or real hosts")
    inventory = load_inventory(hosts)
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
