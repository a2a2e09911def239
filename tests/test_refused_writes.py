"""A write the server refuses never takes its delay message with it, and a stalled server
never hangs a call past the client's socket timeout."""

from __future__ import annotations

import signal
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from aioredstream import (
    Delayer,
    Lock,
    Producer,
    ServerError,
    ServerTimeoutError,
    stream_size,
)

from .conftest import ClientFactory, ServerFactory
from .helpers import User, entries

DELAY = "redstream:stream:users.delay"


async def _refuse_writes(client: Redis) -> None:
    """From now on every write that may use memory gets OOM; deletes still run."""
    execute: Any = client.execute_command
    await execute("CONFIG", "SET", "maxmemory-policy", "noeviction")
    await execute("CONFIG", "SET", "maxmemory", 1)


async def _allow_writes(client: Redis) -> None:
    execute: Any = client.execute_command
    await execute("CONFIG", "SET", "maxmemory", 0)


async def test_a_refused_queue_write_keeps_its_delay_message(client: Redis) -> None:
    producer = Producer(client, slice_size=2)
    users = [User(i) for i in range(5)]
    ids = await producer.bulk_delay(users)
    single = await producer.delay(User(9))
    await _refuse_writes(client)
    try:
        with pytest.raises(ServerError, match="OOM"):
            await producer.queue(User(9), delay_message_id=single)
        with pytest.raises(ServerError, match="OOM"):
            await producer.bulk_queue(users, delay_message_ids=ids)
        with pytest.raises(ServerError, match="OOM"):
            async with producer.bulk([User(7)]):
                pass  # the delay write itself is refused
    finally:
        await _allow_writes(client)
    # nothing was queued, so every delay message is still there for the delayer
    assert [e[0] for e in await entries(client, DELAY)] == [*ids, single]
    assert await client.exists("redstream:stream:users") == 0


async def test_a_refused_delayer_copy_keeps_the_delay_messages(client: Redis) -> None:
    producer = Producer(client)
    ids = await producer.bulk_delay([User(1), User(2), User(3)])
    delayer = Delayer(client, stream_name="users", delay=0, block=0.05)
    assert await delayer.consumer.lock.try_acquire()  # refreshing needs no memory; taking does
    await _refuse_writes(client)
    try:
        with pytest.raises(ServerError, match="maxmemory"):
            await delayer.run_once()
    finally:
        await _allow_writes(client)
    assert [e[0] for e in await entries(client, DELAY)] == ids
    assert await delayer.run_once() == 3  # and once writes are allowed, they go through
    assert await stream_size(client, "users") == 3


async def test_bulk_delay_without_wait_honours_the_socket_timeout(
    server_factory: ServerFactory, make_client: ClientFactory
) -> None:
    server = server_factory()
    client = make_client(server.url, socket_timeout=0.5)
    producer = Producer(client)
    await producer.delay(User(0))  # connected
    server.signal(signal.SIGSTOP)
    try:
        with anyio.fail_after(10), pytest.raises(ServerTimeoutError):
            await producer.bulk_delay([User(i) for i in range(10)])
    finally:
        server.signal(signal.SIGCONT)


async def test_resp3_push_messages_are_not_taken_for_replies(
    redis_url: str, make_client: ClientFactory
) -> None:
    client = make_client(redis_url, protocol=3, max_connections=1)
    await client.flushall()
    pool: Any = client.connection_pool
    conn = await pool.get_connection()
    # Track every key under redstream: on this connection, own writes included (no
    # NOLOOP): each XADD now answers with its reply *and* an invalidation push.
    await conn.send_command("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "redstream:")
    assert await conn.read_response() in (b"OK", "OK")
    await pool.release(conn)
    producer = Producer(client, slice_size=3)
    ids = await producer.bulk_delay([User(i) for i in range(7)])
    written = await entries(make_client(redis_url), DELAY)
    assert [(message_id, payload["id"]) for message_id, payload in written] == list(
        zip(ids, range(7), strict=True)
    )
    assert await producer.queue(User(0), delay_message_id=ids[0])


async def test_a_lock_holder_whose_server_stalls_stops_within_the_expiry(
    server_factory: ServerFactory, make_client: ClientFactory
) -> None:
    server = server_factory()
    client = make_client(server.url, socket_timeout=None)  # no socket timeout to save us
    lock = Lock(client, "job", expiry=1.0, refresh=0.3)
    stopped = anyio.Event()

    async def body() -> None:
        server.signal(signal.SIGSTOP)
        try:
            await anyio.sleep(30)
        finally:
            stopped.set()

    try:
        with anyio.fail_after(15):  # generous bound; the lock's own expiry is 1 s
            assert await lock.acquire(body) is False
    finally:
        server.signal(signal.SIGCONT)
    assert stopped.is_set()
