"""backfill() on a Redis Cluster: hash-tagged streams and checkpoint, resumed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from aioredstream import Producer
from aioredstream._sharding import shard_of
from aioredstream.integrations.sqlalchemy import backfill

from ..integrations.backfill_models import Base, Shard


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/cluster.db")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.execute(insert(Shard), [{"id": i} for i in range(1, 101)])
    yield async_sessionmaker(engine)
    await engine.dispose()


async def test_sharded_backfill_on_a_cluster_resumes_from_its_tagged_checkpoint(
    cluster_client: RedisCluster, sessions: async_sessionmaker[AsyncSession]
) -> None:
    producer = Producer(cluster_client)

    def stop_after_two_batches(done: int, total: int) -> None:
        if done == 40:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        await backfill(producer, sessions, Shard, batch_size=20, progress=stop_after_two_batches)
    raw = await cluster_client.get("redstream:backfill:{bf_shards}")
    assert raw is not None
    assert json.loads(raw)["key"] == [40]
    assert await backfill(producer, sessions, Shard, batch_size=20, resume=True) == 60
    for shard in range(4):
        rows: Any = await cluster_client.xrange(f"redstream:stream:{{bf_shards-{shard}}}")
        ids = [json.loads(fields[b"payload"])["id"] for _, fields in rows]
        assert ids == [i for i in range(1, 101) if shard_of(i, 4) == shard]
