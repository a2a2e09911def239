"""SQLAlchemy AsyncSession integration, against SQLite and PostgreSQL, Redis and Valkey."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import Column, Integer, MetaData, Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase

from aioredstream import (
    ArgumentError,
    Model,
    PayloadError,
    Producer,
    RecordError,
    ServerConnectionError,
    UnsupportedError,
)
from aioredstream.integrations.sqlalchemy import track

from ..sql import Account, AuditLog, BlogPost, Database, Note, Shop, registry
from .tracking import (
    Maker,
    Streams,
    SyncSession,
    count_accounts,
    payloads,
    streams,
    sync_tracked,
    tracked,
)

# -- what tracked sessions write: each case runs sessions on a tracked maker, may check the
# streams on the way, and returns every stream it expects afterwards ({} = no key at all)

Script = Callable[[Maker, Redis], Awaitable[Streams]]


async def flushed(session: AsyncSession, record: Account) -> Account:
    """``record`` added and flushed: its delay message is written."""
    session.add(record)
    await session.flush()
    return record


async def insert_update_delete_delay_on_flush_and_queue_after_commit(
    maker: Maker, client: Redis
) -> Streams:
    async with maker() as session:
        account = await flushed(session, Account(name="ada"))
        assert (await streams(client))["accounts.delay"] == [{"id": account.id}]
        assert "accounts" not in await streams(client)
        await session.commit()
        assert await streams(client) == {"accounts.delay": [], "accounts": [{"id": account.id}]}

        account.name = "ada lovelace"
        await session.commit()
        session.add(Note(account=account, body="first"))
        await session.commit()
        await session.delete(account)  # cascades to the note
        await session.commit()
    return {
        "accounts": [{"id": account.id}] * 3,
        "accounts.delay": [],
        "notes": [{"id": 1, "account_id": account.id}] * 2,
        "notes.delay": [],
    }


async def expired_instances_are_not_loaded_after_commit(maker: Maker, client: Redis) -> Streams:
    async with maker() as session:  # expire_on_commit=True: attributes expire at commit
        account = Account(name="expires")
        session.add(account)
        await session.commit()  # the queue message uses the payload taken at flush
        await session.delete(account)  # expired: the flush loads what DELETE needs
        await session.commit()
    return {"accounts": [{"id": 1}, {"id": 1}], "accounts.delay": []}


async def instances_without_column_changes_are_skipped(maker: Maker, client: Redis) -> Streams:
    async with maker() as session:
        account = Account(name="same")
        session.add(account)
        await session.commit()
    await client.flushall()
    async with maker() as session:
        loaded = await session.get(Account, account.id)
        assert loaded is not None
        loaded.name = "same"  # dirty, no net change
        session.add(AuditLog(line="untracked model"))
        await session.commit()
    return {}


async def rollback_writes_no_queue_message(maker: Maker, client: Redis) -> Streams:
    async with maker() as session:
        session.add(Account(name="doomed"))
        await session.flush()
        await session.rollback()
        session.add(Account(name="kept"))
        await session.commit()
    # SQLite hands out the rolled-back id again, PostgreSQL's sequence does not.
    kept = 1 if maker.kw["bind"].dialect.name == "sqlite" else 2
    return {
        # The rolled-back row's delay message stays for the delayer (a harmless re-sync).
        "accounts.delay": [{"id": 1}],
        "accounts": [{"id": kept}],
    }


async def several_flushes_and_a_row_changed_twice_give_one_message(
    maker: Maker, client: Redis
) -> Streams:
    async with maker() as session:
        account = await flushed(session, Account(name="v1"))
        account.name = "v2"
        await session.flush()
        account.name = "v3"
        await session.execute(select(Account))  # autoflush
        assert await streams(client) == {"accounts.delay": [{"id": account.id}]}
        await session.commit()
    return {"accounts": [{"id": account.id}], "accounts.delay": []}


async def inserted_and_deleted_in_one_transaction_is_one_message(
    maker: Maker, client: Redis
) -> Streams:
    async with maker() as session:
        account = await flushed(session, Account(name="brief"))
        await session.delete(account)
        await session.commit()
    return {"accounts": [{"id": account.id}], "accounts.delay": []}


async def released_savepoint_is_queued_by_the_outer_commit(maker: Maker, client: Redis) -> Streams:
    async with maker() as session:
        outer = await flushed(session, Account(name="outer"))
        async with session.begin_nested():
            inner = Account(name="inner")
            session.add(inner)
            outer.name = "outer, changed in the savepoint"  # already pending: no new delay
        assert await streams(client) == {"accounts.delay": [{"id": outer.id}, {"id": inner.id}]}
        await session.commit()
    return {"accounts": [{"id": outer.id}, {"id": inner.id}], "accounts.delay": []}


async def rolled_back_savepoint_drops_only_its_own_messages(maker: Maker, client: Redis) -> Streams:
    async with maker() as session:
        outer = await flushed(session, Account(name="outer"))
        outer_id = outer.id
        savepoint = await session.begin_nested()
        discarded = Account(name="discarded")
        session.add(discarded)
        outer.name = "changed, then discarded"
        await session.flush()
        discarded_id = discarded.id
        await savepoint.rollback()
        await session.commit()
    return {
        "accounts": [{"id": outer_id}],
        # The discarded row's delay message stays for the delayer.
        "accounts.delay": [{"id": discarded_id}],
    }


async def begin_context_managers_queue_after_commit(maker: Maker, client: Redis) -> Streams:
    async with maker.begin() as session:
        session.add(Account(name="one"))
    async with maker() as session, session.begin():
        session.add(Account(name="two"))
    return {"accounts": [{"id": 1}, {"id": 2}], "accounts.delay": []}


async def registered_model_and_orphan_delete(maker: Maker, client: Redis) -> Streams:
    async with maker() as session:
        account = Account(name="owner", notes=[Note(body="a"), Note(body="b")])
        session.add(account)
        await session.commit()
        await session.refresh(account, ["notes"])
        orphan = account.notes.pop(0)  # delete-orphan: deleted by the flush
        await session.commit()
    return {
        "accounts": [{"id": account.id}],  # the account itself did not change afterwards
        "accounts.delay": [],
        "notes": [
            {"id": 1, "account_id": account.id},
            {"id": 2, "account_id": account.id},
            {"id": orphan.id, "account_id": account.id},
        ],
        "notes.delay": [],
    }


async def untracked_sessions_write_nothing(maker: Maker, client: Redis) -> Streams:
    other = async_sessionmaker(maker.kw["bind"])
    async with other.begin() as session:
        session.add(Account(name="elsewhere"))
    assert await streams(client) == {}
    async with maker.begin() as session:
        session.add(Account(name="here"))
    return {"accounts": [{"id": 2}], "accounts.delay": []}


async def rows_of_a_table_named_model_go_to_the_tables_stream(
    maker: Maker, client: Redis
) -> Streams:
    async with maker.begin() as session:
        session.add(BlogPost(title="hello"))
    return {"posts": [{"id": 1}], "posts.delay": []}  # not "blog_posts"


async def rows_that_name_their_stream_keep_delay_and_queue_together(
    maker: Maker, client: Redis
) -> Streams:
    async with maker.begin() as session:
        session.add_all([Shop(region="eu"), Shop(region="us"), Shop(region="eu")])
    return {
        "shops-eu": [{"id": 1}, {"id": 3}],
        "shops-eu.delay": [],
        "shops-us": [{"id": 2}],
        "shops-us.delay": [],
    }


@pytest.mark.parametrize(
    ("script", "models", "expire_on_commit"),
    [
        pytest.param(script, models, expire, id=script.__name__)
        for script, models, expire in [
            (insert_update_delete_delay_on_flush_and_queue_after_commit, (Account, Note), False),
            (expired_instances_are_not_loaded_after_commit, (Account,), True),
            (instances_without_column_changes_are_skipped, (Account, Note), False),
            (rollback_writes_no_queue_message, (Account, Note), False),
            (several_flushes_and_a_row_changed_twice_give_one_message, (Account, Note), False),
            (inserted_and_deleted_in_one_transaction_is_one_message, (Account, Note), False),
            (released_savepoint_is_queued_by_the_outer_commit, (Account, Note), False),
            (rolled_back_savepoint_drops_only_its_own_messages, (Account, Note), False),
            (begin_context_managers_queue_after_commit, (Account, Note), False),
            (registered_model_and_orphan_delete, (Account, Note), False),
            (untracked_sessions_write_nothing, (Account, Note), False),
            (rows_of_a_table_named_model_go_to_the_tables_stream, (BlogPost,), False),
            (rows_that_name_their_stream_keep_delay_and_queue_together, (Shop,), False),
        ]
    ],
)
async def test_tracked_sessions(
    script: Script,
    models: tuple[type, ...],
    expire_on_commit: bool,
    engine: AsyncEngine,
    producer: Producer,
    client: Redis,
) -> None:
    async with tracked(engine, producer, *models, expire_on_commit=expire_on_commit) as maker:
        expected = await script(maker, client)
    assert await streams(client) == expected


class ObservedProducer(Producer):
    """Sets ``delay_started`` when a delay write begins."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delay_started = asyncio.Event()

    async def bulk_delay(self, records: Any) -> list[str]:
        self.delay_started.set()
        return await super().bulk_delay(records)


