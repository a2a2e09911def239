"""Backfill: a queue message for every existing row of a table, for a new secondary store.

:func:`backfill` walks a mapped class's table in primary-key order, one batch at a
time, by keyset pagination (``WHERE key > last ORDER BY key LIMIT n``; a composite key
is compared as a tuple; never ``OFFSET``, which reads every skipped row again), and
writes one queue message per row with :meth:`~aioredstream.Producer.bulk_queue`. A
row's message carries the payload :func:`~aioredstream.integrations.sqlalchemy.track`
would give it (the producer's registry, else ``redstream_payload()``), built while
its session is open, so a payload may read lazy-loaded attributes.

Each batch is read in a session of its own, closed before the next one: memory stays
flat in the table's size (no identity map grows), and no read transaction stays open
for the whole run.

The checkpoint: once a batch's queue messages were acknowledged, the key
``[<ns>:]redstream:backfill:<stream>`` gets the batch's last primary key as JSON::

    {"table": "users", "key": [41000], "rows": 41000, "finished": false}

``rows`` counts the rows queued since the backfill started (over resumed runs too).
A backfill killed midway and run again with ``resume=True`` continues after ``key``:
each row is queued at least once, and the rows queued twice are at most the one batch
that was in flight when it was killed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import anyio
from sqlalchemy import ColumnElement, Select, func, inspect, select, tuple_
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.sql.elements import ClauseElement

from .._failures import cause, record_error
from .._keys import DELAY_SUFFIX
from .._records import PerRecord, StreamSpec
from .._sharding import Sharded
from .._validate import check_count, check_flag, check_name
from ..errors import ArgumentError, PayloadError
from ..producer import Producer
from ..send import command as _command

__all__ = ["Checkpoint", "Progress", "backfill", "load_checkpoint"]

#: ``progress(done, total)``: rows queued so far by this call, and of how many
Progress = Callable[[int, int], object]
#: the primary key types a checkpoint can hold (JSON has no UUID): how to read one back
_KEY_TYPES: dict[type, Callable[[Any], Any]] = {int: int, str: str, uuid.UUID: uuid.UUID}


class _Row:
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
def _row_class(model: type, stream: str) -> type[_Row]:
    # One class per (model, stream), named after the model so that producer errors name it;
    # cached, so that the producer's per-class cache does not grow with every call.
    namespace = {
        "__slots__": (),
        "stream": stream,
        "__module__": model.__module__,
        "__qualname__": model.__qualname__,
    }
    return type(model.__name__, (_Row,), namespace)


@dataclass(frozen=True)
class Checkpoint:
    """What the checkpoint key holds: where a backfill of ``table`` got to."""

    table: str
    key: tuple[Any, ...] | None  # the last primary key queued; None: no row yet
    rows: int
    finished: bool


@dataclass(frozen=True)
class _Plan:
    """A backfill's checked arguments and what follows from them."""

    model: type
    table: str
    columns: tuple[ColumnElement[Any], ...]  # the primary key, in the mapper's order
    readers: tuple[Callable[[Any], Any], ...]  # checkpoint JSON -> key value, per column
    spec: StreamSpec
    stream_of: Callable[[Any], str]
    stream: str  # names the checkpoint (and the stream, unless sharded or per record)
    where: ClauseElement | None
    batch_size: int

    def batch(self, after: tuple[Any, ...] | None) -> Select[Any]:
        statement = self._filtered(select(self.model), after)
        return statement.order_by(*self.columns).limit(self.batch_size)

    def count(self, after: tuple[Any, ...] | None) -> Select[Any]:
        return self._filtered(select(func.count()).select_from(self.model), after)

    def _filtered(self, statement: Select[Any], after: tuple[Any, ...] | None) -> Select[Any]:
        if self.where is not None:
            statement = statement.where(self.where)  # type: ignore[arg-type]
        if after is not None:
            if len(self.columns) == 1:
                statement = statement.where(self.columns[0] > after[0])
            else:
                statement = statement.where(tuple_(*self.columns) > tuple_(*after))
        return statement

    def rows(self, session: Session, instances: Sequence[Any]) -> list[_Row]:
        """The messages of ``instances``; runs in the session's greenlet (lazy loads work)."""
        spec, stream_of, model = self.spec, self.stream_of, self.model
        rows: list[_Row] = []
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

    def checkpoint_key(self, producer: Producer) -> str:
        return producer.keys.backfill(self.stream)


