"""With wait=1: a stalled or vanished replica yields ReplicationError, never a false ack."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis

from aioredstream import Producer, ReplicationError

from ..conftest import ServerFactory
from ..helpers import User, in_use

Call = Callable[[Producer], Awaitable[Any]]


async def _single(producer: Producer) -> Any:
    return await producer.delay(User(1))


async def _bulk(producer: Producer) -> Any:
    return await producer.bulk_delay([User(i) for i in range(600)])


async def _bulk_context(producer: Producer) -> Any:
    async with producer.bulk([User(i) for i in range(10)]):
        pytest.fail("the body must not run without the acknowledgement")


async def _concurrent(producer: Producer) -> Any:
    results = await asyncio.gather(
        *(producer.delay(User(i)) for i in range(50)), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == len(results), f"{len(results) - len(errors)} calls falsely acknowledged"
    raise errors[0]


CALLS = {"single": _single, "bulk": _bulk, "bulk_context": _bulk_context, "concurrent": _concurrent}


def _client(url: str, pool_kind: str) -> Redis:
    pool_class = BlockingConnectionPool if pool_kind == "blocking" else ConnectionPool
    return Redis.from_pool(pool_class.from_url(url, max_connections=10))


@pytest.mark.parametrize("pool_kind", ["default", pytest.param("blocking", marks=pytest.mark.slow)])
async def test_stalled_then_vanished_replica_never_acknowledges_falsely(
    server_factory: ServerFactory, pool_kind: str
) -> None:
    primary = server_factory()
    replica = server_factory.replica_of(primary)
    client = _client(primary.url, pool_kind)
    try:
        producer = Producer(client, wait=1, wait_timeout=0.3)
        await producer.delay(User(0))
        replica.signal(signal.SIGSTOP)  # stalled: still connected, acknowledges nothing
        try:
            for name, call in CALLS.items():
                with pytest.raises(ReplicationError) as info:
                    await call(producer)
                assert info.value.acknowledged == 0, name
                assert info.value.required == 1
        finally:
            replica.signal(signal.SIGCONT)
        await producer.delay(User(1))  # acknowledgements resume
        replica.kill()  # vanished
        for call in CALLS.values():
            with pytest.raises(ReplicationError):
                await call(producer)
        assert await in_use(client) == 0
        server_factory.started.remove(replica)
        replica.cleanup()
        server_factory.replica_of(primary)  # a replica comes back
        ids = await producer.bulk_delay([User(i) for i in range(300)])
        assert len(ids) == 300
    finally:
        await client.aclose()
