"""Stream helpers (size, newest id, a consumer's offset) and entry-id arithmetic."""

from __future__ import annotations

from typing import Any, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from .._cluster import use_hash_tags
from .._keys import Keys
from .._validate import check_name, parse_id
from ..send import command as _command

__all__ = [
    "Client",
    "decode",
    "keys_for",
    "max_consumer_id",
    "max_stream_id",
    "next_id",
    "stream_size",
]

_MAX_SEQ = 2**64 - 1

#: what the workers accept: one node (or a Sentinel's ``master_for()``) or a cluster
Client: TypeAlias = Redis | RedisCluster


def keys_for(client: Client, namespace: str | None, hash_tags: bool | None) -> Keys:
    """The key layout for ``client``, by the producer's rule: ``None`` = tags on a cluster only.

    ``hash_tags=False`` on a cluster raises `ArgumentError`: the delayer's
    copy + delete + commit and the lock's key + wake-up list must share a slot.
    """
    return Keys(namespace, hash_tags=use_hash_tags(client, hash_tags))


def decode(value: bytes | str) -> str:
    """Replies come as bytes or str depending on the client's ``decode_responses``."""
    return value.decode() if isinstance(value, bytes) else value


def next_id(message_id: str) -> str:
    """The smallest id strictly greater than ``message_id``."""
    ms, seq = parse_id(message_id)
    return f"{ms + 1}-0" if seq == _MAX_SEQ else f"{ms}-{seq + 1}"


async def stream_size(
    client: Client,
    stream_name: str,
    namespace: str | None = None,
    *,
    hash_tags: bool | None = None,
) -> int:
    """Number of entries in the stream (``XLEN``; 0 when it does not exist)."""
    key = keys_for(client, namespace, hash_tags).stream(check_name(stream_name))
    size: int = await _command.run(client, "XLEN", key, key=key)
    return size


async def max_stream_id(
    client: Client,
    stream_name: str,
    namespace: str | None = None,
    *,
    hash_tags: bool | None = None,
) -> str | None:
    """Id of the stream's newest entry, ``None`` when the stream is empty or missing."""
    key = keys_for(client, namespace, hash_tags).stream(check_name(stream_name))
    rows: Any = await _command.run(client, "XREVRANGE", key, "+", "-", "COUNT", 1, key=key)
    return decode(rows[0][0]) if rows else None


async def max_consumer_id(
    client: Client,
    *,
    stream_name: str,
    consumer_name: str,
    namespace: str | None = None,
    hash_tags: bool | None = None,
) -> str | None:
    """The consumer's committed offset (the last id it finished), ``None`` if it never committed."""
    key = keys_for(client, namespace, hash_tags).offset(
        check_name(stream_name), check_name(consumer_name, "consumer name")
    )
    value: Any = await _command.run(client, "GET", key, key=key)
    return None if value is None else decode(value)
