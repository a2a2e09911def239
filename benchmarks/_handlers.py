"""Handlers (delay -> sleep(0) -> queue, many at once), single-call latency, and the consumer.

Everything a timed run uses is built and connected before the clock starts (a
warm-up call each), so a row measures handling, not construction or a first connect.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from aioredstream import Consumer, Message, Producer
from benchmarks._suite import DELAY, OFFSET, QUEUE, BenchUser, all_of, payload

#: one handler: handles record ``n``
Handler = Callable[[int], Awaitable[None]]


def producer_handler(producer: Producer) -> Handler:
    async def handler(n: int) -> None:
        message_id = await producer.delay(BenchUser(n))
        await asyncio.sleep(0)
        await producer.queue(BenchUser(n), message_id)

    return handler


def handwritten_handler(client: Redis) -> Handler:
    async def handler(n: int) -> None:
        data = payload(BenchUser(n))
        message_id = await client.xadd(DELAY, {"payload": data})
        await asyncio.sleep(0)
        pipe = client.pipeline(transaction=False)
        pipe.xadd(QUEUE, {"payload": data})
        pipe.xdel(DELAY, message_id)
        await pipe.execute()

    return handler


def glide_handler(client: Any) -> Handler:
    from glide import Batch

    async def handler(n: int) -> None:
        data = payload(BenchUser(n))
        message_id = await client.xadd(DELAY, [("payload", data)])
        await asyncio.sleep(0)
        batch = Batch(is_atomic=False)
        batch.xadd(QUEUE, [("payload", data)])
        batch.xdel(DELAY, [message_id])
        await client.exec(batch, raise_on_error=True)

    return handler


async def handlers_rate(handler: Handler, concurrency: int, records: int) -> float:
    """Records/s of waves of ``concurrency`` handlers until ``records`` are done (warmed up).

    The collector starts empty: a wave keeps thousands of objects alive across young
    collections, so a full collection (about 25 ms on this machine's 3.11) comes every
    wave or two, and whether one more lands inside a short run would otherwise swing
    its rate by ~10%.
    """
    await handler(-1)
    gc.collect()
    waves = max(1, records // concurrency)
    start = time.perf_counter()
    for wave in range(waves):
        base = wave * concurrency
        await all_of(handler(base + n) for n in range(concurrency))
    return waves * concurrency / (time.perf_counter() - start)


async def producer_delay_latency(producer: Producer, count: int) -> float:
    await producer.delay(BenchUser(-1))
    start = time.perf_counter()
    for n in range(count):
        await producer.delay(BenchUser(n))
    return (time.perf_counter() - start) / count


async def bare_xadd_latency(client: Redis, count: int) -> float:
    await client.xadd(DELAY, {"payload": payload(BenchUser(-1))})
    start = time.perf_counter()
    for n in range(count):
        await client.xadd(DELAY, {"payload": payload(BenchUser(n))})
    return (time.perf_counter() - start) / count


async def fill_queue(client: Redis, count: int) -> str:
    """``count`` queue messages; returns the last id."""
    last = ""
    for start in range(0, count, 1000):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(start + 1000, count)):
            pipe.xadd(QUEUE, {"payload": payload(BenchUser(n))})
        last = (await pipe.execute())[-1].decode()
    return last


async def consumer_rate(url: str, count: int, last: str, name: str) -> float:
    """Records/s of ``Consumer.run`` reading ``count`` entries, until their offset is committed.

    The consumer gets a client of its own, closed after the run: a consumer cancelled
    mid-``XREAD`` must not leave its connection to the next round.
    """
    async with Redis.from_url(url) as client:
        return await _consumer_rate(client, count, last, name)


async def _consumer_rate(client: Redis, count: int, last: str, name: str) -> float:
    consumer = Consumer(client, stream_name="benchusers", name=name, batch_size=1000, block=1)
    seen = 0
    done = asyncio.Event()

    async def handler(messages: list[Message]) -> None:
        nonlocal seen
        seen += sum(1 for m in messages if m.payload is not None)
        if seen >= count:
            done.set()

    await client.ping()
    start = time.perf_counter()
    task = asyncio.create_task(consumer.run(handler))
    try:
        await asyncio.wait_for(done.wait(), 60)  # a hang fails the run, it does not stall it
        # the last batch's commit follows its handler at once: a poll or two
        while await consumer.max_committed_id() != last:  # noqa: ASYNC110
            await asyncio.sleep(0.0005)
        elapsed = time.perf_counter() - start
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return count / elapsed


async def bare_loop_rate(client: Redis, count: int) -> float:
    """Records/s of the loop a user would write: XREAD COUNT 1000, json.loads, SET offset."""
    await client.ping()
    start = time.perf_counter()
    offset: Any = "0-0"
    seen = 0
    while seen < count:
        reply: Any = await client.xread({QUEUE: offset}, count=1000, block=1000)
        for _, entries in reply:
            for _, fields in entries:
                json.loads(fields[b"payload"])
            seen += len(entries)
            offset = entries[-1][0]
        await client.set(OFFSET, offset)
    return count / (time.perf_counter() - start)
