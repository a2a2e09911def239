"""Trimmer: deletes exactly what every named consumer committed, under its lock."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from aioredstream import ServerError, Trimmer

from .conftest import ClientFactory, ServerFactory
from .helpers import decoded, eventually, in_use

STREAM = "redstream:stream:users"


async def _fill(client: Redis, key: str, ids: list[str]) -> None:
    for message_id in ids:
        await client.xadd(key, {"payload": '{"id":1}'}, id=message_id)


async def _ids(client: Redis, key: str = STREAM) -> list[str]:
    rows: Any = await client.xrange(key)
    return [decoded(i) for i, _ in rows]


async def _commit(client: Redis, consumer: str, message_id: str) -> None:
    await client.set(f"redstream:offset:users:{consumer}", message_id)


IDS = ["1000-0", "1000-1", "1001-0", "1002-0", "1003-0", "1004-0"]


async def test_deletes_up_to_and_including_the_lowest_committed_offset(client: Redis) -> None:
    await _fill(client, STREAM, IDS)
    await _commit(client, "indexer", "1002-0")
    await _commit(client, "cacher", "1000-1")
    trimmer = Trimmer(client, stream_name="users", consumer_names=["indexer", "cacher"])
    assert await trimmer.run_once() == 2
    assert await _ids(client) == IDS[2:]
    assert await client.exists(trimmer.lock.key) == 0
    assert trimmer.lock.key == "redstream:lock:trimmer:users"


async def test_offsets_compare_as_ids_not_as_strings(client: Redis) -> None:
    ids = ["5-8", "5-9", "5-10", "5-11"]
    await _fill(client, STREAM, ids)
    await _commit(client, "a", "5-10")
    await _commit(client, "b", "5-9")  # as strings "5-10" < "5-9"; as ids it is the reverse
    trimmer = Trimmer(client, stream_name="users", consumer_names=["a", "b"], interval=0)
    assert await trimmer.run_once() == 2
    assert await _ids(client) == ["5-10", "5-11"]


async def test_a_listed_consumer_without_an_offset_holds_trimming_back_with_a_warning(
    client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A deliberate deviation: the gem trims up to the others' offsets (``compact.min``),
    so a new consumer whose first batch failed would find those entries gone."""
    await _fill(client, STREAM, IDS)
    await _commit(client, "indexer", "1001-0")
    trimmer = Trimmer(
        client, stream_name="users", consumer_names=["indexer", "cache"], interval=0.01
    )
    with caplog.at_level(logging.WARNING, logger="aioredstream.trimmer"):
        assert await trimmer.run_once() == 0  # "cache" has no offset yet: nothing goes
        assert await trimmer.run_once() == 0
    warnings = [r.getMessage() for r in caplog.records if "not committed" in r.getMessage()]
    assert len(warnings) == 2  # once per run (each followed by a sleep of `interval`)
    assert "cache" in warnings[0]
    assert "indexer" not in warnings[0]
    assert await _ids(client) == IDS
    await _commit(client, "cache", "1000-0")
    assert await trimmer.run_once() == 1
    assert await _ids(client) == IDS[1:]


