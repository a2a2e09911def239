"""The worker side of examples/fastapi_app.py: a toy search index kept in sync with its database.

Run it next to the app, from the repository root, with the same settings::

    REDIS_URL=redis://127.0.0.1:6379/0 DATABASE_URL=sqlite+aiosqlite:///shop.db \\
        python -m examples.worker

One anyio task group runs the three workers of the ``products`` stream:

- the consumer ``indexer``: a message only says which product changed (``{"id": 5}``),
  so the handler re-reads those rows from the database and upserts their index
  entries, or deletes them when the row is gone or inactive (the index lists what is
  for sale). Re-reading makes replays and out-of-order messages harmless: the index
  always ends at the row's current state;
- the delayer: a product committed by an app process that died before its queue
  message leaves a delay message; after ``REDSTREAM_DELAY`` seconds (default 300) it
  reaches the stream and the indexer picks the product up;
- the trimmer: deletes what the indexer has committed.

Settings: those of the app (``REDIS_URL``, ``DATABASE_URL``, ``DATABASE_SCHEMA``,
``REDSTREAM_NAMESPACE``) plus ``INDEX_PATH`` (the JSON file the index is saved to,
default ``search_index.json``), ``REDSTREAM_DELAY`` and ``REDSTREAM_TRIM_INTERVAL``
(seconds). Start several copies for failover: one indexer works, the others stand by.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from examples.fastapi_app import Product, Settings, make_engine
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from aioredstream import Consumer, Delayer, Message, Trimmer
from aioredstream.consumer import Handler

STREAM = Product.redstream_name()  # "products"
CONSUMER = "indexer"

logger = logging.getLogger("examples.worker")


@dataclass
class WorkerSettings:
    shop: Settings = field(default_factory=Settings)
    index_path: str = "search_index.json"
    delay_s: float = 300.0
    trim_interval_s: float = 30.0
    block_s: float = 5.0  # how long one read of the stream waits for new entries

    @classmethod
    def from_env(cls) -> WorkerSettings:
        return cls(
            shop=Settings.from_env(),
            index_path=os.environ.get("INDEX_PATH", cls.index_path),
            delay_s=float(os.environ.get("REDSTREAM_DELAY", cls.delay_s)),
            trim_interval_s=float(os.environ.get("REDSTREAM_TRIM_INTERVAL", cls.trim_interval_s)),
        )


class SearchIndex:
    """Product documents by id, saved to a JSON file after every batch (a toy search engine)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.docs: dict[int, dict[str, Any]] = {}
        if self.path.exists():
            self.docs = {int(k): v for k, v in json.loads(self.path.read_text()).items()}

    def upsert(self, product: Product) -> None:
        self.docs[product.id] = {"name": product.name, "price_cents": product.price_cents}

    def delete(self, product_id: int) -> None:
        self.docs.pop(product_id, None)

    def search(self, text: str) -> list[int]:
        """Ids of the products whose name contains every word of ``text``, cheapest first."""
        words = text.lower().split()
        hits = [
            (doc["price_cents"], product_id)
            for product_id, doc in self.docs.items()
            if all(word in doc["name"].lower() for word in words)
        ]
        return [product_id for _, product_id in sorted(hits)]

    async def save(self) -> None:
        """Write a temporary file and rename it over the index: readers never see half a file."""
        data = json.dumps({str(k): v for k, v in sorted(self.docs.items())})
        tmp = self.path.with_name(self.path.name + ".tmp")
        await anyio.Path(tmp).write_text(data)
        await anyio.Path(tmp).replace(self.path)


def index_handler(sessions: async_sessionmaker[AsyncSession], index: SearchIndex) -> Handler:
    """The consumer's handler: re-read the batch's products and bring their entries up to date."""

    async def reindex(messages: list[Message]) -> None:
        ids = sorted({int(message.payload["id"]) for message in messages})
        async with sessions() as session:
            rows = await session.scalars(select(Product).where(Product.id.in_(ids)))
            found = {product.id: product for product in rows}
        for product_id in ids:
            product = found.get(product_id)
            if product is None or not product.active:
                index.delete(product_id)
            else:
                index.upsert(product)
        await index.save()  # an error before this line: the batch is not committed, comes again
        logger.info("indexed %d products (%d in the index)", len(ids), len(index.docs))

    return reindex


async def run_workers(config: WorkerSettings, index: SearchIndex) -> None:
    """Consumer, delayer and trimmer of ``products`` in one task group, until cancelled."""
    client = Redis.from_url(config.shop.redis_url)
    engine = make_engine(config.shop)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    namespace = config.shop.namespace
    consumer = Consumer(
        client, stream_name=STREAM, name=CONSUMER, namespace=namespace, block=config.block_s
    )
    delayer = Delayer(
        client, stream_name=STREAM, delay=config.delay_s, namespace=namespace, block=config.block_s
    )
    trimmer = Trimmer(
        client,
        stream_name=STREAM,
        consumer_names=[CONSUMER],
        interval=config.trim_interval_s,
        namespace=namespace,
    )
    try:
        async with anyio.create_task_group() as workers:
            workers.start_soon(consumer.run, index_handler(sessions, index))
            workers.start_soon(delayer.run)
            workers.start_soon(trimmer.run)
    finally:
        with anyio.CancelScope(shield=True):
            await engine.dispose()
            await client.aclose()


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = WorkerSettings.from_env()
    index = SearchIndex(config.index_path)
    logger.info("indexing stream %s into %s; Ctrl-C stops", STREAM, config.index_path)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_workers, config, index)
            async for _ in signals:  # stop cleanly: the workers release their locks
                tg.cancel_scope.cancel()
                break


if __name__ == "__main__":
    anyio.run(main)
