"""Stream helpers (size, newest id, a consumer's offset) and entry-id arithmetic."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from . import _wire
from ._keys import Keys, check_name
from .errors import ArgumentError

__all__ = [
    "block_limit_s",
    "decode",
    "max_consumer_id",
    "max_stream_id",
    "next_id",
    "parse_id",
    "stream_size",
]

_MAX_SEQ = 2**64 - 1


def decode(value: bytes | str) -> str:
    """Replies come as bytes or str depending on the client's ``decode_responses``."""
    return value.decode() if isinstance(value, bytes) else value


def parse_id(message_id: str) -> tuple[int, int]:
    """``"<ms>-<seq>"`` as a pair of ints, so ids compare numerically (``"1-10" > "1-9"``)."""
    ms, sep, seq = message_id.partition("-")
    if not (ms.isdigit() and (not sep or seq.isdigit())):
        raise ArgumentError(f"not a stream entry id: {message_id!r}")
    return int(ms), int(seq or 0)


def next_id(message_id: str) -> str:
    """The smallest id strictly greater than ``message_id``."""
    ms, seq = parse_id(message_id)
    return f"{ms + 1}-0" if seq == _MAX_SEQ else f"{ms}-{seq + 1}"


def block_limit_s(client: Redis, wanted_s: float) -> float:
    """How long a blocking command may block without tripping the client's socket timeout."""
    kwargs: dict[str, Any] = getattr(
        getattr(client, "connection_pool", None), "connection_kwargs", {}
    )
    socket_timeout = kwargs.get("socket_timeout")
    if socket_timeout:
        wanted_s = min(wanted_s, socket_timeout * 0.8)
    return max(wanted_s, 0.01)


async def stream_size(client: Redis, stream_name: str, namespace: str | None = None) -> int:
    """Number of entries in the stream (``XLEN``; 0 when it does not exist)."""
    key = Keys(namespace).stream(check_name(stream_name))
    with _wire.translate_errors(f"XLEN {key}"):
        size: int = await client.xlen(key)
    return size


async def max_stream_id(
    client: Redis, stream_name: str, namespace: str | None = None
) -> str | None:
    """Id of the stream's newest entry, ``None`` when the stream is empty or missing."""
    key = Keys(namespace).stream(check_name(stream_name))
    with _wire.translate_errors(f"XREVRANGE {key}"):
        rows: Any = await client.xrevrange(key, "+", "-", count=1)
    return decode(rows[0][0]) if rows else None


async def max_consumer_id(
    client: Redis, *, stream_name: str, consumer_name: str, namespace: str | None = None
) -> str | None:
    """The consumer's committed offset (the last id it finished), ``None`` if it never committed."""
    key = Keys(namespace).offset(
        check_name(stream_name), check_name(consumer_name, "consumer name")
    )
    with _wire.translate_errors(f"GET {key}"):
        value: Any = await client.get(key)
    return None if value is None else decode(value)
