"""The suite's watch for errors an event loop reports that nobody observed."""

from __future__ import annotations

import asyncio
import gc

import pytest

from . import conftest


def test_the_watch_sees_a_dropped_future_exception(
    no_unobserved_loop_errors: conftest._LoopErrors,
) -> None:
    async def drop_one() -> None:
        future = asyncio.get_running_loop().create_future()
        future.set_exception(ConnectionResetError("peer gone"))

    asyncio.run(drop_one())
    gc.collect()
    seen = list(no_unobserved_loop_errors.seen)
    no_unobserved_loop_errors.seen.clear()  # seen on purpose: not a failure of this test
    assert any("Future exception was never retrieved" in line for line in seen)


@pytest.mark.parametrize("kill_after_writes", [1, 300])
async def test_a_server_killed_mid_bulk_leaves_nothing_unobserved(
    server_factory: conftest.ServerFactory, kill_after_writes: int
) -> None:
    """A bulk on a server that dies: the call fails, and asyncio logs nothing later
    (the autouse watch fails this test otherwise)."""
    from redis.asyncio import Redis

    from aioredstream import Producer, ServerConnectionError

    from .helpers import User

    for _ in range(5):
        server = server_factory()
        client = Redis.from_url(server.url)
        producer = Producer(client)
        await producer.bulk_delay([User(i) for i in range(kill_after_writes)])
        assert server.process is not None
        server.process.kill()
        server.process.wait()
        with pytest.raises(ServerConnectionError):
            await producer.bulk_delay([User(i) for i in range(2000)])
        await client.aclose()
