"""Consumer, delayer, trimmer and lock on a real 3-primary/3-replica cluster (quick tests)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from aioredstream import (
    ArgumentError,
    Consumer,
    Delayer,
    Lock,
    Message,
    Producer,
    Trimmer,
    max_consumer_id,
    max_stream_id,
    shard_of,
    stream_size,
)

from ..helpers import User, eventually
from .test_cluster import SHARDS, Item

FAST: dict[str, Any] = {"block": 0.05, "backoff": 0.05}


def test_workers_use_hash_tags_on_a_cluster_and_refuse_the_ruby_layout(
    cluster_client: RedisCluster,
) -> None:
    consumer = Consumer(cluster_client, stream_name="users", name="indexer")
    assert consumer.keys.hash_tags is True
    assert consumer.lock.key == "redstream:lock:{consumer:users:indexer}"
    builders: list[Any] = [
        lambda: Consumer(cluster_client, stream_name="users", name="x", hash_tags=False),
        lambda: Delayer(cluster_client, stream_name="users", delay=1, hash_tags=False),
        lambda: Trimmer(cluster_client, stream_name="users", consumer_names=["x"], hash_tags=False),
        lambda: Lock(cluster_client, "some-lock", hash_tags=False),
    ]
    for build in builders:
        with pytest.raises(ArgumentError, match="hash_tags=False on a RedisCluster"):
            build()


def test_the_delayers_keys_share_one_slot(cluster_client: RedisCluster) -> None:
    delayer = Delayer(cluster_client, stream_name="users", delay=1)
    keys = [delayer._stream_key, delayer._delay_key, delayer._offset_key]
    assert keys[2] == "redstream:offset:{users}.delay:delayer"
    assert len({key_slot(key.encode()) for key in keys}) == 1
    lock = delayer.consumer.lock
    assert key_slot(lock.key.encode()) == key_slot(lock.notify_key.encode())


async def test_one_consumer_per_shard_sees_every_record(cluster_client: RedisCluster) -> None:
    items = [Item(i) for i in range(300)]
    async with Producer(cluster_client).bulk(items):
        pass
    seen: dict[str, list[int]] = {}
    for name in Item.redstream_names():
        consumer = Consumer(cluster_client, stream_name=name, name="indexer", **FAST)

        async def handle(messages: list[Message], name: str = name) -> None:
            seen.setdefault(name, []).extend(m.payload["id"] for m in messages)

        while await consumer.run_once(handle):
            pass
        assert await consumer.max_committed_id() == await max_stream_id(cluster_client, name)
    for name, ids in seen.items():
        shard = int(name.rsplit("-", 1)[1])
        assert sorted(ids) == sorted(i.id for i in items if shard_of(i.id, SHARDS) == shard)
    assert sum(len(ids) for ids in seen.values()) == len(items)


async def test_a_running_consumer_gets_records_written_while_it_blocks(
    cluster_client: RedisCluster,
) -> None:
    consumer = Consumer(cluster_client, stream_name="users", name="indexer", **FAST)
    seen: list[int] = []

    async def handle(messages: list[Message]) -> None:
        seen.extend(m.payload["id"] for m in messages)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run, handle)
        producer = Producer(cluster_client)
        for i in range(20):
            await producer.queue(User(i))

        async def all_seen() -> bool:
            return sorted(seen) == list(range(20))

        await eventually(all_seen)
        tg.cancel_scope.cancel()
    assert await cluster_client.exists(consumer.lock.key) == 0  # released on cancel


async def test_the_delayer_repairs_a_crash_between_commit_and_queue(
    cluster_client: RedisCluster,
) -> None:
    producer = Producer(cluster_client, namespace="shop")
    delay_id = await producer.delay(User(1))  # the writer "dies" before queue()
    queued_id = await producer.delay(User(2))
    await producer.queue(User(2), delay_message_id=queued_id)  # this one finished

    delayer = Delayer(cluster_client, stream_name="users", delay=0, namespace="shop", **FAST)
    assert await delayer.run_once() == 1
    keys = delayer.consumer.keys
    rows: Any = await cluster_client.xrange(keys.stream("users"))
    assert sorted(fields[b"payload"] for _, fields in rows) == [b'{"id":1}', b'{"id":2}']
    assert await cluster_client.xlen(keys.delay_stream("users")) == 0
    committed = await max_consumer_id(
        cluster_client, stream_name="users.delay", consumer_name="delayer", namespace="shop"
    )
    assert committed == delay_id


async def test_the_trimmer_trims_what_every_consumer_committed(
    cluster_client: RedisCluster,
) -> None:
    await Producer(cluster_client).bulk_queue([User(i) for i in range(10)])
    fast = Consumer(cluster_client, stream_name="users", name="fast", batch_size=10, **FAST)
    slow = Consumer(cluster_client, stream_name="users", name="slow", batch_size=4, **FAST)

    async def ignore(messages: list[Message]) -> None:
        pass

    assert await fast.run_once(ignore) == 10
    assert await slow.run_once(ignore) == 4
    trimmer = Trimmer(cluster_client, stream_name="users", consumer_names=["fast", "slow"])
    assert await trimmer.run_once() == 4
    assert await stream_size(cluster_client, "users") == 6
    assert await slow.run_once(ignore) == 4  # resumes after its offset: nothing was lost


async def test_a_standby_takes_over_at_once_when_the_holder_releases(
    cluster_client: RedisCluster,
) -> None:
    holder = Lock(cluster_client, "consumer:users:indexer")
    standby = Lock(cluster_client, "consumer:users:indexer")
    release = anyio.Event()
    woken: list[bool] = []

    async def hold() -> None:
        await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder.acquire, hold)

        async def held() -> bool:
            return bool(await cluster_client.exists(holder.key))

        await eventually(held)
        assert not await standby.try_acquire()

        async def wait() -> None:
            # 60 s: only the release's notify (not the 5 s expiry) can end this in time.
            woken.append(await standby.wait(60))

        tg.start_soon(wait)
        await anyio.sleep(0.1)  # the standby is blocked in BRPOP on the key's node
        release.set()
    assert woken == [True]
    assert await standby.try_acquire()
    await standby.release()
