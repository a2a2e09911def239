"""Helpers for the track() tests: tracked makers, and what the server's streams hold."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, cast

from redis.asyncio import Redis
from sqlalchemy import Table, func, insert, select
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from aioredstream import Producer
from aioredstream.integrations.sqlalchemy import track

from ..helpers import decoded, entries
from ..sql import Account, Note

Maker = async_sessionmaker[AsyncSession]
Streams = dict[str, list[Any]]
ACCOUNTS = cast(Table, Account.__table__)
NOTES = cast(Table, Note.__table__)


async def payloads(client: Redis, stream: str) -> list[Any]:
    return [payload for _, payload in await entries(client, f"redstream:stream:{stream}")]


async def streams(client: Redis) -> Streams:
    """Every key of the server, each a stream under ``redstream:stream:``, with its payloads."""
    keys = sorted(decoded(key) for key in await client.keys("*"))
    assert all(key.startswith("redstream:stream:") for key in keys), keys
    names = [key.removeprefix("redstream:stream:") for key in keys]
    return {name: await payloads(client, name) for name in names}


@asynccontextmanager
async def tracked(
    engine: AsyncEngine,
    producer: Producer,
    *models: type,
    expire_on_commit: bool = True,
) -> AsyncIterator[Maker]:
    """A session maker on ``engine`` whose sessions ``producer`` tracks, untracked after
    (``expire_on_commit`` defaults to SQLAlchemy's own default)."""
    maker = async_sessionmaker(engine, expire_on_commit=expire_on_commit)
    tracker = track(producer, models=list(models), sessions=maker)
    try:
        yield maker
    finally:
        tracker.remove()


async def count_accounts(engine: AsyncEngine) -> int:
    """Read through another connection: sees committed rows only."""
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(Account))).scalar_one())


async def seed(engine: AsyncEngine, count: int, *, notes: bool = False) -> None:
    """``count`` accounts (ids 1..count from the database's own sequence, names a1..),
    written around the tracker; with ``notes``, one note per account (same id)."""
    async with engine.begin() as conn:
        for start in range(1, count + 1, 10_000):
            part = range(start, min(start + 10_000, count + 1))
            await conn.execute(insert(ACCOUNTS), [{"name": f"a{i}"} for i in part])
        if notes:
            rows = [{"account_id": i, "body": f"n{i}"} for i in range(1, count + 1)]
            await conn.execute(insert(NOTES), rows)


def cursor(result: Result[Any]) -> CursorResult[Any]:
    """What session.execute() of an INSERT, UPDATE or DELETE returns (its type says Result)."""
    assert isinstance(result, CursorResult), type(result)
    return result


def ids(messages: list[Any]) -> list[int]:
    return [message["id"] for message in messages]


async def names(engine: AsyncEngine) -> dict[int, str]:
    """Every account, read through another connection (committed rows only)."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(Account.id, Account.name))
        return {row[0]: row[1] for row in rows}


class SyncSession(Session):
    """A synchronous session class that track() is asked to follow."""


@contextmanager
def sync_tracked(producer: Producer, tmp_path: Path, names: tuple[str, ...] = ()) -> Iterator[Any]:
    """A synchronous SQLite engine with ``names`` as accounts (written before tracking),
    with `SyncSession` tracked; tracking removed and the engine disposed afterwards."""
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{tmp_path}/sync.db")
    Account.metadata.create_all(engine)
    if names:
        with engine.begin() as conn:
            conn.execute(insert(ACCOUNTS), [{"name": name} for name in names])
    tracker = track(producer, models=[Account], sessions=SyncSession)
    try:
        yield engine
    finally:
        tracker.remove()
        engine.dispose()
