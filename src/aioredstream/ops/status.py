"""What is in the streams of one namespace: lengths, delay backlog, consumer offsets and lag.

Read-only: SCAN for stream and offset keys, then XLEN / XRANGE / GET per stream.
Ages come from the server's clock (``TIME``) against the millisecond part of
entry ids, so a skewed client clock does not matter.

Keys of both layouts are found (the Ruby one and the hash-tagged one of a cluster:
``stream:{users}.delay`` is the stream ``users.delay``); on a ``RedisCluster``,
SCAN runs on every primary. Shards (``users-0`` ... ``users-3``, at least two of
them) are also summed up in a `ShardGroup` named ``users``. A dead-letter
stream ``users.dead`` is not listed as a stream: its length is ``dead_letters`` of
``users``, which is listed for it only while it holds some.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio.cluster import RedisCluster

from .._cluster import check_client
from .._keys import DELAY_SUFFIX, Keys, untag
from .._validate import parse_id
from ..send import command as _command
from ..send.wire import translate_errors
from ..workers._dead import DEAD_SUFFIX
from ..workers._streams import Client, decode

__all__ = [
    "ConsumerStatus",
    "ShardGroup",
    "Status",
    "StreamStatus",
    "collect_status",
    "find_namespaces",
    "lag_after",
    "status",
]

# Lag is counted by paging XRANGE; past this many entries it is reported as a lower bound.
LAG_COUNT_LIMIT = 1_000_000
_PAGE = 10_000


@dataclass
class ConsumerStatus:
    name: str
    offset: str
    lag: int
    lag_exact: bool = True


@dataclass
class StreamStatus:
    name: str
    length: int
    delay_length: int
    oldest_delay_id: str | None = None
    oldest_delay_age_s: float | None = None
    consumers: list[ConsumerStatus] = field(default_factory=list)
    delay_consumers: list[ConsumerStatus] = field(default_factory=list)
    #: entries of ``<name>.dead``: messages a consumer with ``dead_letter=True`` gave up on
    dead_letters: int = 0


@dataclass
class ShardGroup:
    """The shards ``<name>-<n>`` of one sharded stream, summed up (the streams stay listed)."""

    name: str
    shards: list[str]
    length: int
    delay_length: int
    oldest_delay_age_s: float | None
    #: per consumer name (``"delayer (delay)"`` for delay-stream consumers): lag over all shards
    lag: dict[str, int]
    lag_exact: bool
    dead_letters: int = 0


@dataclass
class Status:
    """What [`status`][aioredstream.status] returns (``aioredstream status --json`` prints it)."""

    namespace: str | None
    server_time_ms: int
    streams: list[StreamStatus]
    groups: list[ShardGroup] = field(default_factory=list)
    #: consumers whose unread entries were deleted: a trimmer that does not list them?
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _ids(client: Client, *args: str | int) -> list[str]:
    """Entry ids of an ``XRANGE`` / ``XREVRANGE`` (``args``: the command, key first)."""
    rows: list[list[Any]] = await _command.run(client, *args, key=args[1])
    return [decode(row[0]) for row in rows]


async def find_namespaces(client: Client) -> list[str]:
    """The namespaces that have streams on the server (either key layout)."""
    marker = "redstream:stream:"
    found = await _command.scan(client, f"*:{marker}*", "stream")
    return sorted({key[: key.index(marker) - 1] for key in found if marker in key})


async def status(client: Client, namespace: str | None = None) -> Status:
    """The streams of ``namespace`` on the server: lengths, delay backlog and its age,
    every consumer's committed offset and lag, and shard groups.

    Read-only, by the server's clock; on a ``RedisCluster`` every primary is scanned,
    and both key layouts are found. The same data as ``aioredstream status --json``.
    """
    check_client(client)
    return await collect_status(client, Keys(namespace))


async def collect_status(client: Client, keys: Keys) -> Status:
    """Everything ``aioredstream status`` shows, for the namespace of ``keys`` (either layout)."""
    with translate_errors("status"):
        if isinstance(client, RedisCluster):
            await client.initialize()  # its primaries are scanned below
        seconds, micros = await _command.run(client, "TIME")
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        found = await _find(client, keys)
        dead = {name: await _xlen(client, key) for name, key in found.dead_keys.items()}
        # A dead-letter stream is not a stream of its own: its count goes to its stream,
        # which it lists only while it holds dead letters.
        bases = {n.removesuffix(DELAY_SUFFIX) for n in found.names}
        bases |= {name for name, count in dead.items() if count}
        streams, warnings = [], []
        for name in sorted(bases, key=_shard_order):
            layout = Keys(keys.namespace, hash_tags=name in found.tagged)
            stream = await _stream(client, layout, name, found.offsets, now_ms)
            stream.dead_letters = dead.get(name, 0)
            streams.append(stream)
            warnings += await _trimmed_past(client, layout.stream(name), stream)
    return Status(
        namespace=keys.namespace,
        server_time_ms=now_ms,
        streams=streams,
        groups=shard_groups(streams),
        warnings=warnings,
    )


@dataclass
class _Found:
    """What SCAN found in one namespace."""

    #: streams and delay streams (also those known only by a consumer's offset)
    names: set[str] = field(default_factory=set)
    #: base names found in the hash-tag layout
    tagged: set[str] = field(default_factory=set)
    #: per stream name: (consumer, offset key)
    offsets: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    #: per stream name: the key of its dead-letter stream ``<name>.dead``
    dead_keys: dict[str, str] = field(default_factory=dict)


async def _find(client: Client, keys: Keys) -> _Found:
    found = _Found()
    stream_prefix = f"{keys.prefix}stream:"
    offset_prefix = f"{keys.prefix}offset:"

    def name_of(raw: str) -> str:
        name = untag(raw)
        if name != raw:
            found.tagged.add(name.removesuffix(DELAY_SUFFIX))
        return name

    for key in await _command.scan(client, keys.stream_pattern(), "stream"):
        raw = key[len(stream_prefix) :]
        if untag(raw).endswith(DEAD_SUFFIX):
            found.dead_keys[untag(raw).removesuffix(DEAD_SUFFIX)] = key
        else:
            found.names.add(name_of(raw))
    for key in await _command.scan(client, offset_prefix + "*", "string"):
        # Consumer names never contain ':' (check_name), so the last one splits.
        stream, _, consumer = key[len(offset_prefix) :].rpartition(":")
        if stream and consumer and not untag(stream).endswith(DEAD_SUFFIX):
            stream = name_of(stream)
            found.offsets.setdefault(stream, []).append((consumer, key))
            found.names.add(stream)
    return found


async def _trimmed_past(client: Client, key: str, stream: StreamStatus) -> list[str]:
    """Consumers with entries after their offset that are known to be deleted: a trimmer
    that does not list them? (Delay streams, which ``queue()`` deletes from, are not
    looked at.) Known deleted: the highest id XDEL removed (``max-deleted-entry-id``;
    XTRIM does not record one), every consumer's offset below the first entry (an
    offset is the id of an entry that was read), and the last id of an emptied stream.
    """
    offsets = [(c.name, parse_id(c.offset)) for c in stream.consumers if _parses(c.offset)]
    if not offsets:
        return []
    try:
        reply: Any = await _command.run(client, "XINFO", "STREAM", key, key=key)
    except Exception:  # gone meanwhile: nothing to say
        return []
    if isinstance(reply, list):  # RESP2: [name, value, ...]; RESP3: a map
        reply = dict(zip(reply[::2], reply[1::2], strict=True))
    info = {decode(name): value for name, value in reply.items()}
    first = info.get("first-entry")
    known = [parse_id(decode(info.get("max-deleted-entry-id") or "0-0"))]
    if first:
        known += [offset for _, offset in offsets if offset < parse_id(decode(first[0]))]
    elif int(info.get("entries-added") or 0):
        known.append(parse_id(decode(info["last-generated-id"])))
    deleted = max(known)
    return [
        f"consumer {name!r} of {stream.name} has offset {'-'.join(map(str, offset))}, but "
        f"entries after it were deleted (up to {'-'.join(map(str, deleted))} at least): "
        "is it missing from the trimmer's consumers?"
        for name, offset in offsets
        if offset < deleted
    ]


def _parses(offset: str) -> bool:
    try:
        parse_id(offset)
    except ValueError:
        return False
    return True


_SHARD = re.compile(r"^(.+)-(\d+)$")


def _shard_order(name: str) -> tuple[str, int, str]:
    """``users-2`` before ``users-10``; other names alphabetically."""
    match = _SHARD.match(name)
    return (match.group(1), int(match.group(2)), "") if match else (name, -1, name)


def shard_groups(streams: list[StreamStatus]) -> list[ShardGroup]:
    """A group per base name with at least two ``<base>-<n>`` streams."""
    members: dict[str, list[StreamStatus]] = {}
    for stream in streams:
        match = _SHARD.match(stream.name)
        if match:
            members.setdefault(match.group(1), []).append(stream)
    groups = []
    for name, shards in members.items():
        if len(shards) < 2:
            continue
        lag: dict[str, int] = {}
        exact = True
        for shard in shards:
            tagged = [(c, "") for c in shard.consumers]
            tagged += [(c, " (delay)") for c in shard.delay_consumers]
            for consumer, mark in tagged:
                lag[consumer.name + mark] = lag.get(consumer.name + mark, 0) + consumer.lag
                exact = exact and consumer.lag_exact
        ages = [s.oldest_delay_age_s for s in shards if s.oldest_delay_age_s is not None]
        groups.append(
            ShardGroup(
                name=name,
                shards=[s.name for s in shards],
                length=sum(s.length for s in shards),
                delay_length=sum(s.delay_length for s in shards),
                oldest_delay_age_s=max(ages) if ages else None,
                lag=dict(sorted(lag.items())),
                lag_exact=exact,
                dead_letters=sum(s.dead_letters for s in shards),
            )
        )
    return groups


async def _stream(
    client: Client, keys: Keys, name: str, offsets: dict[str, list[tuple[str, str]]], now_ms: int
) -> StreamStatus:
    key, delay_key = keys.stream(name), keys.delay_stream(name)
    status = StreamStatus(
        name=name,
        length=await _xlen(client, key),
        delay_length=await _xlen(client, delay_key),
    )
    oldest = await _ids(client, "XRANGE", delay_key, "-", "+", "COUNT", 1)
    if oldest:
        status.oldest_delay_id = oldest[0]
        age_ms = now_ms - parse_id(status.oldest_delay_id)[0]
        status.oldest_delay_age_s = max(age_ms, 0) / 1000
    status.consumers = await _consumers(client, key, offsets.get(name, []))
    status.delay_consumers = await _consumers(
        client, delay_key, offsets.get(name + DELAY_SUFFIX, [])
    )
    return status


async def _xlen(client: Client, key: str) -> int:
    kind = decode(await _command.run(client, "TYPE", key, key=key))
    return int(await _command.run(client, "XLEN", key, key=key)) if kind == "stream" else 0


async def _consumers(
    client: Client, key: str, found: list[tuple[str, str]]
) -> list[ConsumerStatus]:
    result = []
    for consumer, offset_key in found:
        raw: bytes | None = await _command.run(client, "GET", offset_key, key=offset_key)
        offset = decode(raw) if raw is not None else "0-0"
        lag, exact = await lag_after(client, key, offset)
        result.append(ConsumerStatus(consumer, offset, lag, exact))
    return result


async def lag_after(client: Client, key: str, offset: str) -> tuple[int, bool]:
    """Entries after ``offset``: what the consumer has still to read."""
    try:
        after = parse_id(offset)
    except ValueError:  # ArgumentError is one
        return await _xlen(client, key), False  # not an id: everything is ahead of it
    first = await _ids(client, "XRANGE", key, "-", "+", "COUNT", 1)
    if not first:
        return 0, True
    last = await _ids(client, "XREVRANGE", key, "+", "-", "COUNT", 1)
    if after >= parse_id(last[0]):
        return 0, True
    if after < parse_id(first[0]):
        return await _xlen(client, key), True
    lag, start = 0, f"({after[0]}-{after[1]}"
    while lag < LAG_COUNT_LIMIT:
        page = await _ids(client, "XRANGE", key, start, "+", "COUNT", _PAGE)
        lag += len(page)
        if len(page) < _PAGE:
            return lag, True
        start = "(" + page[-1]
    return lag, False
