"""Stop means stop: a cancellation is never swallowed, whatever redis-py does.

redis-py 8.1 can return normally from a command whose task was cancelled; the
library sends every command on its own wire path instead. These tests cancel each
worker after k event-loop iterations, for every k from 0 to past one full batch
cycle, on a busy and an idle stream, and check that it stopped, released its lock
and committed nothing its handler did not finish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from aioredstream import Consumer, Delayer, Lock, Message, Producer, Trimmer
from aioredstream._validate import parse_id
from aioredstream.send import command as _command
from aioredstream.testing import ServerProcess

from .helpers import User

#: the longest any stop took in this session (seconds), reported at the end
STOP_TIMES: list[float] = []
#: the k of the latest cancellation, for messages
K = [0]


@pytest.fixture(autouse=True, scope="module")
def _report_the_longest_stop() -> Iterator[None]:
    yield
    if STOP_TIMES:  # for the record (run with -s); the limit below is only a detector
        print(f"\nstops: {len(STOP_TIMES)}, longest {max(STOP_TIMES) * 1000:.1f} ms")


#: a stop must happen within this (a failure detector, not a speed claim)
STOP_LIMIT_S = 5.0


async def _cancel_after(work: Callable[[], Awaitable[Any]], k: int) -> bool:
    """(the failing k is in the assertion message of the caller's checks via ``K``)"""
    K[0] = k
    """Run ``work``, cancel it after ``k`` loop iterations; ``False`` if it finished first."""
    task = asyncio.ensure_future(work())
    for _ in range(k):
        await asyncio.sleep(0)
    if task.done():
        task.result()
        return False
    task.cancel()
    started = time.monotonic()
    with anyio.fail_after(STOP_LIMIT_S):
        await asyncio.wait({task})
    STOP_TIMES.append(time.monotonic() - started)
    assert task.cancelled(), f"cancelled after {k} iterations, yet it returned {task.result()!r}"
    return True


async def test_a_command_always_delivers_its_cancellation(client: Redis) -> None:
    """The probe of the issue, on the library's command path: a SET cancelled after k
    iterations raises CancelledError (redis-py 8.1's own client.set returns True)."""
    cancelled = 0
    for k in range(40):
        cancelled += await _cancel_after(lambda: _command.run(client, "SET", "k", "v"), k)
    assert cancelled > 0
    assert await client.ping()  # the connection pool is still usable


async def _fill(client: Redis, n: int) -> None:
    await Producer(client).bulk_queue([User(i) for i in range(n)])


class Handled:
    """A handler that records the last id of each batch it finished."""

    def __init__(self) -> None:
        self.finished: list[str] = []

    async def __call__(self, messages: list[Message]) -> None:
        await asyncio.sleep(0)
        self.finished.append(messages[-1].message_id)


async def _assert_released(client: Redis, lock_key: str) -> None:
    assert await client.exists(lock_key) == 0, f"lock not released (cancelled after {K[0]})"


def _not_past(offset: bytes | None, finished: list[str]) -> None:
    if offset is None:
        return
    assert finished, f"committed {offset!r} though no batch finished"
    assert parse_id(offset.decode()) <= max(parse_id(i) for i in finished)


SWEEP = range(90)


@pytest.mark.parametrize("busy", [True, False], ids=["busy", "idle"])
async def test_consumer_run_stops_at_every_point(client: Redis, busy: bool) -> None:
    covered_commit = False
    for k in SWEEP:
        await client.flushall()
        if busy:
            await _fill(client, 30)
        handled = Handled()
        consumer = Consumer(client, stream_name="users", name="indexer", batch_size=10, block=0.2)
        if await _cancel_after(lambda c=consumer, h=handled: c.run(h), k):  # type: ignore[misc]
            await _assert_released(client, consumer.lock.key)
            offset: Any = await client.get("redstream:offset:users:indexer")
            _not_past(offset, handled.finished)
            covered_commit |= offset is not None
    assert covered_commit == busy, "the sweep did not reach a commit on the busy stream"


@pytest.mark.parametrize("busy", [True, False], ids=["busy", "idle"])
async def test_delayer_run_stops_at_every_point_and_loses_nothing(
    client: Redis, busy: bool
) -> None:
    for k in SWEEP:
        await client.flushall()
        ids = await Producer(client).bulk_delay([User(i) for i in range(30 if busy else 0)])
        delayer = Delayer(client, stream_name="users", delay=0)
        delayer.consumer.batch_size = 10
        delayer.consumer.block = 0.2
        if await _cancel_after(delayer.run, k):
            await _assert_released(client, delayer.consumer.lock.key)
            left = await client.xlen("redstream:stream:users.delay")
            copied = await client.xlen("redstream:stream:users")
            assert left + copied >= len(ids), "a delay message vanished without its copy"


@pytest.mark.parametrize("busy", [True, False], ids=["busy", "idle"])
async def test_trimmer_run_stops_at_every_point(client: Redis, busy: bool) -> None:
    for k in SWEEP:
        await client.flushall()
        await _fill(client, 30)
        rows: Any = await client.xrange("redstream:stream:users")
        committed: bytes | None = rows[9][0] if busy else None
        if committed is not None:
            await client.set("redstream:offset:users:indexer", committed)
        trimmer = Trimmer(client, stream_name="users", consumer_names=["indexer"], interval=0.2)
        if await _cancel_after(trimmer.run, k):
            await _assert_released(client, trimmer.lock.key)
            first: Any = await client.xrange("redstream:stream:users", count=1)
            assert first, "trimmed everything"
            if committed is not None:
                assert parse_id(first[0][0].decode()) > parse_id(committed.decode()) or (
                    first[0][0] == rows[0][0]  # not trimmed yet
                )


async def test_lock_acquire_with_a_body_stops_at_every_point(client: Redis) -> None:
    for k in SWEEP:
        lock = Lock(client, "job")

        async def body() -> None:
            for _ in range(20):
                await asyncio.sleep(0)

        if await _cancel_after(lambda lk=lock: lk.acquire(body), k):  # type: ignore[misc]
            await _assert_released(client, lock.key)


async def test_a_standby_takes_over_at_once_when_the_holder_is_cancelled(client: Redis) -> None:
    await _fill(client, 5)
    seen: list[str] = []

    async def handler(messages: list[Message]) -> None:
        seen.extend(m.message_id for m in messages)
        await anyio.sleep(30)  # the holder works on its batch when it is stopped

    holder = Consumer(client, stream_name="users", name="indexer", block=0.2)
    standby = Consumer(client, stream_name="users", name="indexer", block=0.2)
    task = asyncio.ensure_future(holder.run(handler))
    with anyio.fail_after(STOP_LIMIT_S):
        while not seen:  # noqa: ASYNC110 (polls the handler's progress)
            await asyncio.sleep(0.01)
    assert not await standby.lock.try_acquire()
    task.cancel()
    await asyncio.wait({task})
    assert await standby.lock.try_acquire(), "the standby had to wait for the expiry"
    await standby.lock.release()


# -- an idle stream is never an error ------------------------------------------------


CLIENTS: dict[str, Callable[[ServerProcess], Redis]] = {
    "from_url": lambda s: Redis.from_url(s.url),
    "Redis(host, port)": lambda s: Redis(host=s.host, port=s.port),
    "socket_timeout=0.2": lambda s: Redis.from_url(s.url, socket_timeout=0.2),
    "socket_timeout=30": lambda s: Redis.from_url(s.url, socket_timeout=30),
}


@pytest.mark.parametrize("build", list(CLIENTS.values()), ids=list(CLIENTS))
async def test_an_idle_stream_is_not_an_error(
    server: ServerProcess,
    build: Callable[[ServerProcess], Redis],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each block (0.3 s) outlasts the shortest socket timeout (0.2 s); the run passes
    about 2.7 idle block cycles, none of which may log a warning."""
    client = build(server)
    try:
        await client.flushall()
        consumer = Consumer(client, stream_name="empty", name="x", block=0.3)
        assert await consumer.run_once(Handled()) == 0  # blocks longer than 0.2 s: fine
        lock = Lock(client, "idle")
        assert await lock.wait(0.3) is False
        caplog.set_level(logging.WARNING, logger="aioredstream")
        with anyio.move_on_after(0.8):
            await consumer.run(Handled())
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    finally:
        await client.aclose()


@pytest.mark.slow
async def test_a_worker_idles_for_30_s_on_a_default_from_url_client(
    server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-py 8 gives from_url clients a 5 s socket timeout it does not record in
    connection_kwargs: the consumer's default 5 s BLOCK must not trip it."""
    client = Redis.from_url(server.url)
    try:
        caplog.set_level(logging.INFO, logger="aioredstream")
        with anyio.move_on_after(30):
            await Consumer(client, stream_name="empty", name="x").run(Handled())
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert errors == []
    finally:
        await client.aclose()
