"""Helpers for the track() tests: tracked makers, and what the server's streams hold."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from aioredstream import Producer
from aioredstream.integrations.sqlalchemy import track

from ..helpers import decoded, entries
from ..sql import Account

Maker = async_sessionmaker[AsyncSession]
Streams = dict[str, list[Any]]


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
