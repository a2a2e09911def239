"""The CLI's ``backfill`` command: a queue message for every row of a table (a new index).

``aioredstream backfill --model MODULE:CLASS --database-url URL [--batch-size N]
[--resume] [--where SQL] [--stream NAME]`` runs
`aioredstream.integrations.sqlalchemy.backfill` with the model's stream and
payload as the default registry knows them. SQLAlchemy is imported only here, when the
command runs: the other commands work without the ``sqlalchemy`` extra.

Exit status: 0 when every row was queued (or a finished backfill had nothing to
resume); 1 when the database or the Redis server cannot be reached or fails (one line
on stderr); 2 for bad arguments: a model that is not a mapped class with a stream, a
database URL without an async driver, a ``--where`` the database refuses.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio

from .._records import default_registry
from .._tasks import completed
from .._validate import check_name
from ..errors import ArgumentError, RecordError, RedstreamError
from ..producer import Producer
from ._cli_common import checked, connected, positive_int
from ._progress import ProgressDisplay
from .runner import import_object

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ..integrations._backfill_plan import Plan

__all__ = ["add_backfill", "database_url", "load_model"]

#: an async driver per database, for the error that names a sync one
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "mariadb": "mariadb+aiomysql",
}


def add_backfill(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    backfill = commands.add_parser(
        "backfill",
        parents=parents,
        help="queue a message for every row of a table (a new or rebuilt index)",
        description="Queue a message for every row of MODULE:CLASS's table, in primary-key "
        "order, batch by batch; a checkpoint after each batch lets --resume continue a run "
        "that was killed. Progress goes to stderr, the summary to stdout.",
    )
    backfill.add_argument(
        "--model",
        type=checked(load_model),
        required=True,
        metavar="MODULE:CLASS",
        help="a mapped SQLAlchemy class with a stream (aioredstream.Model, or registered "
        "in aioredstream.register), e.g. myapp.models:User",
    )
    backfill.add_argument(
        "--database-url",
        type=checked(database_url),
        required=True,
        metavar="URL",
        help="with an async driver: sqlite+aiosqlite:///app.db, postgresql+asyncpg://...",
    )
    backfill.add_argument(
        "--batch-size", type=positive_int, default=1000, help="rows per batch (default: 1000)"
    )
    backfill.add_argument(
        "--resume", action="store_true", help="continue after the checkpoint a killed run left"
    )
    backfill.add_argument(
        "--where", metavar="SQL", help='only rows matching this SQL condition, e.g. "active"'
    )
    backfill.add_argument(
        "--stream",
        type=checked(lambda text: check_name(text, "stream")),
        help="send every message to this stream instead of the model's (only a new "
        'consumer reads it; see the docs\' "Adding an index")',
    )
    backfill.set_defaults(run=_backfill, parser=backfill)


def load_model(spec: str) -> type:
    """Import ``module:Class`` and check it is a mapped class the default registry can stream."""
    target = import_object(spec, "module:Class")
    from sqlalchemy import inspect
    from sqlalchemy.orm import Mapper

    if not isinstance(target, type) or not isinstance(inspect(target, raiseerr=False), Mapper):
        raise ArgumentError(f"{spec!r} is not a mapped SQLAlchemy class, got {target!r}")
    try:
        default_registry.resolve(target)
    except RecordError as exc:
        raise ArgumentError(f"{spec!r}: {exc}") from None
    return target


def database_url(text: str) -> str:
    """``text`` if SQLAlchemy's asyncio extension can use it (parsed only, not connected)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import InvalidRequestError, SQLAlchemyError
    from sqlalchemy.ext.asyncio import create_async_engine

    try:
        url = make_url(text)
    except SQLAlchemyError:
        raise ArgumentError(
            f"{text!r} is not a database URL (e.g. postgresql+asyncpg://user@host/db)"
        ) from None
    shown = url.render_as_string(hide_password=True)
    suggestion = _ASYNC_DRIVERS.get(url.get_backend_name())
    use = f"; use an async driver, e.g. {suggestion}://..." if suggestion else ""
    try:
        create_async_engine(url)  # loads the dialect and its driver; connects to nothing
    except ModuleNotFoundError as exc:
        raise ArgumentError(
            f"{shown!r}: the driver module {exc.name!r} is not installed{use}"
        ) from None
    except InvalidRequestError:  # the dialect's driver is not an asyncio one
        driver = url.get_driver_name()
        raise ArgumentError(f"{shown!r}: the driver {driver!r} is not async{use}") from None
    except SQLAlchemyError as exc:  # an unknown dialect
        raise ArgumentError(f"{shown!r}: {exc}{use}") from None
    return text


