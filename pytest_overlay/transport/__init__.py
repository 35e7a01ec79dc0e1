"""How the controller reaches an agent: one small interface, several ways (lazily imported).

A transport starts ``agent.pyz`` on a host and hands back an :class:`AgentHandle` whose
``client`` speaks the JSON-lines protocol. ``netns`` runs it in a local network namespace;
``ssh`` (asyncssh) on a remote machine.
"""

from __future__ import annotations

import importlib
from typing import Any, Optional, Protocol

from pytest_overlay.rpc import AgentClient

TRANSPORTS = {
    "netns": "pytest_overlay.transport.netns:NetnsTransport",
    "ssh": "pytest_overlay.transport.ssh:SshTransport",
}


class AgentHandle(Protocol):
    host: str
    client: AgentClient

    @property
    def pid(self) -> Optional[int]: ...

    async def stop(self, timeout: float = 5.0) -> None:
        """Ask the agent to clean up and exit; kill it if it does not, then release all."""

    def kill(self) -> None:
        """End the agent at once (it is gone before its clean-up)."""


def get_transport(name: str) -> Any:
    try:
        target = TRANSPORTS[name]
    except KeyError:
        raise ValueError(f"unknown transport {name!r}; known: {', '.join(sorted(TRANSPORTS))}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
