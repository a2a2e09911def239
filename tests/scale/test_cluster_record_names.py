"""Per-record stream names on a RedisCluster: records grouped per node, ids in order."""

from __future__ import annotations

from redis.asyncio.cluster import RedisCluster

from aioredstream import Keys, Producer, shard_of

from ..test_record_names import SHARDS, Product, Tenant
from .test_cluster import stream_map

KEYS = Keys(hash_tags=True)


async def test_per_record_names_on_a_cluster_keep_each_records_id(
    cluster_client: RedisCluster,
) -> None:
    records = [Product(i) for i in range(300)]
    producer = Producer(cluster_client, slice_size=70)
    ids = await producer.bulk_delay(records)
    streams = {
        n: await stream_map(cluster_client, KEYS.delay_stream(f"products-{n}"))
        for n in range(SHARDS)
    }
    for record, message_id in zip(records, ids, strict=True):
        assert streams[shard_of(record.id, SHARDS)][message_id] == {"id": record.id}
    await producer.bulk_queue(records, delay_message_ids=ids)
    for n in range(SHARDS):
        queued = await stream_map(cluster_client, KEYS.stream(f"products-{n}"))
        expected = [r.id for r in records if shard_of(r.id, SHARDS) == n]
        assert [p["id"] for p in queued.values()] == expected
        assert await cluster_client.xlen(KEYS.delay_stream(f"products-{n}")) == 0


async def test_single_calls_with_per_record_names_on_a_cluster(
    cluster_client: RedisCluster,
) -> None:
    producer = Producer(cluster_client)
    for tenant in ("acme", "globex", "initech", "umbrella"):
        record = Tenant(1, tenant)
        delay_id = await producer.delay(record)
        await producer.queue(record, delay_message_id=delay_id)
        stream = KEYS.stream(f"{tenant}-orders")
        assert list((await stream_map(cluster_client, stream)).values()) == [{"id": 1}]
        assert await cluster_client.xlen(KEYS.delay_stream(f"{tenant}-orders")) == 0
