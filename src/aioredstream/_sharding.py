"""Sharding (the gem's 0.6 feature): which of a class's ``N`` streams a record goes to.

A record's shard is [`shard_of`][aioredstream.shard_of] its primary key and its stream is
``<name>-<shard>``: the gem README's ``Digest::SHA1.hexdigest(id.to_s)[0, 4].to_i(16)
% NUM_SHARDS`` and ``"products-#{shard}"``, so Ruby and Python agree on every id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from hashlib import sha1
from typing import Any, Generic, TypeVar

from ._failures import cause, record_error
from ._validate import check_shards
from .errors import RecordError

__all__ = ["Sharded", "shard_name", "shard_of", "stream_names"]

T = TypeVar("T")


def shard_of(key: object, shards: int) -> int:
    """The gem's shard of a primary key: SHA1 of ``key.to_s``, first 4 hex digits, mod ``shards``.

    ``key`` is an int, a str or a UUID (the texts Ruby's ``to_s`` gives alike);
    anything else raises `TypeError`, since its text would differ from Ruby's.
    ``shards`` is an int from 1 to 65536 (the 4 hex digits give 65536 values).
    """
    check_shards(shards, "shards")
    if isinstance(key, str):
        text = key
    elif isinstance(key, int) and not isinstance(key, bool):
        text = str(int(key))  # the plain digits, also for int subclasses such as IntEnum
    elif isinstance(key, uuid.UUID):
        text = str(key)
    else:
        raise TypeError(
            f"a shard key must be an int, str or UUID, got {type(key).__name__}: {key!r}"
        )
    # The first 2 digest bytes are the first 4 hex digits.
    return int.from_bytes(sha1(text.encode()).digest()[:2], "big") % shards


def shard_name(name: str, shard: int) -> str:
    """The stream of one shard, as in the gem's README: ``products`` + 3 -> ``products-3``."""
    return f"{name}-{shard}"


def stream_names(name: str, shards: int | None) -> list[str]:
    if shards is None:
        return [name]
    return [shard_name(name, shard) for shard in range(shards)]


class Sharded(Generic[T]):
    """A sharded class: one target (the producer's pre-packed commands) per shard,
    picked per record by its shard key."""

    __slots__ = ("key", "shards", "targets")

    def __init__(
        self, name: str, shards: int, key: Callable[[Any], Any], make: Callable[[str], T]
    ) -> None:
        """``key(record)`` is the shard key; ``make(stream_name)`` builds one shard's target."""
        self.key = key
        self.shards = shards
        self.targets = [make(stream) for stream in stream_names(name, shards)]

    def pick(self, record: Any, index: int | None) -> T:
        try:
            key = self.key(record)
            kind = type(key)
            # shard_of inlined for the common key types (same bytes as its str(key).encode())
            if kind is int:
                digest = sha1(b"%d" % key).digest()
            elif kind is str:
                digest = sha1(key.encode()).digest()
            else:
                return self.targets[shard_of(key, self.shards)]
            return self.targets[(digest[0] << 8 | digest[1]) % self.shards]
        except (AttributeError, KeyError, TypeError) as exc:
            raise record_error(
                RecordError,
                f"cannot compute its shard: {cause(exc)}",
                index=index,
                record_type=type(record),
            ) from exc
