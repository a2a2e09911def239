"""Delayer: repairs a crash between commit and queue, after its delay, in order, in batches."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from aioredstream import Delayer, Producer, max_consumer_id, stream_size
from aioredstream._validate import parse_id

from .helpers import User, decoded, entries, eventually, in_use, raw_payloads

STREAM = "redstream:stream:users"
DELAY = "redstream:stream:users.delay"


async def _server_ms(client: Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def _add_at(client: Redis, ms: int, seq: int, payload: str | bytes) -> str:
    """A delay entry with an explicit id, as if written ``ms`` by the server clock."""
    message_id: str = decoded(await client.xadd(DELAY, {"payload": payload}, id=f"{ms}-{seq}"))
    return message_id


async def _delayer_offset(client: Redis) -> str | None:
    return await max_consumer_id(client, stream_name="users.delay", consumer_name="delayer")


async def test_a_crash_between_commit_and_queue_is_repaired_but_not_before_the_delay(
    client: Redis,
) -> None:
    producer = Producer(client)
    delay_id = await producer.delay(User(42))
    # ... the commit happens, then the process dies before producer.queue() ...
    delayer = Delayer(client, stream_name="users", delay=0.5, block=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(delayer.run)

        async def repaired() -> bool:
            # copied, then (a round trip later) deleted and committed
            return await stream_size(client, "users") == 1 and await client.xlen(DELAY) == 0

        await eventually(repaired)
        tg.cancel_scope.cancel()
    [(copy_id, payload)] = await entries(client, STREAM)
    assert payload == {"id": 42}
    # The copy's id is the server's clock at the copy: at least the delay after the original.
    assert parse_id(copy_id)[0] >= parse_id(delay_id)[0] + 500
    assert await client.xlen(DELAY) == 0
    assert await _delayer_offset(client) == delay_id


async def test_a_delay_message_deleted_by_queue_is_never_replayed(client: Redis) -> None:
    producer = Producer(client)
    delay_id = await producer.delay(User(1))
    await producer.queue(User(1), delay_message_id=delay_id)
    delayer = Delayer(client, stream_name="users", delay=0, block=0.05)
    assert await delayer.run_once() == 0
    assert [p for _, p in await entries(client, STREAM)] == [{"id": 1}]


async def test_due_messages_are_delivered_and_committed_before_waiting_for_the_next(
    client: Redis,
) -> None:
    now = await _server_ms(client)
    await _add_at(client, now - 10_000, 0, '{"id":1}')
    b = await _add_at(client, now - 5_000, 0, '{"id":2}')
    c = await _add_at(client, now + 60_000, 0, '{"id":3}')  # due in a minute
    delayer = Delayer(client, stream_name="users", delay=1, block=0.05)
    before = asyncio.all_tasks()
    async with anyio.create_task_group() as tg:
        tg.start_soon(delayer.run)

        async def committed_b() -> bool:
            return await _delayer_offset(client) == b

        await eventually(committed_b)
        tg.cancel_scope.cancel()  # mid-sleep, waiting for c
    assert [p for _, p in await entries(client, STREAM)] == [{"id": 1}, {"id": 2}]
    assert [i for i, _ in await entries(client, DELAY)] == [c]
    assert await _delayer_offset(client) == b
    assert await client.exists(delayer.consumer.lock.key) == 0
    assert asyncio.all_tasks() == before
    assert await in_use(client) == 0


async def test_a_message_that_comes_due_during_the_batch_follows_in_order(client: Redis) -> None:
    now = await _server_ms(client)
    first = await _add_at(client, now - 10_000, 0, '{"id":1}')
    last = await _add_at(client, now, 0, '{"id":2}')  # due in 0.3 s
    delayer = Delayer(client, stream_name="users", delay=0.3, block=0.05)
    assert await delayer.run_once() == 2  # delivers the due one, waits, delivers the other
    rows = await entries(client, STREAM)
    assert [p for _, p in rows] == [{"id": 1}, {"id": 2}]
    assert parse_id(rows[0][0])[0] < now + 300 <= parse_id(rows[1][0])[0]
    assert await _delayer_offset(client) == last
    assert first != last


async def test_gem_spec_run_once_delivers_a_due_message_then_waits_for_the_next(
    client: Redis,
) -> None:
    """The gem's spec: two delay messages 3 s apart, delay 1 s, ``run_once`` in a thread:
    the first is copied and committed while it waits; both are copied when it returns.
    Here a third of the gem's times (1 s apart, delay 0.5 s): the same shape, the first
    committed alone for 1 s. (The second is written with a future id, so the test needs
    no real time before.)"""
    now = await _server_ms(client)
    first = await _add_at(client, now - 500, 0, '{"id":1}')  # due now
    second = await _add_at(client, now + 500, 0, '{"id":2}')  # due in 1 s
    delayer = Delayer(client, stream_name="users", delay=0.5, block=0.05)
    seen_first_committed_alone = False
    async with anyio.create_task_group() as tg:
        done = anyio.Event()

        async def run() -> None:
            assert await delayer.run_once() == 2
            done.set()

        tg.start_soon(run)

        async def first_committed() -> bool:
            nonlocal seen_first_committed_alone
            offset = await _delayer_offset(client)
            if offset == first:
                # committed after its copy, before the second's (due seconds later)
                copies = [p for _, p in await entries(client, STREAM)]
                seen_first_committed_alone = copies[:1] == [{"id": 1}]
            return offset is not None or done.is_set()

        await eventually(first_committed)
    assert seen_first_committed_alone
    rows = await entries(client, STREAM)
    assert [p for _, p in rows] == [{"id": 1}, {"id": 2}]
    assert parse_id(rows[1][0])[0] >= now + 1_000  # copied once due, by the server's clock
    assert await _delayer_offset(client) == second
    assert await client.xlen(DELAY) == 0


async def test_gem_spec_run_once_waits_for_a_fresh_message_and_delivers_it(client: Redis) -> None:
    """The gem's spec: one fresh delay message, delay 2 s: not copied early, but copied
    by the time ``run_once`` returns (here delay 1 s; "not early" by the copy's id)."""
    producer = Producer(client)
    delay_id = await producer.delay(User(7))
    delayer = Delayer(client, stream_name="users", delay=1, block=0.05)
    assert await delayer.run_once() == 1
    [(copy_id, payload)] = await entries(client, STREAM)
    assert payload == {"id": 7}
    assert parse_id(copy_id)[0] >= parse_id(delay_id)[0] + 1_000
    assert await _delayer_offset(client) == delay_id


async def test_a_message_queued_while_the_delayer_waits_is_never_replayed(client: Redis) -> None:
    producer = Producer(client)
    delay_id = await producer.delay(User(1))
    delayer = Delayer(client, stream_name="users", delay=0.3, block=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(delayer.run_once)  # reads the delay message (or not yet), waits
        await producer.queue(User(1), delay_message_id=delay_id)
    assert await delayer.run_once() == 0
    assert [p for _, p in await entries(client, STREAM)] == [{"id": 1}]  # the queue message only


async def test_batches_are_at_most_batch_size_and_keep_the_payload_bytes(client: Redis) -> None:
    payloads = ['{"id":1}', '{"id":2,"note":"é"}', '{"id":3}']
    for seq, payload in enumerate(payloads):
        await _add_at(client, 1000, seq, payload)
    delayer = Delayer(client, stream_name="users", delay=0, batch_size=2, block=0.05)
    assert await delayer.run_once() == 2
    assert await delayer.run_once() == 1
    assert await delayer.run_once() == 0
    assert await raw_payloads(client, STREAM) == [p.encode() for p in payloads]
    assert await client.xlen(DELAY) == 0


async def test_malformed_delay_messages_are_deleted_not_copied(
    client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await _add_at(client, 1000, 0, "{broken")
    await client.xadd(DELAY, {"other": "x"}, id="1000-1")
    await _add_at(client, 1000, 2, '{"id":3}')
    delayer = Delayer(client, stream_name="users", delay=0, block=0.05)
    with caplog.at_level(logging.WARNING, logger="aioredstream.consumer"):
        assert await delayer.run_once() == 3
    assert [p for _, p in await entries(client, STREAM)] == [{"id": 3}]
    assert await client.xlen(DELAY) == 0
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) == 2


async def test_the_namespace_applies_to_every_key(client: Redis) -> None:
    await client.xadd("ns:redstream:stream:users.delay", {"payload": '{"id":1}'}, id="1000-0")
    delayer = Delayer(client, stream_name="users", delay=0, namespace="ns", block=0.05)
    assert await delayer.run_once() == 1
    rows: Any = await client.xrange("ns:redstream:stream:users")
    assert len(rows) == 1
    assert decoded(await client.get("ns:redstream:offset:users.delay:delayer")) == "1000-0"
    assert delayer.consumer.lock.key == "ns:redstream:lock:consumer:users.delay:delayer"