@pytest.fixture
async def paused_maker(
    engine: AsyncEngine, make_client: Any, redis_url: str
) -> AsyncIterator[tuple[Maker, ObservedProducer]]:
    producer = ObservedProducer(make_client(redis_url), registry=registry())
    # Connect now: redis-py's handshake writes through asyncio.wait_for, which on
    # Python 3.11 can swallow a cancellation that coincides with the write completing.
    await producer.client.ping()
    maker = async_sessionmaker(engine)
    tracker = track(producer, models=[Account], sessions=maker)
    yield maker, producer
    tracker.remove()


async def create_account(maker: Maker, name: str) -> None:
    async with maker() as session:
        session.add(Account(name=name))
        await session.commit()


@asynccontextmanager
async def commit_held_in_its_delay_write(
    paused_maker: tuple[Maker, ObservedProducer], client: Redis, name: str
) -> AsyncIterator[asyncio.Task[None]]:
    """A commit started while the server holds write commands (until UNPAUSE), yielded
    once it waits in its delay write and the loop has run other work meanwhile."""
    maker, producer = paused_maker
    await client.client_pause(60000, all=False)  # WRITE commands wait
    try:
        task = asyncio.create_task(create_account(maker, name))
        await producer.delay_started.wait()
        for _ in range(20):
            await asyncio.sleep(0)
        yield task
    finally:
        await client.client_unpause()


