"""Auto-pipelining: concurrent single calls share pipelines on a few connections.

Each ``delay()`` / ``queue()`` call becomes a `Call` (its command's
parts, how many replies they produce, a future) in one queue. Batching is natural:
when no batch is in flight a call starts one at once (no timer, no added delay);
while `MAX_BATCHES` batches are in flight, new calls wait in the queue and all
of them go in the next batch when one finishes. A batch takes its calls when its
task first runs, not when it is started, so the calls that arrive in the same turn
of the event loop share it.

A batch is one short-lived task that sends its calls through `wire.execute`
on one pooled connection and ends; nothing outlives an idle period. Replies come
back in order, so each call gets exactly its own replies. If any call in the batch
is a delay write and the producer waits for replicas, one WAIT (and/or WAITAOF)
goes at the end of the batch on the same connection: it vouches for every write
before it, and if it falls short, every delay call of the batch gets its own
``ReplicationError``.

An idle producer sends a lone call in the caller's own task, with no batch, no
future and no task switch (nobody else needs its replies). A cancelled caller of a
shared batch leaves the batch alone (its other callers still need their replies);
only when every caller of a batch has gone is the batch task cancelled, which
closes its connection (unread replies never reach a later call).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from . import wire
from .batch import Call, Exchange
from .replies import raise_command_error

if TYPE_CHECKING:
    from .._packing import Target
    from .acks import Acks

__all__ = ["MAX_BATCHES", "MAX_CALLS", "Coalescer"]

logger = logging.getLogger("aioredstream.coalesce")

#: Batches in flight at once, each on a connection of its own. Two keep the
#: connection busy: one batch is on the wire while the next one fills. The producer
#: runs out of CPU long before one connection runs out of bandwidth, so a third
#: would only spread the same calls over more connections and smaller pipelines.
MAX_BATCHES = 2
#: Calls per batch at most. A batch's commands are packed and its replies parsed
#: before its callers resume, so this bounds the memory of one batch and how long
#: its first caller waits behind its last; beyond a few thousand calls a larger
#: pipeline saves nothing measurable per call.
MAX_CALLS = 5000


class _Batch:
    __slots__ = ("calls", "task")

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.task: asyncio.Task[None] | None = None


class Coalescer:
    """Coalesces one producer's concurrent single calls into shared pipelines."""

    def __init__(
        self,
        client: Any,
        *,
        acks: Acks,
        slice_size: int,
        connect_timeout_s: float | None = None,
    ) -> None:
        self._client = client
        self._acks = acks
        self._connect_timeout_s = connect_timeout_s
        self.script_loaded = False  # QUEUE_AND_DELETE on this client's server (send/base)
        self._slice_size = slice_size
        self._queue: deque[Call] = deque()
        self._running = 0  # batches in flight, a lone call in its caller's task included
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(
        self,
        head: bytes,
        arg: bytes,
        *,
        delay: bool,
        raw: bytes | None = None,
        count: int = 1,
        split: Target | None = None,
        reload: bytes | None = None,
        check: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Send ``head + arg`` (then ``raw`` as a bulk string): ``count`` commands in the
        next batch; return the reply (a list of them when ``count`` > 1), or what
        ``check`` makes of it (it may raise: the caller's own error).

        ``split`` (a queue write with a delay deletion, by script) is the record's
        target: in a batch of several slices the call may go as a bare XADD plus a
        shared XDEL of ``raw`` instead (see `batch`). ``reload`` (for a script
        call) loads the script: after a ``NOSCRIPT`` the call goes again behind it.

        The sender hands this coroutine to the producer as it is (no wrapper of its
        own): each layer of coroutines costs every call on its way in and out.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A producer may outlive an event loop (tests, scripts): start afresh.
            self._loop, self._queue, self._running = loop, deque(), 0
        if not self._running and not self._queue:
            # Idle: send at once in the caller's own task; calls that arrive
            # meanwhile queue up for the batch that follows.
            self._running = 1
            try:
                reply = await self._alone(head, arg, raw, count, delay)
            finally:
                if self._loop is loop:
                    self._running -= 1
                    if self._queue and self._running < MAX_BATCHES:
                        self._start_batch()
        else:
            call = Call(head, arg, raw, count, delay, loop.create_future(), split)
            self._queue.append(call)
            if self._running < MAX_BATCHES:
                self._start_batch()
            try:
                reply = await call.future
            except asyncio.CancelledError:
                await self._abandon(call)
                raise
        if (
            reload is not None
            and reply.__class__ is wire.ReplyError
            and str(reply).startswith("NOSCRIPT")
        ):
            reply = await self.load_and_submit(reload, head, arg, raw)
        return reply if check is None else check(reply)

    async def load_and_submit(self, load: bytes, head: bytes, arg: bytes, raw: bytes | None) -> Any:
        """One script call with ``load`` (its SCRIPT LOAD) in front: the first call of a
        producer, or the one after a ``NOSCRIPT`` (a restarted server, a failover)."""
        loaded, reply = await self.submit(load + head, arg, delay=False, raw=raw, count=2)
        if loaded.__class__ is wire.ReplyError:
            raise_command_error(loaded, "SCRIPT LOAD", None, self._client)
        self.script_loaded = True
        return reply

    async def _alone(
        self, head: bytes, arg: bytes, raw: bytes | None, count: int, delay: bool
    ) -> Any:
        acks = self._acks
        waits = acks.count if delay else 0
        data = head + arg if raw is None else b"%b%b$%d\r\n%b\r\n" % (head, arg, len(raw), raw)
        if waits:
            data += acks.tail
        replies = await wire.exchange(
            self._client,
            data,
            count + waits,
            what="coalesced delay/queue",
            last_read_extra_s=acks.last_read_extra_s if waits else 0.0,
            connect_timeout_s=self._connect_timeout_s,
        )
        if count == 1:
            reply = replies[0]
            failed = reply.__class__ is wire.ReplyError
        else:
            reply = replies[:count]
            failed = any(r.__class__ is wire.ReplyError for r in reply)
        if waits and not failed:
            acks.check(replies[count:], self._client)
        return reply

    async def _abandon(self, call: Call) -> None:
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
        batch = _Batch()
        self._running += 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        batch.task = task
        task.add_done_callback(self._finished)

    def _take(self, batch: _Batch) -> list[Call]:
        """The calls waiting now (callers cancelled while queued are skipped)."""
        calls = batch.calls
        queue = self._queue
        while queue and len(calls) < MAX_CALLS:
            call = queue.popleft()
            if not call.future.done():
                call.batch = batch
                calls.append(call)
        return calls

    def _finished(self, task: asyncio.Task[None]) -> None:
        if task.get_loop() is not self._loop:
            return  # a batch of an event loop the producer has left
        self._running -= 1
        if not task.cancelled() and task.exception() is not None:
            logger.error("coalesced batch failed", exc_info=task.exception())
        if self._queue and self._running < MAX_BATCHES:
            self._start_batch()

    async def _run(self, batch: _Batch) -> None:
        calls = self._take(batch)  # the list batch.calls
        try:
            await self._send(calls)
        finally:
            # Each call points at its batch (for _abandon): without this its calls,
            # their futures and replies would be a reference cycle left to the garbage
            # collector, whose collections then cost a third of a busy producer's time.
            # Emptied in place, not rebound: on Python 3.12+ the frames of this task's
            # stack can outlive it in a cycle of their own (redis-py 8.1 catches the
            # errors of CLIENT SETINFO / MAINT_NOTIFICATIONS on an older server while
            # this task opens a connection; each error's traceback holds its frame, and
            # a frame now links to its callers', which keep the locals they returned
            # with). Those frames name this list, so it must be empty; and _send keeps
            # no call in a local of its own (_fail/_answer loop over the calls).
            calls.clear()

    async def _send(self, calls: list[Call]) -> None:
        if not calls:
            return
        acks = self._acks
        waits = acks.count if any(c.delay for c in calls) else 0
        exchange = Exchange(calls, acks, waits, self._slice_size)
        try:
            await wire.execute(
                self._client,
                exchange.chunks(),
                exchange.sink,
                what="coalesced delay/queue",
                last_read_extra_s=acks.last_read_extra_s if waits else 0.0,
                connect_timeout_s=self._connect_timeout_s,
            )
        except Exception as exc:
            _fail(calls, exc)
            return
        except BaseException:
            # Cancelled from outside (the loop shutting down): nobody may hang on us.
            _cancel(calls)
            raise
        self._answer(calls, exchange.wait_results)

    def _answer(self, calls: list[Call], wait_results: list[Any]) -> None:
        acks = self._acks
        for call in calls:
            if call.future.done():
                continue
            try:
                acks.check(wait_results, self._client)
            except Exception as exc:  # a fresh ReplicationError for each caller
                call.future.set_exception(exc)
            else:
                call.future.set_result(call.reply)


def _fail(calls: list[Call], exc: Exception) -> None:
    for call in calls:
        if not call.future.done():
            fresh = copy.copy(exc)  # one exception object per caller
            fresh.__cause__ = exc.__cause__
            call.future.set_exception(fresh)


def _cancel(calls: list[Call]) -> None:
    for call in calls:
        call.future.cancel()
