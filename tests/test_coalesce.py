"""Auto-pipelining: concurrent single calls share pipelines, each caller gets its own outcome."""

from __future__ import annotations

import asyncio
import gc
import json
import random
import sys
from collections import Counter
from typing import Any

import pytest
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection

from aioredstream import (
    Model,
    PayloadError,
    Producer,
    ReplicationError,
    ServerConnectionError,
    ServerError,
)
from aioredstream.testing import ServerProcess

from .conftest import ClientFactory, ServerFactory, StallableReplica
from .helpers import Post, User, entries, in_use

DELAY = "redstream:stream:users.delay"


class Broken(Model):
    def redstream_payload(self) -> dict[str, object]:
        return {"id": object()}  # not JSON


async def _connections_named(client: Redis, name: str) -> int:
    """Connections the server sees from clients named ``name`` (observed, not timed)."""
    listing: Any = await client.client_list()
    return sum(1 for entry in listing if entry.get("name") == name)


async def test_concurrent_delays_share_few_connections_and_get_their_own_ids(
    server: ServerProcess, client: Redis, make_client: ClientFactory
) -> None:
    producer_client = make_client(server.url, client_name="coalesced")
    producer = Producer(producer_client)
    ids = await asyncio.gather(*(producer.delay(User(n)) for n in range(500)))
    # 500 calls, a handful of pipelines: the pool opened very few connections
    assert await _connections_named(client, "coalesced") <= 2
    assert len(set(ids)) == 500
    by_id = {message_id: payload["id"] for message_id, payload in await entries(client, DELAY)}
    assert [by_id[message_id] for message_id in ids] == list(range(500))


async def test_concurrent_queue_calls_delete_each_callers_own_delay_message(
    client: Redis,
) -> None:
    producer = Producer(client)
    ids = await asyncio.gather(*(producer.delay(User(n)) for n in range(300)))
    keep = set(ids[::3])
    await asyncio.gather(
        *(producer.queue(User(n), i) for n, i in enumerate(ids) if i not in keep),
        *(producer.queue(Post(n)) for n in range(50)),
    )
    assert {message_id for message_id, _ in await entries(client, DELAY)} == keep
    queued = [p["id"] for _, p in await entries(client, "redstream:stream:users")]
    assert sorted(queued) == [n for n, i in enumerate(ids) if i not in keep]
    assert await client.xlen("redstream:stream:posts") == 50


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory: 3.12+")
async def test_an_application_with_eager_tasks_still_shares_batches(
    server: ServerProcess, client: Redis, make_client: ClientFactory
) -> None:
    """With ``asyncio.eager_task_factory`` (an application's choice; the library never
    sets it) a batch task starts at once, but calls still share few connections, each
    caller gets its own id and a cancelled caller leaves the others' calls alone."""
    loop = asyncio.get_running_loop()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
    try:
        producer = Producer(make_client(server.url, client_name="eager"))
        ids = await asyncio.gather(*(producer.delay(User(n)) for n in range(500)))
        assert await _connections_named(client, "eager") <= 2
        # eager: each task runs to its first wait before gather returns, so the first
        # call is on the wire, the second in a batch, and the rest (User(0) last) queue
        others = asyncio.gather(*(producer.queue(User(n), i) for n, i in enumerate(ids) if n))
        cancelled = asyncio.ensure_future(producer.queue(User(0), ids[0]))
        cancelled.cancel()
        await others
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert await _connections_named(client, "eager") <= 2
    finally:
        loop.set_task_factory(None)
    by_id = {message_id: payload["id"] for message_id, payload in await entries(client, DELAY)}
    assert sorted(by_id.values()) == [0]  # 1..499 queued and deleted; 0 never queued
    queued = [p["id"] for _, p in await entries(client, "redstream:stream:users")]
    assert sorted(queued) == list(range(1, 500))


