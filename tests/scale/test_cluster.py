"""The producer on a real 3-primary/3-replica Redis Cluster (quick tests, shared cluster)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import anyio
import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from aioredstream import (
    ArgumentError,
    Keys,
    Model,
    Producer,
    Registry,
    ReplicationError,
    TopologyError,
    UnsupportedError,
    shard_of,
)
from aioredstream.testing import ClusterDeployment, ServerProcess

from ..helpers import Post, User
from .conftest import open_cluster_client

SHARDS = 12


class Item(Model):
    """Sharded over 12 streams, which the cluster spreads over its 3 primaries."""

    redstream_shards = SHARDS

    def __init__(self, id: int) -> None:
        self.id = id


KEYS = Keys(hash_tags=True)


async def stream_map(client: RedisCluster, key: str) -> dict[str, Any]:
    rows: Any = await client.xrange(key)
    return {raw_id.decode(): json.loads(fields[b"payload"]) for raw_id, fields in rows}


def node_name(server: ServerProcess) -> str:
    return f"{server.host}:{server.port}"


def owner(deployment: ClusterDeployment, key: str) -> ServerProcess:
    """The primary that claims the key's slot in its own view (always current for itself)."""
    slot = key_slot(key.encode())
    for primary in deployment.primaries():
        with redis.Redis(host=primary.host, port=primary.port) as conn:
            for low, high, node, *_ in conn.execute_command("CLUSTER", "SLOTS"):
                if int(low) <= slot <= int(high) and int(node[1]) == primary.port:
                    return primary
    raise AssertionError(f"no primary owns slot {slot}")


def test_hash_tags_are_on_by_default_on_a_cluster_only(
    cluster_client: RedisCluster, client: Redis
) -> None:
    assert Producer(cluster_client).keys.hash_tags is True
    assert Producer(client).keys.hash_tags is False
    assert Producer(client, hash_tags=True).keys.stream("users") == "redstream:stream:{users}"


def test_the_ruby_layout_is_refused_on_a_cluster(cluster_client: RedisCluster) -> None:
    with pytest.raises(ArgumentError, match="hash_tags=False on a RedisCluster"):
        Producer(cluster_client, hash_tags=False)


async def test_bulk_delay_returns_each_records_own_id_across_nodes(
    cluster_client: RedisCluster,
) -> None:
    items = [Item(i) for i in range(300)]
    ids = await Producer(cluster_client).bulk_delay(items)
    assert len(ids) == len(items)
    streams = {
        shard: await stream_map(cluster_client, KEYS.delay_stream(f"items-{shard}"))
        for shard in range(SHARDS)
    }
    for item, message_id in zip(items, ids, strict=True):
        assert streams[shard_of(item.id, SHARDS)][message_id] == {"id": item.id}
    assert sum(len(s) for s in streams.values()) == len(items)


async def test_writes_reach_every_primary(
    cluster: ClusterDeployment, cluster_client: RedisCluster
) -> None:
    await Producer(cluster_client, slice_size=7).bulk_delay([Item(i) for i in range(200)])
    for primary in cluster.primaries():
        with redis.Redis(host=primary.host, port=primary.port) as conn:
            assert int(conn.dbsize()) > 0, f"nothing written on {node_name(primary)}"


async def test_bulk_queues_and_deletes_its_delay_messages_on_a_cluster(
    cluster_client: RedisCluster,
) -> None:
    items = [Item(i) for i in range(100)]
    async with Producer(cluster_client, wait=1).bulk(items) as ids:
        assert len(ids) == 100
    for shard in range(SHARDS):
        queued = await stream_map(cluster_client, KEYS.stream(f"items-{shard}"))
        expected = sorted(i.id for i in items if shard_of(i.id, SHARDS) == shard)
        assert sorted(p["id"] for p in queued.values()) == expected
        assert await cluster_client.xlen(KEYS.delay_stream(f"items-{shard}")) == 0


