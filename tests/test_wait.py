"""Write concern: WAIT / WAITAOF on the connection that made the delay writes."""

from __future__ import annotations

from typing import Any, cast

import pytest
from redis.asyncio import Redis

from aioredstream import Producer, ReplicationError, UnsupportedError
from aioredstream.send import wire
from aioredstream.testing import ServerProcess

from .conftest import ClientFactory, ServerFactory, StallableReplica
from .helpers import User, entries, in_use


async def test_wait_succeeds_when_the_replica_acknowledges(
    stallable_replica: StallableReplica, make_client: ClientFactory
) -> None:
    client = make_client(stallable_replica.primary.url)
    producer = Producer(client, wait=1, wait_timeout=5)
    ids = await producer.bulk_delay([User(i) for i in range(600)])
    one = await producer.delay(User(1000))
    # acknowledged means already on the replica, without waiting any longer
    on_replica = await entries(
        make_client(stallable_replica.replica.url), "redstream:stream:users.delay"
    )
    assert [e[0] for e in on_replica] == [*ids, one]


async def test_too_few_replicas_raise_replication_error_with_counts(
    stallable_replica: StallableReplica, make_client: ClientFactory
) -> None:
    client = make_client(stallable_replica.primary.url)
    producer = Producer(client, wait=2, wait_timeout=0.2)
    with pytest.raises(ReplicationError) as info:
        await producer.delay(User(1))
    assert (info.value.acknowledged, info.value.required) == (1, 2)
    with pytest.raises(ReplicationError):
        async with producer.bulk([User(1), User(2)]):
            pytest.fail("the body must not run without the acknowledgement")
    # the writes are on the primary; no queue message was written
    assert await client.xlen("redstream:stream:users.delay") == 3
    assert await client.exists("redstream:stream:users") == 0


async def test_wait_counts_the_writing_connection_so_a_stalled_replica_is_caught(
    stallable_replica: StallableReplica, make_client: ClientFactory
) -> None:
    """A WAIT sent on another connection (one that made no newer writes) would vouch
    for nothing: it returns 1 at once although the replica has stalled."""
    client = make_client(stallable_replica.primary.url)
    idle = make_client(stallable_replica.primary.url, single_connection_client=True)
    await idle.ping()
    producer = Producer(client, wait=1, wait_timeout=0.3)
    await producer.delay(User(0))  # replica healthy: acknowledged
    with stallable_replica.stalled():
        with pytest.raises(ReplicationError) as info:
            await producer.delay(User(1))
        assert info.value.acknowledged == 0
        with pytest.raises(ReplicationError):
            await producer.bulk_delay([User(i) for i in range(300)])
        # the trap we avoid: a WAIT on the idle connection vouches for nothing
        assert await cast(Any, idle).execute_command("WAIT", 1, 100) == 1
    await producer.delay(User(2))  # acknowledgements resume


async def test_wait_timeout_zero_blocks_until_acknowledged_and_stays_cancellable(
    stallable_replica: StallableReplica, make_client: ClientFactory
) -> None:
    import anyio

    client = make_client(stallable_replica.primary.url)
    producer = Producer(client, wait=1, wait_timeout=0)
    with stallable_replica.stalled():
        with anyio.move_on_after(0.5) as scope:
            await producer.delay(User(1))
        assert scope.cancelled_caught
    assert await producer.delay(User(2))
    assert await in_use(client) == 0


async def test_waitaof_on_a_server_without_it_names_the_version(
    server: ServerProcess, client: Redis
) -> None:
    info = await client.info("server")
    if "valkey_version" in info or tuple(map(int, info["redis_version"].split(".")[:2])) >= (7, 2):
        pytest.skip(f"{server.kind} {info.get('redis_version')} supports WAITAOF")
    producer = Producer(client, wait_aof=(1, 0), wait_timeout=1)
    with pytest.raises(UnsupportedError, match=r"Redis 7\.\d+\.\d+"):
        await producer.delay(User(1))
    assert await client.dbsize() == 0


async def test_waitaof_acknowledges_local_and_replica_fsyncs(
    server_factory: ServerFactory, make_client: ClientFactory, server_kind: str
) -> None:
    primary = server_factory("--appendonly", "yes")
    client = make_client(primary.url)
    if (await wire.call(client, "COMMAND", "INFO", "WAITAOF", what="probe")) == [None]:
        pytest.skip(f"{server_kind} here has no WAITAOF")
    server_factory.replica_of(primary, "--appendonly", "yes")
    producer = Producer(client, wait_aof=(1, 1), wait_timeout=5)
    ids = await producer.bulk_delay([User(i) for i in range(10)])
    assert len(ids) == 10
    with pytest.raises(ReplicationError) as info:
        await Producer(client, wait_aof=(1, 2), wait_timeout=0.2).delay(User(1))
    assert info.value.local_acknowledged == 1
    assert (info.value.required, info.value.local_required) == (2, 1)
    assert info.value.acknowledged <= 1  # one replica exists: never a false acknowledgement