async def test_delay_is_written_before_commit_without_blocking_the_loop(
    paused_maker: tuple[Maker, ObservedProducer], engine: AsyncEngine, client: Redis
) -> None:
    async with commit_held_in_its_delay_write(paused_maker, client, "paused") as task:
        # The loop ran other work meanwhile (this test, another DB connection) ...
        assert not task.done()
        # ... and the database has not committed the row yet.
        assert await count_accounts(engine) == 0
    await task
    assert await count_accounts(engine) == 1
    assert await payloads(client, "accounts") == [{"id": 1}]
    assert await payloads(client, "accounts.delay") == []


async def test_cancelled_in_delay_write_commits_nothing(
    paused_maker: tuple[Maker, ObservedProducer], engine: AsyncEngine, client: Redis
) -> None:
    async with commit_held_in_its_delay_write(paused_maker, client, "cancelled") as task:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await count_accounts(engine) == 0
    assert await payloads(client, "accounts") == []
    # The session machinery is intact: the next commit produces as usual.
    await create_account(paused_maker[0], "after")
    assert len(await payloads(client, "accounts")) == 1


async def test_concurrent_sessions_on_tiny_pools_do_not_deadlock(
    database: Database, redis_url: str
) -> None:
    from redis.asyncio import BlockingConnectionPool

    pool = BlockingConnectionPool.from_url(redis_url, max_connections=1)
    client = Redis.from_pool(pool)  # owns the pool: aclose() closes it
    engine = database.engine(pool_size=1, max_overflow=0)
    producer = Producer(client, registry=registry())

    async def work(maker: Maker, n: int) -> None:
        async with maker() as session:
            account = Account(name=f"a{n}", notes=[])
            session.add(account)
            await session.flush()
            account.notes.append(Note(body="x"))
            await session.commit()

    try:
        await client.flushall()
        async with tracked(engine, producer, Account, Note) as maker:
            await asyncio.gather(*(work(maker, n) for n in range(20)))
        assert await client.xlen("redstream:stream:accounts") == 20
        assert await client.xlen("redstream:stream:notes") == 20
        assert await client.xlen("redstream:stream:accounts.delay") == 0
        assert await count_accounts(engine) == 20
    finally:
        await engine.dispose()
        await client.aclose()


