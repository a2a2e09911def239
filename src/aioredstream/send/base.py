"""The interface between the producer and its sender, and what both implementations share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .._packing import QUEUE_AND_DELETE, Slice, Target
from . import wire
from .coalesce import Coalescer
from .replies import raise_command_error

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

    async def delay_one(self, target: Target, arg: bytes) -> str: ...

    async def queue_one(self, target: Target, arg: bytes, delay_id: bytes | None) -> None: ...

    async def check_waitaof(self) -> None:
        """Raise :class:`UnsupportedError` unless the server knows WAITAOF."""
        ...


def encoded(ids: Sequence[str | bytes]) -> list[bytes]:
    """Delay ids as bytes, one slice at a time (a 1M-record bulk keeps no second copy)."""
    return [i.encode() if isinstance(i, str) else i for i in ids]


async def submit_queue_delete(
    coalescer: Coalescer, target: Target, arg: bytes, raw: bytes, where: Any
) -> Any:
    """One queue write and its delay deletion in ``coalescer``'s next batch: one ``EVALSHA``,
    or (in a batch of several slices, where the XDEL rides behind the next slice) the
    ``XADD`` and, once it succeeded, a multi-id ``XDEL`` shared with the slice.

    The script is loaded in front of the first call (and again after ``NOSCRIPT``: a
    restarted server or a failover), in the same round trip. ``where`` (the coalescer's
    client or node) is named in errors.
    """
    if coalescer.script_loaded:
        reply = await coalescer.submit(target.queue_delete, arg, delay=False, raw=raw, split=target)
        if not (reply.__class__ is wire.ReplyError and str(reply).startswith("NOSCRIPT")):
            return reply
    loaded, reply = await coalescer.submit(
        _SCRIPT_LOAD + target.queue_delete, arg, delay=False, raw=raw, count=2
    )
    if loaded.__class__ is wire.ReplyError:
        raise_command_error(loaded, "SCRIPT LOAD", None, where)
    coalescer.script_loaded = True
    return reply
