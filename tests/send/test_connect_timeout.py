"""``Producer(connect_timeout_s=...)``: what a call waits at most for a connection.

During an outage a call waits before it sends anything: for a connection that
connects, for redis-py's connect retries, for a free connection of a blocking pool.
Under ``track()`` that wait happens inside the flush, with the database transaction
open, so the producer bounds it (2 s by default). The tests give the client a retry
policy, or a server, that would keep the call waiting far longer than the bound; the
error (not a stopwatch) shows which one ended the wait, and a generous
``fail_after`` shows that nothing hangs.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff

from aioredstream import ArgumentError, Producer, ServerConnectionError
from aioredstream.producer import CONNECT_TIMEOUT_S
from aioredstream.testing import ClusterDeployment, ServerProcess, free_port, wait_until

from ..conftest import ClientFactory, ServerFactory
from ..helpers import User, eventually

HANG_S = 30  # far beyond any bound under test: reaching it means the call hung

CALLS: dict[str, Any] = {
    "delay": lambda producer: producer.delay(User(1)),
    "queue": lambda producer: producer.queue(User(1), "1-0"),
    "bulk_delay": lambda producer: producer.bulk_delay([User(1), User(2)]),
    "bulk_queue": lambda producer: producer.bulk_queue([User(1)]),
}


async def _bulk(producer: Producer) -> None:
    async with producer.bulk([User(1)]):
        pass


CALLS["bulk"] = _bulk


@contextmanager
def paused(*servers: ServerProcess) -> Iterator[None]:
    """SIGSTOP: the kernel still accepts connections, the server answers nothing."""
    for server in servers:
        server.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for server in servers:
            server.signal(signal.SIGCONT)


def _bounded_by_the_producer(exc: BaseException, timeout_s: float) -> bool:
    return (
        isinstance(exc, ServerConnectionError)
        and f"connect_timeout_s={timeout_s}" in str(exc)
        and isinstance(exc.__cause__, TimeoutError)
    )


@pytest.mark.parametrize("call", list(CALLS))
async def test_a_call_to_a_paused_server_gives_up_after_connect_timeout(
    server_factory: ServerFactory, make_client: ClientFactory, call: str
) -> None:
    """A new connection's handshake gets no answer: without the bound the call would wait
    for the socket timeout (none on redis-py 6.2's clients, so for ever)."""
    server = server_factory()
    client = make_client(server.url, socket_timeout=None, socket_connect_timeout=None)
    producer = Producer(client, connect_timeout_s=0.2)
    with paused(server), anyio.fail_after(HANG_S), pytest.raises(ServerConnectionError) as raised:
        await CALLS[call](producer)
    assert _bounded_by_the_producer(raised.value, 0.2), raised.value
    await producer.bulk_delay([User(2)])  # the server is back: so is the producer


async def test_a_call_to_a_dead_server_does_not_ride_out_the_clients_retries() -> None:
    """Nothing listens; the client would retry the connect 1,000 times, 50 ms apart."""
    client = Redis(host="127.0.0.1", port=free_port(), retry=Retry(ConstantBackoff(0.05), 1000))
    producer = Producer(client, connect_timeout_s=0.2)
    try:
        with anyio.fail_after(HANG_S), pytest.raises(ServerConnectionError) as raised:
            await producer.bulk_delay([User(1)])
    finally:
        await client.aclose()
    # redis-py 8 retries a refused connect (the bound ends the wait); 6.2 does not (it
    # fails at once, with the refusal)
    assert _bounded_by_the_producer(raised.value, 0.2) or "111" in str(raised.value)


async def test_without_a_bound_the_call_waits_as_long_as_the_client_does(
    server_factory: ServerFactory, make_client: ClientFactory
) -> None:
    server = server_factory()
    patient = Producer(make_client(server.url, socket_timeout=None), connect_timeout_s=None)
    bounded = Producer(make_client(server.url, socket_timeout=None), connect_timeout_s=0.2)
    with paused(server), anyio.fail_after(HANG_S):
        waiting = asyncio.ensure_future(patient.delay(User(1)))
        with pytest.raises(ServerConnectionError) as raised:
            await bounded.delay(User(2))
        assert _bounded_by_the_producer(raised.value, 0.2)
        assert not waiting.done()  # still in the handshake the server does not answer
    with anyio.fail_after(HANG_S):
        assert (await waiting).count("-") == 1  # resumed: the call went through


async def test_a_blocking_pool_wait_counts_too(
    server: ServerProcess, make_client: ClientFactory
) -> None:
    """With every connection of a BlockingConnectionPool taken, a call waits for one (the
    pool's own timeout is 20 s by default) only as long as the producer allows."""
    from redis.asyncio import BlockingConnectionPool

    pool = BlockingConnectionPool.from_url(server.url, max_connections=1, timeout=HANG_S)
    client = Redis(connection_pool=pool)
    producer = Producer(client, connect_timeout_s=0.2)
    taken = await pool.get_connection()  # type: ignore[no-untyped-call,unused-ignore]
    try:
        with anyio.fail_after(HANG_S), pytest.raises(ServerConnectionError) as raised:
            await producer.bulk_delay([User(1)])
        assert _bounded_by_the_producer(raised.value, 0.2)
    finally:
        await pool.release(taken)
        await client.aclose()
        await pool.disconnect()


async def test_a_cluster_call_and_its_slot_map_reread_are_bounded(
    restartable_cluster: ClusterDeployment,
) -> None:
    host, port = restartable_cluster.startup
    client = RedisCluster(host=host, port=port, socket_timeout=None)
    await client.initialize()  # the slot map is known; no connection to the nodes yet
    producer = Producer(client, connect_timeout_s=0.3)
    try:
        with paused(*restartable_cluster.nodes), anyio.fail_after(HANG_S):
            with pytest.raises(ServerConnectionError) as raised:
                await producer.bulk_delay([User(n) for n in range(10)])
            assert _bounded_by_the_producer(raised.value, 0.3), raised.value
            # the failure made the producer re-read the slot map first: bounded as well
            with pytest.raises(ServerConnectionError) as raised:
                await producer.bulk_delay([User(n) for n in range(10)])
            assert "cluster slot map: not read within connect_timeout_s=0.3" in str(raised.value)
        wait_until(restartable_cluster.healthy, "the cluster to be ok again")

        async def through() -> bool:
            try:
                await producer.bulk_delay([User(n) for n in range(10)])
            except ServerConnectionError:
                return False  # a node's timed-out handshake may still be closing
            return True

        await eventually(through, "a call to go through once the nodes are back")
    finally:
        await client.aclose()


def test_the_default_is_finite_and_checked(server: ServerProcess) -> None:
    client = Redis.from_url(server.url)
    assert Producer(client).connect_timeout_s == CONNECT_TIMEOUT_S == 2.0
    assert Producer(client, connect_timeout_s=None).connect_timeout_s is None
    assert Producer(client, connect_timeout_s=1).connect_timeout_s == 1.0
    for bad in (0, -1, True, "1", float("nan")):
        with pytest.raises(ArgumentError, match="connect_timeout_s must be seconds > 0"):
            Producer(client, connect_timeout_s=bad)  # type: ignore[arg-type]
