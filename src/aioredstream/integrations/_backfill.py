"""Backfill: a queue message for every existing row of a table, for a new secondary store.

`backfill` walks a mapped class's table in primary-key order, one batch at a
time, by keyset pagination (``WHERE key > last ORDER BY key LIMIT n``; a composite key
is compared as a tuple; never ``OFFSET``, which reads every skipped row again), and
writes one queue message per row with `bulk_queue`. A
row's message carries the payload `track`
would give it (see `._backfill_plan` for how a batch is read).

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, inspect
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.sql.elements import ClauseElement

from .._failures import cause
from .._tasks import completed
from ..errors import ArgumentError
from ..producer import Producer
from ..send import command as _command
from ._backfill_plan import Key, Plan, Row, make_plan

__all__ = ["Checkpoint", "Progress", "backfill", "load_checkpoint"]

#: ``progress(done, total)``: rows queued so far by this call, and of how many
Progress = Callable[[int, int], object]


@dataclass(frozen=True)
class Checkpoint:
    """What the checkpoint key holds: where a backfill of ``table`` got to."""

    table: str
    key: Key | None  # the last primary key queued; None: no row yet
    rows: int
    finished: bool


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

    ``stream`` sends every message to that stream instead of the model's own (so that
    only a new consumer reads them; see the "Adding an index" guide); it also names the
    checkpoint.
    """
    plan = make_plan(producer, sessions, model, batch_size, where, progress, resume, stream)
    report = progress or _no_progress
    after: Key | None = None
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
    sessions: async_sessionmaker[Any], plan: Plan, after: Key | None
) -> tuple[list[Row], Key | None]:
    """The next batch's messages and its last primary key, read in a session of its own."""
    session = sessions()
    try:
        if plan.selected is not None:
            tuples = (await session.execute(plan.batch(after))).all()
            if not tuples:
                return [], after
            return plan.id_rows(tuples), tuple(tuples[-1][: len(plan.columns)])
        instances = (await session.scalars(plan.batch(after))).unique().all()
        if not instances:
            return [], after
        rows = await session.run_sync(plan.rows, instances)
        return rows, tuple(inspect(instances[-1]).identity or ())
    finally:
        # a cancelled backfill still returns its connection, rolled back (a plain
        # Task.cancel() such as Ctrl-C's would cut the rollback short under an anyio shield)
        await completed(session.close())


async def _scalar(sessions: async_sessionmaker[Any], statement: Select[Any]) -> int:
    session = sessions()
    try:
        return int((await session.execute(statement)).scalar_one())
    finally:
        await completed(session.close())


# -- the checkpoint ----------------------------------------------------------------------


async def load_checkpoint(producer: Producer, plan: Plan) -> Checkpoint | None:
    """The checkpoint of the backfill ``plan`` describes, if one was written."""
    key = plan.checkpoint_key(producer)
    raw = await _command.run(producer.client, "GET", key, key=key, what=f"GET {key}")
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        saved = Checkpoint(
            str(data["table"]),
            None if data["key"] is None else plan.read_key(data["key"]),
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


async def _save(producer: Producer, plan: Plan, checkpoint: Checkpoint) -> None:
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
