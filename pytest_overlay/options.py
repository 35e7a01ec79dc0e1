"""Turns pytest options into an :class:`OverlayRun`; every mistake is a :class:`ConfigError`."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pytest_overlay.errors import ConfigError
from pytest_overlay.lab.topology import LabTopology
from pytest_overlay.models import NetworkSpec
from pytest_overlay.naming import check_prefix
from pytest_overlay.runner import OverlayRun


def _network(config: pytest.Config) -> NetworkSpec:
    try:
        return NetworkSpec(vni=config.getoption("overlay_vni"),
                           subnet=config.getoption("overlay_subnet"),
                           mtu=config.getoption("overlay_mtu"))
    except ValidationError as e:
        err = e.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "?"
        raise ConfigError(f"--overlay-{key}: {err['msg']}",
                          "see pytest --help, group 'overlay'") from None


def _prefix(config: pytest.Config) -> str | None:
    prefix = config.getoption("overlay_prefix")
    if prefix is None:
        return None
    try:
        return check_prefix(prefix)
    except ValueError as e:
        raise ConfigError(f"--overlay-prefix: {e}", "e.g. --overlay-prefix=ov0a1b2c") from None


def run_from_options(config: pytest.Config) -> OverlayRun:
    hosts = config.getoption("overlay_hosts")
    if hosts is not None:
        from pytest_overlay.options_ssh import ssh_run

        return ssh_run(config, hosts, _prefix(config))
    local = str(config.getoption("overlay_local"))
    network = _network(config)
    prefix = _prefix(config)
    if local.isdigit():
        n = int(local)
        if not 2 <= n <= 250:
            raise ConfigError(f"--overlay-local={n}: the lab takes 2 to 250 hosts",
                              "e.g. --overlay-local=3")
        return OverlayRun.local(LabTopology.flat(n), network, prefix=prefix)
    raise ConfigError(f"--overlay-local={local}: expected a number of hosts (2..250)",
                      "e.g. --overlay-local=3; topology files come with the fault lab")
