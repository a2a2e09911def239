"""The interface between the producer and its sender, and what both implementations share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from .._packing import QUEUE_AND_DELETE, Slice, Target
from . import wire
from .coalesce import Coalescer

__all__ = ["Sender", "encoded", "submit_queue_delete"]

_SCRIPT_LOAD = wire.pack("SCRIPT", "LOAD", QUEUE_AND_DELETE)


class Sender(Protocol):
    """Sends a producer's prepared slices; one implementation per topology."""

    async def send_delay(self, slices: list[Slice]) -> list[str]:
        """Write the delay messages (WAIT / WAITAOF checked); return their ids in order."""
        ...

    async def send_queue(self, slices: list[Slice], ids: Sequence[str | bytes] | None) -> None:
        """Write the queue messages, then delete the delay messages ``ids`` of those written
        (``str`` as ``send_delay`` returns them, or checked ``bytes``: encoded per slice)."""
        ...

    def delay_one(self, target: Target, arg: bytes) -> Awaitable[str]:
        """Write one delay message; its id (a coroutine: the hot path has no wrapper)."""
        ...

    def queue_one(self, target: Target, arg: bytes, delay_id: bytes | None) -> Awaitable[None]:
        """Write one queue message, then delete its delay message ``delay_id`` if given."""
        ...

    async def check_waitaof(self) -> None:
        """Raise `UnsupportedError` unless the server knows WAITAOF."""
        ...


def encoded(ids: Sequence[str | bytes]) -> list[bytes]:
    """Delay ids as bytes, one slice at a time (a 1M-record bulk keeps no second copy)."""
    return [i.encode() if isinstance(i, str) else i for i in ids]


def submit_queue_delete(
    coalescer: Coalescer,
    target: Target,
    arg: bytes,
    raw: bytes,
    check: Callable[[Any], Any] | None = None,
) -> Awaitable[Any]:
    """One queue write and its delay deletion in ``coalescer``'s next batch: one ``EVALSHA``,
    or (in a batch of several slices, where the XDEL rides behind the next slice) the
    ``XADD`` and, once it succeeded, a multi-id ``XDEL`` shared with the slice.

    The script is loaded in front of the first call (and again after ``NOSCRIPT``: a
    restarted server or a failover), in the same round trip. ``where`` (the coalescer's
    client or node) is named in errors.
    """
    if coalescer.script_loaded:
        return coalescer.submit(
            target.queue_delete,
            arg,
            delay=False,
            raw=raw,
            split=target,
            reload=_SCRIPT_LOAD,
            check=check,
        )
    return _load_first(coalescer, target, arg, raw, check)


async def _load_first(
    coalescer: Coalescer,
    target: Target,
    arg: bytes,
    raw: bytes,
    check: Callable[[Any], Any] | None,
) -> Any:
    reply = await coalescer.load_and_submit(_SCRIPT_LOAD, target.queue_delete, arg, raw)
    return reply if check is None else check(reply)