async def test_run_warns_about_offsets_of_consumers_it_does_not_list(
    client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await _fill(client, STREAM, IDS)
    await _commit(client, "indexer", "1001-0")
    await _commit(client, "forgotten", "1000-0")
    await client.set("redstream:offset:posts:other", "1000-0")  # another stream's consumer
    trimmer = Trimmer(client, stream_name="users", consumer_names=["indexer"], interval=0.01)
    assert await trimmer.unlisted_consumers() == ["forgotten"]
    with caplog.at_level(logging.WARNING, logger="aioredstream.trimmer"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(trimmer.run)
            await eventually(lambda: _trimmed_to(client, IDS[3:]))
            tg.cancel_scope.cancel()
    [warning] = [r.getMessage() for r in caplog.records if "not in this" in r.getMessage()]
    assert "forgotten" in warning
    assert "users" in warning
    assert "other" not in warning


async def _trimmed_to(client: Redis, ids: list[str]) -> bool:
    return await _ids(client) == ids


async def test_an_offset_past_the_end_empties_the_stream(client: Redis) -> None:
    await _fill(client, STREAM, IDS)
    await _commit(client, "a", "9999-0")
    trimmer = Trimmer(client, stream_name="users", consumer_names=["a"], interval=0)
    assert await trimmer.run_once() == len(IDS)
    assert await _ids(client) == []
    assert await trimmer.run_once() == 0


async def test_the_xrange_xdel_fallback_trims_the_same_entries_as_xtrim_minid(
    client: Redis,
) -> None:
    many = [f"{1000 + i // 3}-{i % 3}" for i in range(2500)]
    await _fill(client, STREAM, many)
    await _fill(client, "redstream:stream:copy", many)
    cut = many[2100]
    await _commit(client, "a", cut)
    await client.set("redstream:offset:copy:a", cut)
    xtrim = Trimmer(client, stream_name="users", consumer_names=["a"])
    fallback = Trimmer(client, stream_name="copy", consumer_names=["a"])
    assert await xtrim.trim() == 2101
    assert await fallback.trim_by_xdel(cut) == 2101
    assert await _ids(client) == await _ids(client, "redstream:stream:copy") == many[2101:]


async def test_a_trimmer_runs_under_its_lock_and_stands_by_when_it_is_taken(
    client: Redis,
) -> None:
    await _fill(client, STREAM, IDS)
    await _commit(client, "a", IDS[-1])
    await client.set("redstream:lock:trimmer:users", "other", px=200)
    trimmer = Trimmer(client, stream_name="users", consumer_names=["a"], interval=0)
    assert await trimmer.run_once() == 0  # taken: waited for the holder's key to expire
    assert await trimmer.run_once() == len(IDS)


async def test_run_trims_as_consumers_commit_and_stops_cleanly_on_cancel(client: Redis) -> None:
    await _fill(client, STREAM, IDS)
    trimmer = Trimmer(client, stream_name="users", consumer_names=["a"], interval=0.02)
    before = asyncio.all_tasks()
    async with anyio.create_task_group() as tg:
        tg.start_soon(trimmer.run)
        await _commit(client, "a", "1001-0")

        async def trimmed() -> bool:
            return await _ids(client) == IDS[3:]

        await eventually(trimmed)
        tg.cancel_scope.cancel()  # most likely mid-sleep, holding the lock
    assert await client.exists(trimmer.lock.key) == 0
    assert asyncio.all_tasks() == before
    assert await in_use(client) == 0


async def test_a_server_without_xtrim_minid_gets_the_xrange_xdel_way(
    server_factory: ServerFactory, make_client: ClientFactory
) -> None:
    # No server here predates 6.2: hiding XTRIM gives the same "no MINID" situation.
    server = server_factory("--rename-command", "XTRIM", "XTRIM_HIDDEN")
    client = make_client(server.url)
    await _fill(client, STREAM, IDS)
    await _commit(client, "a", "1002-0")
    trimmer = Trimmer(client, stream_name="users", consumer_names=["a"], interval=0)
    assert await trimmer.run_once() == 4
    assert await _ids(client) == IDS[4:]
    await _commit(client, "a", "1003-0")
    assert await trimmer.run_once() == 1  # straight to XRANGE + XDEL from now on
    assert await _ids(client) == IDS[5:]


async def test_other_server_errors_are_not_mistaken_for_a_missing_minid(client: Redis) -> None:
    await client.set(STREAM, "not a stream")
    await _commit(client, "a", "1002-0")
    trimmer = Trimmer(client, stream_name="users", consumer_names=["a"], interval=0)
    with pytest.raises(ServerError, match="WRONGTYPE"):
        await trimmer.trim()
