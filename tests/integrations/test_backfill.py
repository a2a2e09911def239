"""backfill(): every row of a table queued once, by keyset batches, resumable; SQLite and
PostgreSQL, Redis and Valkey."""

from __future__ import annotations

import asyncio
import gc
import json
import uuid
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import sessionmaker

from aioredstream import ArgumentError, PayloadError, Producer, RecordError, Registry
from aioredstream._sharding import shard_of
from aioredstream.integrations.sqlalchemy import backfill

from ..helpers import entries, raw_payloads
from ..sql import Database
from .backfill_models import (
    Animal,
    Base,
    Broken,
    Child,
    Coded,
    Item,
    NotMapped,
    Pair,
    Parent,
    Region,
    Shard,
    Stamped,
    Token,
)

Maker = async_sessionmaker[AsyncSession]


@pytest.fixture
async def engine(database: Database) -> AsyncIterator[AsyncEngine]:
    """The test database with the backfill tables (in the test's schema on PostgreSQL)."""
    engine = database.engine()
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> Maker:
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def producer(client: Redis) -> Producer:
    registry = Registry()
    registry.register(Token, name="bf_tokens", payload=lambda t: {"token": str(t.id)})
    return Producer(client, registry=registry)


async def add(sessions: Maker, model: type, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return  # an INSERT with an empty parameter list would insert one row of defaults
    async with sessions() as session, session.begin():
        await session.execute(insert(model), list(rows))


async def add_items(sessions: Maker, ids: Sequence[int], kind: str = "plain") -> None:
    await add(sessions, Item, [{"id": i, "kind": kind} for i in ids])


async def payloads(client: Redis, stream: str) -> list[Any]:
    return [payload for _, payload in await entries(client, f"redstream:stream:{stream}")]


async def queued_ids(client: Redis, stream: str = "bf_items") -> list[int]:
    return [payload["id"] for payload in await payloads(client, stream)]


async def checkpoint(client: Redis, stream: str = "bf_items") -> dict[str, Any]:
    raw = await client.get(f"redstream:backfill:{stream}")
    assert raw is not None
    data: dict[str, Any] = json.loads(raw)
    return data


# -- what gets queued --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "batch_size", "calls"),
    [
        (2500, 1000, [(0, 2500), (1000, 2500), (2000, 2500), (2500, 2500)]),
        (2000, 1000, [(0, 2000), (1000, 2000), (2000, 2000)]),  # the last batch is full
        (3, 1, [(0, 3), (1, 3), (2, 3), (3, 3)]),
        (0, 10, [(0, 0)]),
    ],
)
async def test_every_row_is_queued_once_in_key_order_batch_by_batch(
    sessions: Maker,
    engine: AsyncEngine,
    producer: Producer,
    client: Redis,
    rows: int,
    batch_size: int,
    calls: list[tuple[int, int]],
) -> None:
    ids = [i * 3 + 1 for i in range(rows)]  # gaps between keys
    await add_items(sessions, list(reversed(ids)))
    statements: list[tuple[str, Any]] = []
    event.listen(engine.sync_engine, "before_cursor_execute", _collect(statements))
    seen: list[tuple[int, int]] = []
    count = await backfill(
        producer,
        sessions,
        Item,
        batch_size=batch_size,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert count == rows
    assert await queued_ids(client) == ids
    assert seen == calls
    assert await checkpoint(client) == {
        "table": "bf_items",
        "key": [ids[-1]] if ids else None,
        "rows": rows,
        "finished": True,
    }
    selects = [(s, p) for s, p in statements if "ORDER BY" in s]
    assert len(selects) == rows // batch_size + 1  # a full last batch: one more, empty
    for number, (statement, parameters) in enumerate(selects):
        assert "LIMIT" in statement
        assert ("BF_ITEMS.ID >" in statement) == (number > 0)  # keyset: after the last key
        if "OFFSET" in statement:  # SQLite renders LIMIT ? OFFSET ?: never skipping a row
            assert parameters[-1] == 0
    assert await client.exists("redstream:stream:bf_items.delay") == 0  # no delay messages


def _collect(statements: list[tuple[str, Any]]) -> Any:
    def collect(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        statements.append((" ".join(statement.upper().split()), parameters))

    return collect


async def test_where_filters_the_rows(sessions: Maker, producer: Producer, client: Redis) -> None:
    await add_items(sessions, range(1, 11), kind="plain")
    await add_items(sessions, range(11, 21), kind="special")
    await add_items(sessions, range(21, 26), kind="plain")
    seen: list[tuple[int, int]] = []
    count = await backfill(
        producer,
        sessions,
        Item,
        batch_size=4,
        where=Item.kind == "special",
        progress=lambda done, total: seen.append((done, total)),
    )
    assert count == 10
    assert await queued_ids(client) == list(range(11, 21))
    assert seen[0] == (0, 10)
    await client.flushall()
    assert await backfill(producer, sessions, Item, where=text("kind = 'plain' AND id > 5")) == 10
    assert await queued_ids(client) == [*range(6, 11), *range(21, 26)]


async def test_composite_keys_are_walked_as_tuples(
    sessions: Maker, producer: Producer, client: Redis
) -> None:
    pairs = [(a, b) for a in (1, 2, 3) for b in ("x", "a", "m", "b")]
    await add(sessions, Pair, [{"a": a, "b": b} for a, b in pairs])
    assert await backfill(producer, sessions, Pair, batch_size=3) == 12
    assert [(p["a"], p["b"]) for p in await payloads(client, "bf_pairs")] == sorted(pairs)
    assert (await checkpoint(client, "bf_pairs"))["key"] == [3, "x"]


async def test_uuid_keys_and_registry_payloads_resume_from_their_checkpoint(
    sessions: Maker, producer: Producer, client: Redis
) -> None:
    tokens = sorted(uuid.uuid4() for _ in range(7))
    await add(sessions, Token, [{"id": t} for t in tokens])

    def stop_after_first_batch(done: int, total: int) -> None:
        if done == 3:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        await backfill(producer, sessions, Token, batch_size=3, progress=stop_after_first_batch)
    saved = await checkpoint(client, "bf_tokens")
    assert saved["key"] == [str(tokens[2])]
    assert await backfill(producer, sessions, Token, batch_size=3, resume=True) == 4
    # The database's order of UUIDs is the walk's order; every token once.
    queued = [p["token"] for p in await payloads(client, "bf_tokens")]
    assert sorted(queued) == sorted(str(t) for t in tokens)
    assert len(set(queued)) == 7


async def test_sharded_and_per_record_streams_are_the_producers(
    sessions: Maker, producer: Producer, client: Redis
) -> None:
    await add(sessions, Shard, [{"id": i} for i in range(1, 41)])
    assert await backfill(producer, sessions, Shard, batch_size=7) == 40
    for shard in range(4):
        expected = [i for i in range(1, 41) if shard_of(i, 4) == shard]
        assert await queued_ids(client, f"bf_shards-{shard}") == expected
    assert (await checkpoint(client, "bf_shards"))["rows"] == 40

    await add(sessions, Region, [{"id": i, "region": "eu" if i % 2 else "us"} for i in range(6)])
    assert await backfill(producer, sessions, Region) == 6
    assert await queued_ids(client, "bf_regions-eu") == [1, 3, 5]
    assert await queued_ids(client, "bf_regions-us") == [0, 2, 4]
    assert (await checkpoint(client, "bf_regions"))["finished"] is True


async def test_stream_sends_every_row_to_a_stream_of_its_own(
    sessions: Maker, producer: Producer, client: Redis
) -> None:
    await add(sessions, Shard, [{"id": i} for i in range(1, 11)])
    assert await backfill(producer, sessions, Shard, stream="bf_shards_backfill") == 10
    assert await queued_ids(client, "bf_shards_backfill") == list(range(1, 11))
    assert await client.exists("redstream:stream:bf_shards-0") == 0
    assert (await checkpoint(client, "bf_shards_backfill"))["finished"] is True


async def test_namespace_prefixes_the_checkpoint(sessions: Maker, client: Redis) -> None:
    await add_items(sessions, [1, 2])
    assert await backfill(Producer(client, namespace="shop"), sessions, Item) == 2
    assert await client.exists("shop:redstream:backfill:bf_items") == 1
    assert await client.xlen("shop:redstream:stream:bf_items") == 2


async def test_payloads_may_lazy_load_while_the_batch_session_is_open(
    sessions: Maker, producer: Producer, client: Redis
) -> None:
    await add(sessions, Parent, [{"id": 1, "name": "p1"}, {"id": 2, "name": "p2"}])
    await add(sessions, Child, [{"id": i, "parent_id": 1 + i % 2} for i in range(1, 6)])
    assert await backfill(producer, sessions, Child, batch_size=2) == 5
    assert await payloads(client, "bf_children") == [
        {"id": i, "parent": f"p{1 + i % 2}"} for i in range(1, 6)
    ]


async def test_loaded_objects_are_not_kept_from_one_batch_to_the_next(
    sessions: Maker, producer: Producer
) -> None:
    await add(sessions, Pair, [{"a": i, "b": "x"} for i in range(1, 301)])  # read as objects
    loaded: list[weakref.ref[Pair]] = []
    alive_after: list[int] = []

    def on_load(target: Pair, context: Any) -> None:
        loaded.append(weakref.ref(target))

    def check(done: int, total: int) -> None:
        if done:
            gc.collect()
            alive_after.append(sum(ref() is not None for ref in loaded))

    event.listen(Pair, "load", on_load)
    try:
        await backfill(producer, sessions, Pair, batch_size=100, progress=check)
    finally:
        event.remove(Pair, "load", on_load)
    assert len(loaded) == 300
    assert alive_after == [0, 0, 0]  # no identity map holds a batch once it is queued


async def test_a_payload_that_raises_names_the_row(
    sessions: Maker, producer: Producer, client: Redis
) -> None:
    await add(sessions, Broken, [{"id": i} for i in range(1, 11)])
    with pytest.raises(PayloadError, match=r"primary key \(7,\): KeyError: 'seven'") as info:
        await backfill(producer, sessions, Broken, batch_size=4)
    assert "backfill_models.Broken" in str(info.value)
    assert await queued_ids(client, "bf_broken") == [1, 2, 3, 4]  # the batches before it
    assert (await checkpoint(client, "bf_broken"))["key"] == [4]


def pool_in_use(engine: AsyncEngine) -> int:
    pool: Any = engine.sync_engine.pool
    return int(pool.checkedout())


# -- default payloads: read by id, no objects ----------------------------------------------


async def test_default_payloads_read_only_the_id_and_match_the_producers_bytes(
    sessions: Maker, engine: AsyncEngine, producer: Producer, client: Redis
) -> None:
    await add_items(sessions, [1, 2, 3])
    statements: list[tuple[str, Any]] = []
    event.listen(engine.sync_engine, "before_cursor_execute", _collect(statements))
    assert await backfill(producer, sessions, Item) == 3
    [select_rows] = [s for s, _ in statements if "ORDER BY" in s]
    assert "BF_ITEMS.ID" in select_rows
    assert "KIND" not in select_rows  # no whole rows, no ORM objects
    backfilled = await raw_payloads(client, "redstream:stream:bf_items")
    await client.delete("redstream:stream:bf_items")
    await producer.bulk_queue([Item(id=i, kind="plain") for i in (1, 2, 3)])
    assert backfilled == await raw_payloads(client, "redstream:stream:bf_items")


async def test_id_outside_the_primary_key_and_registered_defaults_are_read_by_id(
    sessions: Maker, engine: AsyncEngine, client: Redis
) -> None:
    await add(sessions, Coded, [{"code": c, "id": i} for c, i in [("b", 1), ("a", 2), ("c", 3)]])
    await add(sessions, Parent, [{"id": i, "name": f"p{i}"} for i in (5, 6)])
    registry = Registry()
    registry.register(Parent, name="bf_parents")  # the default payload: {"id": id}
    producer = Producer(client, registry=registry)
    statements: list[tuple[str, Any]] = []
    event.listen(engine.sync_engine, "before_cursor_execute", _collect(statements))
    assert await backfill(producer, sessions, Coded, batch_size=2) == 3
    assert await queued_ids(client, "bf_coded") == [2, 1, 3]  # in key order: a, b, c
    assert (await checkpoint(client, "bf_coded"))["key"] == ["c"]
    assert await backfill(producer, sessions, Parent) == 2
    assert await queued_ids(client, "bf_parents") == [5, 6]
    selects = [s for s, _ in statements if "ORDER BY" in s]
    assert not any("NAME" in s for s in selects), selects


async def test_a_subclass_with_its_own_payload_is_read_as_objects(
    sessions: Maker, producer: Producer, client: Redis
) -> None:
    await add(sessions, Animal, [{"id": i, "kind": "dog" if i % 2 else "animal"} for i in range(4)])
    assert await backfill(producer, sessions, Animal) == 4
    assert await payloads(client, "bf_animals") == [
        {"id": 0},
        {"id": 1, "dog": True},
        {"id": 2},
        {"id": 3, "dog": True},
    ]


# -- killed and resumed ------------------------------------------------------------------


class DiesMidBatch(Producer):
    """Writes the first ``written`` messages of its ``batch``-th bulk_queue, then its task is
    cancelled: the process dying while a batch is half sent."""

    def __init__(self, client: Redis, batch: int, written: int) -> None:
        super().__init__(client, slice_size=10)
        self.calls = 0
        self.batch = batch
        self.written = written

    async def bulk_queue(self, records: Any, delay_message_ids: Any = None) -> bool:
        self.calls += 1
        if self.calls < self.batch:
            return await super().bulk_queue(records)
        await super().bulk_queue(list(records)[: self.written])
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)
        raise AssertionError("not reached")


async def run_cancelled(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("written", [0, 37, 50])
async def test_killed_mid_batch_and_resumed_queues_that_batchs_written_rows_twice(
    sessions: Maker, engine: AsyncEngine, client: Redis, written: int
) -> None:
    ids = list(range(1, 301))
    await add_items(sessions, ids)
    dying = DiesMidBatch(client, batch=3, written=written)
    await run_cancelled(backfill(dying, sessions, Item, batch_size=50))
    assert pool_in_use(engine) == 0  # the batch's session was closed
    saved = await checkpoint(client)
    assert (saved["key"], saved["rows"], saved["finished"]) == ([100], 100, False)
    assert await queued_ids(client) == list(range(1, 101 + written))

    assert await backfill(Producer(client), sessions, Item, batch_size=50, resume=True) == 200
    queued = await queued_ids(client)
    counts = Counter(queued)
    assert set(counts) == set(ids)  # every row at least once
    twice = sorted(i for i, n in counts.items() if n > 1)
    assert twice == list(range(101, 101 + written))  # exactly what the killed batch had sent
    assert max(counts.values()) <= 2
    assert await checkpoint(client) == {
        "table": "bf_items",
        "key": [300],
        "rows": 300,
        "finished": True,
    }


async def test_cancelled_between_batches_and_resumed_queues_no_row_twice(
    sessions: Maker, engine: AsyncEngine, producer: Producer, client: Redis
) -> None:
    await add_items(sessions, range(1, 251))

    def cancel_after_three_batches(done: int, total: int) -> None:
        if done == 150:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()

    await run_cancelled(
        backfill(producer, sessions, Item, batch_size=50, progress=cancel_after_three_batches)
    )
    assert pool_in_use(engine) == 0
    assert await queued_ids(client) == list(range(1, 151))
    seen: list[tuple[int, int]] = []
    resumed = await backfill(
        producer,
        sessions,
        Item,
        batch_size=50,
        resume=True,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert resumed == 100
    assert seen == [(0, 100), (50, 100), (100, 100)]  # this call's rows: those after the key
    assert await queued_ids(client) == list(range(1, 251))
    assert (await checkpoint(client))["rows"] == 250


async def test_resume_without_a_checkpoint_starts_at_the_first_row_finished_queues_nothing(
    sessions: Maker, producer: Producer, client: Redis
) -> None:
    await add_items(sessions, range(1, 6))
    assert await backfill(producer, sessions, Item, resume=True) == 5
    seen: list[tuple[int, int]] = []
    resumed = await backfill(
        producer, sessions, Item, resume=True, progress=lambda *a: seen.append(a)
    )
    assert resumed == 0
    assert seen == [(0, 0)]
    assert await backfill(producer, sessions, Item) == 5  # without resume: from the start
    assert await queued_ids(client) == [1, 2, 3, 4, 5] * 2


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"table":"bf_other","key":[1],"rows":1,"finished":false}', "table 'bf_other', not"),
        ("garbage", "not a backfill checkpoint"),
        ('{"table":"bf_items","key":["x"],"rows":1,"finished":false}', "not a backfill"),
        ('{"table":"bf_items","key":[1,2],"rows":1,"finished":false}', "expected 1 key values"),
    ],
)
async def test_resume_refuses_a_checkpoint_it_cannot_use(
    sessions: Maker, producer: Producer, client: Redis, value: str, message: str
) -> None:
    await client.set("redstream:backfill:bf_items", value)
    with pytest.raises(ArgumentError, match=message):
        await backfill(producer, sessions, Item, resume=True)


