"""How a record names its stream and builds its payload.

A record is anything whose class answers ``redstream_name()`` (the stream) and
whose instances answer ``redstream_payload()`` (a JSON-able value). `Model`
supplies both defaults. Classes that cannot be changed (dicts, third-party
models) are described once with `register` instead.

Per-record names (the gem README's way to shard): a class whose ``redstream_name``
is a plain instance method (``def redstream_name(self) -> str``) names the stream
of each record. That is found out once per class (`Registry.resolve`); the
producer then asks every record of that class, and classes with a class-level name
keep their one cached stream.

Sharding (the gem's 0.6 feature): a class with ``redstream_shards = N`` spreads its
messages over the streams ``<name>-0`` … ``<name>-<N-1>``; a record's shard is
`shard_of` its primary key, so every change of one record lands in one stream
and keeps its order. The function and the names are the gem README's, byte for
byte, so a Ruby producer and a Python consumer agree on the shard of every id.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from operator import attrgetter, itemgetter
from typing import Any, ClassVar, Generic, TypeVar

import inflection

from ._failures import cause, record_error
from ._keys import DELAY_SUFFIX
from ._sharding import shard_name, stream_names
from ._validate import check_name, check_shards
from .errors import ArgumentError, PayloadError, RecordError

__all__ = [
    "Model",
    "PerRecord",
    "Registry",
    "StreamSpec",
    "default_registry",
    "default_stream_name",
    "id_getter",
    "payload_error",
    "reads_only_id",
    "register",
]

PayloadFn = Callable[[Any], Any]
T = TypeVar("T")
#: distinct per-record names a producer keeps pre-packed per class before starting over
_PER_RECORD_CACHE = 4096


def default_stream_name(cls: type) -> str:
    """A class's default stream: its table's name when it has one, else the Rails table
    name of the class (``User`` → ``users``, ``ProductCategory`` → ``product_categories``).

    The table is ``__tablename__`` (SQLAlchemy declarative) or ``__table__.name``
    (a mapped ``Table``): ``class BlogPost(Base): __tablename__ = "posts"`` writes to
    ``posts``, the stream a Rails ``Post`` model of that table writes to.
    """
    table_name = getattr(cls, "__tablename__", None)
    if not isinstance(table_name, str):
        table_name = getattr(getattr(cls, "__table__", None), "name", None)
    if isinstance(table_name, str) and table_name:
        return table_name
    return str(inflection.tableize(cls.__name__))


def names_per_record(cls: type) -> bool:
    """Whether ``cls.redstream_name`` is an instance method (a stream per record)."""
    raw = inspect.getattr_static(cls, "redstream_name", None)
    return inspect.isfunction(raw)


class Model:
    """Mixin giving a class the gem's defaults.

    The stream is the class's table (``__tablename__``) when it has one, else the
    Rails table name of the class (``User`` → ``users``, ``ProductCategory`` →
    ``product_categories``); the payload is ``{"id": self.id}``. Override either
    method to change it; a ``redstream_name(self)`` instance method names the
    stream of each record (the gem README's sharding).

    Set ``redstream_shards = N`` to shard the class over ``N`` streams by
    `redstream_shard_key` (default: ``self.id``).
    """

    #: ``None``: one stream; ``N``: the streams ``<name>-0`` … ``<name>-<N-1>``
    redstream_shards: ClassVar[int | None] = None

    @classmethod
    def redstream_name(cls) -> str:
        return default_stream_name(cls)

    @classmethod
    def redstream_names(cls) -> list[str]:
        """Every stream of the class: its one stream, or all its shards (for workers)."""
        if names_per_record(cls):
            raise ArgumentError(_unknown_streams(cls))
        return stream_names(cls.redstream_name(), cls.redstream_shards)

    def redstream_payload(self) -> Any:
        return {"id": self.id}  # type: ignore[attr-defined]

    def redstream_shard_key(self) -> Any:
        return self.id  # type: ignore[attr-defined]


class StreamSpec:
    """What the producer needs to know about one class: its stream, payload and sharding.

    ``shards`` is ``None`` for one stream; else ``shard_key`` maps a record to the
    value `shard_of` hashes. ``name_of`` is set (and ``name`` empty) when each
    record names its stream.
    """

    __slots__ = ("name", "name_of", "payload", "shard_key", "shards")

    def __init__(
        self,
        name: str,
        payload: PayloadFn,
        shards: int | None = None,
        shard_key: PayloadFn | None = None,
        name_of: Callable[[Any], Any] | None = None,
    ) -> None:
        self.name = name
        self.payload = payload
        self.shards = shards
        self.shard_key = shard_key or _id_key
        self.name_of = name_of

    def names(self) -> list[str]:
        if self.name_of is not None:
            raise ArgumentError("its records name their streams: " + _UNKNOWN)
        return stream_names(self.name, self.shards)

    def stream_of(self, record: Any, index: int | None = None) -> str:
        """The stream of ``record`` (checked); `RecordError` naming it if bad."""
        if self.name_of is None:
            return self.name
        try:
            name = self.name_of(record)
        except Exception as exc:
            raise _name_raised(record, index, exc) from exc
        return checked_record_name(name, record, index)


def checked_record_name(name: object, record: Any, index: int | None) -> str:
    """What a record's ``redstream_name()`` returned, if it is a valid stream name."""
    cls = type(record)
    if not isinstance(name, str):
        raise record_error(
            RecordError,
            f"its redstream_name() returned {name!r}, not a str",
            index=index,
            record_type=cls,
        )
    _check_stream_name(name, cls, index)
    return str(name)


def _name_raised(record: Any, index: int | None, exc: Exception) -> RecordError:
    return record_error(
        RecordError,
        f"its redstream_name() raised {cause(exc)}",
        index=index,
        record_type=type(record),
    )


class PerRecord(Generic[T]):
    """A class whose records name their streams: one target (the producer's pre-packed
    commands) per name seen, each name checked once."""

    __slots__ = ("make", "name_of", "targets")

    def __init__(self, spec: StreamSpec, make: Callable[[str], T]) -> None:
        """``make(stream_name)`` builds the target of one stream."""
        assert spec.name_of is not None
        self.name_of = spec.name_of
        self.make = make
        self.targets: dict[str, T] = {}

    def pick(self, record: Any, index: int | None) -> T:
        try:
            name = self.name_of(record)
        except Exception as exc:
            raise _name_raised(record, index, exc) from exc
        target = self.targets.get(name) if name.__class__ is str else None
        if target is None:
            name = checked_record_name(name, record, index)
            if len(self.targets) >= _PER_RECORD_CACHE:
                self.targets.clear()
            target = self.targets[name] = self.make(name)
        return target


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
            stream = default_stream_name(cls)
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
        """The spec for ``cls``; raises [`RecordError`][aioredstream.errors.RecordError] if none."""
        for base in cls.__mro__:
            spec = self._specs.get(base)
            if spec is not None:
                return spec
        name_fn = getattr(cls, "redstream_name", None)
        if name_fn is None or not callable(getattr(cls, "redstream_payload", None)):
            missing = "redstream_name" if name_fn is None else "redstream_payload"
            raise record_error(
                RecordError,
                f"it has no {missing}(): subclass aioredstream.Model, "
                "define redstream_name()/redstream_payload(), or aioredstream.register() it",
                index=index,
                record_type=cls,
            )
        shards = _check_shards(getattr(cls, "redstream_shards", None), cls, index)
        if names_per_record(cls):
            if shards:
                raise record_error(
                    RecordError,
                    "it has both an instance method redstream_name() and "
                    "redstream_shards: shard in redstream_name() or by redstream_shards",
                    index=index,
                    record_type=cls,
                )
            return StreamSpec("", _default_payload, name_of=_record_name)
        name = name_fn()
        _check_stream_name(name, cls, index)
        if shards:
            _check_stream_name(shard_name(name, shards - 1), cls, index)
        key_fn = _default_shard_key if hasattr(cls, "redstream_shard_key") else None
        return StreamSpec(name, _default_payload, shards, key_fn)

    def stream_names(self, cls: type) -> list[str]:
        """Every stream ``cls`` writes to (all its shards, if sharded)."""
        return self.resolve(cls).names()


def _record_name(record: Any) -> Any:
    return record.redstream_name()


_UNKNOWN = (
    "they are not known ahead; list the streams for workers yourself "
    "(e.g. [shard_name(name, n) for n in range(N)])"
)


def _unknown_streams(cls: type) -> str:
    return f"{cls.__qualname__}.redstream_name is an instance method: {_UNKNOWN}"


def _default_shard_key(record: Any) -> Any:
    return record.redstream_shard_key()


def _id_key(record: Any) -> Any:
    return record["id"] if isinstance(record, dict) else record.id


def _id_payload(record: Any) -> Any:
    return {"id": _id_key(record)}


def reads_only_id(spec: StreamSpec, cls: type) -> bool:
    """Whether ``spec`` gives each record of ``cls`` the default payload ``{"id": record.id}``
    and (if sharded) the default shard key ``record.id``, in one stream or its shards: a
    backfill then reads only the ``id`` column of each row, no whole objects."""
    if spec.name_of is not None:
        return False
    payload = id_getter(spec, cls) is not None
    shard_key = (
        not spec.shards
        or spec.shard_key is _id_key
        or (spec.shard_key is _default_shard_key and _inherited(cls, "redstream_shard_key"))
    )
    return payload and shard_key


def _inherited(cls: type, name: str) -> bool:
    """Whether ``cls`` has `Model`'s own method ``name``, not an override."""
    return inspect.getattr_static(cls, name, None) is Model.__dict__[name]


def id_getter(spec: StreamSpec, cls: type) -> Callable[[Any], Any] | None:
    """How to read the id of a ``cls`` record whose payload is ``{"id": <its id>}`` (the
    defaults: `Model`'s unless overridden, or `register` without a payload);
    ``None`` for any other payload. The producer writes such payloads itself."""
    if spec.payload is _id_payload:
        return itemgetter("id") if issubclass(cls, dict) else attrgetter("id")
    if spec.payload is _default_payload and _inherited(cls, "redstream_payload"):
        return attrgetter("id")
    return None


def payload_error(
    record: Any, index: int | None, exc: Exception, *, encoding: bool = False
) -> PayloadError:
    """A `PayloadError` naming the record and what really failed: building its
    payload (``encoding=False``: the payload function raised) or encoding it as JSON."""
    if encoding:
        problem = f"its payload is not JSON-serialisable: {cause(exc)}"
    else:
        problem = f"cannot build its payload: {cause(exc)}"
        if _detached(exc):
            problem += (
                " (the session expired the instance at commit: read what the payload needs, "
                "e.g. its id, before commit(), or make the session with expire_on_commit=False)"
            )
    return record_error(PayloadError, problem, index=index, record_type=type(record))


def _detached(exc: BaseException) -> bool:
    """SQLAlchemy's "Instance <User> is not bound to a Session", or the lazy refresh of an
    expired attribute that AsyncSession refuses (``MissingGreenlet``), without importing it."""
    text = f"{type(exc).__name__}: {exc}"
    return any(
        sign in text
        for sign in ("DetachedInstanceError", "not bound to a Session", "MissingGreenlet")
    )


def _check_shards(shards: object, cls: type, index: int | None = None) -> int | None:
    if shards is None:
        return None
    try:
        return check_shards(shards, "redstream_shards")
    except ArgumentError as exc:
        raise record_error(RecordError, str(exc), index=index, record_type=cls) from None


def _check_stream_name(name: object, cls: type, index: int | None = None) -> None:
    try:
        check_name(name)
    except ArgumentError as exc:
        problem = f"bad stream name: {exc}"
        raise record_error(RecordError, problem, index=index, record_type=cls) from None
    assert isinstance(name, str)
    if name.endswith(DELAY_SUFFIX):
        raise record_error(
            RecordError,
            f"its stream name {name!r} ends in {DELAY_SUFFIX!r} "
            "and would collide with another stream's delay stream",
            index=index,
            record_type=cls,
        )


default_registry = Registry()
register = default_registry.register
