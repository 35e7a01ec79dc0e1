"""Marks agent methods as callable over the protocol.

Feature modules define mixin classes whose public operations carry ``@rpc()`` (quick, run in
order on the reading thread) or ``@rpc(slow=True)`` (probes and waits, run in the worker pool);
:class:`overlay_agent.agent.Agent` inherits them. Nothing else is reachable from the controller.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def rpc(slow: bool = False) -> Callable[[F], F]:
    def mark(fn: F) -> F:
        fn.__rpc_slow__ = slow  # type: ignore[attr-defined]
        return fn

    return mark


def lookup(obj: Any, name: str) -> Optional[Any]:
    """The bound method ``name`` if it is marked with ``@rpc``, else None."""
    if name.startswith("_"):
        return None
    fn = getattr(obj, name, None)
    if fn is None or not hasattr(fn, "__rpc_slow__"):
        return None
    return fn


def is_slow(fn: Any) -> bool:
    return bool(getattr(fn, "__rpc_slow__", False))
