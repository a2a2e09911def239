"""A backfill's plan: its checked arguments, the statements it runs and the messages it builds.

Two ways to read a batch, chosen once per call:

- **by id** (the default payload, ``{"id": row.id}``, and the default shard key, not
  overridden; no inheritance, ``id`` a plain column): only the primary key and ``id``
  are selected, as tuples, and the payloads are built from them. No ORM object is made,
  which is 2-4x faster (see benchmarks/backfill.json).
- **by object**: whole ORM objects, and each payload built by the producer's rule
  (the registry, else ``redstream_payload()``), in the session's greenlet, so a payload
  may read lazy-loaded attributes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, Select, func, inspect, select, tuple_
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import ColumnProperty, Mapper, Session
from sqlalchemy.sql.elements import ClauseElement

from .._failures import cause, record_error
from .._keys import DELAY_SUFFIX
from .._records import PerRecord, StreamSpec, reads_only_id
from .._sharding import Sharded
from .._validate import check_count, check_flag, check_name
from ..errors import ArgumentError, PayloadError
from ..producer import Producer

__all__ = ["Key", "Plan", "Row", "make_plan"]

#: the primary key types a checkpoint can hold (JSON has no UUID): how to read one back
_KEY_TYPES: dict[type, Callable[[Any], Any]] = {int: int, str: str, uuid.UUID: uuid.UUID}

Key = tuple[Any, ...]


class Row:
    """A row's message: its stream and payload, taken while its session was open."""

    __slots__ = ("payload",)
    stream: ClassVar[str]

    def __init__(self, payload: Any) -> None:
        self.payload = payload

    @classmethod
    def redstream_name(cls) -> str:
        return cls.stream

    def redstream_payload(self) -> Any:
        return self.payload


@lru_cache(maxsize=4096)
def _row_class(model: type, stream: str) -> type[Row]:
    # One class per (model, stream), named after the model so that producer errors name it;
    # cached, so that the producer's per-class cache does not grow with every call.
    namespace = {
        "__slots__": (),
        "stream": stream,
        "__module__": model.__module__,
        "__qualname__": model.__qualname__,
    }
    return type(model.__name__, (Row,), namespace)


@dataclass(frozen=True)
class Plan:
    """What one backfill reads and writes. ``selected`` is set when it reads by id: the
    primary key columns, then ``id`` if it is not one of them; ``stream_of`` then takes
    the id, else the object."""

    model: type
    table: str
    columns: tuple[ColumnElement[Any], ...]  # the primary key, in the mapper's order
    readers: tuple[Callable[[Any], Any], ...]  # checkpoint JSON -> key value, per column
    spec: StreamSpec
    stream_of: Callable[[Any], str]
    stream: str  # names the checkpoint (and the stream, unless sharded or per record)
    where: ClauseElement | None
    batch_size: int
    selected: tuple[ColumnElement[Any], ...] | None
    id_at: int  # where the id is in a selected tuple

    def batch(self, after: Key | None) -> Select[Any]:
        statement: Select[Any] = (
            select(self.model) if self.selected is None else select(*self.selected)
        )
        return self._filtered(statement, after).order_by(*self.columns).limit(self.batch_size)

    def count(self, after: Key | None) -> Select[Any]:
        return self._filtered(select(func.count()).select_from(self.model), after)

    def _filtered(self, statement: Select[Any], after: Key | None) -> Select[Any]:
        if self.where is not None:
            statement = statement.where(self.where)  # type: ignore[arg-type]
        if after is not None:
            if len(self.columns) == 1:
                statement = statement.where(self.columns[0] > after[0])
            else:
                statement = statement.where(tuple_(*self.columns) > tuple_(*after))
        return statement

    def id_rows(self, tuples: Sequence[Any]) -> list[Row]:
        """The messages of rows read as ``(key..., id)`` tuples."""
        at, stream_of, model = self.id_at, self.stream_of, self.model
        return [_row_class(model, stream_of(row[at]))({"id": row[at]}) for row in tuples]

    def rows(self, session: Session, instances: Sequence[Any]) -> list[Row]:
        """The messages of ``instances``; runs in the session's greenlet (lazy loads work)."""
        spec, stream_of, model = self.spec, self.stream_of, self.model
        rows: list[Row] = []
        for instance in instances:
            try:
                payload = spec.payload(instance)
            except Exception as exc:
                key = inspect(instance).identity
                raise record_error(
                    PayloadError,
                    f"cannot build the payload of the row with primary key {key!r}: {cause(exc)}",
                    index=None,
                    record_type=model,
                ) from exc
            rows.append(_row_class(model, stream_of(instance))(payload))
        return rows

    def read_key(self, values: object) -> Key:
        """A key as the checkpoint's JSON holds it; ``ValueError`` if it is not one."""
        if not isinstance(values, list) or len(values) != len(self.readers):
            raise ValueError(f"expected {len(self.readers)} key values, got {values!r}")
        return tuple(read(value) for read, value in zip(self.readers, values, strict=True))

    def checkpoint_key(self, producer: Producer) -> str:
        return producer.keys.backfill(self.stream)


