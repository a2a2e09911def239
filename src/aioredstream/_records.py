"""How a record names its stream and builds its payload.

A record is anything whose class answers ``redstream_name()`` (the stream) and
whose instances answer ``redstream_payload()`` (a JSON-able value). :class:`Model`
supplies both defaults. Classes that cannot be changed (dicts, third-party
models) are described once with :func:`register` instead.

Sharding (the gem's 0.6 feature): a class with ``redstream_shards = N`` spreads its
messages over the streams ``<name>-0`` … ``<name>-<N-1>``; a record's shard is
:func:`shard_of` its primary key, so every change of one record lands in one stream
and keeps its order. The function and the names are the gem README's, byte for
byte, so a Ruby producer and a Python consumer agree on the shard of every id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import inflection

from ._keys import DELAY_SUFFIX, check_name
from ._sharding import shard_name, stream_names
from .errors import ArgumentError, RecordError

__all__ = ["Model", "Registry", "StreamSpec", "default_registry", "register"]

PayloadFn = Callable[[Any], Any]


class Model:
    """Mixin giving a class the gem's defaults.

    The stream is the Rails table name of the class (``User`` → ``users``,
    ``ProductCategory`` → ``product_categories``); the payload is
    ``{"id": self.id}``. Override either method to change it.

    Set ``redstream_shards = N`` to shard the class over ``N`` streams by
    :meth:`redstream_shard_key` (default: ``self.id``).
    """

    #: ``None``: one stream; ``N``: the streams ``<name>-0`` … ``<name>-<N-1>``
    redstream_shards: ClassVar[int | None] = None

    @classmethod
    def redstream_name(cls) -> str:
        return str(inflection.tableize(cls.__name__))

    @classmethod
    def redstream_names(cls) -> list[str]:
        """Every stream of the class: its one stream, or all its shards (for workers)."""
        return stream_names(cls.redstream_name(), cls.redstream_shards)

    def redstream_payload(self) -> Any:
        return {"id": self.id}  # type: ignore[attr-defined]

    def redstream_shard_key(self) -> Any:
        return self.id  # type: ignore[attr-defined]


class StreamSpec:
    """What the producer needs to know about one class: its stream, payload and sharding.

    ``shards`` is ``None`` for one stream; else ``shard_key`` maps a record to the
    value :func:`shard_of` hashes.
    """

    __slots__ = ("name", "payload", "shard_key", "shards")

    def __init__(
        self,
        name: str,
        payload: PayloadFn,
        shards: int | None = None,
        shard_key: PayloadFn | None = None,
    ) -> None:
        self.name = name
        self.payload = payload
        self.shards = shards
        self.shard_key = shard_key or _id_key

    def names(self) -> list[str]:
        return stream_names(self.name, self.shards)


def _default_payload(record: Any) -> Any:
    return record.redstream_payload()


class Registry:
    """Stream names and payload functions for classes that do not define them.

    ``registry.register(dict, name="users", payload=lambda r: {"id": r["id"]})``
    makes plain dicts streamable. Lookups follow the class's MRO, so registering
    a base class covers its subclasses. Registration wins over methods the class
    defines itself.
    """

    def __init__(self) -> None:
        self._specs: dict[type, StreamSpec] = {}
        #: bumped by every (un)registration: producers drop what they cached
        self.version = 0

    def register(
        self,
        cls: type,
        *,
        name: str | Callable[[type], str] | None = None,
        payload: PayloadFn | None = None,
        shards: int | None = None,
        shard_key: PayloadFn | None = None,
    ) -> None:
        """Describe ``cls``: ``name`` is the stream name (or a function of the class,
        default: its Rails table name); ``payload`` maps a record to its payload
        (default: ``{"id": record.id}``); ``shards=N`` spreads it over ``N`` streams
        by ``shard_key(record)`` (default: its id)."""
        if not isinstance(cls, type):
            raise ArgumentError(f"register() takes a class, got {cls!r}")
        if name is None:
            stream = str(inflection.tableize(cls.__name__))
        elif callable(name):
            stream = name(cls)
        else:
            stream = name
        _check_stream_name(stream, cls)
        shards = _check_shards(shards, cls)
        if shards:  # the longest shard name must be a valid name too
            _check_stream_name(shard_name(stream, shards - 1), cls)
        self._specs[cls] = StreamSpec(stream, payload or _id_payload, shards, shard_key)
        self.version += 1

    def unregister(self, cls: type) -> None:
        if self._specs.pop(cls, None) is not None:
            self.version += 1

    def resolve(self, cls: type, index: int | None = None) -> StreamSpec:
        """The spec for ``cls``; raises :class:`RecordError` when it has none."""
        for base in cls.__mro__:
            spec = self._specs.get(base)
            if spec is not None:
                return spec
        name_fn = getattr(cls, "redstream_name", None)
        if name_fn is None or not callable(getattr(cls, "redstream_payload", None)):
            missing = "redstream_name" if name_fn is None else "redstream_payload"
            raise RecordError(
                f"{_where(index, cls)} has no {missing}(): subclass aioredstream.Model, "
                "define redstream_name()/redstream_payload(), or aioredstream.register() it",
                index=index,
                record_type=cls,
            )
        name = name_fn()
        _check_stream_name(name, cls, index)
        shards = _check_shards(getattr(cls, "redstream_shards", None), cls, index)
        if shards:
            _check_stream_name(shard_name(name, shards - 1), cls, index)
        key_fn = _default_shard_key if hasattr(cls, "redstream_shard_key") else None
        return StreamSpec(name, _default_payload, shards, key_fn)

    def stream_names(self, cls: type) -> list[str]:
        """Every stream ``cls`` writes to (all its shards, if sharded)."""
        return self.resolve(cls).names()


def _default_shard_key(record: Any) -> Any:
    return record.redstream_shard_key()


def _id_key(record: Any) -> Any:
    return record["id"] if isinstance(record, dict) else record.id


def _id_payload(record: Any) -> Any:
    return {"id": _id_key(record)}


def _where(index: int | None, cls: type) -> str:
    at = "" if index is None else f" at index {index}"
    return f"record{at} of type {cls.__module__}.{cls.__qualname__}"


def _check_shards(shards: object, cls: type, index: int | None = None) -> int | None:
    if shards is None:
        return None
    if not isinstance(shards, int) or isinstance(shards, bool) or not 1 <= shards <= 65536:
        # 4 hex digits give 65536 values: more shards than that would stay empty.
        raise RecordError(
            f"{_where(index, cls)} has redstream_shards={shards!r}; "
            "use None or an int from 1 to 65536",
            index=index,
            record_type=cls,
        )
    return shards


def _check_stream_name(name: object, cls: type, index: int | None = None) -> None:
    try:
        check_name(name)
    except Exception as exc:
        raise RecordError(
            f"{_where(index, cls)} has a bad stream name: {exc}", index=index, record_type=cls
        ) from None
    assert isinstance(name, str)
    if name.endswith(DELAY_SUFFIX):
        raise RecordError(
            f"{_where(index, cls)} has stream name {name!r}, which ends in {DELAY_SUFFIX!r} "
            "and would collide with another stream's delay stream",
            index=index,
            record_type=cls,
        )


default_registry = Registry()
register = default_registry.register
