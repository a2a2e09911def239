"""The lock under faults: a holder never works on once its key may have expired, and a
holder that lost its lock cannot move an offset (issue 19)."""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from aioredstream import Consumer, Delayer, Lock, Message, RedstreamError
from aioredstream.workers.lock import fenced

from ..conftest import ClientFactory, ServerFactory
from ..helpers import decoded

#: (seconds after the holder took the lock, seconds down): the gem's timings refresh at 3 s
RESTARTS = [
    pytest.param(1.5, 0.5, id="mid-cycle"),  # the next refresh meets a dead pooled connection
    pytest.param(2.7, 0.5, id="before-the-refresh"),  # the refresh fails fast, retried
    pytest.param(3.05, 0.5, id="just-after-the-refresh"),
    pytest.param(2.9, 2.5, id="down-past-the-expiry"),  # the holder must stop in time
]


def _no_retries(make_client: ClientFactory, url: str) -> Redis:
    return make_client(url, retry=Retry(NoBackoff(), 0))


class Bodies:
    """The (start, end) of each holder's body, on one monotonic clock."""

    def __init__(self) -> None:
        self.spans: dict[str, tuple[float, float]] = {}

    async def run(self, who: str, until: float) -> None:
        start = time.monotonic()
        try:
            await anyio.sleep_until(until)
        finally:
            self.spans[who] = (start, time.monotonic())


async def _standby(lock: Lock, bodies: Bodies, until: float) -> None:
    """Try the lock until it is ours once (a server error: try again)."""
    while anyio.current_time() < until:
        try:
            if await lock.acquire(lambda: bodies.run("standby", anyio.current_time() + 0.3)):
                return
            await lock.standby(0.5)
        except RedstreamError:
            await anyio.sleep(0.05)


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize(("kill_at_s", "down_s"), RESTARTS)
async def test_a_server_restart_across_a_refresh_never_lets_two_holders_work_at_once(
    server_factory: ServerFactory, make_client: ClientFactory, kill_at_s: float, down_s: float
) -> None:
    server = server_factory("--appendonly", "yes", "--appendfsync", "always")
    holder = Lock(_no_retries(make_client, server.url), "job")  # the gem's 5 s / 3 s
    standby = Lock(_no_retries(make_client, server.url), "job")
    bodies = Bodies()
    taken = anyio.current_time()
    end = taken + 8.0  # past two refreshes, and past the expiry of a lost key

    async def restart() -> None:
        await anyio.sleep_until(taken + kill_at_s)
        await anyio.to_thread.run_sync(server.kill)
        await anyio.sleep(down_s)
        await anyio.to_thread.run_sync(server.start)  # same port, same AOF: the key survives

    async with anyio.create_task_group() as tg:

        async def work() -> None:  # the standby starts once the holder has the lock
            tg.start_soon(restart)
            tg.start_soon(_standby, standby, bodies, end)
            await bodies.run("holder", end)

        await holder.acquire(work)
    holder_end = bodies.spans["holder"][1]
    if "standby" in bodies.spans:  # the holder lost the lock (else it kept it throughout)
        standby_start = bodies.spans["standby"][0]
        assert holder_end < standby_start, (
            f"the holder worked until {holder_end - taken:.2f}s, the standby from "
            f"{standby_start - taken:.2f}s"
        )


async def test_the_stop_names_why_the_refresh_failed(
    server_factory: ServerFactory, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = server_factory()
    lock = Lock(_no_retries(make_client, server.url), "x", expiry=0.5, refresh=0.1)

    async def body() -> None:
        server.kill()
        await anyio.sleep_forever()

    with caplog.at_level(logging.INFO, logger="aioredstream.lock"):
        assert await lock.acquire(body) is False
    [stop] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "stopping: ServerConnectionError: acquire lock redstream:lock:x" in stop
    retries = [r.getMessage() for r in caplog.records if "could not refresh" in r.getMessage()]
    assert len(retries) == 1  # the first failure is a warning, the retries are not
    assert "(the work stops 0.45s after the last refresh was sent" in stop


async def test_a_stalled_refresh_is_named_in_the_stop(
    server_factory: ServerFactory, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A refresh stuck on a dead server does not delay the stop, and the stop says so."""
    server = server_factory()
    lock = Lock(make_client(server.url, socket_timeout=None), "x", expiry=0.5, refresh=0.1)

    async def body() -> None:
        server.signal(signal.SIGSTOP)
        await anyio.sleep_forever()

    try:
        with caplog.at_level(logging.ERROR, logger="aioredstream.lock"):
            assert await lock.acquire(body) is False
    finally:
        server.signal(signal.SIGCONT)
    [stop] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "stopping: no reply" in stop


async def _add(client: Redis, key: str, *ids: int) -> None:
    for i in ids:
        await client.xadd(key, {"payload": f'{{"id":{i}}}'})


async def test_a_consumer_whose_lock_was_taken_cannot_commit(client: Redis) -> None:
    """The handler returns at once: no refresh has run, only the commit can notice."""
    consumer = Consumer(client, stream_name="users", name="c", block=0.05)
    await _add(client, "redstream:stream:users", 1, 2)
    await consumer.commit("0-1")

    async def handler(messages: list[Message]) -> None:
        # The key expired and another took it (run_once then stands by for its 0.2 s).
        await client.set(consumer.lock.key, "f" * 32, px=200)

    assert await consumer.run_once(handler) == 0
    assert await consumer.max_committed_id() == "0-1"  # not moved


async def test_a_consumer_whose_lock_expired_cannot_commit(client: Redis) -> None:
    consumer = Consumer(client, stream_name="users", name="c", block=0.05)
    await _add(client, "redstream:stream:users", 1)

    async def handler(messages: list[Message]) -> None:
        await client.delete(consumer.lock.key)

    assert await consumer.run_once(handler) == 0
    assert await consumer.max_committed_id() is None


async def test_a_delayer_whose_lock_was_taken_neither_deletes_nor_commits(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    delayer = Delayer(client, stream_name="users", delay=0)
    await _add(client, "redstream:stream:users.delay", 1)
    server_time_ms = delayer._server_time_ms

    async def taken_meanwhile() -> int:
        await client.set(delayer.consumer.lock.key, "f" * 32, px=200)
        return await server_time_ms()

    monkeypatch.setattr(delayer, "_server_time_ms", taken_meanwhile)
    assert await delayer.run_once() == 0
    assert await client.xlen("redstream:stream:users.delay") == 1  # still to deliver
    assert await client.get("redstream:offset:users.delay:delayer") is None
    # The copy was made before the delete: the new holder copies it again (a duplicate).
    assert await client.xlen("redstream:stream:users") == 1


async def test_fenced_writes_run_only_inside_a_take(client: Redis) -> None:
    lock = Lock(client, "x")
    script = fenced("redis.call('set', KEYS[2], ARGV[2])")
    with pytest.raises(RedstreamError, match="outside the body of acquire"):
        await lock.run_fenced(script, ["k"], ["v"], what="set k")
    done: list[Any] = []

    async def body() -> None:
        await lock.run_fenced(script, ["k"], ["v"], what="set k")
        done.append(decoded(await client.get("k")))

    assert await lock.acquire(body) is True
    assert done == ["v"]
