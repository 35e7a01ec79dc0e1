"""Turns pytest options into an :class:`OverlayRun`; every mistake is a :class:`ConfigError`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import pytest
from pydantic import ValidationError

from pytest_overlay.errors import ConfigError, LabError
from pytest_overlay.lab.topology import LabTopology
from pytest_overlay.models import NetworkSpec
from pytest_overlay.naming import check_prefix
from pytest_overlay.runner import OverlayRun


def default_network(config: pytest.Config) -> NetworkSpec:
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


def _control_plane(config: pytest.Config) -> str:
    from pytest_overlay.controlplane import MODES

    mode = str(config.getoption("overlay_control_plane", "raft") or "raft")
    if mode not in MODES:
        raise ConfigError(f"--overlay-control-plane={mode}: expected one of {', '.join(MODES)}",
                          "raft (agents replicate the mappings) or static (the controller pushes them)")
    return mode


def _raft_port(config: pytest.Config) -> int:
    port = int(config.getoption("overlay_raft_port", 7946) or 7946)
    if not 1 <= port <= 65535:
        raise ConfigError(f"--overlay-raft-port={port}: not a TCP port", "e.g. --overlay-raft-port=7946")
    return port


def _extra_ports(config: pytest.Config) -> List[Tuple[int, str]]:
    from pytest_overlay.portspec import parse_ports

    spec = config.getoption("overlay_ports", None)
    return [] if spec is None else parse_ports(spec)


def run_from_options(config: pytest.Config) -> OverlayRun:
    extra = _extra_ports(config)  # errors before any run exists
    hosts = config.getoption("overlay_hosts")
    if hosts is not None:
        from pytest_overlay.options_ssh import ssh_run

        mode, port = _control_plane(config), _raft_port(config)
        remote = ssh_run(config, hosts, _prefix(config))
        remote.control_plane, remote.raft_port = mode, port
        remote.extra_ports = extra
        return remote
    local = str(config.getoption("overlay_local"))
    network = default_network(config)
    prefix = _prefix(config)
    if local.isdigit():
        n = int(local)
        if not 2 <= n <= 250:
            raise ConfigError(f"--overlay-local={n}: the lab takes 2 to 250 hosts",
                              "e.g. --overlay-local=3")
        topology = LabTopology.flat(n)
    else:
        try:
            topology = LabTopology.load(local)
        except ValueError as e:
            hint = ("give a number of hosts (2..250) or a topology file (see fixtures/*.yaml)"
                    if not Path(local).exists() else "fix the topology file (see docs/checks.md)")
            raise ConfigError(f"--overlay-local={local}: {e}", hint) from None
    mode, port = _control_plane(config), _raft_port(config)  # errors before any run exists
    try:  # a lab this kernel cannot hold is a usage error, not thousands of failed pairs
        run = OverlayRun.local(topology, network, prefix=prefix, control_plane=mode)
    except LabError as e:
        raise ConfigError(f"--overlay-local={local}: {e.message}", e.hint) from None
    run.raft_port = port
    run.extra_ports = extra
    return run
