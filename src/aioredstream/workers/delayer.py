"""The delayer: replay delay messages into their stream once they are old enough.

A delay message is written before a database write; the queue message after the
commit deletes it. One that is still there after ``delay`` seconds (longer than
any transaction) means the writer died between commit and queue: the delayer
copies it into ``<name>`` so the consumers re-sync that record.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio

from .. import _telemetry
from .._keys import DELAY_SUFFIX
from .._validate import check_name, check_seconds, parse_id
from ..errors import ArgumentError
from ..send import command as _command
from ._loop import plural, run_forever, run_step_once
from ._streams import Client, decode
from .consumer import Consumer, valid_messages
from .lock import fenced
from .message import decode_fields

__all__ = ["Delayer"]

logger = logging.getLogger("aioredstream.delayer")

Entry = tuple[str, dict[str, str]]

# XDEL the delivered delay messages and commit, only while the delayer's lock is ours
# (in slices: Lua's unpack has a limit).
_DELIVERED = fenced("""
for i = 3, #ARGV, 1000 do
  redis.call('xdel', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('set', KEYS[3], ARGV[2])
""")


class Delayer:
    """Copies entries of ``<stream_name>.delay`` older than ``delay`` seconds to ``<stream_name>``.

    It is the consumer named ``delayer`` on ``<stream_name>.delay`` (same lock and
    offset keys as the gem's). Age is judged by the server's clock (``TIME``)
    against the millisecond part of the entry id, which that same clock wrote (on a
    cluster, ``TIME`` asks the node that owns the delay stream).

    ``client`` may be a ``RedisCluster``; ``hash_tags`` picks the layout as for the
    producer. With hash tags, ``<name>``, ``<name>.delay`` and the delayer's offset
    share a slot, so copy + delete + commit is one pipeline to one node.
    """

    def __init__(
        self,
        client: Client,
        *,
        stream_name: str,
        delay: float,
        namespace: str | None = None,
        batch_size: int = 1000,
        block: float = 5.0,
        backoff: float = 5.0,
        hash_tags: bool | None = None,
    ) -> None:
        self.stream_name = self.check_stream_name(stream_name)
        self.delay = check_seconds(delay, "delay")
        self.consumer = Consumer(
            client,
            stream_name=stream_name + DELAY_SUFFIX,
            name="delayer",
            namespace=namespace,
            batch_size=batch_size,
            block=block,
            backoff=backoff,
            hash_tags=hash_tags,
        )
        keys = self.consumer.keys
        self._client = client
        self._stream_key = keys.stream(stream_name)
        self._delay_key = keys.delay_stream(stream_name)
        self._offset_key = keys.offset(stream_name + DELAY_SUFFIX, "delayer")
        self._delay_ms = round(self.delay * 1000)

    @staticmethod
    def check_stream_name(stream_name: str) -> str:
        """``stream_name`` if a delayer can run for it (it must not be a delay stream)."""
        check_name(stream_name)
        if stream_name.endswith(DELAY_SUFFIX):
            raise ArgumentError(
                f"stream_name {stream_name!r} names a delay stream; pass the stream it delays for"
            )
        return stream_name

    async def run(self) -> None:
        """Delay batches until cancelled, holding the lock; errors are logged, then ``backoff``."""
        await run_forever(
            self.consumer.lock,
            self._step,
            logger=logger,
            what=f"delayer on {self.stream_name}",
            backoff=self.consumer.backoff,
        )

    async def run_once(self) -> int:
        """Handle one batch of delay messages; return how many were copied or dropped.

        As the gem's: everything in the batch is delivered before this returns, sleeping
        until each message is due. Each due group is delivered and committed before
        the sleep, so a crash mid-sleep repeats nothing that was committed. After a
        sleep the rest of the batch is read again, so a message that its ``queue()``
        deleted meanwhile is not replayed (the gem replays what it read).
        """
        return await run_step_once(self.consumer.lock, self._step, 0)

    async def _step(self) -> int:
        entries = await self.consumer.read()
        if not entries:
            return 0
        last_id = entries[-1][0]
        done = 0
        while True:
            now_ms = await self._server_time_ms()
            due = [e for e in entries if parse_id(e[0])[0] + self._delay_ms <= now_ms]
            done += await self._deliver(due)
            if len(due) == len(entries):
                return done
            next_id = entries[len(due)][0]
            await anyio.sleep((parse_id(next_id)[0] + self._delay_ms - now_ms + 1) / 1000)
            entries = await self._read_range(next_id, last_id)
            if not entries:
                return done

    async def _read_range(self, first_id: str, last_id: str) -> list[Entry]:
        """The delay entries from ``first_id`` to ``last_id`` still there (the rest of a batch)."""
        key = self._delay_key
        rows: Any = await _command.run(self._client, "XRANGE", key, first_id, last_id, key=key)
        return [(decode(raw_id), decode_fields(fields)) for raw_id, fields in rows or ()]

    async def _server_time_ms(self) -> int:
        # On a cluster: the node of the delay stream, whose clock wrote its ids.
        reply: Any = await _command.run(self._client, "TIME", key=self._delay_key, what="TIME")
        seconds, micros = reply
        return int(seconds) * 1000 + int(micros) // 1000

    async def _deliver(self, entries: list[Entry]) -> int:
        """Copy ``entries`` to the stream; only once every copy succeeded, delete them
        from the delay stream and commit.

        Two round trips, not one: pipelined together, a refused copy (OOM, WRONGTYPE)
        would still let the delete run and lose the message. If the connection breaks
        after the copies, they are made again: at worst a message is copied twice.
        """
        if not entries:
            return 0
        with _telemetry.batch("delay", self.stream_name + DELAY_SUFFIX, len(entries)):
            return await self._copy(entries)

    async def _delete_and_commit(self, ids: list[str], *, what: str) -> None:
        lock = self.consumer.lock
        if lock.fencing:
            keys = [self._delay_key, self._offset_key]
            await lock.run_fenced(_DELIVERED, keys, [ids[-1], *ids], what=what)
            return
        await _command.pipeline(
            self._client,
            [("XDEL", self._delay_key, *ids), ("SET", self._offset_key, ids[-1])],
            key=self._delay_key,
            what=what,
        )

    async def _copy(self, entries: list[Entry]) -> int:
        messages = valid_messages(entries, self.stream_name + DELAY_SUFFIX)
        ids = [message_id for message_id, _ in entries]
        what = f"deliver {len(ids)} delay messages to {self._stream_key}"
        if messages:
            copies = [("XADD", self._stream_key, "*", "payload", m.raw_payload) for m in messages]
            # a refused copy keeps every delay message
            await _command.pipeline(
                self._client, copies, key=self._delay_key, what=f"{what} (XADD)"
            )
        await self._delete_and_commit(ids, what=f"{what} (XDEL, SET offset)")
        logger.info(
            "delayed %s on %s by %.1fs",
            *(plural(len(messages), "message"), self.stream_name, self.delay),
            extra={"stream": self.stream_name, "count": len(messages)},
        )
        return len(entries)
