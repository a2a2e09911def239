"""The consumer: read a stream in batches under a lock, hand them to a handler, commit."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .. import _telemetry
from .._failures import cause
from .._validate import check_count, check_id, check_name, check_seconds
from ..errors import ArgumentError, MessageError
from ..send import command as _command
from . import _dead
from ._loop import plural, run_forever, run_step_once
from ._streams import Client, decode, keys_for
from .lock import Lock, fenced, worker_lock_name
from .message import Message, decode_fields
from .retry import Retry

__all__ = ["Consumer", "Handler"]

logger = logging.getLogger("aioredstream.consumer")

Handler = Callable[[list[Message]], Awaitable[object]]

# The offset moves only while the lock key holds our token (the keys and value are
# the gem's): a holder that lost its lock cannot move it, not even backwards.
_COMMIT = fenced("redis.call('set', KEYS[2], ARGV[2])")


class Consumer:
    """Reads ``stream_name`` in batches of at most ``batch_size`` for one named consumer.

    Several processes may run the same ``(stream_name, name)``: the lock
    ``consumer:<stream_name>:<name>`` lets one work while the others stand by.
    The committed offset (the id of the last entry of the last finished batch) is
    stored under ``offset:<stream_name>:<name>``, as the gem stores it.

    ``block`` is how long one read waits for new entries and ``backoff`` how long
    [`run`][aioredstream.Consumer.run] sleeps after an error (seconds). ``retry`` (a
    [`Retry`][aioredstream.Retry]) retries a batch whose handler raised with growing
    waits, holding the lock; after its last attempt the batch is retried at the
    longest wait, or with ``dead_letter=True`` its failing messages go to
    ``<stream_name>.dead`` (see [`Retry`][aioredstream.Retry]). ``client`` may be a ``RedisCluster``
    (each command goes to the node of its key); ``hash_tags`` picks the key layout as
    for the producer: ``None`` means on for a cluster, off otherwise.
    """

    def __init__(
        self,
        client: Client,
        *,
        stream_name: str,
        name: str,
        namespace: str | None = None,
        batch_size: int = 1000,
        block: float = 5.0,
        backoff: float = 5.0,
        hash_tags: bool | None = None,
        retry: Retry | None = None,
        dead_letter: bool = False,
    ) -> None:
        check_name(stream_name)  # "<x>.delay" is allowed: the delayer consumes those
        if retry is not None and not isinstance(retry, Retry):
            raise ArgumentError(f"retry must be an aioredstream.Retry or None, got {retry!r}")
        if dead_letter and retry is None:
            raise ArgumentError("dead_letter=True needs retry=Retry(...): after how many attempts")
        self.retry = retry
        self.dead_letter = bool(dead_letter)
        check_name(name, "consumer name")
        self.stream_name = stream_name
        self.name = name
        self.batch_size = check_count(batch_size, "batch_size")
        self.block = check_seconds(block, "block", positive=True)
        self.backoff = check_seconds(backoff, "backoff")
        keys = keys_for(client, namespace, hash_tags)
        self.keys = keys
        self._client = client
        self._stream_key = keys.stream(stream_name)
        self._offset_key = keys.offset(stream_name, name)
        #: (lock take, offset) while this consumer holds its lock: see _handle_batch
        self._known: tuple[int, str] | None = None
        self.lock = Lock(
            client,
            worker_lock_name("consumer", stream_name, name),
            namespace=namespace,
            hash_tags=keys.hash_tags,
        )

    async def max_committed_id(self) -> str | None:
        """The committed offset, ``None`` before the first commit."""
        value: Any = await _command.run(self._client, "GET", self._offset_key, key=self._offset_key)
        return None if value is None else decode(value)

    async def run(self, handler: Handler) -> None:
        """Handle batches until cancelled, holding the lock throughout.

        A same-named consumer elsewhere stands by until this one stops, fails or
        vanishes. Errors (the handler's, the server's) are logged, release the
        lock, and are followed by ``backoff`` seconds.
        """
        await run_forever(
            self.lock,
            lambda: self._handle_batch(handler),
            logger=logger,
            what=f"consumer {self.name} on {self.stream_name}",
            backoff=self.backoff,
        )

    async def run_once(self, handler: Handler) -> int:
        """Handle at most one batch under the lock; return how many entries were committed.

        Without the lock, wait (up to 5 s, less when the holder's key expires sooner)
        for its release and return 0. A handler error propagates and nothing is
        committed, so the same batch comes again.
        """
        return await run_step_once(self.lock, lambda: self._handle_batch(handler), 0)

    async def _handle_batch(self, handler: Handler) -> int:
        # Under the lock nobody else commits this offset: read it once per take of the
        # lock and then follow our own commits (``offset set`` needs the worker stopped).
        take = self.lock.takes
        if self._known is not None and self._known[0] == take:
            offset = self._known[1]
        else:
            offset = await self.max_committed_id() or "0-0"
            self._known = (take, offset)
        rows = _rows(await self._xread(offset))
        if not rows:
            return 0
        messages = batch_messages(rows, self.stream_name)
        started = time.monotonic()
        if messages:
            await self._handle(handler, messages)
        last_id = decode(rows[-1][0])
        await self._commit_held(last_id)
        self._known = (take, last_id)
        if logger.isEnabledFor(logging.INFO):
            self._log_batch(len(rows), time.monotonic() - started)
        return len(rows)

    def _log_batch(self, count: int, duration_s: float) -> None:
        logger.info(
            "handled %s of %s in %.3fs%s",
            plural(count, "entry", "entries"),
            self.stream_name,
            duration_s,
            "" if count == self.batch_size else "; caught up",
            extra={
                "stream": self.stream_name,
                "consumer": self.name,
                "count": count,
                "duration_s": duration_s,
                "caught_up": count < self.batch_size,
            },
        )

    async def _call(self, handler: Handler, messages: list[Message]) -> None:
        with _telemetry.batch("consume", self.stream_name, len(messages)):
            await handler(messages)

    async def _handle(self, handler: Handler, messages: list[Message]) -> None:
        """The handler's call for one batch, retried as ``retry`` says (else: once)."""
        if self.retry is None:
            await self._call(handler, messages)
            return
        attempts, failures = self.retry.attempts, 0
        while True:
            try:
                await self._call(handler, messages)
                return
            except Exception as exc:
                failures += 1
                where = {
                    "stream": self.stream_name,
                    "consumer": self.name,
                    "attempt": failures,
                    "error": cause(exc),
                }
                if failures >= attempts and self.dead_letter:
                    await self._bisect(handler, messages, exc, failures)
                    return
                if failures == attempts:
                    logger.error(
                        "gave up on a batch of %s after %d attempts (%s); retrying at the "
                        "longest wait",
                        self.stream_name,
                        failures,
                        where["error"],
                        exc_info=exc,
                        extra=where,
                    )
                wait_s = self.retry.backoff(min(failures, attempts))
                if failures < attempts:
                    logger.warning(
                        "handler failed on %s (attempt %d of %d), retrying in %.1fs: %s",
                        *(self.stream_name, failures, attempts, wait_s, where["error"]),
                        extra={**where, "retry_in_s": wait_s},
                    )
                await anyio.sleep(wait_s)

    async def _bisect(
        self, handler: Handler, messages: list[Message], error: Exception, attempts: int
    ) -> None:
        """Find the messages that fail on their own: halve failing parts, in order, until
        single messages remain; dead-letter those. Each part that succeeds or is
        dead-lettered is committed at once, so a crash repeats work, never loses it."""
        pending: deque[tuple[list[Message], Exception | None, int]] = deque(
            [(messages, error, attempts)]
        )
        while pending:
            part, failed, calls = pending.popleft()
            if failed is None:
                calls += 1
                try:
                    await self._call(handler, part)
                except Exception as exc:
                    failed = exc
                else:
                    await self._commit_held(part[-1].message_id)
                    continue
            if len(part) == 1:
                [message] = part
                await _dead.write(
                    self._client, self.keys, self.stream_name, self.name, message, failed, calls
                )
                logger.error(
                    "dead-lettered %s of %s after %d attempts: %s",
                    *(message.message_id, self.stream_name, calls, cause(failed)),
                    extra={
                        "stream": self.stream_name,
                        "consumer": self.name,
                        "message_id": message.message_id,
                        "attempts": calls,
                        "error": cause(failed),
                    },
                )
                await self._commit_held(message.message_id)
                continue
            middle = len(part) // 2
            pending.appendleft((part[middle:], None, calls))
            pending.appendleft((part[:middle], None, calls))

    async def read(self) -> list[tuple[str, dict[str, str]]]:
        """The next batch after the committed offset as ``(id, fields)``, ``[]`` if none came."""
        return await self._read_after(await self.max_committed_id() or "0-0")

    async def _read_after(self, offset: str) -> list[tuple[str, dict[str, str]]]:
        return parse_xread(await self._xread(offset))

    async def _xread(self, offset: str) -> Any:
        """The raw ``XREAD`` reply for the entries after ``offset``."""
        block_ms = max(1, round(self.block * 1000))
        key = self._stream_key
        # Raw bytes whatever decode_responses says, so a payload that is not UTF-8 is
        # skipped as malformed instead of failing the read forever. The reply may take
        # the block time on top of the socket timeout: an idle stream is no timeout.
        return await _command.run(
            self._client,
            *("XREAD", "COUNT", self.batch_size, "BLOCK", block_ms, "STREAMS", key, offset),
            key=key,
            block_s=block_ms / 1000,
        )

    async def commit(self, message_id: str) -> None:
        """Store ``message_id`` (a stream id ``<ms>-<seq>``) as the offset: reading resumes
        after it.

        This is a plain ``SET``, for use outside the lock (while no worker runs). The
        consumer's own commits, under the lock, check the lock's token in the same
        script (except on a cluster, where the two keys live in different slots).
        """
        check_id(message_id, "message_id")
        await _command.run(self._client, "SET", self._offset_key, message_id, key=self._offset_key)

    async def _commit_held(self, message_id: str) -> None:
        """Commit from under the lock: only while it is ours (else the take ends here)."""
        if not self.lock.fencing:
            await self.commit(message_id)
            return
        what = f"commit {self._offset_key}"
        await self.lock.run_fenced(_COMMIT, [self._offset_key], [message_id], what=what)


def _rows(reply: Any) -> list[Any]:
    """One stream's raw ``[id, fields]`` rows from an XREAD reply (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    # RESP3: {key: [entry, ...]}; RESP2: [[key, [entry, ...]]]; XREAD names one stream
    streams = list(reply.values()) if isinstance(reply, dict) else [item[1] for item in reply]
    return streams[0] if len(streams) == 1 else [row for rows in streams for row in rows]


def parse_xread(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """One stream's entries from a raw XREAD reply, ids and fields as ``str``."""
    return [(decode(raw_id), decode_fields(fields)) for raw_id, fields in _rows(reply)]


def batch_messages(rows: list[Any], stream_name: str) -> list[Message]:
    """Messages of raw ``[id, fields]`` rows, each payload decoded once; malformed entries
    are logged and left out, as `valid_messages` does."""
    messages: list[Message] = []
    append = messages.append
    from_entry = Message.from_entry
    for raw_id, fields in rows:
        try:
            append(from_entry(raw_id.decode(), fields))
        except MessageError as exc:
            logger.warning("skipping malformed entry on %s: %s", stream_name, exc)
    return messages


def valid_messages(entries: list[tuple[str, dict[str, str]]], stream_name: str) -> list[Message]:
    """Messages of well-formed entries; malformed ones are logged and left out."""
    messages = []
    for message_id, fields in entries:
        try:
            messages.append(Message(message_id, fields))
        except MessageError as exc:
            logger.warning("skipping malformed entry on %s: %s", stream_name, exc)
    return messages
