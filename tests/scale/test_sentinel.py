"""The producer behind Sentinel: a ``master_for()`` client, READONLY, and a real failover."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel

from aioredstream import (
    Keys,
    Producer,
    RedstreamError,
    ReplicationError,
    ServerConnectionError,
    TopologyError,
)
from aioredstream.testing import SentinelDeployment

from ..conftest import ClientFactory
from ..helpers import User, entries, in_use
from .conftest import close_sentinel

KEYS = Keys()


async def test_producer_works_on_a_master_for_client_with_wait(sentinel_client: Redis) -> None:
    producer = Producer(sentinel_client, wait=1)
    assert producer.keys.hash_tags is False  # Sentinel is one primary: the Ruby layout
    async with producer.bulk([User(1), User(2)]):
        pass
    delay_id = await producer.delay(User(3))
    await producer.queue(User(3), delay_message_id=delay_id)
    queued = await entries(sentinel_client, KEYS.stream("users"))
    assert [payload for _, payload in queued] == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert await sentinel_client.xlen(KEYS.delay_stream("users")) == 0
    assert await in_use(sentinel_client) == 0


async def test_a_readonly_reply_is_a_topology_error_and_drops_the_connection(
    sentinel_group: SentinelDeployment, make_client: ClientFactory
) -> None:
    # What a connection to a demoted primary sees; dropping it makes the next
    # connect ask Sentinel for the current primary.
    replica = next(s for s in sentinel_group.servers if s is not sentinel_group.primary())
    client = make_client(replica.url)
    with pytest.raises(TopologyError, match="READONLY"):
        await Producer(client).delay(User(1))
    pool: Any = client.connection_pool
    assert [c.is_connected for c in pool._available_connections] == [False]


async def wait_for_success(producer: Producer, record: Any, attempts: int = 120) -> str:
    """Retry ``delay`` while the deployment heals; the last error if it never does."""
    last: Exception | None = None
    for _ in range(attempts):
        try:
            return await producer.delay(record)
        except RedstreamError as exc:
            last = exc
            await anyio.sleep(0.25)
    raise AssertionError(f"delay never succeeded again; last error: {last!r}")


@pytest.mark.slow
async def test_failover_is_survived_with_wait_semantics_intact(
    fresh_sentinel_group: SentinelDeployment,
) -> None:
    group = fresh_sentinel_group
    sentinel = Sentinel(group.addresses)  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis-py 8.2
    client = sentinel.master_for(group.service, socket_timeout=2)
    try:
        producer = Producer(client, wait=1, wait_timeout=0.5)
        before = await producer.bulk_delay([User(i) for i in range(50)])

        old = group.primary()
        old.kill()
        # Sentinel still names the dead primary (down-after is 1 s): the call fails
        # loudly (or, had redis-py's connect retries outlasted the failover, WAIT would).
        with pytest.raises((ServerConnectionError, ReplicationError)):
            await producer.delay(User(100))
        new = group.wait_for_failover(old)
        assert new is not old

        # The new primary has no replica: WAIT cannot be satisfied and says so.
        with pytest.raises(ReplicationError) as info:
            await wait_for_replication_error(producer)
        assert (info.value.acknowledged, info.value.required) == (0, 1)

        # Writes acknowledged by the replica before the crash survived it.
        ids = [message_id for message_id, _ in await entries(client, KEYS.delay_stream("users"))]
        assert set(before) <= set(ids)

        old.start()  # comes back; the sentinels turn it into a replica of the new primary
        group.wait_for_replica(new)
        last_id = await wait_for_success(producer, User(200))
        assert last_id in {i for i, _ in await entries(client, KEYS.delay_stream("users"))}
    finally:
        await client.aclose()
        await close_sentinel(sentinel)


async def wait_for_replication_error(producer: Producer) -> None:
    """Calls may still fail to connect while clients learn the new primary; then WAIT fails."""
    for _ in range(120):
        try:
            await producer.delay(User(300))
        except ReplicationError:
            raise
        except RedstreamError:
            await anyio.sleep(0.25)
            continue
        raise AssertionError("WAIT 1 was satisfied without any replica")
    raise AssertionError("the producer never reached the new primary")
