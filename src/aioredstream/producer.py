"""The producer: delay messages before a database write, queue messages after it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from . import _cluster, _telemetry, _wire
from ._coalesce import Coalescer
from ._codec import dumps
from ._keys import DELAY_SUFFIX, Keys
from ._packing import Slice, Target, flatten, pack_slices
from ._records import PerRecord, Registry, StreamSpec, default_registry, payload_error
from ._sharding import Sharded
from .errors import (
    ArgumentError,
    ReplicationError,
    ServerError,
    TopologyError,
    UnsupportedError,
)

__all__ = ["Producer"]

_ID_RE = re.compile(rb"\d+-\d+")
# Error replies meaning the deployment moved under the call (see TopologyError).
_TOPOLOGY_REPLIES = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "READONLY")


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
    ``hash_tags`` picks the key layout (see :mod:`aioredstream._keys`): ``None``
    means hash tags on a cluster, the Ruby layout elsewhere.
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
    ) -> None:
        _cluster.check_client(client)
        if wait is True or not isinstance(wait, int) or wait < 0:
            raise ArgumentError(f"wait must be False or a replica count >= 1, got {wait!r}")
        if not isinstance(wait_timeout, int | float) or not wait_timeout >= 0:
            raise ArgumentError(f"wait_timeout must be seconds >= 0, got {wait_timeout!r}")
        if wait_aof is not None and (
            not isinstance(wait_aof, tuple)
            or len(wait_aof) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in wait_aof)
        ):
            raise ArgumentError(f"wait_aof must be (numlocal, numreplicas) >= 0, got {wait_aof!r}")
        if not isinstance(slice_size, int) or isinstance(slice_size, bool) or slice_size < 1:
            raise ArgumentError(f"slice_size must be an int >= 1, got {slice_size!r}")
        # typed as Redis: a RedisCluster never reaches the single-node paths (see _cluster)
        self.client: Redis = cast(Redis, client)
        self.keys = Keys(namespace, hash_tags=_cluster.use_hash_tags(client, hash_tags))
        # -- cluster: the per-node send path (_cluster.py); None on one node / Sentinel
        self._cluster = (
            _cluster.ClusterWriter(client, _raise_command_error)
            if isinstance(client, RedisCluster)
            else None
        )
        self.namespace = namespace
        self.wait = int(wait)
        self.wait_timeout = float(wait_timeout)
        self.wait_aof = wait_aof
        self.slice_size = slice_size
        self.registry = registry or default_registry
        self._targets: dict[type, Target] = {}  # one stream per class: the hot path
        # classes whose records pick their stream: sharded, or named per record
        self._pickers: dict[type, Sharded[Target] | PerRecord[Target]] = {}
        self._registry_version = self.registry.version
        self._waitaof_checked = False
        wait_ms = round(self.wait_timeout * 1000)
        tail = b""
        if self.wait:
            tail += _wire.pack("WAIT", self.wait, wait_ms)
        if wait_aof:
            tail += _wire.pack("WAITAOF", wait_aof[0], wait_aof[1], wait_ms)
        self._wait_tail = tail
        self._wait_replies = bool(self.wait) + bool(wait_aof)
        self._coalescer = Coalescer(
            client,
            wait_tail=tail,
            wait_replies=self._wait_replies,
            last_read_extra_s=self.wait_timeout or None,
            check_acks=self._check_acks,
            slice_size=slice_size,
        )

    def __repr__(self) -> str:
        return (
            f"Producer(namespace={self.namespace!r}, hash_tags={self.keys.hash_tags}, "
            f"wait={self.wait}, "
            f"wait_timeout={self.wait_timeout}, wait_aof={self.wait_aof})"
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
                target = self._targets[cls] = Target(spec, self.keys)
                return target
            payload = spec.payload

            def make(name: str) -> Target:
                return Target(StreamSpec(name, payload), self.keys)

            picker = Sharded(spec, make) if spec.shards else PerRecord(spec, make)
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
        self._fresh_targets()
        cls = type(record)
        target = self._targets.get(cls) or self._target(record, None)
        try:
            value = target.payload(record)
        except Exception as exc:
            raise payload_error(record, None, exc) from exc
        try:
            data = dumps(value)
        except Exception as exc:
            raise payload_error(record, None, exc, encoding=True) from exc
        return target, b"$%d\r\n%b\r\n" % (len(data), data)

    # -- the seed's API ---------------------------------------------------------------

    async def delay(self, record: Any) -> str:
        """Write a delay message for ``record``; return its id. Waits if ``wait`` is set.

        Concurrent calls on one producer share pipelines (see ``_coalesce``).
        """
        target, arg = self._prepare_one(record)
        with _telemetry.produce("delay", lambda: [target.name + DELAY_SUFFIX], 1, self.wait):
            return await self._delay_one(target, arg)

    async def _delay_one(self, target: Target, arg: bytes) -> str:
        if self.wait_aof and not self._waitaof_checked:
            await self._check_waitaof()
        if self._cluster is not None:  # the per-node path does its own grouping
            [only] = await self._cluster.send_delay(self, [target], [arg])
            return only
        [reply] = await self._coalescer.submit(target.xadd_delay + arg, 1, delay=True)
        if not isinstance(reply, bytes):
            _raise_command_error(reply, "XADD", None)
        message_id: str = reply.decode()
        return message_id

    async def queue(self, record: Any, delay_message_id: str | bytes | None = None) -> bool:
        """Write a queue message for ``record``, then delete its delay message.

        The delete runs only if the write succeeded (one script on the server), so a
        refused write never takes the delay message with it.
        """
        target, arg = self._prepare_one(record)
        with _telemetry.produce("queue", lambda: [target.name], 1):
            await self._queue_one(target, arg, delay_message_id)
        return True

    async def _queue_one(
        self, target: Target, arg: bytes, delay_message_id: str | bytes | None
    ) -> None:
        if self._cluster is not None:  # the per-node path does its own grouping
            ids = None if delay_message_id is None else [_check_id(delay_message_id, None)]
            await self._cluster.send_queue(self, [target], [arg], ids)
            return
        if delay_message_id is None:
            data, command = target.xadd + arg, "XADD"
        else:
            raw = _check_id(delay_message_id, None)
            data = target.queue_delete + arg + b"$%d\r\n%b\r\n" % (len(raw), raw)
            command = "XADD+XDEL"
        [reply] = await self._coalescer.submit(data, 1, delay=False)
        if isinstance(reply, _wire.ReplyError):
            _raise_command_error(reply, command, None)

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

    # -- bytes -> Redis ---------------------------------------------------------------

    async def _send_delay(self, slices: list[Slice]) -> list[str]:
        if not slices:
            return []
        if self.wait_aof and not self._waitaof_checked:
            await self._check_waitaof()
        if self._cluster is not None:  # per-node groups, WAIT per node (_cluster.py)
            return await self._cluster.send_delay(self, *flatten(slices))
        ids: list[str] = []
        wait_replies = self._wait_replies
        last = len(slices) - 1

        def chunks() -> Iterator[_wire.Chunk]:
            for number, part in enumerate(slices):
                if number == last and wait_replies:
                    yield part.delay_commands() + self._wait_tail, len(part) + wait_replies
                else:
                    yield part.delay_commands(), len(part)

        wait_results: list[Any] = []

        def sink(chunk: int, replies: list[Any]) -> None:
            if chunk == last and wait_replies:
                wait_results.extend(replies[len(replies) - wait_replies :])
                replies = replies[: len(replies) - wait_replies]
            decoded = [reply.decode() for reply in replies if reply.__class__ is bytes]
            if len(decoded) < len(replies):
                for position, reply in enumerate(replies):
                    if not isinstance(reply, bytes):
                        _raise_command_error(reply, "XADD", len(ids) + position)
            ids.extend(decoded)

        await _wire.execute(
            self.client,
            chunks(),
            sink,
            what="delay",
            # only a WAIT may block longer than the socket timeout (0 s: until acknowledged)
            last_read_extra_s=(self.wait_timeout or None) if wait_replies else 0.0,
        )
        if wait_replies:
            self._check_acks(wait_results)
        return ids

    async def _send_queue(self, slices: list[Slice], ids: Sequence[str | bytes] | None) -> None:
        if not slices:
            return
        if self._cluster is not None:  # per-node groups (_cluster.py)
            raw = None if ids is None else [i.encode() if isinstance(i, str) else i for i in ids]
            await self._cluster.send_queue(self, *flatten(slices), raw)
            return
        size = self.slice_size

        def chunks() -> Iterator[_wire.Chunk]:
            for number, part in enumerate(slices):
                if ids is None:
                    yield part.queue_commands(None), len(part)
                else:
                    start = number * size
                    yield part.queue_commands(ids[start : start + len(part)]), len(part)

        command = "XADD" if ids is None else "XADD+XDEL"

        def sink(chunk: int, replies: list[Any]) -> None:
            if not [r for r in replies if r.__class__ is _wire.ReplyError]:
                return
            for position, reply in enumerate(replies):
                if isinstance(reply, _wire.ReplyError):
                    _raise_command_error(reply, command, chunk * size + position)

        await _wire.execute(self.client, chunks(), sink, what="queue")

    def _check_acks(self, results: list[Any]) -> None:
        position = 0
        if self.wait:
            acked = results[position]
            position += 1
            if isinstance(acked, BaseException):
                _raise_command_error(acked, "WAIT", None)
            if acked < self.wait:
                raise ReplicationError(
                    f"WAIT: {acked} of {self.wait} required replicas acknowledged the delay "
                    f"writes within {self.wait_timeout}s; they are on the primary only",
                    acknowledged=int(acked),
                    required=self.wait,
                )
        if self.wait_aof:
            reply = results[position]
            if isinstance(reply, BaseException):
                _raise_command_error(reply, "WAITAOF", None)
            local, replicas = int(reply[0]), int(reply[1])
            need_local, need_replicas = self.wait_aof
            if local < need_local or replicas < need_replicas:
                raise ReplicationError(
                    f"WAITAOF: {local}/{need_local} local and {replicas}/{need_replicas} replica "
                    f"AOF fsyncs acknowledged within {self.wait_timeout}s",
                    acknowledged=replicas,
                    required=need_replicas,
                    local_acknowledged=local,
                    local_required=need_local,
                )

    async def _check_waitaof(self) -> None:
        if self._cluster is not None:
            info = await self._cluster.call("COMMAND", "INFO", "WAITAOF", what="WAITAOF check")
        else:
            info = await _wire.call(self.client, "COMMAND", "INFO", "WAITAOF", what="WAITAOF check")
        if not isinstance(info, list) or not info or info[0] is None:
            if self._cluster is not None:
                raise UnsupportedError(
                    "wait_aof needs WAITAOF (Redis >= 7.2 or Valkey); this cluster lacks it"
                )
            with _wire.translate_errors("WAITAOF check"):
                server = await self.client.info("server")
                version = server.get("valkey_version") or server.get("redis_version")
            raise UnsupportedError(
                f"wait_aof needs WAITAOF (Redis >= 7.2 or Valkey); this server is "
                f"{'Valkey' if 'valkey_version' in server else 'Redis'} {version}"
            )
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


def _check_id(value: object, index: int | None) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    if not isinstance(raw, bytes) or not _ID_RE.fullmatch(raw):
        at = "" if index is None else f" at index {index}"
        raise ArgumentError(
            f"delay message id{at} is not a stream id like '1700000000000-0': {value!r}"
        )
    return raw


def _check_ids(ids: Sequence[str | bytes], count: int) -> list[bytes]:
    if isinstance(ids, str | bytes) or len(ids) != count:
        got = "a single id" if isinstance(ids, str | bytes) else f"{len(ids)} ids"
        raise ArgumentError(f"delay_message_ids has {got} for {count} records")
    return [_check_id(value, index) for index, value in enumerate(ids)]


def _raise_command_error(reply: object, command: str, index: int | None) -> None:
    at = "" if index is None else f" (record at index {index})"
    message = str(reply)
    if message.startswith(_TOPOLOGY_REPLIES):
        raise TopologyError(f"{command}{at}: {message}")
    if "unknown command" in message.lower():
        raise UnsupportedError(f"{command}{at}: {message}")
    raise ServerError(f"{command}{at}: {message}")


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