async def backfill(
    producer: Producer,
    sessions: async_sessionmaker[Any],
    model: type,
    *,
    batch_size: int = 1000,
    where: ColumnElement[bool] | ClauseElement | None = None,
    progress: Progress | None = None,
    resume: bool = False,
    stream: str | None = None,
) -> int:
    """Queue a message for every row of ``model``'s table; return how many were queued.

    ``sessions`` is an ``async_sessionmaker``: each batch of ``batch_size`` rows is read
    in a new session, in primary-key order. ``where`` is an extra filter
    (``User.active.is_(True)``, or ``sqlalchemy.text(...)``). ``progress(done, total)``
    is called once before the first batch and after each batch is queued; ``total`` is a
    ``COUNT(*)`` taken at the start, an estimate if rows are inserted or deleted
    meanwhile (``done`` may pass it: then ``total`` is raised to ``done``).

    ``resume=True`` continues after the checkpoint a killed run left (or starts at the
    first row when there is none; a finished backfill queues nothing); without it the
    backfill starts at the first row and overwrites the checkpoint. Run with the same
    ``where`` when resuming.

    ``stream`` sends every message to that stream instead of the model's own (see
    docs/adding-an-index.md: a new consumer reads the backfill without every other
    consumer of the model's stream re-syncing every row); it also names the checkpoint.
    """
    plan = _plan(producer, sessions, model, batch_size, where, progress, resume, stream)
    report = progress or _no_progress
    after: tuple[Any, ...] | None = None
    rows_before = 0
    if resume:
        saved = await load_checkpoint(producer, plan)
        if saved is not None and saved.finished:
            report(0, 0)
            return 0
        if saved is not None:
            after, rows_before = saved.key, saved.rows
    total = await _scalar(sessions, plan.count(after))
    report(0, total)
    done = 0
    while True:
        rows, last = await _read(sessions, plan, after)
        if rows:
            await producer.bulk_queue(rows)
            after = last
            done += len(rows)
        finished = len(rows) < plan.batch_size
        await _save(producer, plan, Checkpoint(plan.table, after, rows_before + done, finished))
        if rows:
            report(done, max(total, done))
        if finished:
            return done


def _no_progress(done: int, total: int) -> None:
    pass


async def _read(
    sessions: async_sessionmaker[Any], plan: _Plan, after: tuple[Any, ...] | None
) -> tuple[list[_Row], tuple[Any, ...] | None]:
    """The next batch's messages and its last primary key, read in a session of its own."""
    session = sessions()
    try:
        instances = (await session.scalars(plan.batch(after))).unique().all()
        if not instances:
            return [], after
        rows = await session.run_sync(plan.rows, instances)
        return rows, tuple(inspect(instances[-1]).identity or ())
    finally:
        with anyio.CancelScope(shield=True):  # a cancelled backfill still returns its connection
            await session.close()


async def _scalar(sessions: async_sessionmaker[Any], statement: Select[Any]) -> int:
    session = sessions()
    try:
        return int((await session.execute(statement)).scalar_one())
    finally:
        with anyio.CancelScope(shield=True):
            await session.close()


# -- the checkpoint ----------------------------------------------------------------------


