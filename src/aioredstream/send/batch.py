"""One coalesced batch on the wire: its calls, their chunks, and who gets which reply.

A call is its command's pre-packed head, the record's framed payload, and for a
queue write with a delay deletion the delay id. Such a call goes out in one of two
forms: one ``EVALSHA`` (XADD, then XDEL only if the XADD succeeded) or split. In a
batch of several slices, every slice but the last sends the split form: the bare
``XADD``, and once its reply is in, one multi-id ``XDEL`` per delay stream in front
of the next chunk (no script per record; a refused XADD never deletes its delay
message). The last slice keeps the script, so the batch needs no extra round trip
for its XDELs.

A slice's bytes are one ``join`` of the calls' parts (nothing is concatenated per
call), and a one-reply call gets its reply itself, not a list of one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import wire

if TYPE_CHECKING:
    from .._packing import Target
    from .acks import Acks

__all__ = ["Call", "Exchange"]

_ReplyError = wire.ReplyError


class Call:
    """One caller's command(s): ``head`` + ``arg`` (+ the delay id ``raw`` as a bulk string).

    ``split`` is the record's target when the call may go in its split form (a queue
    write whose delay message ``raw`` is deleted by a shared XDEL).
    """

    __slots__ = ("arg", "batch", "count", "delay", "future", "head", "raw", "reply", "split")

    def __init__(
        self,
        head: bytes,
        arg: bytes,
        raw: bytes | None,
        count: int,
        delay: bool,
        future: asyncio.Future[Any],
        split: Target | None,
    ) -> None:
        self.head = head
        self.arg = arg
        self.raw = raw
        self.count = count
        self.delay = delay
        self.future = future
        self.split = split
        self.batch: Any = None  # the coalescer's batch, once one takes the call
        self.reply: Any = None  # its reply (a list when count > 1), held for WAIT or XDEL


class Deletes:
    """XDELs of split calls whose XADD succeeded: one per delay stream, sent in front of
    the batch's next chunk; each split call is answered once its XDEL's reply is in."""

    def __init__(self) -> None:
        self.ready: dict[bytes, list[Call]] = {}
        self.waiting = 0  # split calls written whose XADD reply is not in yet

    def add(self, call: Call, reply: Any) -> None:
        self.waiting -= 1
        call.reply = reply
        if reply.__class__ is _ReplyError:
            resolve(call.future, reply)  # refused: its delay message stays
            return
        head = call.split.xdel_head  # type: ignore[union-attr]
        group = self.ready.get(head)
        if group is None:
            self.ready[head] = [call]
        else:
            group.append(call)

    def take(self) -> tuple[list[bytes], list[list[Call]]]:
        parts: list[bytes] = []
        for head, group in self.ready.items():
            parts.append(b"*%d\r\n%b" % (len(group) + 2, head))
            parts.extend([b"$%d\r\n%b\r\n" % (len(c.raw), c.raw) for c in group])  # type: ignore[arg-type,str-format]
        groups = list(self.ready.values())
        self.ready = {}
        return parts, groups

    @staticmethod
    def answer(groups: list[list[Call]], replies: list[Any]) -> None:
        for group, reply in zip(groups, replies, strict=True):
            failed = reply.__class__ is _ReplyError
            for call in group:
                future = call.future
                if not future.done():
                    future.set_result(reply if failed else call.reply)


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
            parts, groups = deletes.take() if deletes.ready else ([], [])
            self.in_flight.append((part, groups))
            # no split under WAIT: its reply must stay the last one read
            count = self._pack(part, parts, not last and not self.waits) + len(groups)
            if self.waits and last:
                parts.append(self.acks.tail)
                count += self.waits
            yield b"".join(parts), count
        while deletes.waiting or deletes.ready:
            if not deletes.ready:
                yield None  # the XADD replies name the XDELs
                continue
            parts, groups = deletes.take()
            self.in_flight.append(([], groups))
            yield b"".join(parts), len(groups)

    def _pack(self, part: list[Call], parts: list[bytes], split: bool) -> int:
        """Append ``part``'s commands to ``parts``; return how many replies they produce."""
        add = parts.append
        count = 0
        for call in part:
            raw = call.raw
            if raw is None:
                add(call.head)
                add(call.arg)
            elif split and call.split is not None:
                call.reply = _SPLIT
                self.deletes.waiting += 1
                add(call.split.xadd)
                add(call.arg)
            else:
                add(call.head)
                add(call.arg)
                add(b"$%d\r\n%b\r\n" % (len(raw), raw))
            count += call.count
        return count

    def sink(self, _: int, replies: list[Any]) -> None:
        part, groups = self.in_flight.popleft()
        position = len(groups)
        if groups:
            self.deletes.answer(groups, replies[:position])
        hold = self.waits
        for call in part:
            count = call.count
            if count == 1:
                reply = replies[position]
                failed = reply.__class__ is _ReplyError
            else:
                reply = replies[position : position + count]
                failed = any(r.__class__ is _ReplyError for r in reply)
            position += count
            if call.reply is _SPLIT:
                self.deletes.add(call, reply)
            elif hold and call.delay and not failed:
                call.reply = reply  # answered once WAIT vouched for it
            else:
                # an error reply is the caller's answer whatever WAIT says
                future = call.future
                if not future.done():
                    future.set_result(reply)
        self.wait_results.extend(replies[position:])


#: marks a call sent in its split form (its answer comes from Deletes)
_SPLIT: Any = object()


def resolve(future: asyncio.Future[Any], reply: Any) -> None:
    if not future.done():
        future.set_result(reply)
