"""The producer: delay messages before a database write, queue messages after it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from . import _cluster, _telemetry
from ._keys import DELAY_SUFFIX, Keys
from ._packing import Slice, Target, encoded, pack_slices
from ._records import PerRecord, Registry, StreamSpec, default_registry, id_getter
from ._sharding import Sharded
from ._validate import check_count, check_id_bytes, check_ids_bytes, check_seconds
from .errors import ArgumentError
from .send.acks import Acks
from .send.base import Sender
from .send.cluster import ClusterSender
from .send.node import NodeSender

__all__ = ["CONNECT_TIMEOUT_S", "Producer"]

#: How long a producer call waits for a connection by default (``connect_timeout_s``):
#: long enough for a restarted server to be back, short enough that a ``track()``
#: flush does not hold its database transaction through an outage (docs/guarantees.md).
CONNECT_TIMEOUT_S = 2.0


class Producer:
    """Writes delay and queue messages for records.

    ``client`` is a ``redis.asyncio.Redis`` built by the caller (any URL, TLS,
    auth, db, ``decode_responses`` either way); the producer borrows connections
    from its pool. ``wait=N`` makes every delay write wait, on the connection
    that wrote it, until ``N`` replicas acknowledged it (``WAIT``), for at most
    ``wait_timeout`` seconds (``0``: until acknowledged). ``wait_aof=(local,
    replicas)`` does the same with ``WAITAOF`` (Redis >= 7.2, Valkey).

    ``client`` may also be a ``redis.asyncio.cluster.RedisCluster`` (writes are
    grouped per node, WAIT runs per node) or a Sentinel's ``master_for()`` client.
    ``hash_tags`` picks the key layout (see `aioredstream._keys`): ``None``
    means hash tags on a cluster, the Ruby layout elsewhere.

    ``connect_timeout_s`` is the longest a call waits for a connection before it sends
    anything: a free one from the pool, connecting, reconnecting after a restart,
    redis-py's connect retries (and on a cluster, re-reading the slot map). Past it the
    call raises [`ServerConnectionError`][aioredstream.errors.ServerConnectionError]
    having written nothing. ``None`` leaves that wait to the client's ``retry``,
    ``socket_connect_timeout`` and pool (docs/guarantees.md, "Outages and restarts").
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        namespace: str | None = None,
        hash_tags: bool | None = None,
        wait: int | bool = False,
        wait_timeout: float = 0,
        wait_aof: tuple[int, int] | None = None,
        slice_size: int = 250,
        registry: Registry | None = None,
        connect_timeout_s: float | None = CONNECT_TIMEOUT_S,
    ) -> None:
        wait = 0 if wait is False else check_count(wait, "wait", least=0)
        wait_timeout = check_seconds(wait_timeout, "wait_timeout")
        if wait_aof is not None:
            if not isinstance(wait_aof, tuple) or len(wait_aof) != 2:
                raise ArgumentError(
                    f"wait_aof must be a (numlocal, numreplicas) tuple, got {wait_aof!r}"
                )
            check_count(wait_aof[0], "wait_aof numlocal", least=0)
            check_count(wait_aof[1], "wait_aof numreplicas", least=0)
        check_count(slice_size, "slice_size")
        if connect_timeout_s is not None:
            connect_timeout_s = check_seconds(connect_timeout_s, "connect_timeout_s", positive=True)
        self.client = client
        # use_hash_tags also refuses a client that is not an asyncio Redis/RedisCluster
        self.keys = Keys(namespace, hash_tags=_cluster.use_hash_tags(client, hash_tags))
        self.namespace = namespace
        self.wait = wait
        self.wait_timeout = wait_timeout
        self.wait_aof = wait_aof
        self.slice_size = slice_size
        self.connect_timeout_s = connect_timeout_s
        self.registry = registry or default_registry
        self._targets: dict[type, Target] = {}  # one stream per class: the hot path
        # classes whose records pick their stream: sharded, or named per record
        self._pickers: dict[type, Sharded[Target] | PerRecord[Target]] = {}
        self._registry_version = self.registry.version
        self._waitaof_checked = not wait_aof  # WAITAOF is checked once, before its first use
        acks = Acks(self.wait, self.wait_timeout, wait_aof)
        # one sender per topology (send/): per node on a cluster, the wire and the
        # coalescer on one node or a Sentinel's primary
        self._sender: Sender = (
            ClusterSender(client, acks, slice_size, connect_timeout_s)
            if isinstance(client, RedisCluster)
            else NodeSender(client, acks, slice_size, connect_timeout_s)
        )

    def __repr__(self) -> str:
        return (
            f"Producer(namespace={self.namespace!r}, hash_tags={self.keys.hash_tags}, "
            f"wait={self.wait}, "
            f"wait_timeout={self.wait_timeout}, wait_aof={self.wait_aof}, "
            f"connect_timeout_s={self.connect_timeout_s})"
        )

    # -- records -> bytes -----------------------------------------------------------

    def _target(self, record: Any, index: int | None) -> Target:
        """The slow path: a class's first record, or any record of a class whose records
        pick their stream (sharded, or named per record); those classes stay out of
        ``_targets``, so the hot path has no extra check."""
        cls = type(record)
        picker = self._pickers.get(cls)
        if picker is None:
            spec = self.registry.resolve(cls, index)
            if spec.shards is None and spec.name_of is None:
                target = Target(spec, self.keys, id_getter(spec, cls))
                self._targets[cls] = target
                return target
            payload = spec.payload

            def make(name: str) -> Target:
                return Target(StreamSpec(name, payload), self.keys)

            if spec.shards and spec.shard_key is not None:
                picker = Sharded(spec.name, spec.shards, spec.shard_key, make)
            else:
                picker = PerRecord(spec, make)
            self._pickers[cls] = picker
        return picker.pick(record, index)

    def _fresh_targets(self) -> None:
        """Forget cached targets after a (un)registration (checked once per call)."""
        if self._registry_version != self.registry.version:
            self._registry_version = self.registry.version
            self._targets.clear()
            self._pickers.clear()

    def _prepare(self, records: Sequence[Any]) -> list[Slice]:
        """Serialise every payload of a call before anything is sent (all or nothing)."""
        self._fresh_targets()
        return pack_slices(records, self._targets, self._target, self.slice_size)

    def _prepare_one(self, record: Any) -> tuple[Target, bytes]:
        if self._registry_version != self.registry.version:
            self._fresh_targets()
        target = self._targets.get(type(record)) or self._target(record, None)
        return target, encoded(target, record, None)

    # -- the seed's API ---------------------------------------------------------------

    async def delay(self, record: Any) -> str:
        """Write a delay message for ``record``; return its id. Waits if ``wait`` is set.

        Concurrent calls on one producer share pipelines (auto-pipelining): thousands of
        them need no more than two connections.
        """
        target, arg = self._prepare_one(record)
        if _telemetry.current is None and self._waitaof_checked:
            # the hot path: nothing to instrument, nothing to check first
            return await self._sender.delay_one(target, arg)
        return await self._delay_instrumented(target, arg)

    async def queue(self, record: Any, delay_message_id: str | bytes | None = None) -> bool:
        """Write a queue message for ``record``, then delete its delay message.

        The delete runs only if the write succeeded (one script on the server), so a
        refused write never takes the delay message with it.
        """
        target, arg = self._prepare_one(record)
        raw = (
            None
            if delay_message_id is None
            else check_id_bytes(delay_message_id, "delay_message_id")
        )
        if _telemetry.current is None:
            await self._sender.queue_one(target, arg, raw)
        else:
            await self._queue_instrumented(target, arg, raw)
        return True

    # Out of line, so that the hot paths above hold no closure: a lambda naming
    # ``target`` would make it a cell, one more object per call for the collector.
    async def _delay_instrumented(self, target: Target, arg: bytes) -> str:
        with _telemetry.produce("delay", lambda: [target.name + DELAY_SUFFIX], 1, self.wait):
            await self._check_waitaof()
            return await self._sender.delay_one(target, arg)

    async def _queue_instrumented(self, target: Target, arg: bytes, raw: bytes | None) -> None:
        with _telemetry.produce("queue", lambda: [target.name], 1):
            await self._sender.queue_one(target, arg, raw)

    async def bulk_delay(self, records: Iterable[Any]) -> list[str]:
        """Write delay messages for all ``records`` in slices; WAIT once after the last slice."""
        slices = self._prepare(_materialise(records))
        with _telemetry.produce(
            "bulk_delay", lambda: _streams(slices, True), _count(slices), self.wait
        ):
            return await self._send_delay(slices)

    async def bulk_queue(
        self, records: Iterable[Any], delay_message_ids: Sequence[str | bytes] | None = None
    ) -> bool:
        """Write queue messages for all ``records`` and delete their delay messages."""
        items = _materialise(records)
        ids: list[bytes] | None = None
        if delay_message_ids is not None:
            ids = _check_ids(delay_message_ids, len(items))
        slices = self._prepare(items)
        with _telemetry.produce("bulk_queue", lambda: _streams(slices, False), len(items)):
            await self._send_queue(slices, ids)
        return True

    @asynccontextmanager
    async def bulk(self, records: Iterable[Any]) -> AsyncIterator[list[str]]:
        """Delay messages on enter; queue messages and delay deletions after a clean exit.

        ``records`` is materialised once, so both halves cover the same records, and
        each queue message carries the same payload bytes as its delay message. If
        the body raises, no queue message is written and the delay messages stay for
        the delayer.
        """
        slices = self._prepare(_materialise(records))
        count = _count(slices)
        # The body runs inside the "bulk" span: its own spans (SQL) become children.
        with _telemetry.produce("bulk", lambda: _streams(slices, False), count):
            with _telemetry.produce("bulk_delay", lambda: _streams(slices, True), count, self.wait):
                ids = await self._send_delay(slices)
            yield list(ids)
            with _telemetry.produce("bulk_queue", lambda: _streams(slices, False), count):
                await self._send_queue(slices, ids)

    # -- bytes -> Redis (send/) ----------------------------------------------------

    async def _send_delay(self, slices: list[Slice]) -> list[str]:
        if not slices:
            return []
        await self._check_waitaof()
        return await self._sender.send_delay(slices)

    async def _send_queue(self, slices: list[Slice], ids: Sequence[str | bytes] | None) -> None:
        if not slices:
            return
        await self._sender.send_queue(slices, ids)

    async def _check_waitaof(self) -> None:
        if not self._waitaof_checked:
            await self._sender.check_waitaof()
            self._waitaof_checked = True


def _materialise(records: Iterable[Any]) -> Sequence[Any]:
    if isinstance(records, list | tuple):
        return records
    if isinstance(records, str | bytes | dict):
        raise ArgumentError(
            f"records must be an iterable of records, got a {type(records).__name__}; "
            "wrap a single record in a list"
        )
    return list(records)


def _check_ids(ids: Sequence[str | bytes], count: int) -> list[bytes]:
    if isinstance(ids, str | bytes) or len(ids) != count:
        got = "a single id" if isinstance(ids, str | bytes) else f"{len(ids)} ids"
        raise ArgumentError(f"delay_message_ids has {got} for {count} records")
    return check_ids_bytes(ids, "delay_message_ids")


def _count(slices: list[Slice]) -> int:
    return sum(len(part) for part in slices)


def _streams(slices: list[Slice], delay: bool) -> list[str]:
    """The streams a call writes, in first-seen order (for telemetry only)."""
    names: dict[str, None] = {}
    for part in slices:
        targets = part.targets
        for target in [targets] if isinstance(targets, Target) else targets:
            names[target.name + DELAY_SUFFIX if delay else target.name] = None
    return list(names)