async def test_single_record_calls_on_a_cluster(cluster_client: RedisCluster) -> None:
    producer = Producer(cluster_client, namespace="shop", wait=1)
    delay_id = await producer.delay(User(7))
    await producer.queue(User(7), delay_message_id=delay_id)
    keys = Keys("shop", hash_tags=True)
    assert list((await stream_map(cluster_client, keys.stream("users"))).values()) == [{"id": 7}]
    assert await cluster_client.xlen(keys.delay_stream("users")) == 0


async def test_wait_shortfall_names_every_node_that_received_writes(
    cluster: ClusterDeployment, cluster_client: RedisCluster
) -> None:
    # Each primary has 1 replica; 1 s leaves it time to acknowledge on a busy machine.
    producer = Producer(cluster_client, wait=2, wait_timeout=1)
    with pytest.raises(ReplicationError) as info:
        await producer.bulk_delay([Item(i) for i in range(120)])
    assert sorted(info.value.nodes) == sorted(node_name(p) for p in cluster.primaries())
    assert (info.value.acknowledged, info.value.required) == (1, 2)
    for name in info.value.nodes:
        assert name in str(info.value)


async def test_wait_runs_only_on_the_nodes_that_received_writes(
    cluster: ClusterDeployment, cluster_client: RedisCluster
) -> None:
    producer = Producer(cluster_client, wait=2, wait_timeout=0.2)
    with pytest.raises(ReplicationError) as info:
        await producer.bulk_delay([User(1), User(2)])  # one stream: one node
    assert info.value.nodes == (node_name(owner(cluster, KEYS.stream("users"))),)


async def test_a_moved_slot_is_followed_within_the_call(
    cluster: ClusterDeployment, cluster_client: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "aioredstream.cluster")
    producer = Producer(cluster_client)
    await producer.delay(Post(1))  # the producer has used the slot map
    slot = key_slot(KEYS.stream("users").encode())
    source = owner(cluster, KEYS.stream("users"))
    target = next(p for p in cluster.primaries() if p is not source)
    migrate_empty_slot(cluster, slot, source, target)

    first = await producer.delay(User(1))  # the source answers MOVED: sent again to target
    assert "delay: 1 record(s) redirected" in caplog.text
    second = await producer.delay(User(2))  # the slot map was re-read
    assert read_on(target, KEYS.delay_stream("users")) == [(first, {"id": 1}), (second, {"id": 2})]
    with admin(source) as src:
        assert int(src.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)) == 0


async def test_an_ask_redirect_mid_migration_is_followed_with_asking(
    cluster: ClusterDeployment, cluster_client: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "aioredstream.cluster")
    stream = KEYS.stream("posts")
    slot = key_slot(stream.encode())
    source = owner(cluster, stream)
    target = next(p for p in cluster.primaries() if p is not source)
    source_id, target_id = cluster.ids[source.port], cluster.ids[target.port]
    with admin(source) as src, admin(target) as dst:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    try:
        # New keys of a migrating slot get ASK: both halves (XADD, and XADD + XDEL
        # per record) must land on the importing node.
        async with Producer(cluster_client, wait=1).bulk([Post(1), Post(2)]) as ids:
            assert len(ids) == 2
        assert "delay: 2 record(s) redirected" in caplog.text
        assert "queue: 2 record(s) redirected" in caplog.text
        with admin(target) as dst:
            dst.execute_command("ASKING")
            assert dst.xlen(stream) == 2
            dst.execute_command("ASKING")
            assert dst.xlen(KEYS.delay_stream("posts")) == 0
    finally:
        with admin(source) as src, admin(target) as dst:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


