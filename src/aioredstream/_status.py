"""What is in the streams of one namespace: lengths, delay backlog, consumer offsets and lag.

Read-only: SCAN for stream and offset keys, then XLEN / XRANGE / GET per stream.
Ages come from the server's clock (``TIME``) against the millisecond part of
entry ids, so a skewed client clock does not matter.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis

from ._keys import DELAY_SUFFIX, Keys
from ._wire import translate_errors

__all__ = ["ConsumerStatus", "StreamStatus", "StatusReport", "collect_status"]

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


@dataclass
class StatusReport:
    namespace: str | None
    server_time_ms: int
    streams: list[StreamStatus]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse_id(raw: str) -> tuple[int, int]:
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _ids(reply: Awaitable[Any]) -> list[str]:
    """Entry ids of an XRANGE / XREVRANGE reply."""
    rows: list[tuple[bytes | str, Any]] = await reply
    return [_text(entry_id) for entry_id, _ in rows]


async def _scan(client: Redis, pattern: str, kind: str | None = None) -> list[str]:
    return sorted([_text(key) async for key in client.scan_iter(match=pattern, _type=kind)])


async def collect_status(client: Redis, keys: Keys) -> StatusReport:
    """Everything ``aioredstream status`` shows, for the namespace of ``keys``."""
    with translate_errors("status"):
        seconds, micros = await client.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        stream_prefix = f"{keys.prefix}stream:"
        offset_prefix = f"{keys.prefix}offset:"
        found = await _scan(client, keys.stream_pattern(), "stream")
        names = {key[len(stream_prefix) :] for key in found}
        offsets: dict[str, list[tuple[str, str]]] = {}
        for key in await _scan(client, offset_prefix + "*", "string"):
            stream, _, consumer = key[len(offset_prefix) :].partition(":")
            if consumer:
                offsets.setdefault(stream, []).append((consumer, key))
                names.add(stream)
        bases = sorted({n.removesuffix(DELAY_SUFFIX) for n in names})
        streams = [await _stream(client, keys, name, offsets, now_ms) for name in bases]
    return StatusReport(namespace=keys.namespace, server_time_ms=now_ms, streams=streams)


async def _stream(
    client: Redis, keys: Keys, name: str, offsets: dict[str, list[tuple[str, str]]], now_ms: int
) -> StreamStatus:
    key, delay_key = keys.stream(name), keys.delay_stream(name)
    status = StreamStatus(
        name=name,
        length=await _xlen(client, key),
        delay_length=await _xlen(client, delay_key),
    )
    oldest = await _ids(client.xrange(delay_key, count=1))
    if oldest:
        status.oldest_delay_id = oldest[0]
        age_ms = now_ms - _parse_id(status.oldest_delay_id)[0]
        status.oldest_delay_age_s = max(age_ms, 0) / 1000
    status.consumers = await _consumers(client, key, offsets.get(name, []))
    status.delay_consumers = await _consumers(
        client, delay_key, offsets.get(name + DELAY_SUFFIX, [])
    )
    return status


async def _xlen(client: Redis, key: str) -> int:
    kind = _text(await client.type(key))
    return int(await client.xlen(key)) if kind == "stream" else 0


async def _consumers(client: Redis, key: str, found: list[tuple[str, str]]) -> list[ConsumerStatus]:
    result = []
    for consumer, offset_key in found:
        raw: bytes | str | None = await client.get(offset_key)
        offset = _text(raw) if raw is not None else "0-0"
        lag, exact = await _lag(client, key, offset)
        result.append(ConsumerStatus(consumer, offset, lag, exact))
    return result


async def _lag(client: Redis, key: str, offset: str) -> tuple[int, bool]:
    """Entries after ``offset``: what the consumer has still to read."""
    try:
        after = _parse_id(offset)
    except ValueError:
        return await _xlen(client, key), False  # not an id: everything is ahead of it
    first = await _ids(client.xrange(key, count=1))
    if not first:
        return 0, True
    last = await _ids(client.xrevrange(key, count=1))
    if after >= _parse_id(last[0]):
        return 0, True
    if after < _parse_id(first[0]):
        return await _xlen(client, key), True
    lag, start = 0, f"({after[0]}-{after[1]}"
    while lag < LAG_COUNT_LIMIT:
        page = await _ids(client.xrange(key, min=start, count=_PAGE))
        lag += len(page)
        if len(page) < _PAGE:
            return lag, True
        start = "(" + page[-1]
    return lag, False
