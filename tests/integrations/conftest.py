"""Fixtures of the SQLAlchemy integration tests: an engine on the test's database, a
producer on the test's server, and a maker whose sessions it tracks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from aioredstream import Producer

from ..sql import Account, Database, Note, registry
from .tracking import Maker, tracked


@pytest.fixture
async def engine(database: Database) -> AsyncIterator[AsyncEngine]:
    engine = database.engine()
    yield engine
    await engine.dispose()


@pytest.fixture
def producer(client: Redis) -> Producer:
    return Producer(client, registry=registry())


@pytest.fixture
async def maker(engine: AsyncEngine, producer: Producer) -> AsyncIterator[Maker]:
    async with tracked(engine, producer, Account, Note, expire_on_commit=False) as maker:
        yield maker
