"""Auto-pipelining: concurrent single calls share pipelines on a few connections.

Each ``delay()`` / ``queue()`` call becomes a :class:`Call` (its RESP bytes, how
many replies they produce, a future) in one queue. Batching is natural: when no
batch is in flight a call starts one at once (no timer, no added delay); while
``max_batches`` batches are in flight, new calls wait in the queue and all of
them go in the next batch when one finishes.

A batch is one short-lived task that sends its calls through :func:`wire.execute`
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
from typing import TYPE_CHECKING, Any

import anyio

from . import wire
from .batch import Call, Exchange, Split, resolve

if TYPE_CHECKING:
    from .acks import Acks

__all__ = ["Coalescer", "Split"]

logger = logging.getLogger("aioredstream.coalesce")


class _Batch:
    __slots__ = ("calls", "task")

    def __init__(self, calls: list[Call]) -> None:
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
        self._queue: deque[Call] = deque()
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
        call = Call(data, count, delay, loop.create_future(), split)
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
        calls: list[Call] = []
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

    async def _run(self, batch: _Batch) -> None:
        calls = batch.calls
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
                acks.check(exchange.wait_results, self._client)
            except Exception as exc:  # a fresh ReplicationError for each caller
                call.future.set_exception(exc)
            else:
                resolve(call.future, call.replies)
