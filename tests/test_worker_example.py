"""examples/worker.py end to end: the app writes, the workers keep the search index in sync."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from examples.fastapi_app import Product, Settings, make_engine
from examples.worker import SearchIndex, WorkerSettings, run_workers
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aioredstream import Producer

from .helpers import eventually

NS = "shop"
STREAM = f"{NS}:redstream:stream:products"
WAIT_S = 30.0  # a deadline for what must happen, not a speed check


@pytest.fixture
async def sessions(shop_settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Untracked sessions on the app's database: the test's view of the truth."""
    engine = make_engine(shop_settings)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


async def for_sale(sessions: async_sessionmaker[AsyncSession]) -> dict[int, dict[str, Any]]:
    """What the index must hold: the active products, as the handler writes them."""
    async with sessions() as session:
        rows = await session.scalars(select(Product).where(Product.active.is_(True)))
        return {p.id: {"name": p.name, "price_cents": p.price_cents} for p in rows}


async def test_index_follows_creates_updates_deletes_and_bulk_updates(
    shop: httpx.AsyncClient,
    shop_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    client: Redis,
    tmp_path: Path,
) -> None:
    config = WorkerSettings(
        shop_settings, index_path=str(tmp_path / "index.json"), trim_interval_s=0.1, block_s=0.2
    )
    index = SearchIndex(config.index_path)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_workers, config, index)
        for name, price in [("desk lamp", 1999), ("floor lamp", 4999), ("mug", 450), ("pen", 99)]:
            created = await shop.post("/products", json={"name": name, "price_cents": price})
            assert created.status_code == 201, created.text
        assert (await shop.patch("/products/1", json={"price_cents": 1499})).is_success
        assert (await shop.patch("/products/3", json={"name": "tea mug"})).is_success
        assert (await shop.delete("/products/2")).status_code == 204
        deactivated = await shop.post("/products/deactivate", params={"below_cents": 100})
        assert deactivated.json() == {"deactivated": [4]}  # pen leaves the index
        expected = await for_sale(sessions)
        assert sorted(expected) == [1, 3]

        async def synced() -> bool:
            return index.docs == expected

        async def trimmed() -> bool:
            return int(await client.xlen(STREAM)) == 0

        await eventually(synced, "the index matches the database", timeout_s=WAIT_S)
        await eventually(
            trimmed, "the trimmer emptied the stream the indexer read", timeout_s=WAIT_S
        )
        tg.cancel_scope.cancel()
    assert index.docs[1] == {"name": "desk lamp", "price_cents": 1499}
    assert index.search("lamp") == [1]
    assert index.search("MUG") == [3]
    assert SearchIndex(config.index_path).docs == expected  # saved to the file too
    assert await client.exists(f"{NS}:redstream:lock:consumer:products:indexer") == 0


async def test_crash_between_commit_and_queue_is_repaired_by_the_delayer(
    shop: httpx.AsyncClient,
    shop_settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    client: Redis,
    tmp_path: Path,
) -> None:
    # What an app process leaves when it dies after the commit, before the queue
    # message: the row, and the delay message written at the flush. No queue message.
    producer = Producer(client, namespace=NS)
    async with sessions() as session:
        product = Product(name="orphan", price_cents=700)
        session.add(product)
        await session.flush()
        await producer.delay(product)
        await session.commit()
    assert await client.xlen(STREAM) == 0
    assert await client.xlen(STREAM + ".delay") == 1
    # One more through the app, queued normally, to show both paths end in the index.
    assert (await shop.post("/products", json={"name": "normal", "price_cents": 5})).is_success

    config = WorkerSettings(
        shop_settings, index_path=str(tmp_path / "index.json"), delay_s=0.5, block_s=0.2
    )
    index = SearchIndex(config.index_path)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_workers, config, index)

        async def repaired() -> bool:
            return product.id in index.docs

        await eventually(
            repaired, "the delayer replayed the orphan and the indexer took it", timeout_s=WAIT_S
        )
        await eventually(
            lambda: _equal(index, sessions), "the index matches the database", timeout_s=WAIT_S
        )
        tg.cancel_scope.cancel()
    assert index.docs[product.id] == {"name": "orphan", "price_cents": 700}
    assert await client.xlen(STREAM + ".delay") == 0
    assert index.search("orphan") == [product.id]


async def _equal(index: SearchIndex, sessions: async_sessionmaker[AsyncSession]) -> bool:
    return index.docs == await for_sale(sessions)
