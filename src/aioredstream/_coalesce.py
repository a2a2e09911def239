"""Auto-pipelining: concurrent single calls share pipelines on a few connections.

Each ``delay()`` / ``queue()`` call becomes a :class:`_Call` (its RESP bytes, how
many replies they produce, a future) in one queue. Batching is natural: when no
batch is in flight a call starts one at once (no timer, no added delay); while
``max_batches`` batches are in flight, new calls wait in the queue and all of
them go in the next batch when one finishes.

A batch is one short-lived task that sends its calls through :func:`_wire.execute`
on one pooled connection and ends; nothing outlives an idle period. Replies come
back in order, so each call gets exactly its own replies. If any call in the batch
is a delay write and the producer waits for replicas, one WAIT (and/or WAITAOF)
goes at the end of the batch on the same connection: it vouches for every write
before it, and if it falls short, every delay call of the batch gets its own
``ReplicationError``.

An idle producer sends a lone call in the caller's own task (nobody else needs
its replies). A cancelled caller of a shared batch leaves the batch alone (its
other callers still need their replies); only when every caller of a batch has
gone is the batch task cancelled, which closes its connection (unread replies
never reach a later call).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anyio

from . import _wire

if TYPE_CHECKING:
    from .send.acks import Acks

__all__ = ["Coalescer"]

logger = logging.getLogger("aioredstream.coalesce")


class _Call:
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
        self.batch: _Batch | None = None
        self.replies: list[Any] | None = None


class Split:
    """The same queue write as a one-reply script, split in two: the XADD alone, then
    an XDEL of ``delay_id`` from the delay stream that ``xdel_head`` names."""

    __slots__ = ("delay_id", "xadd", "xdel_head")

    def __init__(self, xadd: bytes, xdel_head: bytes, delay_id: bytes) -> None:
        self.xadd = xadd
        self.xdel_head = xdel_head
        self.delay_id = delay_id


class _Deletes:
    """XDELs of split calls whose XADD succeeded: one per delay stream, sent in front of
    the batch's next chunk; each split call is answered once its XDEL's reply is in."""

    def __init__(self) -> None:
        self.ready: dict[bytes, list[_Call]] = {}
        self.waiting = 0  # split calls written whose XADD reply is not in yet

    def add(self, call: _Call, reply: Any) -> None:
        self.waiting -= 1
        call.replies = [reply]
        if reply.__class__ is _wire.ReplyError:
            _resolve(call.future, call.replies)  # refused: its delay message stays
        else:
            assert call.split is not None
            self.ready.setdefault(call.split.xdel_head, []).append(call)

    def take(self) -> tuple[bytes, list[list[_Call]]]:
        parts: list[bytes] = []
        for head, group in self.ready.items():
            ids = [b"$%d\r\n%b\r\n" % (len(c.split.delay_id), c.split.delay_id) for c in group]  # type: ignore[union-attr]
            parts.append(b"*%d\r\n%b%b" % (len(ids) + 2, head, b"".join(ids)))
        groups = list(self.ready.values())
        self.ready = {}
        return b"".join(parts), groups

    @staticmethod
    def answer(groups: list[list[_Call]], replies: list[Any]) -> None:
        for group, reply in zip(groups, replies, strict=True):
            for call in group:
                if reply.__class__ is _wire.ReplyError:
                    call.replies = [reply]
                _resolve(call.future, call.replies)


class _Batch:
    __slots__ = ("calls", "task")

    def __init__(self, calls: list[_Call]) -> None:
        self.calls = calls
        self.task: asyncio.Task[None] | None = None


class Coalescer:
    """Coalesces one producer's concurrent single calls into shared pipelines."""

    def __init__(
        self,
        client: Any,
        *,
        acks: Acks,
        slice_size: int,
        max_batches: int = 2,
        max_calls: int = 5000,
    ) -> None:
        self._client = client
        self._acks = acks
        self.script_loaded = False  # QUEUE_AND_DELETE on this client's server (send/node)
        self._slice_size = slice_size
        self._max_batches = max_batches
        self._max_calls = max_calls
        self._queue: deque[_Call] = deque()
        self._batches: set[_Batch] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(
        self, data: bytes, count: int, *, delay: bool, split: Split | None = None
    ) -> list[Any]:
        """Send ``data`` (``count`` commands) in the next batch; return its raw replies.

        A one-command ``data`` may come with its ``split`` form: in a batch of several
        slices, every slice but the last sends that instead (no script per record).
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A producer may outlive an event loop (tests, scripts): start afresh.
            self._loop, self._queue, self._batches = loop, deque(), set()
        call = _Call(data, count, delay, loop.create_future(), split)
        if not self._batches and not self._queue:
            # Idle: send at once in the caller's own task (no task hop); calls
            # that arrive meanwhile queue up for the batch that follows.
            batch = _Batch([call])
            self._batches.add(batch)
            try:
                await self._run(batch)
            finally:
                self._finished(batch)
            return call.future.result()  # type: ignore[no-any-return]
        self._queue.append(call)
        if len(self._batches) < self._max_batches:
            self._start_batch()
        try:
            return await call.future  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            await self._abandon(call)
            raise

    async def _abandon(self, call: _Call) -> None:
        batch = call.batch
        if batch is None or batch.task is None:
            return  # still queued: the next batch skips it
        if all(c.future.done() for c in batch.calls):
            # Nobody is left to read this batch's replies: stop it now, so its
            # connection is closed and released before this caller returns.
            batch.task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({batch.task})

    def _start_batch(self) -> None:
        calls: list[_Call] = []
        queue = self._queue
        while queue and len(calls) < self._max_calls:
            call = queue.popleft()
            if not call.future.done():  # skip callers cancelled while queued
                calls.append(call)
        if not calls:
            return
        batch = _Batch(calls)
        for call in calls:
            call.batch = batch
        self._batches.add(batch)
        batch.task = asyncio.get_running_loop().create_task(self._run(batch))
        batch.task.add_done_callback(lambda _: self._finished(batch))

    def _finished(self, batch: _Batch) -> None:
        self._batches.discard(batch)
        task = batch.task
        if task is not None and not task.cancelled() and task.exception() is not None:
            logger.error("coalesced batch failed", exc_info=task.exception())
        if self._queue and len(self._batches) < self._max_batches:
            self._start_batch()

    @staticmethod
    def _bytes(call: _Call, deletes: _Deletes, split: bool) -> bytes:
        if split and call.split is not None:
            call.replies = _SPLIT
            deletes.waiting += 1
            return call.split.xadd
        return call.data

    async def _run(self, batch: _Batch) -> None:
        calls = batch.calls
        acks = self._acks
        waits = acks.count if any(c.delay for c in calls) else 0
        in_flight: deque[tuple[list[_Call], list[list[_Call]]]] = deque()
        wait_results: list[Any] = []
        deletes = _Deletes()

        def chunks() -> Iterator[_wire.Chunk | None]:
            size = self._slice_size
            for start in range(0, len(calls), size):
                part = calls[start : start + size]
                last = start + size >= len(calls)
                head, groups = deletes.take()
                in_flight.append((part, groups))
                # no split under WAIT: its reply must stay the last one read
                data = b"".join([self._bytes(c, deletes, not last and not waits) for c in part])
                count = sum(c.count for c in part) + len(groups)
                if waits and last:
                    yield head + data + acks.tail, count + waits
                else:
                    yield head + data, count
            while deletes.waiting or deletes.ready:
                if not deletes.ready:
                    yield None  # the XADD replies name the XDELs
                    continue
                head, groups = deletes.take()
                in_flight.append(([], groups))
                yield head, len(groups)

        def sink(_: int, replies: list[Any]) -> None:
            part, groups = in_flight.popleft()
            deletes.answer(groups, replies[: len(groups)])
            position = len(groups)
            for call in part:
                if call.split is not None and call.replies is _SPLIT:
                    deletes.add(call, replies[position])
                    position += 1
                    continue
                call.replies = replies[position : position + call.count]
                position += call.count
                if not (waits and call.delay) or _failed(call.replies):
                    # an error reply is the caller's answer whatever WAIT says
                    _resolve(call.future, call.replies)
            wait_results.extend(replies[position:])

        try:
            await _wire.execute(
                self._client,
                chunks(),
                sink,
                what="coalesced delay/queue",
                last_read_extra_s=acks.last_read_extra_s if waits else 0.0,
            )
        except Exception as exc:
            for call in calls:
                if not call.future.done():
                    fresh = copy.copy(exc)  # one exception object per caller
                    fresh.__cause__ = exc.__cause__
                    call.future.set_exception(fresh)
            return
        except BaseException:
            # Cancelled from outside (the loop shutting down): nobody may hang on us.
            for call in calls:
                call.future.cancel()
            raise
        for call in calls:
            if call.future.done():
                continue
            try:
                acks.check(wait_results)
            except Exception as exc:  # a fresh ReplicationError for each caller
                call.future.set_exception(exc)
            else:
                _resolve(call.future, call.replies)


#: marks a call sent in its split form (its replies come from _Deletes)
_SPLIT: list[Any] = []


def _failed(replies: list[Any]) -> bool:
    return any(isinstance(reply, _wire.ReplyError) for reply in replies)


def _resolve(future: asyncio.Future[Any], replies: list[Any] | None) -> None:
    if not future.done():
        future.set_result(replies)
