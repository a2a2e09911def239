"""The producer: delay messages before a database write, queue messages after it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from . import _cluster, _wire
from ._codec import dumps
from ._keys import Keys
from ._records import Registry, StreamSpec, default_registry
from ._sharding import Sharded
from .errors import (
    ArgumentError,
    PayloadError,
    RecordError,
    ReplicationError,
    ServerError,
    TopologyError,
    UnsupportedError,
)

__all__ = ["Producer"]

_ID_RE = re.compile(rb"\d+-\d+")
# Error replies meaning the deployment moved under the call (see TopologyError).
_TOPOLOGY_REPLIES = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "READONLY")


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(data), data)


class _Target:
    """Pre-packed RESP prefixes for one record class: the hot path only appends payloads."""

    __slots__ = ("payload", "slot", "xadd", "xadd_delay", "xdel_delay")

    def __init__(self, spec: StreamSpec, keys: Keys) -> None:
        stream = keys.stream(spec.name).encode()
        delay = keys.delay_stream(spec.name).encode()
        self.payload = spec.payload
        self.slot = key_slot(stream)  # the cluster slot (the same for delay with hash tags)
        # XADD <key> * payload <json>: 5 arguments, the last appended per record.
        self.xadd = b"*5\r\n$4\r\nXADD\r\n" + _bulk(stream) + b"$1\r\n*\r\n$7\r\npayload\r\n"
        self.xadd_delay = b"*5\r\n$4\r\nXADD\r\n" + _bulk(delay) + b"$1\r\n*\r\n$7\r\npayload\r\n"
        # XDEL <delay key> <id>
        self.xdel_delay = b"*3\r\n$4\r\nXDEL\r\n" + _bulk(delay)


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
        if not hasattr(client, "connection_pool") and not _cluster.is_cluster(client):
            raise ArgumentError(
                f"client must be a redis.asyncio.Redis or RedisCluster, got {client!r}"
            )
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
        self._targets: dict[type, _Target] = {}
        self._sharded: dict[type, Sharded[_Target]] = {}
        self._waitaof_checked = False
        wait_ms = round(self.wait_timeout * 1000)
        tail = b""
        if self.wait:
            tail += _wire.pack("WAIT", self.wait, wait_ms)
        if wait_aof:
            tail += _wire.pack("WAITAOF", wait_aof[0], wait_aof[1], wait_ms)
        self._wait_tail = tail
        self._wait_replies = bool(self.wait) + bool(wait_aof)

    def __repr__(self) -> str:
        return (
            f"Producer(namespace={self.namespace!r}, hash_tags={self.keys.hash_tags}, "
            f"wait={self.wait}, "
            f"wait_timeout={self.wait_timeout}, wait_aof={self.wait_aof})"
        )

    # -- records -> bytes -----------------------------------------------------------

    def _target(self, record: Any, index: int | None) -> _Target:
        """The slow path: a class's first record, or any record of a sharded class
        (sharded classes stay out of ``_targets`` so the hot path has no extra check)."""
        cls = type(record)
        sharded = self._sharded.get(cls)
        if sharded is None:
            spec = self.registry.resolve(cls, index)
            if spec.shards is None:
                target = self._targets[cls] = _Target(spec, self.keys)
                return target
            payload = spec.payload
            sharded = self._sharded[cls] = Sharded(
                spec, lambda name: _Target(StreamSpec(name, payload), self.keys)
            )
        return sharded.pick(record, index)

    def _prepare(self, records: Sequence[Any]) -> tuple[list[_Target], list[bytes]]:
        """Serialise every payload of a call before anything is sent (all or nothing)."""
        targets: list[_Target] = []
        args: list[bytes] = []
        get = self._targets.get
        for index, record in enumerate(records):
            cls = type(record)
            target = get(cls) or self._target(record, index)
            try:
                data = dumps(target.payload(record))
            except Exception as exc:
                raise _payload_error(record, index, exc) from exc
            targets.append(target)
            args.append(b"$%d\r\n%b\r\n" % (len(data), data))
        return targets, args

    def _prepare_one(self, record: Any) -> tuple[_Target, bytes]:
        cls = type(record)
        target = self._targets.get(cls) or self._target(record, None)
        try:
            data = dumps(target.payload(record))
        except Exception as exc:
            raise _payload_error(record, None, exc) from exc
        return target, b"$%d\r\n%b\r\n" % (len(data), data)

    # -- the seed's API ---------------------------------------------------------------

    async def delay(self, record: Any) -> str:
        """Write a delay message for ``record``; return its id. Waits if ``wait`` is set."""
        target, arg = self._prepare_one(record)
        ids = await self._send_delay([target], [arg])
        return ids[0]

    async def queue(self, record: Any, delay_message_id: str | bytes | None = None) -> bool:
        """Write a queue message for ``record`` and delete its delay message, in one pipeline."""
        target, arg = self._prepare_one(record)
        ids = None if delay_message_id is None else [_check_id(delay_message_id, None)]
        await self._send_queue([target], [arg], ids)
        return True

    async def bulk_delay(self, records: Iterable[Any]) -> list[str]:
        """Write delay messages for all ``records`` in slices; WAIT once after the last slice."""
        targets, args = self._prepare(_materialise(records))
        return await self._send_delay(targets, args)

    async def bulk_queue(
        self, records: Iterable[Any], delay_message_ids: Sequence[str | bytes] | None = None
    ) -> bool:
        """Write queue messages for all ``records`` and delete their delay messages."""
        items = _materialise(records)
        ids: list[bytes] | None = None
        if delay_message_ids is not None:
            ids = _check_ids(delay_message_ids, len(items))
        targets, args = self._prepare(items)
        await self._send_queue(targets, args, ids)
        return True

    @asynccontextmanager
    async def bulk(self, records: Iterable[Any]) -> AsyncIterator[list[str]]:
        """Delay messages on enter; queue messages and delay deletions after a clean exit.

        ``records`` is materialised once, so both halves cover the same records, and
        each queue message carries the same payload bytes as its delay message. If
        the body raises, no queue message is written and the delay messages stay for
        the delayer.
        """
        targets, args = self._prepare(_materialise(records))
        ids = await self._send_delay(targets, args)
        yield list(ids)
        await self._send_queue(targets, args, [i.encode() for i in ids])

    # -- bytes -> Redis ---------------------------------------------------------------

    async def _send_delay(self, targets: list[_Target], args: list[bytes]) -> list[str]:
        if not args:
            return []
        if self.wait_aof and not self._waitaof_checked:
            await self._check_waitaof()
        if self._cluster is not None:  # per-node groups, WAIT per node (_cluster.py)
            return await self._cluster.send_delay(self, targets, args)
        ids: list[str] = []
        size = self.slice_size
        n = len(args)
        wait_replies = self._wait_replies

        def chunks() -> Iterable[_wire.Chunk]:
            for start in range(0, n, size):
                stop = min(start + size, n)
                data = b"".join([targets[i].xadd_delay + args[i] for i in range(start, stop)])
                if stop == n and wait_replies:
                    yield data + self._wait_tail, stop - start + wait_replies
                else:
                    yield data, stop - start

        wait_results: list[Any] = []

        def sink(chunk: int, replies: list[Any]) -> None:
            if len(ids) + len(replies) > n:
                wait_results.extend(replies[len(replies) - wait_replies :])
                replies = replies[: len(replies) - wait_replies]
            for reply in replies:
                if isinstance(reply, bytes):
                    ids.append(reply.decode())
                else:
                    _raise_command_error(reply, "XADD", len(ids))

        await _wire.execute(
            self.client,
            chunks(),
            sink,
            what="delay",
            last_read_extra_s=self.wait_timeout or None,
        )
        if wait_replies:
            self._check_acks(wait_results)
        return ids

    async def _send_queue(
        self, targets: list[_Target], args: list[bytes], ids: list[bytes] | None
    ) -> None:
        if not args:
            return
        if self._cluster is not None:  # per-node groups (_cluster.py)
            await self._cluster.send_queue(self, targets, args, ids)
            return
        size = self.slice_size
        n = len(args)

        def chunks() -> Iterable[_wire.Chunk]:
            for start in range(0, n, size):
                stop = min(start + size, n)
                if ids is None:
                    data = b"".join([targets[i].xadd + args[i] for i in range(start, stop)])
                    yield data, stop - start
                else:
                    data = b"".join(
                        [
                            targets[i].xadd
                            + args[i]
                            + targets[i].xdel_delay
                            + b"$%d\r\n%b\r\n" % (len(ids[i]), ids[i])
                            for i in range(start, stop)
                        ]
                    )
                    yield data, 2 * (stop - start)

        def sink(chunk: int, replies: list[Any]) -> None:
            for position, reply in enumerate(replies):
                if isinstance(reply, _wire.ReplyError):
                    step = 2 if ids is not None else 1
                    index = chunk * size + position // step
                    command = "XDEL" if step == 2 and position % 2 else "XADD"
                    _raise_command_error(reply, command, index)

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


def _payload_error(record: Any, index: int | None, exc: Exception) -> RecordError:
    cls = type(record)
    at = "" if index is None else f" at index {index}"
    what = f"record{at} of type {cls.__module__}.{cls.__qualname__}"
    if isinstance(exc, AttributeError | KeyError):
        return PayloadError(
            f"{what}: cannot build its payload: {exc!r}", index=index, record_type=cls
        )
    return PayloadError(
        f"{what}: payload is not JSON-serialisable: {exc}", index=index, record_type=cls
    )


def _raise_command_error(reply: object, command: str, index: int | None) -> None:
    at = "" if index is None else f" (record at index {index})"
    message = str(reply)
    if message.startswith(_TOPOLOGY_REPLIES):
        raise TopologyError(f"{command}{at}: {message}")
    if "unknown command" in message.lower():
        raise UnsupportedError(f"{command}{at}: {message}")
    raise ServerError(f"{command}{at}: {message}")
