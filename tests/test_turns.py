"""``run_once`` in a loop takes turns between same-named consumers, as the gem's does.

The gem re-takes its lock around every batch, so two same-named consumers share a
busy stream (measured with the gem: 19/11, 17/13, 21/9 of 30 batches). Here the
releasing side, one round trip ahead, used to re-take the lock before the standby it
had woken could try (19/1 of 20); now a releaser that woke a standby waits for the
next release instead.

The bounds asserted are loose on purpose. Each consumer gets at least a fifth of the
30 batches, and the lock changes hands at least 6 times (a fifth) in 29 chances. Turn
taking gives about 15/15 and usually close to 29 hand-overs; with the whole suite
running on the 2-core machine the worst seen was 13/17 with 9 hand-overs (a standby
not yet blocked on the notify list when the holder releases loses that round). The
old behaviour gave long runs to whoever held the lock: shares from 30/0 to 18/12 and
0 to 5 hand-overs in these loops, so it fails one bound or the other. The loops call
``run_once`` again right after a batch, with no command in between
(``run_once_loop``): a round trip there gives the standby time to take the lock and
hides the old behaviour (checked: the old code then passed).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path
from typing import Any

import anyio
from redis.asyncio import Redis

from aioredstream import Consumer, Message

from .helpers import decoded, eventually
from .run_once_loop import consume_until_done

BATCHES = 30
FAIR_SHARE = BATCHES // 5
MIN_HANDOVERS = BATCHES // 5


def _check_turns(handled: list[list[int]]) -> None:
    """Each consumer's share, and how often the next batch went to the other one."""
    owner = {i: who for who, ids in enumerate(handled) for i in ids}
    assert sorted(owner) == list(range(BATCHES))  # each batch handled exactly once
    assert sum(map(len, handled)) == BATCHES
    order = [owner[i] for i in range(BATCHES)]
    handovers = sum(a != b for a, b in itertools.pairwise(order))
    shares = [len(ids) for ids in handled]
    assert min(shares) >= FAIR_SHARE, (shares, order)
    assert handovers >= MIN_HANDOVERS, (shares, order)


ROOT = Path(__file__).resolve().parent.parent


async def _fill(client: Redis) -> str:
    last: Any = b""
    for i in range(BATCHES):
        last = await client.xadd("redstream:stream:users", {"payload": f'{{"id":{i}}}'})
    return str(decoded(last))


async def test_two_tasks_running_run_once_in_a_loop_share_the_batches(client: Redis) -> None:
    last_id = await _fill(client)
    handled: list[list[int]] = []

    async def worker() -> None:
        consumer = Consumer(client, stream_name="users", name="indexer", batch_size=1, block=0.05)
        handled.append(await consume_until_done(consumer, last_id))

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        tg.start_soon(worker)
    _check_turns(handled)


async def test_two_processes_running_run_once_in_a_loop_share_the_batches(
    client: Redis, redis_url: str
) -> None:
    await _fill(client)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.run_once_loop",
            redis_url,
            "2",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    with anyio.fail_after(60):
        outputs = [await proc.communicate() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    _check_turns([[int(i) for i in out.decode().split(",") if i] for out, _ in outputs])


async def test_run_keeps_holding_the_lock_across_batches(client: Redis) -> None:
    """``run()`` is unchanged: one consumer works, the other stands by."""
    last_id = await _fill(client)
    handled: dict[str, int] = {"a": 0, "b": 0}

    def consumer() -> Consumer:
        return Consumer(client, stream_name="users", name="indexer", batch_size=1, block=0.05)

    async with anyio.create_task_group() as tg:
        for name in handled:

            async def run(name: str = name) -> None:
                async def handler(messages: object) -> None:
                    handled[name] += 1

                await consumer().run(handler)

            tg.start_soon(run)
        probe = consumer()
        while await probe.max_committed_id() != last_id:  # noqa: ASYNC110 - server state
            await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    assert sorted(handled.values()) == [0, BATCHES]


async def _standby_blocked(client: Redis) -> bool:
    info = await client.info("clients")
    return int(info["blocked_clients"]) >= 1


async def test_a_releaser_that_woke_a_standby_lets_it_have_the_next_turn(client: Redis) -> None:
    """The mechanism, step by step (no race to win): A handles a batch while B stands by;
    A's next ``run_once`` waits for the next release instead of taking the free lock,
    and B's next ``run_once`` gets the batch."""
    await _fill(client)

    def consumer() -> Consumer:
        return Consumer(client, stream_name="users", name="indexer", batch_size=1, block=0.05)

    a, b = consumer(), consumer()
    got: dict[str, list[int]] = {"a": [], "b": []}
    in_handler, finish = anyio.Event(), anyio.Event()

    async def slow(messages: list[Message]) -> None:
        got["a"].extend(m.payload["id"] for m in messages)
        in_handler.set()
        await finish.wait()

    async def record_b(messages: list[Message]) -> None:
        got["b"].extend(m.payload["id"] for m in messages)

    async with anyio.create_task_group() as tg:
        tg.start_soon(a.run_once, slow)
        await in_handler.wait()
        async with anyio.create_task_group() as standby:
            standby.start_soon(b.run_once, record_b)  # lock taken: B blocks on the notify list
            await eventually(lambda: _standby_blocked(client))
            finish.set()  # A commits, releases and wakes B; B's run_once returns 0
    assert got == {"a": [0], "b": []}
    results: list[int] = []
    async with anyio.create_task_group() as tg:

        async def a_again() -> None:
            results.append(await a.run_once(slow))

        tg.start_soon(a_again)  # the free lock is B's turn: A waits for the next release
        await eventually(lambda: _standby_blocked(client))
        assert await b.run_once(record_b) == 1
    assert results == [0]
    assert got == {"a": [0], "b": [1]}
