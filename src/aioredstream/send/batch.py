"""One coalesced batch on the wire: its calls, their chunks, and who gets which reply.

A queue call may come in two forms: one ``EVALSHA`` (XADD, then XDEL only if the
XADD succeeded) or its :class:`Split` form. In a batch of several slices, every
slice but the last sends the split form: the bare ``XADD``, and once its reply is
in, one multi-id ``XDEL`` per delay stream in front of the next chunk (no script
per record; a refused XADD never deletes its delay message). The last slice keeps
the script, so the batch needs no extra round trip for its XDELs.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import wire

if TYPE_CHECKING:
    from .acks import Acks

__all__ = ["Call", "Exchange", "Split", "resolve"]


class Call:
    __slots__ = ("batch", "count", "data", "delay", "future", "replies", "split")

    def __init__(
        self,
        data: bytes,
        count: int,
        delay: bool,
        future: asyncio.Future[Any],
        split: Split | None = None,
    ) -> None:
        self.data = data
        self.count = count
        self.delay = delay
        self.future = future
        self.split = split
        self.batch: Any = None  # the coalescer's batch, once one takes the call
        self.replies: list[Any] | None = None


class Split:
    """The same queue write as a one-reply script, split in two: the XADD alone, then
    an XDEL of ``delay_id`` from the delay stream that ``xdel_head`` names."""

    __slots__ = ("delay_id", "xadd", "xdel_head")

    def __init__(self, xadd: bytes, xdel_head: bytes, delay_id: bytes) -> None:
        self.xadd = xadd
        self.xdel_head = xdel_head
        self.delay_id = delay_id


class Deletes:
    """XDELs of split calls whose XADD succeeded: one per delay stream, sent in front of
    the batch's next chunk; each split call is answered once its XDEL's reply is in."""

    def __init__(self) -> None:
        self.ready: dict[bytes, list[Call]] = {}
        self.waiting = 0  # split calls written whose XADD reply is not in yet

    def add(self, call: Call, reply: Any) -> None:
        self.waiting -= 1
        call.replies = [reply]
        if reply.__class__ is wire.ReplyError:
            resolve(call.future, call.replies)  # refused: its delay message stays
        else:
            assert call.split is not None
            self.ready.setdefault(call.split.xdel_head, []).append(call)

    def take(self) -> tuple[bytes, list[list[Call]]]:
        parts: list[bytes] = []
        for head, group in self.ready.items():
            ids = [b"$%d\r\n%b\r\n" % (len(c.split.delay_id), c.split.delay_id) for c in group]  # type: ignore[union-attr]
            parts.append(b"*%d\r\n%b%b" % (len(ids) + 2, head, b"".join(ids)))
        groups = list(self.ready.values())
        self.ready = {}
        return b"".join(parts), groups

    @staticmethod
    def answer(groups: list[list[Call]], replies: list[Any]) -> None:
        for group, reply in zip(groups, replies, strict=True):
            for call in group:
                if reply.__class__ is wire.ReplyError:
                    call.replies = [reply]
                resolve(call.future, call.replies)


class Exchange:
    """The chunks and the sink of one batch's ``wire.execute``."""

    def __init__(self, calls: list[Call], acks: Acks, waits: int, slice_size: int) -> None:
        self.calls = calls
        self.acks = acks
        self.waits = waits  # WAIT / WAITAOF replies after the last slice (0: none)
        self.slice_size = slice_size
        self.deletes = Deletes()
        self.in_flight: deque[tuple[list[Call], list[list[Call]]]] = deque()
        self.wait_results: list[Any] = []

    def chunks(self) -> Iterator[wire.Chunk | None]:
        calls, size, deletes = self.calls, self.slice_size, self.deletes
        for start in range(0, len(calls), size):
            part = calls[start : start + size]
            last = start + size >= len(calls)
            head, groups = deletes.take()
            self.in_flight.append((part, groups))
            # no split under WAIT: its reply must stay the last one read
            split = not last and not self.waits
            data = b"".join([self._bytes(c, split) for c in part])
            count = sum(c.count for c in part) + len(groups)
            if self.waits and last:
                yield head + data + self.acks.tail, count + self.waits
            else:
                yield head + data, count
        while deletes.waiting or deletes.ready:
            if not deletes.ready:
                yield None  # the XADD replies name the XDELs
                continue
            head, groups = deletes.take()
            self.in_flight.append(([], groups))
            yield head, len(groups)

    def _bytes(self, call: Call, split: bool) -> bytes:
        if split and call.split is not None:
            call.replies = _SPLIT
            self.deletes.waiting += 1
            return call.split.xadd
        return call.data

    def sink(self, _: int, replies: list[Any]) -> None:
        part, groups = self.in_flight.popleft()
        self.deletes.answer(groups, replies[: len(groups)])
        position = len(groups)
        for call in part:
            if call.replies is _SPLIT:
                self.deletes.add(call, replies[position])
                position += 1
                continue
            call.replies = replies[position : position + call.count]
            position += call.count
            if not (self.waits and call.delay) or _failed(call.replies):
                # an error reply is the caller's answer whatever WAIT says
                resolve(call.future, call.replies)
        self.wait_results.extend(replies[position:])


#: marks a call sent in its split form (its replies come from Deletes)
_SPLIT: list[Any] = []


def _failed(replies: list[Any]) -> bool:
    return any(isinstance(reply, wire.ReplyError) for reply in replies)


def resolve(future: asyncio.Future[Any], replies: list[Any] | None) -> None:
    if not future.done():
        future.set_result(replies)
