"""SQLAlchemy user's path: table-named streams, per-row streams, errors after commit,
one tracker per maker. Against SQLite and PostgreSQL, Redis and Valkey."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import Column, Integer, MetaData, Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase

from aioredstream import ArgumentError, Model, PayloadError, Producer
from aioredstream.integrations.sqlalchemy import track

from .helpers import entries
from .sql import Account, BlogPost, Database, Shop, registry

Maker = async_sessionmaker[AsyncSession]


async def payloads(client: Redis, stream: str) -> list[Any]:
    return [payload for _, payload in await entries(client, f"redstream:stream:{stream}")]


@pytest.fixture
async def engine(database: Database) -> AsyncIterator[AsyncEngine]:
    engine = database.engine()
    yield engine
    await engine.dispose()


@pytest.fixture
def producer(client: Redis) -> Producer:
    return Producer(client, registry=registry())


def test_a_model_with_a_table_names_its_stream_after_the_table() -> None:
    assert BlogPost.redstream_name() == "posts"  # not "blog_posts"
    assert Account.redstream_name() == "accounts"

    class ImperativeBase(DeclarativeBase):
        pass

    class Legacy(Model, ImperativeBase):
        __table__ = Table("legacy_items", MetaData(), Column("id", Integer, primary_key=True))

    class ProductCategory(Model):  # no table: the gem's inflection of the class name
        pass

    assert Legacy.redstream_name() == "legacy_items"
    assert ProductCategory.redstream_name() == "product_categories"


async def test_tracked_rows_of_a_table_named_model_go_to_the_tables_stream(
    engine: AsyncEngine, producer: Producer, client: Redis
) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    tracker = track(producer, models=[BlogPost], sessions=maker)
    try:
        async with maker.begin() as session:
            session.add(BlogPost(title="hello"))
    finally:
        tracker.remove()
    assert await payloads(client, "posts") == [{"id": 1}]
    assert await payloads(client, "posts.delay") == []
    assert await payloads(client, "blog_posts") == []


async def test_tracked_rows_that_name_their_stream_keep_delay_and_queue_together(
    engine: AsyncEngine, producer: Producer, client: Redis
) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    tracker = track(producer, models=[Shop], sessions=maker)
    try:
        async with maker.begin() as session:
            session.add_all([Shop(region="eu"), Shop(region="us"), Shop(region="eu")])
    finally:
        tracker.remove()
    assert await payloads(client, "shops-eu") == [{"id": 1}, {"id": 3}]
    assert await payloads(client, "shops-us") == [{"id": 2}]
    assert await client.xlen("redstream:stream:shops-eu.delay") == 0
    assert await client.xlen("redstream:stream:shops-us.delay") == 0


async def test_a_payload_read_after_an_expiring_commit_says_what_to_do(
    engine: AsyncEngine, producer: Producer, client: Redis
) -> None:
    maker = async_sessionmaker(engine)  # expire_on_commit=True, SQLAlchemy's default
    async with maker() as session:
        account = Account(name="a")
        session.add(account)
        await session.commit()  # expires account.id
    for call in (producer.delay, producer.queue):
        with pytest.raises(PayloadError) as caught:
            await call(account)  # the session is closed: the instance is detached
        message = str(caught.value)
        assert "Instance <Account" in message
        assert "is not bound to a Session" in message
        assert "before commit()" in message
        assert "expire_on_commit=False" in message
        assert "not JSON-serialisable" not in message
    assert await client.keys("*") == []


async def test_track_twice_on_one_maker_is_refused_until_remove(
    engine: AsyncEngine, producer: Producer, client: Redis
) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    for restart in range(3):  # an app built three times in one process (as tests do)
        tracker = track(producer, models=[Account], sessions=maker)
        with pytest.raises(ArgumentError, match=r"already tracked .* remove\(\)"):
            track(producer, models=[Account], sessions=maker)
        async with maker.begin() as session:
            session.add(Account(name=f"restart {restart}"))
        tracker.remove()  # the lifespan's shutdown
    assert await payloads(client, "accounts") == [{"id": 1}, {"id": 2}, {"id": 3}]
    everywhere = track(producer, models=[Account])
    try:
        with pytest.raises(ArgumentError, match="already tracked"):
            track(producer, models=[Account], sessions=None)
    finally:
        everywhere.remove()
