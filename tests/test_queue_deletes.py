"""The queue half: pipelined XADDs, then one multi-id XDEL per slice of exactly the
delay messages whose queue write succeeded; single calls by EVALSHA, never EVAL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import MaxConnectionsError

from aioredstream import Producer, ServerConnectionError, ServerError, ServerTimeoutError
from aioredstream.send.wire import translate_errors

from .helpers import Post, User, entries

DELAY = "redstream:stream:users.delay"


async def _calls(client: Redis) -> dict[str, int]:
    stats: Any = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}


async def test_bulk_queue_sends_one_xdel_per_slice_and_no_script(client: Redis) -> None:
    producer = Producer(client, slice_size=100)
    users = [User(i) for i in range(1000)]
    ids = await producer.bulk_delay(users)
    await client.config_resetstat()
    await producer.bulk_queue(users, delay_message_ids=ids)
    calls = await _calls(client)
    assert calls.get("xdel") == 10
    assert calls.get("xadd") == 1000
    assert "eval" not in calls
    assert "evalsha" not in calls
    assert await client.xlen(DELAY) == 0
    assert await client.xlen("redstream:stream:users") == 1000


async def test_bulk_queue_deletes_exactly_the_delay_messages_whose_write_succeeded(
    client: Redis,
) -> None:
    producer = Producer(client, slice_size=3)
    records: list[Any] = [User(0), Post(1), User(2), User(3), Post(4), User(5), User(6)]
    ids = await producer.bulk_delay(records)
    await client.set("redstream:stream:posts", "not a stream")  # posts' queue writes fail
    with pytest.raises(ServerError, match=r"XADD \(record at index 1\).*WRONGTYPE"):
        await producer.bulk_queue(records, delay_message_ids=ids)
    # every user was queued and lost its delay message; each refused post kept its own
    assert await entries(client, DELAY) == []
    posts_delay = await entries(client, "redstream:stream:posts.delay")
    assert [e[0] for e in posts_delay] == [ids[1], ids[4]]
    queued = [p["id"] for _, p in await entries(client, "redstream:stream:users")]
    assert queued == [0, 2, 3, 5, 6]


async def test_single_queue_calls_use_evalsha_and_reload_after_a_script_flush(
    client: Redis,
) -> None:
    producer = Producer(client)
    first, second, third = [await producer.delay(User(i)) for i in range(3)]
    await client.config_resetstat()
    await producer.queue(User(0), first)
    await client.script_flush()  # as after a restart or a failover: NOSCRIPT, then reload
    await producer.queue(User(1), second)
    await asyncio.gather(producer.queue(User(2), third), producer.queue(User(3)))
    calls = await _calls(client)
    assert "eval" not in calls
    assert calls["evalsha"] >= 3
    assert await client.xlen(DELAY) == 0
    assert await client.xlen("redstream:stream:users") == 4


def test_a_cause_without_words_is_named_by_its_type() -> None:
    with pytest.raises(ServerConnectionError) as info, translate_errors("delay on node"):
        raise MaxConnectionsError()
    assert str(info.value) == "delay on node: connection failed (MaxConnectionsError)"
    with pytest.raises(ServerTimeoutError) as timed_out, translate_errors("queue"):
        raise TimeoutError()
    assert str(timed_out.value) == "queue: timed out (TimeoutError)"
    with pytest.raises(ServerConnectionError, match=r"\(refused\)$"), translate_errors("x"):
        raise ConnectionRefusedError("refused")


async def test_a_coalesced_batch_of_many_slices_deletes_with_multi_id_xdels(
    client: Redis,
) -> None:
    producer = Producer(client, slice_size=50)
    records: list[Any] = [Post(n) if n % 7 == 0 else User(n) for n in range(1000)]
    ids = await asyncio.gather(*(producer.delay(r) for r in records))
    await client.set("redstream:stream:posts", "not a stream")  # posts' queue writes fail
    await producer.queue(User(-1), await producer.delay(User(-1)))  # loads the script
    # a burst of concurrent calls: the batch after the first has many slices
    await client.config_resetstat()
    results = await asyncio.gather(
        *(producer.queue(r, i) for r, i in zip(records, ids, strict=True)),
        return_exceptions=True,
    )
    for record, result in zip(records, results, strict=True):
        if isinstance(record, Post):
            assert isinstance(result, ServerError)
            assert "WRONGTYPE" in str(result)
        else:
            assert result is True
    calls = await _calls(client)
    assert calls["xdel"] < calls["xadd"] / 10  # shared XDELs, not one per record
    assert calls.get("evalsha", 0) < len(records) / 2
    # each refused post kept its delay message; every user lost its own
    assert await entries(client, DELAY) == []
    kept = {e[0] for e in await entries(client, "redstream:stream:posts.delay")}
    assert kept == {i for r, i in zip(records, ids, strict=True) if isinstance(r, Post)}