# -- arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an int >= 1, got 0"),
        ({"batch_size": True}, "batch_size must be an int >= 1, got True"),
        ({"where": "kind = 'x'"}, "where must be a SQLAlchemy clause"),
        ({"progress": 3}, "progress must be a callable"),
        ({"resume": "yes"}, "resume must be True or False, got 'yes'"),
        ({"stream": "a:b"}, "stream 'a:b' contains ':'"),
        ({"stream": "users.delay"}, "that is a delay stream"),
    ],
)
async def test_bad_arguments_are_refused_by_name(
    sessions: Maker, producer: Producer, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ArgumentError, match=message):
        await backfill(producer, sessions, Item, **kwargs)


async def test_bad_producer_sessions_and_models_are_refused(
    sessions: Maker, engine: AsyncEngine, producer: Producer
) -> None:
    with pytest.raises(ArgumentError, match=r"producer must be an aioredstream\.Producer"):
        await backfill(object(), sessions, Item)  # type: ignore[arg-type]
    sync_maker = sessionmaker(engine.sync_engine)
    with pytest.raises(ArgumentError, match="sessions must be an async_sessionmaker"):
        await backfill(producer, sync_maker, Item)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="model must be a mapped SQLAlchemy class"):
        await backfill(producer, sessions, NotMapped)
    with pytest.raises(ArgumentError, match="'id' is of type <class 'float'>"):
        await backfill(producer, sessions, Stamped)
    with pytest.raises(RecordError, match="Parent: it has no redstream_name"):
        await backfill(producer, sessions, Parent)


