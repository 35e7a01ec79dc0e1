"""Error types. Each says what went wrong, where, and what to do next (``hint``)."""

from __future__ import annotations

from typing import Optional


class OverlayError(Exception):
    """Base of every error pytest-overlay raises on purpose."""

    def __init__(self, message: str, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(OverlayError):
    """Bad options, inventory or topology: the user must change something before a run."""


class LabError(OverlayError):
    """The local lab (namespaces, veths, bridges) could not be built or removed."""


class AgentError(OverlayError):
    """An agent could not be started, or answered a request with an error."""

    def __init__(self, host: str, message: str, hint: Optional[str] = None,
                 code: str = "failed") -> None:
        super().__init__(f"host {host}: {message}", hint)
        self.host = host
        self.code = code


class AgentGone(AgentError):
    """The agent's process or connection ended while the controller still needed it."""
