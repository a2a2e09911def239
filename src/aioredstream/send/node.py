"""The sender for one node (or a Sentinel's primary): the wire for bulk calls, the
coalescer for concurrent single calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from redis.asyncio import Redis

from .._packing import Slice, Target
from ..errors import UnsupportedError
from . import wire
from .acks import Acks
from .base import submit_queue_delete
from .coalesce import Coalescer
from .queueing import QueueUnit, QueueWithDeletes
from .replies import raise_command_error

__all__ = ["NodeSender"]


class NodeSender:
    """Bulk and single writes on one ``redis.asyncio.Redis`` client's pool; each call
    waits at most ``connect_timeout_s`` for a connection (``None``: as the client says)."""

    def __init__(
        self, client: Redis, acks: Acks, slice_size: int, connect_timeout_s: float | None = None
    ) -> None:
        self.client = client
        self.acks = acks
        self.slice_size = slice_size
        self.connect_timeout_s = connect_timeout_s
        self.coalescer = Coalescer(
            client, acks=acks, slice_size=slice_size, connect_timeout_s=connect_timeout_s
        )
        self._message_id, self._queued, self._queued_deleted = _reply_checks(client)

    async def send_delay(self, slices: list[Slice]) -> list[str]:
        ids: list[str] = []
        acks = self.acks
        last = len(slices) - 1

        def chunks() -> Iterator[wire.Chunk]:
            for number, part in enumerate(slices):
                if number == last and acks.count:
                    yield part.delay_commands() + acks.tail, len(part) + acks.count
                else:
                    yield part.delay_commands(), len(part)

        wait_results: list[Any] = []

        def sink(chunk: int, replies: list[Any]) -> None:
            if chunk == last and acks.count:
                wait_results.extend(replies[len(replies) - acks.count :])
                replies = replies[: len(replies) - acks.count]
            if {bytes} != set(map(type, replies)):
                for position, reply in enumerate(replies):
                    if not isinstance(reply, bytes):
                        raise_command_error(reply, "XADD", len(ids) + position, self.client)
            ids.extend(map(bytes.decode, replies))

        await wire.execute(
            self.client,
            chunks(),
            sink,
            what="delay",
            # only a WAIT may block longer than the socket timeout (0 s: until acknowledged)
            last_read_extra_s=acks.last_read_extra_s if acks.count else 0.0,
            connect_timeout_s=self.connect_timeout_s,
        )
        if acks.count:
            acks.check(wait_results, self.client)
        return ids

    async def send_queue(self, slices: list[Slice], ids: Sequence[str | bytes] | None) -> None:
        if ids is not None:
            queue = QueueWithDeletes(_units(slices, ids))
            await wire.execute(
                self.client,
                queue.chunks(),
                queue.sink,
                what="queue",
                connect_timeout_s=self.connect_timeout_s,
            )
            queue.raise_failure(self.client)
            return
        size = self.slice_size

        def sink(chunk: int, replies: list[Any]) -> None:
            for position, reply in enumerate(replies):
                if reply.__class__ is wire.ReplyError:
                    raise_command_error(reply, "XADD", chunk * size + position, self.client)

        chunks = ((part.queue_commands(), len(part)) for part in slices)
        await wire.execute(
            self.client, chunks, sink, what="queue", connect_timeout_s=self.connect_timeout_s
        )

    # the coalescer's coroutine itself goes back to the producer: no layer of our own
    def delay_one(self, target: Target, arg: bytes) -> Awaitable[str]:
        return self.coalescer.submit(target.xadd_delay, arg, delay=True, check=self._message_id)

    def queue_one(self, target: Target, arg: bytes, delay_id: bytes | None) -> Awaitable[None]:
        if delay_id is None:
            return self.coalescer.submit(target.xadd, arg, delay=False, check=self._queued)
        return submit_queue_delete(self.coalescer, target, arg, delay_id, self._queued_deleted)

    async def check_waitaof(self) -> None:
        info = await wire.call(
            self.client,
            *("COMMAND", "INFO", "WAITAOF"),
            what="WAITAOF check",
            connect_timeout_s=self.connect_timeout_s,
        )
        if isinstance(info, list) and info and info[0] is not None:
            return
        with wire.translate_errors("WAITAOF check"):
            server = await self.client.info("server")
            version = server.get("valkey_version") or server.get("redis_version")
        raise UnsupportedError(
            f"wait_aof needs WAITAOF (Redis >= 7.2 or Valkey); this server is "
            f"{'Valkey' if 'valkey_version' in server else 'Redis'} {version}"
        )


def _units(slices: list[Slice], ids: Sequence[str | bytes]) -> Iterator[QueueUnit]:
    start = 0
    for part in slices:
        end = start + len(part)
        yield QueueUnit(part.queue_commands(), part.targets, ids[start:end], start)
        start = end


def _reply_checks(
    client: Redis,
) -> tuple[Callable[[Any], str], Callable[[Any], None], Callable[[Any], None]]:
    """The reply checks of single calls, run in the caller's task. Made once per sender:
    a bound method passed per call would be one more object per call for the collector
    (and one kept on the sender would be a reference cycle)."""

    def message_id(reply: Any) -> str:
        if reply.__class__ is not bytes:
            raise_command_error(reply, "XADD", None, client)
        decoded: str = reply.decode()
        return decoded

    def queued(reply: Any) -> None:
        if reply.__class__ is wire.ReplyError:
            raise_command_error(reply, "XADD", None, client)

    def queued_deleted(reply: Any) -> None:
        if reply.__class__ is wire.ReplyError:
            raise_command_error(reply, "XADD+XDEL", None, client)

    return message_id, queued, queued_deleted
