"""Workers under faults: a server restart mid-run, offsets moving under the trimmer,
and a lock holder process that dies without releasing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from aioredstream import (
    Consumer,
    Delayer,
    Message,
    Producer,
    RedstreamError,
    Trimmer,
    max_consumer_id,
)
from aioredstream._validate import parse_id

from ..conftest import ClientFactory, ServerFactory
from ..helpers import User, decoded, eventually


def _collector(seen: list[int], pause_s: float = 0.0) -> Any:
    async def handler(messages: list[Message]) -> None:
        if pause_s:
            await anyio.sleep(pause_s)
        seen.extend(m.payload["id"] for m in messages)

    return handler


async def _produce(producer: Producer, ids: range, *, crash_every: int = 7) -> None:
    """Produce ids in small bulks; every n-th record 'crashes' before queue (delay only).
    Calls that fail because the server is down are retried, as an application would."""
    for start in range(ids.start, ids.stop, 10):
        users = [User(i) for i in range(start, min(start + 10, ids.stop))]
        while True:
            try:
                async with producer.bulk([u for u in users if u.id % crash_every]):
                    pass
                for user in users:
                    if not user.id % crash_every:
                        await producer.delay(user)
                break
            except RedstreamError:
                await anyio.sleep(0.05)


@pytest.mark.slow
async def test_workers_resume_after_a_server_restart_and_lose_nothing(
    server_factory: ServerFactory, make_client: ClientFactory
) -> None:
    server = server_factory("--appendonly", "yes", "--appendfsync", "always")
    client = make_client(server.url)
    seen: list[int] = []
    fast: Any = {"block": 0.05, "backoff": 0.1}
    consumer = Consumer(client, stream_name="users", name="indexer", batch_size=50, **fast)
    delayer = Delayer(client, stream_name="users", delay=0.3, **fast)
    trimmer = Trimmer(client, stream_name="users", consumer_names=["indexer"], interval=0.1,
                      backoff=0.1)  # fmt: skip
    producer = Producer(client)
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run, _collector(seen))
        tg.start_soon(delayer.run)
        tg.start_soon(trimmer.run)
        await _produce(producer, range(300))
        # crash while the workers are busy with those records
        committed = await consumer.max_committed_id() or "0-0"
        server.kill()
        await anyio.sleep(0.3)
        server.start()  # same port, same AOF
        after = await max_consumer_id(client, stream_name="users", consumer_name="indexer")
        assert parse_id(after or "0-0") >= parse_id(committed), "the offset went backwards"
        await _produce(producer, range(300, 600))
        await eventually(lambda: _has(seen, range(600)), timeout_s=30)
        tg.cancel_scope.cancel()
    assert set(seen) == set(range(600))  # at least once: every record, duplicates allowed


async def _has(seen: list[int], ids: range) -> bool:
    return set(ids) <= set(seen)


async def test_the_trimmer_never_deletes_what_a_listed_consumer_has_not_committed(
    client: Redis,
) -> None:
    fast_seen: list[int] = []
    slow_seen: list[int] = []
    opts: Any = {"block": 0.05, "backoff": 0.1}
    fast = Consumer(client, stream_name="users", name="fast", batch_size=100, **opts)
    slow = Consumer(client, stream_name="users", name="slow", batch_size=7, **opts)
    trimmer = Trimmer(client, stream_name="users", consumer_names=["fast", "slow"], interval=0.005)
    producer = Producer(client)
    # A listed consumer that never committed holds nothing back (the gem's rule):
    # registering both at 0-0 first makes the trimmer wait for them from the start.
    await fast.commit("0-0")
    await slow.commit("0-0")
    async with anyio.create_task_group() as tg:
        tg.start_soon(fast.run, _collector(fast_seen))
        tg.start_soon(slow.run, _collector(slow_seen, pause_s=0.01))
        tg.start_soon(trimmer.run)
        for start in range(0, 1000, 50):
            await producer.bulk_queue([User(i) for i in range(start, start + 50)])
            await anyio.sleep(0.01)
        await eventually(lambda: _has(slow_seen, range(1000)), timeout_s=30)

        async def both_committed_everything() -> bool:
            # seen is not committed: a batch's commit follows its handler
            info: Any = await client.xinfo_stream("redstream:stream:users")
            newest = decoded(info["last-generated-id"])  # trimming does not change it
            offsets = [await fast.max_committed_id(), await slow.max_committed_id()]
            return offsets == [newest, newest]

        await eventually(both_committed_everything, timeout_s=30)
        tg.cancel_scope.cancel()
    # a premature trim would have made the slow consumer skip entries it never read
    assert sorted(slow_seen) == list(range(1000))
    assert sorted(set(fast_seen)) == list(range(1000))
    await trimmer.run_once()
    assert await client.xlen("redstream:stream:users") == 0


HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from redis.asyncio import Redis
    from aioredstream import Consumer

    async def main():
        client = Redis.from_url(sys.argv[1])
        consumer = Consumer(client, stream_name="users", name="indexer")

        async def hold_forever(messages):
            print("holding", flush=True)
            await asyncio.sleep(3600)

        await consumer.run(hold_forever)

    asyncio.run(main())
    """
)


@pytest.mark.slow
async def test_a_standby_takes_over_from_a_holder_process_killed_without_releasing(
    client: Redis, redis_url: str
) -> None:
    await Producer(client).bulk_queue([User(1), User(2)])
    holder = subprocess.Popen(  # noqa: ASYNC220 - a plain child process, waited on below
        [sys.executable, "-c", HOLDER, redis_url],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"holding"  # it holds the lock, mid-batch
        holder.send_signal(signal.SIGKILL)  # dies without releasing or committing
        holder.wait(10)
        seen: list[int] = []
        standby = Consumer(client, stream_name="users", name="indexer", block=0.05)
        with anyio.fail_after(15):  # generous: the dead holder's key expires within 5 s
            while not seen:
                await standby.run_once(_collector(seen))
        assert seen == [1, 2]  # the batch the dead holder never committed comes again
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
        if holder.stdout:
            holder.stdout.close()