async def test_an_error_reply_fails_only_its_own_caller(
    server: ServerProcess, client: Redis, make_client: ClientFactory
) -> None:
    await client.set("redstream:stream:posts.delay", "not a stream")
    producer_client = make_client(server.url, client_name="mixed")
    producer = Producer(producer_client)
    calls = [producer.delay(Post(n) if n % 10 == 0 else User(n)) for n in range(200)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert await _connections_named(client, "mixed") <= 2  # they did share pipelines
    for n, result in enumerate(results):
        if n % 10 == 0:
            assert isinstance(result, ServerError)
            assert "WRONGTYPE" in str(result)
        else:
            assert isinstance(result, str)
    assert await client.xlen(DELAY) == 180


async def test_a_bad_payload_raises_in_its_caller_and_is_never_sent(client: Redis) -> None:
    producer = Producer(client)
    calls = [producer.delay(Broken() if n == 7 else User(n)) for n in range(20)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[7], PayloadError)
    assert sum(isinstance(r, str) for r in results) == 19
    assert await client.exists("redstream:stream:brokens.delay") == 0


async def test_one_wait_per_coalesced_batch_never_falsely_acknowledges_a_stalled_replica(
    stallable_replica: StallableReplica, make_client: ClientFactory
) -> None:
    client = make_client(stallable_replica.primary.url)
    producer = Producer(client, wait=1, wait_timeout=0.3)
    healthy = await asyncio.gather(*(producer.delay(User(n)) for n in range(100)))
    assert len(set(healthy)) == 100
    await client.set("redstream:stream:posts.delay", "not a stream")
    with stallable_replica.stalled():
        results = await asyncio.gather(
            *(producer.delay(User(n)) for n in range(100)),
            *(producer.queue(Post(n)) for n in range(20)),
            producer.delay(Post(0)),
            return_exceptions=True,
        )
    # an error reply is that caller's answer, whatever the batch's WAIT says
    wrong_type = results.pop()
    assert isinstance(wrong_type, ServerError)
    assert "WRONGTYPE" in str(wrong_type)
    for result in results[:100]:
        assert isinstance(result, ReplicationError)
        assert result.acknowledged == 0
    # queue writes do not wait for replicas: they succeed in the same batches
    assert results[100:] == [True] * 20
    assert len({id(r) for r in results[:100]}) == 100  # one exception object per caller
    assert await in_use(client) == 0


async def test_cancellation_storm_over_coalesced_calls_crosses_no_replies(
    client: Redis,
) -> None:
    producer = Producer(client, slice_size=20)
    rng = random.Random(4321)
    returned: dict[str, int] = {}

    async def call(n: int) -> None:
        if n % 4 == 3:
            await producer.queue(User(n))
        else:
            returned[await producer.delay(User(n))] = n

    for round_ in range(15):
        base = 1000 * round_
        tasks = [asyncio.create_task(call(base + n)) for n in range(200)]
        for _ in range(rng.randrange(4)):
            await asyncio.sleep(0)
        await asyncio.sleep(rng.random() * 0.003)
        cancel_all = round_ % 5 == 4
        for task in tasks:
            if cancel_all or rng.random() < 0.5:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert await in_use(client) == 0
        assert asyncio.all_tasks() == {asyncio.current_task()}  # no stray batch tasks
    stored = {message_id: p["id"] for message_id, p in await entries(client, DELAY)}
    assert returned  # some calls completed
    for message_id, n in returned.items():
        assert stored[message_id] == n
    # after the storm the producer still maps every id to its own payload
    ids = await asyncio.gather(*(producer.delay(User(n)) for n in range(100_000, 100_300)))
    stored = {message_id: p["id"] for message_id, p in await entries(client, DELAY)}
    assert [stored[i] for i in ids] == list(range(100_000, 100_300))


async def test_2000_concurrent_handlers_succeed_on_a_default_client(
    server: ServerProcess, client: Redis, make_client: ClientFactory
) -> None:
    producer = Producer(make_client(server.url))  # default pool: 100 connections at most

    async def handler(n: int) -> None:
        message_id = await producer.delay(User(n))
        await asyncio.sleep(0)
        await producer.queue(User(n), message_id)

    await asyncio.gather(*(handler(n) for n in range(2000)))
    assert await client.xlen("redstream:stream:users") == 2000
    assert await client.xlen(DELAY) == 0


async def test_coalescing_works_on_a_one_connection_blocking_pool(
    server: ServerProcess, client: Redis
) -> None:
    pool = BlockingConnectionPool.from_url(server.url, max_connections=1, timeout=10)
    blocking = Redis(connection_pool=pool)
    try:
        producer = Producer(blocking)
        ids = await asyncio.gather(*(producer.delay(User(n)) for n in range(300)))
        await asyncio.gather(*(producer.queue(User(n), i) for n, i in enumerate(ids)))
        rows = await entries(client, "redstream:stream:users")
        assert sorted(json.dumps(p) for _, p in rows) == sorted(
            json.dumps({"id": n}) for n in range(300)
        )
        assert await in_use(blocking) == 0
    finally:
        await blocking.aclose()
        await pool.disconnect()


async def test_a_lost_connection_fails_every_caller_of_its_batch(
    server_factory: ServerFactory, make_client: ClientFactory
) -> None:
    primary = server_factory()
    client = make_client(primary.url)
    producer = Producer(client, wait=1, wait_timeout=0)  # no replica: every WAIT blocks
    killer = make_client(primary.url)
    calls = [asyncio.create_task(producer.delay(User(n))) for n in range(50)]
    while not all(task.done() for task in calls):
        # each kill breaks the batches blocked in WAIT; queued calls go in the next one
        await asyncio.sleep(0.05)
        await killer.client_kill_filter(_type="normal", skipme=True)
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, ServerConnectionError) for r in results)
    assert len({id(r) for r in results}) == 50  # one exception object per caller
    assert await killer.xlen(DELAY) == 50  # written, but never acknowledged
    assert await in_use(client) == 0