async def _backfill(args: argparse.Namespace) -> int:
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    threads_before = set(threading.enumerate())
    engine = create_async_engine(args.database_url)
    sessions = async_sessionmaker(engine)
    try:
        async with connected(args) as (client, _):
            producer = Producer(client, namespace=args.namespace)
            where = _where(args.where)
            plan = _plan(producer, sessions, args, where)
            if not await _reachable(engine, args, plan, where):
                return 2
            return await _run(producer, sessions, args, plan, where)
    except RedstreamError:
        raise  # Redis errors (a ConnectionError among them): main() prints them
    except _database_errors() as exc:
        print(f"aioredstream: error: database: {_one_line(exc)}", file=sys.stderr)
        await _driver_threads_ended(threads_before)
        return 1
    finally:
        await completed(engine.dispose())


async def _run(
    producer: Producer, sessions: Any, args: argparse.Namespace, plan: Plan, where: Any
) -> int:
    from ..integrations._backfill import backfill, load_checkpoint

    label = f"{plan.table} to {_streams_of(plan, args.stream)}"
    if args.resume:
        saved = await load_checkpoint(producer, plan)
        if saved is not None and saved.finished:
            print(f"the backfill of {label} had finished ({saved.rows} rows): nothing to resume")
            return 0
        if saved is not None:
            print(f"resuming after key {list(saved.key or ())} ({saved.rows} rows queued before)")
    display = ProgressDisplay(sys.stderr, tty=sys.stderr.isatty(), label="backfill")
    started = time.monotonic()
    try:
        rows = await backfill(
            producer,
            sessions,
            plan.model,
            batch_size=args.batch_size,
            where=where,
            progress=display,
            resume=args.resume,
            stream=args.stream,
        )
    except asyncio.CancelledError:
        display.close()
        print("interrupted: run again with --resume to continue", file=sys.stderr)
        raise
    display.close()
    print(f"queued {rows} rows of {label} in {time.monotonic() - started:.1f} s")
    return 0


def _where(sql: str | None) -> Any:
    from sqlalchemy import text

    return None if sql is None else text(sql)


def _plan(producer: Producer, sessions: Any, args: argparse.Namespace, where: Any) -> Plan:
    from ..integrations._backfill_plan import make_plan

    return make_plan(
        producer, sessions, args.model, args.batch_size, where, None, args.resume, args.stream
    )


async def _reachable(engine: AsyncEngine, args: argparse.Namespace, plan: Plan, where: Any) -> bool:
    """Raise a database error if the table cannot be read; ``False`` (usage error printed)
    when only ``--where`` is refused."""
    from sqlalchemy import literal, select
    from sqlalchemy.exc import DBAPIError

    probe = select(literal(1)).select_from(plan.model).limit(1)
    async with engine.connect() as conn:
        await conn.execute(probe)
        if where is None:
            return True
        try:
            await conn.execute(probe.where(where))
        except DBAPIError as exc:
            args.parser.print_usage(sys.stderr)
            print(f"{args.parser.prog}: error: argument --where: {_one_line(exc)}", file=sys.stderr)
            return False
    return True


def _streams_of(plan: Plan, stream: str | None) -> str:
    if stream is not None:
        return stream
    if plan.spec.name_of is not None:
        return "the streams its rows name"
    if plan.spec.shards:
        return f"{plan.stream}-0..{plan.stream}-{plan.spec.shards - 1}"
    return plan.stream


async def _driver_threads_ended(before: set[threading.Thread]) -> None:
    """Wait (1 s at most) for aiosqlite's threads this command started.

    aiosqlite stops a connection that failed to open without waiting for its thread,
    which then reports to an event loop that ``asyncio.run()`` may have closed: the
    thread dies printing "Event loop is closed" under our one-line error.
    """
    threads = [
        thread
        for thread in threading.enumerate()
        if thread not in before and thread.name.endswith("(_connection_worker_thread)")
    ]

    def join() -> None:
        for thread in threads:
            thread.join(1.0)

    if threads:
        await anyio.to_thread.run_sync(join)


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)  # a DBAPIError: the driver's own message
    text = str(orig if orig is not None else exc) or type(exc).__name__
    return text.strip().splitlines()[0]


def _database_errors() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import SQLAlchemyError

    return (SQLAlchemyError, OSError, TimeoutError)