async def load_checkpoint(producer: Producer, plan: _Plan) -> Checkpoint | None:
    """The checkpoint of ``plan``'s backfill, if one was written."""
    key = plan.checkpoint_key(producer)
    raw = await _command.run(producer.client, "GET", key, key=key, what=f"GET {key}")
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        saved = Checkpoint(
            str(data["table"]),
            None if data["key"] is None else _read_key(plan, data["key"]),
            int(data["rows"]),
            bool(data["finished"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ArgumentError(
            f"resume=True: {key} holds {raw!r}, not a backfill checkpoint ({cause(exc)}); "
            "delete it, or backfill from the start (resume=False)"
        ) from None
    if saved.table != plan.table:
        raise ArgumentError(
            f"resume=True: {key} is the checkpoint of a backfill of table {saved.table!r}, "
            f"not {plan.table!r}; pass stream= to give this backfill a checkpoint of its own"
        )
    return saved


def _read_key(plan: _Plan, values: list[Any]) -> tuple[Any, ...]:
    if not isinstance(values, list) or len(values) != len(plan.readers):
        raise ValueError(f"expected {len(plan.readers)} key values, got {values!r}")
    return tuple(read(value) for read, value in zip(plan.readers, values, strict=True))


async def _save(producer: Producer, plan: _Plan, checkpoint: Checkpoint) -> None:
    key = plan.checkpoint_key(producer)
    values = None if checkpoint.key is None else [_json_key(v) for v in checkpoint.key]
    value = json.dumps(
        {
            "table": checkpoint.table,
            "key": values,
            "rows": checkpoint.rows,
            "finished": checkpoint.finished,
        },
        separators=(",", ":"),
    )
    await _command.run(producer.client, "SET", key, value, key=key, what=f"SET {key}")


def _json_key(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value


# -- arguments ---------------------------------------------------------------------------


def _plan(
    producer: Producer,
    sessions: object,
    model: object,
    batch_size: object,
    where: object,
    progress: object,
    resume: object,
    stream: object,
) -> _Plan:
    if not isinstance(producer, Producer):
        raise ArgumentError(f"producer must be an aioredstream.Producer, got {producer!r}")
    if not isinstance(sessions, async_sessionmaker):
        raise ArgumentError(
            "sessions must be an async_sessionmaker (backfill reads on the event loop; "
            f"make one with async_sessionmaker(create_async_engine(url))), got {sessions!r}"
        )
    mapper = _mapper(model)
    assert isinstance(model, type)
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
    spec = producer.registry.resolve(model)  # RecordError naming the class
    table = _table_name(mapper)
    columns, readers = _key_columns(mapper)
    if stream is not None:
        name = _stream_name(stream)
        stream_of: Callable[[Any], str] = lambda _: name  # noqa: E731
    else:
        stream_of = _stream_picker(spec)
        name = spec.name or table  # records that name their own streams: the table names it
    return _Plan(model, table, columns, readers, spec, stream_of, name, where, batch_size)


def _mapper(model: object) -> Mapper[Any]:
    mapper = inspect(model, raiseerr=False) if isinstance(model, type) else None
    if not isinstance(mapper, Mapper):
        raise ArgumentError(f"model must be a mapped SQLAlchemy class, got {model!r}")
    return mapper


def _table_name(mapper: Mapper[Any]) -> str:
    table = mapper.persist_selectable
    return str(getattr(table, "name", None) or mapper.class_.__name__)


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


def _stream_name(stream: object) -> str:
    name = check_name(stream, "stream")
    if name.endswith(DELAY_SUFFIX):
        raise ArgumentError(f"stream {name!r} ends in {DELAY_SUFFIX!r}: that is a delay stream")
    return name


def _stream_picker(spec: StreamSpec) -> Callable[[Any], str]:
    """A row's stream, as the producer picks it: one, its shard, or its own name."""
    if spec.name_of is not None:
        per_record = PerRecord(spec, str)
        return lambda record: per_record.pick(record, None)
    if spec.shards:
        sharded = Sharded(spec.name, spec.shards, spec.shard_key, str)
        return lambda record: sharded.pick(record, None)
    name = spec.name
    return lambda _: name
