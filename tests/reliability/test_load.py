"""Load: many concurrent handlers on a default client, a cancellation storm, a soak."""

from __future__ import annotations

import asyncio
import json
import random
import resource
import time
from contextlib import nullcontext
from typing import Any

import pytest
from redis.asyncio import Redis

from aioredstream import Producer, ReplicationError

from ..conftest import ClientFactory, StallableReplica
from ..helpers import User, in_use


async def _handler(producer: Producer, user: User) -> None:
    """What a FastAPI handler does: delay, (commit), queue."""
    delay_id = await producer.delay(user)
    await asyncio.sleep(0)  # the database commit
    await producer.queue(user, delay_message_id=delay_id)


async def test_ten_thousand_concurrent_handlers_on_a_default_client(client: Redis) -> None:
    producer = Producer(client)  # a plain Redis.from_url client: pool of 100 connections
    results = await asyncio.gather(
        *(_handler(producer, User(i)) for i in range(10_000)), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    assert await client.xlen("redstream:stream:users") == 10_000
    assert await client.xlen("redstream:stream:users.delay") == 0
    assert await in_use(client) == 0


async def _own_payload(client: Redis, message_id: str, n: int) -> None:
    rows: Any = await client.xrange("redstream:stream:users.delay", message_id, message_id)
    assert [json.loads(f[b"payload"]) for _, f in rows] == [{"id": n}], "crossed reply"


@pytest.mark.slow
async def test_a_storm_of_ten_thousand_cancelled_calls_crosses_no_replies(
    stallable_replica: StallableReplica, make_client: ClientFactory
) -> None:
    client = make_client(stallable_replica.primary.url)
    waiting = Producer(client, wait=1, wait_timeout=0.05, slice_size=20)
    plain = Producer(client, slice_size=20)
    rng = random.Random(5)
    before = len(asyncio.all_tasks())

    async def call(n: int) -> None:
        producer = waiting if n % 2 else plain
        if n % 5 == 0:
            await producer.bulk_delay([User(n)] * 50)
        elif n % 5 == 1:
            async with producer.bulk([User(n)] * 30):
                await asyncio.sleep(0)
        else:
            await _handler(producer, User(n))

    calls = 0
    for wave in range(50):
        # some waves cancel calls blocked in WAIT
        with stallable_replica.stalled() if wave % 3 == 0 else nullcontext():
            tasks = [asyncio.create_task(call(n)) for n in range(wave * 200, wave * 200 + 200)]
            calls += len(tasks)
            await asyncio.sleep(rng.random() * 0.01)
            for task in tasks:
                task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        unexpected = [
            o
            for o in outcomes
            if isinstance(o, BaseException)
            and not isinstance(o, asyncio.CancelledError | ReplicationError)
        ]
        assert unexpected == []
        for n in range(1_000_000 + wave * 20, 1_000_000 + wave * 20 + 20):
            await _own_payload(client, await plain.delay(User(n)), n)
    assert calls == 10_000
    assert await in_use(client) == 0
    await asyncio.sleep(0.1)
    assert len(asyncio.all_tasks()) <= before


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_sixty_second_soak_keeps_memory_tasks_and_connections_flat(
    client: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    producer = Producer(client)
    rate_per_s, seconds = 2000, 60
    samples: list[tuple[float, int, int, int]] = []
    start = time.monotonic()
    n, next_sample = 0, 0.0
    while (elapsed := time.monotonic() - start) < seconds:
        batch = [_handler(producer, User(n + i)) for i in range(rate_per_s // 10)]
        n += len(batch)
        await asyncio.gather(*batch)
        if elapsed >= next_sample:  # every 5 s
            next_sample += 5
            pool: Any = client.connection_pool
            connections = len(pool._available_connections) + len(pool._in_use_connections)
            samples.append((elapsed, _rss_bytes(), len(asyncio.all_tasks()), connections))
            await client.xtrim("redstream:stream:users", maxlen=0)  # keep the server small
        await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - start - elapsed)))
    warm, end = samples[1], samples[-1]
    with capsys.disabled():
        print(
            f"\nsoak: {n} records in {seconds}s; RSS {warm[1] / 2**20:.1f} MiB at {warm[0]:.0f}s "
            f"-> {end[1] / 2**20:.1f} MiB at {end[0]:.0f}s; tasks {warm[2]} -> {end[2]}; "
            f"connections {warm[3]} -> {end[3]}"
        )
    assert end[1] - warm[1] < 16 * 2**20, "memory grew during the soak"
    assert end[2] <= warm[2]
    assert end[3] <= max(warm[3], 4)
