"""A pooled connection the server closed while it sat idle is reconnected before anything
is sent on it (``aioredstream.send.wire.acquire``).

The reproduction of issue 19: fill the pool with 10 concurrent calls, SIGKILL the server
and restart it on the same port, then call again. redis-py 8.1 (maintenance
notifications on, the default for TCP clients) hands out those connections unchecked
and a cluster node never checks them, so without the check 5 of 10 standalone calls
and every cluster call failed with "the server closed the connection mid-reply".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

from aioredstream import Lock, Producer, stream_size
from aioredstream.send import pooled
from aioredstream.testing import ClusterDeployment, SentinelDeployment, wait_until

from ..conftest import ClientFactory, ServerFactory, _binary
from ..helpers import User
from .pools import idle_connections, until_seen_closed

CALLS = 10


async def _fill(producer: Producer) -> None:
    """CALLS calls at once (the issue's recipe; on a cluster, spread over the nodes)."""
    await asyncio.gather(*(producer.bulk_delay([User(n)]) for n in range(CALLS)))


async def _fill_pool(client: Redis) -> None:
    """CALLS connections in the pool for sure (concurrent calls may share fewer: they
    do on redis-py 6.2, whose connections connect without a task switch)."""
    pool: Any = client.connection_pool
    held = [await pool.get_connection() for _ in range(CALLS)]
    for conn in held:
        await pool.release(conn)


async def _failures(calls: list[Awaitable[Any]]) -> list[BaseException]:
    results = await asyncio.gather(*calls, return_exceptions=True)
    return [result for result in results if isinstance(result, BaseException)]


# What is sent after the restart: each path that borrows a connection, CALLS at once.
PATHS: dict[str, Callable[[Producer, Redis | RedisCluster, int], Awaitable[Any]]] = {
    "bulk_delay": lambda producer, _, n: producer.bulk_delay([User(n)]),
    "bulk": lambda producer, _, n: producer.bulk_queue([User(n)]),
    "delay": lambda producer, _, n: producer.delay(User(n)),  # the coalescer
    "queue": lambda producer, _, n: producer.queue(User(n)),
    "worker command": lambda _, client, n: stream_size(client, f"s{n}"),
    "lock": lambda _, client, n: Lock(client, f"job{n}").try_acquire(),
}


@pytest.mark.parametrize("path", list(PATHS))
async def test_idle_connections_work_after_a_restart(
    server_factory: ServerFactory, make_client: ClientFactory, path: str
) -> None:
    server = server_factory()
    client = make_client(server.url)  # a default client: redis-py 8 turns on RESP3 and
    producer = Producer(client)  # maintenance notifications
    await _fill(producer)
    await _fill_pool(client)
    idle = idle_connections(client)
    assert len(idle) == CALLS

    server.kill()
    server.start()  # same port
    await until_seen_closed(idle)

    send = PATHS[path]
    assert await _failures([send(producer, client, n) for n in range(CALLS)]) == []


async def test_idle_connections_work_after_a_restart_with_aof(
    server_factory: ServerFactory, make_client: ClientFactory
) -> None:
    server = server_factory("--appendonly", "yes", "--appendfsync", "always")
    client = make_client(server.url)
    producer = Producer(client)
    await _fill(producer)
    await _fill_pool(client)
    idle = idle_connections(client)

    server.kill()
    server.start()  # same port, same AOF
    await until_seen_closed(idle)

    assert await _failures([producer.bulk_delay([User(n)]) for n in range(CALLS)]) == []
    assert await stream_size(client, "users.delay") == 2 * CALLS  # the AOF kept the first


async def test_idle_cluster_connections_work_after_a_restart(
    restartable_cluster: ClusterDeployment,
) -> None:
    host, port = restartable_cluster.startup
    client = RedisCluster(host=host, port=port)
    try:
        await client.initialize()
        producer = Producer(client)
        for path, send in PATHS.items():
            await _fill(producer)
            idle = idle_connections(client)
            assert len(idle) >= CALLS, path
            for node in restartable_cluster.nodes:
                node.kill()
                node.start()  # same port, same cluster config
            wait_until(restartable_cluster.healthy, "the restarted cluster to be ok")
            await until_seen_closed(idle)

            failures = await _failures([send(producer, client, n) for n in range(CALLS)])
            assert failures == [], path
    finally:
        await client.aclose()


@pytest.fixture
def sentinel_group(server_kind: str) -> Iterator[SentinelDeployment]:
    with SentinelDeployment(_binary(server_kind), kind=server_kind) as deployment:
        yield deployment


def _hang_up(conn: Any, how: str) -> None:
    """What the event loop records when the server ends an idle connection: EOF, a reset,
    or bytes left on it (which would pass for the next command's reply)."""
    reader = conn._reader
    if how == "eof":
        reader.feed_eof()
    elif how == "reset":
        reader.set_exception(ConnectionResetError(104, "Connection reset by peer"))
    else:
        reader.feed_data(b"+stale\r\n")


@pytest.mark.parametrize("how", ["eof", "reset", "bytes"])
async def test_a_sentinel_primary_connection_is_checked_too(
    sentinel_group: SentinelDeployment, how: str
) -> None:
    sentinel = Sentinel(sentinel_group.addresses)  # type: ignore[no-untyped-call,unused-ignore]
    client = sentinel.master_for(sentinel_group.service)
    try:
        producer = Producer(client)
        await _fill(producer)
        await _fill_pool(client)
        idle = idle_connections(client)
        for conn in idle:
            _hang_up(conn, how)

        ids = await asyncio.gather(*(producer.bulk_delay([User(n)]) for n in range(CALLS)))
        assert all(id_.count("-") == 1 for [id_] in ids)  # no "stale" read as a reply
    finally:
        await client.aclose()
        for sentinel_client in sentinel.sentinels:
            await sentinel_client.aclose()


@pytest.mark.parametrize("how", ["eof", "reset", "bytes"])
async def test_what_the_check_sees(
    server_factory: ServerFactory, make_client: ClientFactory, how: str
) -> None:
    client = make_client(server_factory().url)
    producer = Producer(client)
    await _fill(producer)
    [conn, *_] = idle_connections(client)
    assert not pooled.closed(conn)
    _hang_up(conn, how)
    assert pooled.closed(conn)


async def test_a_connection_whose_transport_is_closing_counts_as_closed(
    server_factory: ServerFactory, make_client: ClientFactory
) -> None:
    client = make_client(server_factory().url)
    await Producer(client).bulk_delay([User(1)])
    [conn] = idle_connections(client)
    conn._writer.transport.close()  # connection_lost (EOF) only comes a loop turn later
    assert pooled.closed(conn)


async def test_a_restarted_server_is_not_reconnected_twice(
    server_factory: ServerFactory, make_client: ClientFactory
) -> None:
    """The reconnected connection goes back to the pool as a healthy one."""
    server = server_factory()
    client = make_client(server.url)
    producer = Producer(client)
    await producer.bulk_delay([User(1)])
    [conn] = idle_connections(client)
    server.kill()
    server.start()
    await until_seen_closed([conn])
    await producer.bulk_delay([User(2)])
    assert idle_connections(client) == [conn]
    assert not pooled.closed(conn)
    await producer.bulk_delay([User(3)])