async def test_delay_failure_fails_the_commit(engine: AsyncEngine, make_client: Any) -> None:
    from aioredstream.testing import free_port

    dead = Producer(make_client(f"redis://127.0.0.1:{free_port()}/0"), registry=registry())
    async with tracked(engine, dead, Account) as maker, maker() as session:
        session.add(Account(name="never"))
        with pytest.raises(ServerConnectionError):
            await session.commit()
        await session.rollback()
    assert await count_accounts(engine) == 0


async def test_queue_failure_after_commit_is_logged_and_the_commit_stands(
    engine: AsyncEngine, client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenQueue(Producer):
        async def bulk_queue(self, records: Any, delay_message_ids: Any = None) -> bool:
            raise ServerConnectionError("queue: connection failed (test)")

    broken = BrokenQueue(client, registry=registry())
    with caplog.at_level(logging.ERROR, logger="aioredstream.integrations.sqlalchemy"):
        async with tracked(engine, broken, Account) as maker, maker() as session:
            session.add(Account(name="committed"))
            await session.commit()
            session.add(Account(name="session still usable"))
            await session.commit()
    assert await count_accounts(engine) == 2
    assert await payloads(client, "accounts.delay") == [{"id": 1}, {"id": 2}]
    assert "remain for the delayer" in caplog.text


async def test_sync_session_refuses_to_flush_tracked_instances(
    producer: Producer, tmp_path: Path, client: Redis
) -> None:
    with sync_tracked(producer, tmp_path) as engine, SyncSession(engine) as session:
        session.add(Account(name="sync"))
        with pytest.raises(UnsupportedError, match="AsyncSession"):
            session.commit()
        session.rollback()
        assert session.scalar(select(func.count()).select_from(Account)) == 0
    assert await client.keys("*") == []


def test_track_checks_its_arguments(producer: Producer) -> None:
    with pytest.raises(ArgumentError, match="at least one"):
        track(producer, models=[])
    with pytest.raises(ArgumentError, match="not a mapped SQLAlchemy class"):
        track(producer, models=[dict])
    with pytest.raises(ArgumentError, match="list of mapped classes"):
        track(producer, models=Account)  # type: ignore[arg-type]
    with pytest.raises(RecordError, match="AuditLog"):
        track(producer, models=[AuditLog])  # neither Model nor registered
    with pytest.raises(ArgumentError, match="sessions must be"):
        track(producer, models=[Account], sessions="sessions")  # type: ignore[arg-type]


async def test_remove_stops_tracking_and_restores_the_maker(
    engine: AsyncEngine, producer: Producer, client: Redis
) -> None:
    maker = async_sessionmaker(engine)
    tracker = track(producer, models=[Account], sessions=maker)
    assert "Account" in repr(tracker)
    assert maker.kw["sync_session_class"].__name__ == "TrackedSession"
    tracker.remove()
    assert "sync_session_class" not in maker.kw
    async with maker.begin() as session:
        session.add(Account(name="untracked now"))
    assert await client.keys("*") == []


async def test_one_async_session_and_every_session(
    engine: AsyncEngine, producer: Producer, client: Redis
) -> None:
    async with AsyncSession(engine) as session:
        tracker = track(producer, models=[Account], sessions=session)
        session.add(Account(name="instance"))
        await session.commit()
        tracker.remove()
    everywhere = track(producer, models=[Account])  # sessions=None: every Session
    try:
        async with AsyncSession(engine) as session:
            session.add(Account(name="global"))
            await session.commit()
    finally:
        everywhere.remove()
    assert await payloads(client, "accounts") == [{"id": 1}, {"id": 2}]


async def test_payload_errors_fail_the_flush_and_name_the_model(
    engine: AsyncEngine, client: Redis
) -> None:
    from aioredstream import PayloadError, Registry

    broken = Registry()
    broken.register(Account, name="accounts", payload=lambda a: {"id": a.missing})
    producer = Producer(client, registry=broken)
    async with tracked(engine, producer, Account) as maker, maker() as session:
        session.add(Account(name="bad payload"))
        with pytest.raises(PayloadError, match=r"tests\.sql\.Account.*missing"):
            await session.flush()
        await session.rollback()
    assert await count_accounts(engine) == 0
    assert await client.keys("*") == []


async def test_a_sharded_model_goes_to_the_shard_the_producer_picks(
    engine: AsyncEngine, client: Redis
) -> None:
    from aioredstream import Registry, shard_of

    sharded = Registry()
    sharded.register(Account, name="accounts", shards=4)
    producer = Producer(client, registry=sharded)
    async with tracked(engine, producer, Account) as maker, maker() as session:
        session.add_all([Account(name=f"a{i}") for i in range(8)])
        await session.commit()
    expected: dict[str, list[dict[str, int]]] = {}
    for account_id in range(1, 9):
        expected.setdefault(f"accounts-{shard_of(account_id, 4)}", []).append({"id": account_id})
    assert len(expected) > 1  # the ids spread over several shards
    for stream, messages in expected.items():
        assert await payloads(client, stream) == messages
        assert await payloads(client, f"{stream}.delay") == []
    assert await client.exists("redstream:stream:accounts") == 0


def test_a_model_with_a_table_names_its_stream_after_the_table() -> None:
    assert BlogPost.redstream_name() == "posts"  # not "blog_posts"
    assert Account.redstream_name() == "accounts"

    class ImperativeBase(DeclarativeBase):
        pass

    class Legacy(Model, ImperativeBase):
        __table__ = Table("legacy_items", MetaData(), Column("id", Integer, primary_key=True))

    class ProductCategory(Model):  # no table: the gem's inflection of the class name
        pass

    assert Legacy.redstream_name() == "legacy_items"
    assert ProductCategory.redstream_name() == "product_categories"


async def test_a_payload_read_after_an_expiring_commit_says_what_to_do(
    engine: AsyncEngine, producer: Producer, client: Redis
) -> None:
    maker = async_sessionmaker(engine)  # expire_on_commit=True, SQLAlchemy's default
    async with maker() as session:
        account = Account(name="a")
        session.add(account)
        await session.commit()  # expires account.id
    for call in (producer.delay, producer.queue):
        with pytest.raises(PayloadError) as caught:
            await call(account)  # the session is closed: the instance is detached
        message = str(caught.value)
        assert "Instance <Account" in message
        assert "is not bound to a Session" in message
        assert "before commit()" in message
        assert "expire_on_commit=False" in message
        assert "not JSON-serialisable" not in message
    assert await client.keys("*") == []


async def test_track_twice_on_one_maker_is_refused_until_remove(
    engine: AsyncEngine, producer: Producer, client: Redis
) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    for restart in range(3):  # an app built three times in one process (as tests do)
        tracker = track(producer, models=[Account], sessions=maker)
        with pytest.raises(ArgumentError, match=r"already tracked .* remove\(\)"):
            track(producer, models=[Account], sessions=maker)
        async with maker.begin() as session:
            session.add(Account(name=f"restart {restart}"))
        tracker.remove()  # the lifespan's shutdown
    assert await payloads(client, "accounts") == [{"id": 1}, {"id": 2}, {"id": 3}]
    everywhere = track(producer, models=[Account])
    try:
        with pytest.raises(ArgumentError, match="already tracked"):
            track(producer, models=[Account], sessions=None)
    finally:
        everywhere.remove()
