"""Clients that cannot work are refused with a clear error, not a bare TypeError/RuntimeError."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from aioredstream import (
    ArgumentError,
    Consumer,
    Delayer,
    EventLoopError,
    Lock,
    Producer,
    Trimmer,
    max_stream_id,
)
from aioredstream.testing import ServerProcess

from .helpers import User

BUILDERS: dict[str, Callable[[Any], object]] = {
    "Producer": lambda c: Producer(c),
    "Consumer": lambda c: Consumer(c, stream_name="users", name="indexer"),
    "Delayer": lambda c: Delayer(c, stream_name="users", delay=1),
    "Trimmer": lambda c: Trimmer(c, stream_name="users", consumer_names=["indexer"]),
    "Lock": lambda c: Lock(c, "job"),
}


@pytest.mark.parametrize("build", list(BUILDERS.values()), ids=list(BUILDERS))
def test_a_sync_client_is_refused_at_construction(build: Callable[[Any], object]) -> None:
    sync_client = redis.Redis()  # never connects: the refusal comes first
    with pytest.raises(ArgumentError) as caught:
        build(sync_client)
    message = str(caught.value)
    assert "redis.asyncio.Redis" in message
    assert "got redis.client.Redis" in message


def test_something_else_is_refused_too() -> None:
    with pytest.raises(ArgumentError, match=r"got builtins\.str"):
        Producer("redis://localhost")  # type: ignore[arg-type]


# The first loop's socket cannot be closed once that loop is closed (asyncio needs the
# loop to close a transport): it is collected with a ResourceWarning. That leak is the
# misuse this error reports.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_client_reused_in_a_second_event_loop_raises_event_loop_error(
    server: ServerProcess,
) -> None:
    try:
        _producer_in_two_loops(server.url)
    finally:
        # The first loop's transports are finalised here, under this test's filter, once
        # nothing refers to them (on some redis-py versions only refcounting frees them).
        gc.collect()


def _producer_in_two_loops(url: str) -> None:
    client = Redis.from_url(url)
    producer = Producer(client)
    consumer = Consumer(client, stream_name="users", name="indexer")

    async def first() -> None:
        await producer.delay(User(1))

    async def second() -> None:
        with pytest.raises(EventLoopError, match="another event loop") as caught:
            await producer.delay(User(2))
        assert "inside the event loop that uses it" in str(caught.value)
        assert isinstance(caught.value.__cause__, RuntimeError)
        # the connection it tripped on is dropped: the next call reconnects in this loop
        assert await max_stream_id(client, "users.delay") is not None
        await consumer.max_committed_id()
        await client.aclose()

    asyncio.run(first())
    asyncio.run(second())


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_worker_whose_client_moved_to_a_second_event_loop_raises_event_loop_error(
    server: ServerProcess,
) -> None:
    try:
        _delayer_in_two_loops(server.url)
    finally:
        gc.collect()  # the first loop's transports, under this test's filter (see above)


def _delayer_in_two_loops(url: str) -> None:
    client = Redis.from_url(url)
    delayer = Delayer(client, stream_name="loop_moves", delay=60, block=0.05)

    async def first() -> None:
        await delayer.run_once()

    async def second() -> None:
        # The client is not closed here: its connections belong to the first loop (the
        # lock made more than one), which redis-py's aclose() cannot close either.
        with pytest.raises(EventLoopError, match="another event loop") as caught:
            await delayer.run_once()
        assert isinstance(caught.value.__cause__, RuntimeError)

    asyncio.run(first())
    asyncio.run(second())
