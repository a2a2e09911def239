"""Where instrumentation plugs in: producer calls and worker batches, nothing finer.

``current`` is ``None`` until an integration (`aioredstream.integrations.otel`)
installs its hooks, and then the only cost of a producer call or a worker batch is
one module attribute read and a no-op context manager. Hooks never run per message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

__all__ = ["Batch", "Hooks", "batch", "current", "produce"]


class Batch(Protocol):
    """What a hook's context manager yields: a place to report a count known only later."""

    def set_count(self, count: int) -> None: ...


class Hooks(Protocol):
    def produce(
        self,
        operation: str,
        destinations: Callable[[], Sequence[str]],
        count: int,
        wait: int,
    ) -> AbstractContextManager[Batch]: ...

    def batch(
        self, operation: str, destination: str, count: int | None
    ) -> AbstractContextManager[Batch]: ...


class _Nothing:
    """The reusable no-op context manager handed out while nothing is installed."""

    __slots__ = ()

    def __enter__(self) -> _Nothing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_count(self, count: int) -> None:
        return None


NOTHING = _Nothing()

#: the installed hooks, or ``None``
current: Hooks | None = None


def produce(
    operation: str,
    destinations: Callable[[], Sequence[str]],
    count: int,
    wait: int = 0,
) -> AbstractContextManager[Batch]:
    """A producer call: ``destinations`` is only called when hooks are installed."""
    hooks = current
    if hooks is None:
        return NOTHING
    return hooks.produce(operation, destinations, count, wait)


def batch(
    operation: str, destination: str, count: int | None = None
) -> AbstractContextManager[Any]:
    """A worker batch (``consume``, ``delay``, ``trim``) on ``destination``."""
    hooks = current
    if hooks is None:
        return NOTHING
    return hooks.batch(operation, destination, count)