# -- the guide ---------------------------------------------------------------------------


async def test_the_guides_example_runs(redis_url: str, client: Redis, tmp_path: Path) -> None:
    from ..test_docs import DECLARED_URL, RUNNABLE, _run

    out = _run(RUNNABLE["backfill"].code.replace(DECLARED_URL, redis_url), tmp_path)
    assert out.splitlines() == [
        "0/833",
        "500/833",
        "833/833",
        "queued 833 rows; stream length 833",
    ]


@pytest.mark.parametrize("reads", [1, 2])
async def test_a_cancel_during_the_sessions_rollback_still_returns_the_connection_clean(
    sessions: Maker,
    engine: AsyncEngine,
    producer: Producer,
    client: Redis,
    caplog: pytest.LogCaptureFixture,
    reads: int,
) -> None:
    """Ctrl-C (a plain Task.cancel()) while a batch's session is closing: the rollback
    that resets its connection still runs to its end, and the cancellation goes on."""
    await add_items(sessions, range(1, 101))
    resets = 0
    running: asyncio.Future[int] | None = None

    def cancel_in_the_reset(*_: Any) -> None:
        nonlocal resets
        resets += 1
        if resets == reads and running is not None:  # the count's session, the first batch's
            running.cancel()  # lands at the backfill's next await: inside the close

    event.listen(engine.sync_engine.pool, "reset", cancel_in_the_reset)
    try:
        with caplog.at_level("ERROR", logger="sqlalchemy.pool"):
            running = asyncio.ensure_future(backfill(producer, sessions, Item, batch_size=50))
            with pytest.raises(asyncio.CancelledError):
                await running
    finally:
        event.remove(engine.sync_engine.pool, "reset", cancel_in_the_reset)
    assert resets == reads
    assert [r.getMessage() for r in caplog.records if r.name.startswith("sqlalchemy")] == []
    assert pool_in_use(engine) == 0
    assert await queued_ids(client) == []  # cancelled before the first batch was queued
