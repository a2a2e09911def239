"""The queue half without a script per record: XADDs pipelined, then one XDEL per slice.

A slice's queue ``XADD``s go out as one chunk. Once their replies are in, one
multi-id ``XDEL`` per delay stream of the slice deletes exactly the delay messages
whose ``XADD`` succeeded; it rides in front of the next slice's chunk, so the
connection never idles waiting for it. A refused ``XADD`` (OOM, WRONGTYPE) never
deletes its delay message (the delayer will queue it), and once one is refused no
further slice is sent; the first refusal is raised after the deletions of what
did succeed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from typing import Any

from .._packing import Target
from . import wire
from .replies import raise_command_error

__all__ = ["QueueUnit", "QueueWithDeletes"]


class QueueUnit:
    """One chunk of queue writes: its XADD bytes, each record's target and delay id."""

    __slots__ = ("data", "first", "ids", "targets")

    def __init__(
        self,
        data: bytes,
        targets: Target | Sequence[Target],
        ids: Sequence[str | bytes],
        first: int,
    ) -> None:
        self.data = data
        self.targets = targets  # one Target when the unit's records share it
        self.ids = ids
        self.first = first  # the call index of the unit's first record

    def deletes(self, replies: list[Any]) -> tuple[bytes, int]:
        """``XDEL``s of the delay ids whose XADD succeeded: one per delay stream."""
        targets = self.targets
        if isinstance(targets, Target):
            if _all_done(replies):
                ok = self.ids
            else:
                ok = [raw for raw, reply in zip(self.ids, replies, strict=True) if _done(reply)]
            return (_xdel(targets, ok), 1) if ok else (b"", 0)
        by_stream: dict[bytes, tuple[Target, list[str | bytes]]] = {}
        for target, raw, reply in zip(targets, self.ids, replies, strict=True):
            if _done(reply):
                by_stream.setdefault(target.xdel_head, (target, []))[1].append(raw)
        return b"".join([_xdel(t, ok) for t, ok in by_stream.values()]), len(by_stream)


def _done(reply: Any) -> bool:
    return reply.__class__ is not wire.ReplyError


def _all_done(replies: list[Any]) -> bool:
    return wire.ReplyError not in map(type, replies)  # one C-level pass


def _xdel(target: Target, ids: Sequence[str | bytes]) -> bytes:
    """``XDEL <delay key> <ids>``, the ids framed by one format call: ``str`` as
    ``send_delay`` returns them (ASCII: their length in characters is in bytes), or
    ``bytes``."""
    head = b"*%d\r\n%b" % (len(ids) + 2, target.xdel_head)
    if {str} == set(map(type, ids)):
        text = ("$%d\r\n%s\r\n" * len(ids)) % _with_lengths(ids)
        if text.isascii():
            return head + text.encode()
    raws = [i.encode() if isinstance(i, str) else i for i in ids]
    return head + (b"$%d\r\n%b\r\n" * len(raws)) % _with_lengths(raws)


def _with_lengths(ids: Sequence[str | bytes]) -> tuple[int | str | bytes, ...]:
    return tuple(chain.from_iterable(zip(map(len, ids), ids, strict=True)))


class QueueWithDeletes:
    """The chunks and the sink of one ``wire.execute`` call over ``units``."""

    def __init__(self, units: Iterable[QueueUnit]) -> None:
        self._units = units
        self._layout: deque[QueueUnit | None] = deque()  # per chunk written (None: XDELs only)
        self._ready: list[bytes] = []
        self._ready_count = 0
        self._unread = 0  # units whose XADD replies are not in yet
        self.refused: tuple[Any, int] | None = None  # the first refused XADD
        self.failed_delete: tuple[Any, int] | None = None

    def chunks(self) -> Iterator[wire.Chunk | None]:
        for unit in self._units:
            if self.refused is not None:
                break  # stop at the first refusal: later records keep their delay messages
            deletes, count = self._take_ready()
            self._layout.append(unit)
            self._unread += 1
            yield unit.data + deletes, len(unit.ids) + count
        while self._unread:
            if self._ready_count:
                yield self._flush()
            else:
                yield None  # the oldest unit's replies first: they name the next XDELs
        if self._ready_count:
            yield self._flush()

    def _take_ready(self) -> tuple[bytes, int]:
        data, count = b"".join(self._ready), self._ready_count
        self._ready, self._ready_count = [], 0
        return data, count

    def _flush(self) -> wire.Chunk:
        data, count = self._take_ready()
        self._layout.append(None)
        return data, count

    def sink(self, _: int, replies: list[Any]) -> None:
        unit = self._layout.popleft()
        if unit is not None:
            self._unread -= 1
            added = replies[: len(unit.ids)]
            replies = replies[len(unit.ids) :]
            if self.refused is None and not _all_done(added):
                for position, reply in enumerate(added):
                    if not _done(reply):
                        self.refused = (reply, unit.first + position)
                        break
            data, count = unit.deletes(added)
            if count:
                self._ready.append(data)
                self._ready_count += count
        if self.failed_delete is None and not _all_done(replies):
            for reply in replies:
                if not _done(reply):
                    self.failed_delete = (reply, -1)
                    break

    def raise_failure(self, where: Any) -> None:
        """Raise the first refusal (or a failed delete) once everything was read; ``where``
        is the client the replies came from."""
        if self.refused is not None:
            raise_command_error(self.refused[0], "XADD", self.refused[1], where)
        if self.failed_delete is not None:
            raise_command_error(self.failed_delete[0], "XDEL", None, where)