class _ErrorCaughtOnConnect(Connection):
    """Catches an error while it connects and keeps it in a local, as redis-py 8.1 does
    when a server refuses CLIENT SETINFO or MAINT_NOTIFICATIONS (Redis 7.0): the error's
    traceback and this frame form a cycle, and on Python 3.12+ the frame links to the
    frames of the task that opened the connection (a coalesced batch)."""

    async def _connect(self) -> None:
        await super()._connect()  # type: ignore[no-untyped-call]
        try:
            raise ValueError("refused")
        except ValueError as exc:
            refused = exc  # kept past the except block, as redis-py keeps its error
        assert refused is not None


@pytest.mark.parametrize(
    "connection_class", [Connection, _ErrorCaughtOnConnect], ids=["plain", "error-on-connect"]
)
async def test_coalesced_calls_leave_no_reference_cycles(
    server: ServerProcess, make_client: ClientFactory, connection_class: type[Connection]
) -> None:
    """A batch's calls, futures and replies are freed when its callers are done, not
    left to the garbage collector (whose collections cost a busy producer dearly),
    even when the batch's task opened a connection that left a cycle behind."""
    client = make_client(server.url, connection_class=connection_class)
    await client.flushall()
    producer = Producer(client)
    await producer.delay(User(0))  # the first call goes alone; the rest share batches
    gc.collect()
    gc.disable()
    try:
        ids = await asyncio.gather(*(producer.delay(User(n)) for n in range(500)))
        await asyncio.gather(*(producer.queue(User(n), i) for n, i in enumerate(ids)))
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = Counter(type(o).__name__ for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert (left["Call"], left["Future"]) == (0, 0), left
    assert await client.xlen("redstream:stream:users") == 500


async def test_a_pending_single_call_holds_no_closure_cell_or_bound_method(client: Redis) -> None:
    """What a call in flight keeps alive is what every young collection walks: its
    coroutines, its queued call and its future, but no closure cell (a telemetry
    lambda naming a local) and no bound method (a reply check made per call)."""
    await client.flushall()
    producer = Producer(client)
    ids = [await producer.delay(User(-1))]  # warm: the target is cached, the script known

    def census() -> Counter[str]:
        return Counter(type(o).__name__ for o in gc.get_objects())

    for calls in (
        lambda n: producer.delay(User(n)),
        lambda n: producer.queue(User(n), ids[0]),
    ):
        gc.collect()
        gc.disable()
        try:
            before = census()
            pending = [asyncio.ensure_future(calls(n)) for n in range(400)]
            await asyncio.sleep(0)  # each task runs to its first wait: the calls are queued
            held = census() - before
        finally:
            gc.enable()
        await asyncio.gather(*pending)
        assert held["Call"] >= 399, held  # every call but the one sent alone is in flight
        # the batch in flight holds a few of its own; one per call would be hundreds
        assert held["cell"] < 10, held
        assert held["method"] < 10, held