async def test_endless_redirects_end_in_a_topology_error(
    cluster: ClusterDeployment, cluster_client: RedisCluster
) -> None:
    # A half-configured migration: the source says ASK target, the target (not
    # importing) says MOVED back to the source, for ever.
    stream = KEYS.stream("ping-pong")
    slot = key_slot(stream.encode())
    source = owner(cluster, stream)
    target = next(p for p in cluster.primaries() if p is not source)
    with admin(source) as src:
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", cluster.ids[target.port])
    registry = Registry()
    registry.register(dict, name="ping-pong")
    try:
        with pytest.raises(TopologyError, match="still redirected after 3 attempts"):
            await Producer(cluster_client, registry=registry).delay({"id": 1})
    finally:
        with admin(source) as src:
            src.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
    assert await Producer(cluster_client, registry=registry).delay({"id": 2})


async def test_ids_are_str_with_decode_responses(cluster: ClusterDeployment) -> None:
    client = await open_cluster_client(cluster, decode_responses=True)
    try:
        ids = await Producer(client).bulk_delay([Item(1), Item(2)])
        assert all(isinstance(i, str) for i in ids)
    finally:
        await client.aclose()


def admin(server: ServerProcess) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port)


def read_on(server: ServerProcess, key: str, *, check_owner: bool = True) -> list[tuple[str, Any]]:
    with admin(server) as conn:
        if not check_owner and not int(conn.exists(key)):
            return []
        rows: Any = conn.xrange(key)
    return [(r[0].decode(), json.loads(r[1][b"payload"])) for r in rows]


def migrate_empty_slot(
    cluster: ClusterDeployment, slot: int, source: ServerProcess, target: ServerProcess
) -> None:
    """The documented resharding steps, for a slot without keys (nothing to MIGRATE)."""
    source_id, target_id = cluster.ids[source.port], cluster.ids[target.port]
    with admin(source) as src, admin(target) as dst:
        assert int(src.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)) == 0
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


async def test_wait_aof_on_a_cluster_asks_a_node_whether_it_can(
    cluster: ClusterDeployment, cluster_client: RedisCluster
) -> None:
    primary = cluster.primaries()[0]
    with redis.Redis(host=primary.host, port=primary.port, decode_responses=True) as conn:
        info: Any = conn.info("server")
    version = tuple(int(part) for part in str(info["redis_version"]).split(".")[:2])
    producer = Producer(cluster_client, wait_aof=(0, 0))
    if "valkey_version" in info or version >= (7, 2):
        assert len(await producer.bulk_delay([Item(i) for i in range(30)])) == 30
    else:
        with pytest.raises(UnsupportedError, match="WAITAOF"):
            await producer.bulk_delay([Item(1)])


async def test_cancelling_a_blocked_wait_frees_every_node_connection(
    cluster_client: RedisCluster,
) -> None:
    producer = Producer(cluster_client, wait=2, wait_timeout=0)  # 1 replica each: blocks
    with anyio.move_on_after(0.5) as scope:
        await producer.bulk_delay([Item(i) for i in range(60)])
    assert scope.cancelled_caught
    for node in cluster_client.get_primaries():
        assert len(node._free) == len(node._connections), node.name  # none checked out
    assert len(await Producer(cluster_client).bulk_delay([Item(1), Item(2)])) == 2


async def test_ten_thousand_concurrent_handlers_on_a_default_cluster_client(
    cluster_client: RedisCluster,
) -> None:
    # A client built with defaults allows 100 connections per node: single calls share
    # per-node pipelines, so however many handlers call at once, none runs out.
    producer = Producer(cluster_client)

    async def handler(n: int) -> None:
        message_id = await producer.delay(Item(n))
        await asyncio.sleep(0)  # the handler's own work
        await producer.queue(Item(n), message_id)

    results = await asyncio.gather(*(handler(n) for n in range(10_000)), return_exceptions=True)
    assert [r for r in results if r is not None] == []
    names = Item.redstream_names()
    assert sum([await cluster_client.xlen(KEYS.stream(name)) for name in names]) == 10_000
    assert sum([await cluster_client.xlen(KEYS.delay_stream(name)) for name in names]) == 0