def make_plan(
    producer: Producer,
    sessions: object,
    model: object,
    batch_size: object,
    where: object,
    progress: object,
    resume: object,
    stream: object,
) -> Plan:
    """Check a backfill's arguments (`ArgumentError` naming the bad one)."""
    if not isinstance(producer, Producer):
        raise ArgumentError(f"producer must be an aioredstream.Producer, got {producer!r}")
    if not isinstance(sessions, async_sessionmaker):
        raise ArgumentError(
            "sessions must be an async_sessionmaker (backfill reads on the event loop; "
            f"make one with async_sessionmaker(create_async_engine(url))), got {sessions!r}"
        )
    mapper = _mapper(model)
    check_count(batch_size, "batch_size")
    assert isinstance(batch_size, int)
    if where is not None and not isinstance(where, ClauseElement):
        raise ArgumentError(
            "where must be a SQLAlchemy clause such as User.active.is_(True) "
            f"(SQL text: sqlalchemy.text(...)), got {where!r}"
        )
    if progress is not None and not callable(progress):
        raise ArgumentError(f"progress must be a callable (done, total), got {progress!r}")
    check_flag(resume, "resume")
    spec = producer.registry.resolve(mapper.class_)  # RecordError naming the class
    table = _table_name(mapper)
    columns, readers = _key_columns(mapper)
    id_at = _id_position(mapper, spec, columns)
    selected = None
    if id_at is not None:
        selected = columns if id_at < len(columns) else (*columns, mapper.attrs["id"].columns[0])
    if stream is not None:
        name = _stream_name(stream)
        stream_of: Callable[[Any], str] = lambda _: name  # noqa: E731
    else:
        stream_of = _stream_picker(spec, by_id=id_at is not None)
        name = spec.name or table  # records that name their own streams: the table names it
    return Plan(
        mapper.class_,
        table,
        columns,
        readers,
        spec,
        stream_of,
        name,
        where,
        batch_size,
        selected,
        id_at or 0,
    )


def _mapper(model: object) -> Mapper[Any]:
    mapper = inspect(model, raiseerr=False) if isinstance(model, type) else None
    if not isinstance(mapper, Mapper):
        raise ArgumentError(f"model must be a mapped SQLAlchemy class, got {model!r}")
    return mapper


def _table_name(mapper: Mapper[Any]) -> str:
    return str(getattr(mapper.persist_selectable, "name", None) or mapper.class_.__name__)


def _key_columns(
    mapper: Mapper[Any],
) -> tuple[tuple[ColumnElement[Any], ...], tuple[Callable[[Any], Any], ...]]:
    columns = tuple(mapper.primary_key)
    readers = []
    for column in columns:
        try:
            python_type: Any = column.type.python_type
        except NotImplementedError:
            python_type = column.type
        reader = _KEY_TYPES.get(python_type)
        if reader is None:
            raise ArgumentError(
                f"{mapper.class_.__qualname__}: primary key column {column.name!r} is of type "
                f"{python_type!r}; a backfill checkpoint holds int, str or UUID keys"
            )
        readers.append(reader)
    return columns, tuple(readers)


def _id_position(
    mapper: Mapper[Any], spec: StreamSpec, columns: tuple[ColumnElement[Any], ...]
) -> int | None:
    """Where ``id`` is in a row read as ``(key..., id)``, when reading only that is safe: the
    payload and shard key are the defaults, ``id`` is a plain column, and no inheritance
    could load a subclass with a payload of its own. ``None``: load whole objects."""
    if not reads_only_id(spec, mapper.class_):
        return None
    if mapper.inherits is not None or len(mapper.self_and_descendants) > 1:
        return None
    prop = mapper.attrs.get("id")
    if not isinstance(prop, ColumnProperty) or len(prop.columns) != 1:
        return None
    column = prop.columns[0]
    for at, key_column in enumerate(columns):
        if key_column is column:
            return at
    return len(columns)


def _stream_name(stream: object) -> str:
    name = check_name(stream, "stream")
    if name.endswith(DELAY_SUFFIX):
        raise ArgumentError(f"stream {name!r} ends in {DELAY_SUFFIX!r}: that is a delay stream")
    return name


def _stream_picker(spec: StreamSpec, *, by_id: bool) -> Callable[[Any], str]:
    """A row's stream, as the producer picks it: one, its shard, or its own name; from the
    row's object, or (``by_id``) from its id."""
    if spec.name_of is not None:
        per_record = PerRecord(spec, str)
        return lambda record: per_record.pick(record, None)
    if spec.shards:
        sharded = Sharded(spec.name, spec.shards, _same if by_id else spec.shard_key, str)
        return lambda record: sharded.pick(record, None)
    name = spec.name
    return lambda _: name


def _same(value: Any) -> Any:
    return value
