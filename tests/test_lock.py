"""Lock: one holder per name, kept alive, released with a wake-up, standbys that take over."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from aioredstream import ArgumentError, Consumer, Lock, Message
from aioredstream.testing import ServerProcess

from .conftest import ClientFactory, ServerFactory
from .helpers import decoded, eventually

STREAM = "redstream:stream:users"


async def _add(client: Redis, *ids: int) -> None:
    for i in ids:
        await client.xadd(STREAM, {"payload": f'{{"id":{i}}}'})


async def test_the_lock_key_holds_a_gem_style_token_with_the_gem_expiry(client: Redis) -> None:
    lock = Lock(client, "consumer:users:c")
    seen: list[tuple[str, int]] = []

    async def body() -> None:
        seen.append((decoded(await client.get(lock.key)), await client.pttl(lock.key)))

    assert await lock.acquire(body) is True
    [(token, pttl)] = seen
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    assert token == lock.token
    assert 4000 < pttl <= 5000
    assert lock.key == "redstream:lock:consumer:users:c"
    assert await client.exists(lock.key) == 0  # released
    assert await client.lrange(lock.notify_key, 0, -1) == [b"1"]  # one wake-up, as the gem


async def test_a_taken_lock_does_not_run_the_body_and_reports_the_holders_ttl(
    client: Redis,
) -> None:
    await client.set("redstream:lock:x", "someone-else", px=3000)
    lock = Lock(client, "x")
    ran = False

    async def body() -> None:
        nonlocal ran
        ran = True

    assert await lock.acquire(body) is False
    assert not ran
    assert lock.holder_ttl_ms is not None
    assert 0 < lock.holder_ttl_ms <= 3000
    assert decoded(await client.get("redstream:lock:x")) == "someone-else"


async def test_the_holder_refreshes_its_key_beyond_the_expiry(client: Redis) -> None:
    lock = Lock(client, "x", expiry=0.4, refresh=0.1)
    tokens: list[str | None] = []

    async def body() -> None:
        for _ in range(4):
            await anyio.sleep(0.2)  # 0.8 s in all: twice the expiry
            tokens.append(decoded(await client.get(lock.key)))

    assert await lock.acquire(body) is True
    assert tokens == [lock.token] * 4


async def test_a_lost_lock_cancels_the_body_and_release_leaves_the_new_holders_key(
    client: Redis,
) -> None:
    lock = Lock(client, "x", expiry=5, refresh=0.05)
    cancelled = False

    async def body() -> None:
        nonlocal cancelled
        await client.set(lock.key, "thief")
        try:
            await anyio.sleep_forever()
        except BaseException:
            cancelled = True
            raise

    before = asyncio.all_tasks()
    assert await lock.acquire(body) is False
    assert cancelled
    assert decoded(await client.get(lock.key)) == "thief"
    assert asyncio.all_tasks() == before


async def test_a_body_error_propagates_unwrapped_after_the_release(client: Redis) -> None:
    lock = Lock(client, "x")

    async def body() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await lock.acquire(body)
    assert await client.exists(lock.key) == 0


async def test_wait_wakes_on_release_and_times_out_otherwise(
    server: ServerProcess, client: Redis, make_client: ClientFactory
) -> None:
    holder = Lock(client, "x")
    waiter = Lock(make_client(server.url), "x")
    assert await waiter.wait(0.05) is False
    woke: list[bool] = []
    async with anyio.create_task_group() as tg:

        async def body() -> None:
            tg.start_soon(_wait, waiter, woke)
            await anyio.sleep(0.1)

        await holder.acquire(body)
    assert woke == [True]


async def _wait(lock: Lock, out: list[bool]) -> None:
    out.append(await lock.wait(30))


async def test_wait_stays_within_a_short_socket_timeout(
    server: ServerProcess, make_client: ClientFactory
) -> None:
    """A wait five times the socket timeout does not time the socket out."""
    # A name of its own: the session server is not flushed here, and other tests leave
    # a wake-up on "x"'s notify list when they release it.
    lock = Lock(make_client(server.url, socket_timeout=0.2), "short-socket-timeout")
    assert await lock.wait(1) is False


def test_bad_lock_arguments_are_refused(client: Redis) -> None:
    with pytest.raises(ArgumentError, match="lock name"):
        Lock(client, "")
    with pytest.raises(ArgumentError, match="expiry"):
        Lock(client, "x", expiry=0)
    with pytest.raises(ArgumentError, match="refresh"):
        Lock(client, "x", expiry=1, refresh=2)
    # the work stops at 0.9 s (the expiry less its 10 % margin): the refresh must come first
    with pytest.raises(ArgumentError, match=r"refresh must be seconds < .* \(0\.9\), got 0\.95"):
        Lock(client, "x", expiry=1, refresh=0.95)


class Worker:
    """A consumer process of its own (own client) recording what it handled."""

    def __init__(self, url: str, make_client: ClientFactory, label: str) -> None:
        self.client = make_client(url)
        self.consumer = Consumer(self.client, stream_name="users", name="c", block=0.05)
        self.label = label
        self.handled: list[int] = []
        self.held_lock: list[bool] = []

    async def handler(self, messages: list[Message]) -> None:
        token = decoded(await self.client.get(self.consumer.lock.key))
        self.held_lock.append(token == self.consumer.lock.token)
        self.handled.extend(m.payload["id"] for m in messages)


async def test_one_of_two_same_named_consumers_works_and_the_standby_takes_over_on_cancel(
    server: ServerProcess, client: Redis, make_client: ClientFactory
) -> None:
    a = Worker(server.url, make_client, "a")
    b = Worker(server.url, make_client, "b")
    await _add(client, 1, 2, 3)
    async with anyio.create_task_group() as tg:
        scopes = {}
        for worker in (a, b):
            scope = anyio.CancelScope()
            scopes[worker.label] = scope
            tg.start_soon(_run_in, scope, worker)

        async def all_three() -> bool:
            return len(a.handled) + len(b.handled) == 3

        await eventually(all_three)
        holder, standby = (a, b) if a.handled else (b, a)
        for i in (10, 11, 12):  # more batches, each after the last was committed
            await _add(client, i)

            async def holder_got(i: int = i) -> bool:
                return holder.handled[-1:] == [i]

            await eventually(holder_got)
        # run() holds the lock across batches: the standby stayed idle throughout.
        assert standby.handled == []
        assert holder.handled == [1, 2, 3, 10, 11, 12]
        await eventually(lambda: _standing_by(client))
        scopes[holder.label].cancel()
        await _add(client, 4, 5)

        async def standby_got_them() -> bool:
            return standby.handled == [4, 5]

        await eventually(standby_got_them)
        # The standby woke on the release's wake-up (it popped it), not on a timeout.
        assert await client.llen(standby.consumer.lock.notify_key) == 0
        tg.cancel_scope.cancel()
    assert holder.handled == [1, 2, 3, 10, 11, 12]
    assert all(a.held_lock + b.held_lock)


async def _standing_by(client: Redis) -> bool:
    """Some client is blocked on a notify list right now."""
    clients: Any = await client.client_list()
    return any(c.get("cmd") == "brpop" for c in clients)


async def _run_in(scope: anyio.CancelScope, worker: Worker) -> None:
    with scope:
        await worker.consumer.run(worker.handler)


async def test_a_standby_takes_over_from_a_holder_that_vanished_without_releasing(
    server: ServerProcess, client: Redis, make_client: ClientFactory
) -> None:
    # A crashed holder: its key stays until it expires, and nobody pushes a wake-up.
    await client.set("redstream:lock:consumer:users:c", "f" * 32, px=300)
    await _add(client, 1, 2)
    standby = Worker(server.url, make_client, "b")
    async with anyio.create_task_group() as tg:
        tg.start_soon(standby.consumer.run, standby.handler)

        async def handled() -> bool:
            return standby.handled == [1, 2]

        await eventually(handled)
        tg.cancel_scope.cancel()
    assert standby.held_lock == [True]


async def test_a_consumer_whose_lock_is_stolen_mid_handler_does_not_commit(
    client: Redis,
) -> None:
    consumer = Consumer(client, stream_name="users", name="c", block=0.05)
    consumer.lock = Lock(client, consumer.lock.name, expiry=5, refresh=0.05)
    await _add(client, 1)

    async def handler(messages: list[Message]) -> None:
        await client.set(consumer.lock.key, "thief")
        await anyio.sleep_forever()

    assert await consumer.run_once(handler) == 0
    assert await consumer.max_committed_id() is None
    assert decoded(await client.get(consumer.lock.key)) == "thief"


async def test_a_holder_that_cannot_refresh_within_the_expiry_stops_its_body(
    server_factory: ServerFactory, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = server_factory()
    lock = Lock(make_client(server.url, socket_timeout=0.5), "x", expiry=0.5, refresh=0.1)
    cancelled = False

    async def body() -> None:
        nonlocal cancelled
        server.stop()  # the holder can no longer prove it holds the lock
        try:
            await anyio.sleep_forever()
        except BaseException:
            cancelled = True
            raise

    before = asyncio.all_tasks()
    with caplog.at_level(logging.WARNING, logger="aioredstream.lock"):
        assert await lock.acquire(body) is False
    assert cancelled
    messages = [r.getMessage() for r in caplog.records]
    assert any("not refreshed within its expiry" in m for m in messages)
    assert any("could not release" in m or "timed out" in m for m in messages)
    assert asyncio.all_tasks() == before


@pytest.mark.slow
async def test_with_the_gem_timings_a_vanished_holder_is_replaced_after_its_5s_expiry(
    server: ServerProcess, client: Redis, make_client: ClientFactory
) -> None:
    ghost = Lock(make_client(server.url), "consumer:users:c")
    assert await ghost.try_acquire()  # then it "dies": no refresh, no release
    await _add(client, 1)
    standby = Worker(server.url, make_client, "b")
    async with anyio.create_task_group() as tg:
        tg.start_soon(standby.consumer.run, standby.handler)

        async def handled() -> bool:
            return standby.handled == [1]

        await eventually(handled, timeout_s=20)
        tg.cancel_scope.cancel()
    assert standby.held_lock == [True]


@pytest.mark.slow
async def test_with_the_gem_timings_a_long_handler_keeps_the_lock(client: Redis) -> None:
    consumer = Consumer(client, stream_name="users", name="c", block=0.05)
    await _add(client, 1)
    tokens: list[str] = []

    async def handler(messages: list[Message]) -> None:
        for _ in range(4):
            await anyio.sleep(2)  # 8 s: beyond the 5 s expiry, across two refreshes
            tokens.append(decoded(await client.get(consumer.lock.key)))

    assert await consumer.run_once(handler) == 1
    assert tokens == [consumer.lock.token] * 4


async def test_a_ruby_holders_release_wakes_a_python_standby(
    server: ServerProcess, client: Redis, make_client: ClientFactory
) -> None:
    """The gem's side done by hand: SETEX the lock, later DEL it, DEL + RPUSH the notify list."""
    key = "redstream:lock:consumer:users:c"
    execute: Any = client.execute_command  # SETEX as the gem sends it
    await execute("SETEX", key, 5, "0123456789abcdef0123456789abcdef")
    await _add(client, 1)
    standby = Worker(server.url, make_client, "python")
    async with anyio.create_task_group() as tg:
        tg.start_soon(standby.consumer.run, standby.handler)

        await eventually(lambda: _standing_by(client))
        assert standby.handled == []
        await client.delete(key)
        await client.delete(f"{key}.notify")
        await client.rpush(f"{key}.notify", "1")

        async def handled() -> bool:
            return standby.handled == [1]

        await eventually(handled)
        assert await client.llen(f"{key}.notify") == 0  # woken by it, not by a timeout
        tg.cancel_scope.cancel()
    assert await client.llen(f"{key}.notify") == 1  # our release: one wake-up, as the gem's
    assert decoded(await client.get("redstream:offset:users:c")) is not None
