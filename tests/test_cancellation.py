"""Cancelling a producer call at any await never leaves replies for a later call."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable
from typing import Any

import pytest
from redis.asyncio import Redis

from aioredstream import Consumer, Model, Producer
from aioredstream.send import command

from .helpers import in_use


class Tagged(Model):
    def __init__(self, id: int) -> None:
        self.id = id

    def redstream_payload(self) -> dict[str, int]:
        return {"id": self.id}


async def _verify_ids(client: Redis, producer: Producer, start: int) -> None:
    """Every id a call returns must point at that call's own payload."""
    for n in range(start, start + 50):
        message_id = await producer.delay(Tagged(n))
        key = "redstream:stream:taggeds.delay"
        row: Any = await client.xrange(key, message_id, message_id)
        [(_, fields)] = row
        assert json.loads(fields[b"payload"]) == {"id": n}
    ids = await producer.bulk_delay([Tagged(n) for n in range(start, start + 300)])
    rows: Any = await client.xrange("redstream:stream:taggeds.delay", ids[0], ids[-1])
    assert [json.loads(f[b"payload"])["id"] for _, f in rows][-300:] == list(
        range(start, start + 300)
    )


async def test_random_cancellations_leave_no_crossed_replies_or_leaked_connections(
    client: Redis,
) -> None:
    producer = Producer(client, slice_size=50)
    rng = random.Random(1234)

    async def call(n: int) -> None:
        kind = n % 3
        if kind == 0:
            await producer.delay(Tagged(n))
        elif kind == 1:
            await producer.bulk_delay([Tagged(n)] * 400)
        else:
            await producer.bulk_queue([Tagged(n)] * 200)

    for round_ in range(10):
        tasks = [asyncio.create_task(call(n)) for n in range(40)]
        await asyncio.sleep(rng.random() * 0.004)
        for task in tasks:
            if rng.random() < 0.7:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _verify_ids(client, producer, 10_000 * (round_ + 1))
    assert await in_use(client) == 0


async def test_a_cancel_during_the_connection_handshake_is_never_lost(
    client: Redis, make_client: Any, redis_url: str
) -> None:
    """redis-py connects through asyncio.wait_for, which on Python 3.11 can swallow a
    cancel that lands as the handshake completes; the call must still be cancelled."""
    execute: Any = client.execute_command
    for ticks in range(1, 30):
        fresh = make_client(redis_url)  # each call opens a new connection
        await execute("CLIENT", "PAUSE", 2000, "WRITE")
        task = asyncio.create_task(Producer(fresh).bulk_delay([Tagged(ticks)]))
        for _ in range(ticks):
            await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            raise AssertionError(f"a cancel {ticks} loop ticks into the call was lost")
        finally:
            await execute("CLIENT", "UNPAUSE")
        assert await in_use(fresh) == 0


@pytest.mark.parametrize(
    "kind", ["delay", "queue", "bulk_delay", "bulk_queue", "command", "consumer read"]
)
async def test_a_cancel_requested_while_the_task_runs_is_never_lost(
    client: Redis, kind: str
) -> None:
    """``asyncio.run``'s SIGINT handler cancels the main task while that task runs: the
    cancellation is pending until its next await. redis-py 6.x/7.x check a pooled
    connection inside ``asyncio.timeout(0)``, which took such a cancellation for its own
    expiry and returned normally: Ctrl-C did not stop ``aioredstream backfill`` (exit 0
    after queueing every row). Each call must raise it, and leave no connection out."""
    producer = Producer(client)
    consumer = Consumer(client, stream_name="taggeds", name="cancel", block=0.01)

    def call() -> Awaitable[object]:
        if kind == "delay":
            return producer.delay(Tagged(1))
        if kind == "queue":
            return producer.queue(Tagged(1))
        if kind == "bulk_delay":
            return producer.bulk_delay([Tagged(1), Tagged(2)])
        if kind == "bulk_queue":
            return producer.bulk_queue([Tagged(1), Tagged(2)])
        if kind == "command":
            return command.run(client, "PING", what="PING")
        return consumer.read()

    async def body() -> None:
        await call()  # a connection in the pool, idle: the path the check takes
        current = asyncio.current_task()
        assert current is not None
        current.cancel()  # requested while this task runs, as a signal handler does
        await call()

    task = asyncio.create_task(body())
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await in_use(client) == 0
