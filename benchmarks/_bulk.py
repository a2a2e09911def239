"""Bulk: delay + queue + delay deletion for n records (3 commands each), per method.

Every method writes to a flushed server and returns the Redis commands it sent, so
results compare commands/s (and records/s) on the same server, in the same process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from aioredstream import Producer
from benchmarks._suite import DELAY, QUEUE, SLICE, BenchUser, payload


@dataclass
class Clients:
    """What the methods write with: a redis.asyncio client, and a valkey-glide one if installed."""

    redis: Redis
    url: str
    glide: Any = None


async def producer_bulk(clients: Clients, records: list[BenchUser]) -> int:
    async with Producer(clients.redis).bulk(records):
        pass
    return 3 * len(records)


async def handwritten_bulk(clients: Clients, records: list[BenchUser]) -> int:
    """redis.asyncio pipelines of 250, the loop a user would write."""
    client = clients.redis
    ids: list[Any] = []
    for start in range(0, len(records), SLICE):
        pipe = client.pipeline(transaction=False)
        for record in records[start : start + SLICE]:
            pipe.xadd(DELAY, {"payload": payload(record)})
        ids += await pipe.execute()
    for start in range(0, len(records), SLICE):
        pipe = client.pipeline(transaction=False)
        for record, message_id in zip(
            records[start : start + SLICE], ids[start : start + SLICE], strict=True
        ):
            pipe.xadd(QUEUE, {"payload": payload(record)})
            pipe.xdel(DELAY, message_id)
        await pipe.execute()
    return 3 * len(records)


async def glide_bulk(clients: Clients, records: list[BenchUser]) -> int:
    """valkey-glide batches of 250 (non-atomic: a pipeline), the same loop (one XDEL per
    record, as the redis.asyncio loop above)."""
    from glide import Batch

    client = clients.glide
    ids = await _glide_delays(client, records)
    for start in range(0, len(records), SLICE):
        batch = Batch(is_atomic=False)
        for record, message_id in zip(
            records[start : start + SLICE], ids[start : start + SLICE], strict=True
        ):
            batch.xadd(QUEUE, [("payload", payload(record))])
            batch.xdel(DELAY, [message_id])
        await client.exec(batch, raise_on_error=True)
    return 3 * len(records)


async def _glide_delays(client: Any, records: list[BenchUser]) -> list[Any]:
    """The delay half of both glide forms: non-atomic batches of 250 XADDs; the ids."""
    from glide import Batch

    ids: list[Any] = []
    for start in range(0, len(records), SLICE):
        batch = Batch(is_atomic=False)
        for record in records[start : start + SLICE]:
            batch.xadd(DELAY, [("payload", payload(record))])
        ids += await client.exec(batch, raise_on_error=True)
    return ids


async def glide_multi_xdel_bulk(clients: Clients, records: list[BenchUser]) -> int:
    """The strongest hand-written valkey-glide form: non-atomic batches of 250, the delay
    XADDs; then the queue XADDs plus ONE multi-id XDEL per batch."""
    from glide import Batch

    client = clients.glide
    ids = await _glide_delays(client, records)
    for start in range(0, len(records), SLICE):
        batch = Batch(is_atomic=False)
        for record in records[start : start + SLICE]:
            batch.xadd(QUEUE, [("payload", payload(record))])
        batch.xdel(DELAY, ids[start : start + SLICE])
        await client.exec(batch, raise_on_error=True)
    return 3 * len(records)


async def one_at_a_time(clients: Clients, records: list[BenchUser]) -> int:
    client = clients.redis
    for record in records:
        message_id = await client.xadd(DELAY, {"payload": payload(record)})
        await client.xadd(QUEUE, {"payload": payload(record)})
        await client.xdel(DELAY, message_id)
    return 3 * len(records)


async def faststream_publish(clients: Clients, records: list[BenchUser]) -> int:
    """FastStream's stream publish in pipelines of 250 (XADD only: it has no XDEL)."""
    from faststream.redis import RedisBroker

    client = clients.redis
    broker = RedisBroker(clients.url)
    await broker.connect()
    try:
        for start in range(0, len(records), SLICE):
            async with client.pipeline(transaction=False) as pipe:
                for record in records[start : start + SLICE]:
                    await broker.publish({"id": record.id}, stream=DELAY, pipeline=pipe)
                await pipe.execute()
    finally:
        await broker.stop()
    return len(records)


Method = Callable[[Clients, list[BenchUser]], Awaitable[int]]

PRODUCER = "aioredstream bulk"
HANDWRITTEN = "hand-written redis.asyncio pipelines of 250"
GLIDE_MULTI = "hand-written valkey-glide batches of 250, one multi-id XDEL per batch"
GLIDE = "hand-written valkey-glide batches of 250, one XDEL per record"
ONE_AT_A_TIME = "one-at-a-time xadd"
FASTSTREAM = "FastStream publish, pipelines of 250"

BULK_METHODS: dict[str, Method] = {
    PRODUCER: producer_bulk,
    HANDWRITTEN: handwritten_bulk,
    GLIDE_MULTI: glide_multi_xdel_bulk,
    GLIDE: glide_bulk,
    ONE_AT_A_TIME: one_at_a_time,
    FASTSTREAM: faststream_publish,
}
