"""SQLAlchemy AsyncSession integration, against SQLite and PostgreSQL, Redis and Valkey."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import Column, Integer, MetaData, Table, func, select, update
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

from .helpers import entries
from .sql import Account, AuditLog, BlogPost, Database, Note, Shop, registry

Maker = async_sessionmaker[AsyncSession]


async def payloads(client: Redis, stream: str) -> list[Any]:
    return [payload for _, payload in await entries(client, f"redstream:stream:{stream}")]


@pytest.fixture
async def engine(database: Database) -> AsyncIterator[AsyncEngine]:
    engine = database.engine()
    yield engine
    await engine.dispose()


@pytest.fixture
def producer(client: Redis) -> Producer:
    return Producer(client, registry=registry())


@pytest.fixture
def maker(engine: AsyncEngine, producer: Producer) -> Iterator[Maker]:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    tracker = track(producer, models=[Account, Note], sessions=maker)
    yield maker
    tracker.remove()


async def count_accounts(engine: AsyncEngine) -> int:
    """Read through another connection: sees committed rows only."""
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(Account))).scalar_one())


async def test_insert_update_delete_delay_on_flush_and_queue_after_commit(
    maker: Maker, client: Redis
) -> None:
    async with maker() as session:
        account = Account(name="ada")
        session.add(account)
        await session.flush()
        assert await payloads(client, "accounts.delay") == [{"id": account.id}]
        assert await payloads(client, "accounts") == []
        await session.commit()
        assert await payloads(client, "accounts.delay") == []
        assert await payloads(client, "accounts") == [{"id": account.id}]

        account.name = "ada lovelace"
        await session.commit()
        session.add(Note(account=account, body="first"))
        await session.commit()
        await session.delete(account)  # cascades to the note
        await session.commit()
    assert await payloads(client, "accounts") == [{"id": account.id}] * 3
    assert await payloads(client, "notes") == [{"id": 1, "account_id": account.id}] * 2
    assert await payloads(client, "accounts.delay") == []
    assert await payloads(client, "notes.delay") == []


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


async def test_delay_is_written_before_commit_without_blocking_the_loop(
    paused_maker: tuple[Maker, ObservedProducer], engine: AsyncEngine, client: Redis
) -> None:
    maker, producer = paused_maker
    # The server holds write commands until UNPAUSE: the commit waits in its delay write.
    await client.client_pause(60000, all=False)  # WRITE commands wait
    try:
        task = asyncio.create_task(create_account(maker, "paused"))
        await producer.delay_started.wait()
        # The loop runs other work meanwhile (this test, another DB connection) ...
        for _ in range(20):
            await asyncio.sleep(0)
        assert not task.done()
        # ... and the database has not committed the row yet.
        assert await count_accounts(engine) == 0
    finally:
        await client.client_unpause()
    await task
    assert await count_accounts(engine) == 1
    assert await payloads(client, "accounts") == [{"id": 1}]
    assert await payloads(client, "accounts.delay") == []


async def test_cancelled_in_delay_write_commits_nothing(
    paused_maker: tuple[Maker, ObservedProducer], engine: AsyncEngine, client: Redis
) -> None:
    maker, producer = paused_maker
    await client.client_pause(60000, all=False)  # WRITE commands wait
    try:
        task = asyncio.create_task(create_account(maker, "cancelled"))
        await producer.delay_started.wait()
        for _ in range(20):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await client.client_unpause()
    assert await count_accounts(engine) == 0
    assert await payloads(client, "accounts") == []
    # The session machinery is intact: the next commit produces as usual.
    await create_account(maker, "after")
    assert len(await payloads(client, "accounts")) == 1


async def test_concurrent_sessions_on_tiny_pools_do_not_deadlock(
    database: Database, redis_url: str
) -> None:
    from redis.asyncio import BlockingConnectionPool

    pool = BlockingConnectionPool.from_url(redis_url, max_connections=1)
    client = Redis.from_pool(pool)  # owns the pool: aclose() closes it
    engine = database.engine(pool_size=1, max_overflow=0)
    producer = Producer(client, registry=registry())
    maker = async_sessionmaker(engine)
    tracker = track(producer, models=[Account, Note], sessions=maker)

    async def work(n: int) -> None:
        async with maker() as session:
            account = Account(name=f"a{n}", notes=[])
            session.add(account)
            await session.flush()
            account.notes.append(Note(body="x"))
            await session.commit()

    try:
        await client.flushall()
        await asyncio.gather(*(work(n) for n in range(20)))
        assert await client.xlen("redstream:stream:accounts") == 20
        assert await client.xlen("redstream:stream:notes") == 20
        assert await client.xlen("redstream:stream:accounts.delay") == 0
        assert await count_accounts(engine) == 20
    finally:
        tracker.remove()
        await engine.dispose()
        await client.aclose()


async def test_expired_instances_are_not_loaded_after_commit(
    engine: AsyncEngine, producer: Producer, client: Redis
) -> None:
    maker = async_sessionmaker(engine)  # expire_on_commit=True: attributes expire at commit
    tracker = track(producer, models=[Account], sessions=maker)
    try:
        async with maker() as session:
            account = Account(name="expires")
            session.add(account)
            await session.commit()  # the queue message uses the payload taken at flush
            await session.delete(account)  # expired: the flush loads what DELETE needs
            await session.commit()
        assert await payloads(client, "accounts") == [{"id": 1}, {"id": 1}]
        assert await payloads(client, "accounts.delay") == []
    finally:
        tracker.remove()


async def test_instances_without_column_changes_are_skipped(maker: Maker, client: Redis) -> None:
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
    assert await client.keys("*") == []


async def test_rollback_writes_no_queue_message(maker: Maker, client: Redis) -> None:
    async with maker() as session:
        session.add(Account(name="doomed"))
        await session.flush()
        await session.rollback()
        session.add(Account(name="kept"))
        await session.commit()
    # The rolled-back row's delay message stays for the delayer (a harmless re-sync).
    assert await payloads(client, "accounts.delay") == [{"id": 1}]
    assert await payloads(client, "accounts") == [{"id": 1 if _reuses_ids(maker) else 2}]


def _reuses_ids(maker: Maker) -> bool:
    """SQLite hands out the rolled-back id again, PostgreSQL's sequence does not."""
    bind: Any = maker.kw["bind"]
    return bool(bind.dialect.name == "sqlite")


async def test_several_flushes_and_a_row_changed_twice_give_one_message(
    maker: Maker, client: Redis
) -> None:
    async with maker() as session:
        account = Account(name="v1")
        session.add(account)
        await session.flush()
        account.name = "v2"
        await session.flush()
        account.name = "v3"
        await session.execute(select(Account))  # autoflush
        delay = await entries(client, "redstream:stream:accounts.delay")
        assert [payload for _, payload in delay] == [{"id": account.id}]
        await session.commit()
    assert await payloads(client, "accounts") == [{"id": account.id}]
    assert await payloads(client, "accounts.delay") == []


async def test_inserted_and_deleted_in_one_transaction_is_one_message(
    maker: Maker, client: Redis
) -> None:
    async with maker() as session:
        account = Account(name="brief")
        session.add(account)
        await session.flush()
        await session.delete(account)
        await session.commit()
    assert await payloads(client, "accounts") == [{"id": account.id}]
    assert await payloads(client, "accounts.delay") == []


async def test_released_savepoint_is_queued_by_the_outer_commit(
    maker: Maker, client: Redis
) -> None:
    async with maker() as session:
        outer = Account(name="outer")
        session.add(outer)
        await session.flush()
        async with session.begin_nested():
            inner = Account(name="inner")
            session.add(inner)
            outer.name = "outer, changed in the savepoint"  # already pending: no new delay
        assert len(await payloads(client, "accounts.delay")) == 2
        assert await payloads(client, "accounts") == []
        await session.commit()
    assert sorted(p["id"] for p in await payloads(client, "accounts")) == [outer.id, inner.id]
    assert await payloads(client, "accounts.delay") == []


async def test_rolled_back_savepoint_drops_only_its_own_messages(
    maker: Maker, client: Redis
) -> None:
    async with maker() as session:
        outer = Account(name="outer")
        session.add(outer)
        await session.flush()
        outer_id = outer.id
        savepoint = await session.begin_nested()
        session.add(Account(name="discarded"))
        outer.name = "changed, then discarded"
        await session.flush()
        await savepoint.rollback()
        await session.commit()
    assert await payloads(client, "accounts") == [{"id": outer_id}]
    # The discarded row's delay message stays for the delayer.
    assert len(await payloads(client, "accounts.delay")) == 1


async def test_begin_context_managers_queue_after_commit(maker: Maker, client: Redis) -> None:
    async with maker.begin() as session:
        session.add(Account(name="one"))
    async with maker() as session, session.begin():
        session.add(Account(name="two"))
    assert await payloads(client, "accounts") == [{"id": 1}, {"id": 2}]


async def test_registered_model_and_orphan_delete(maker: Maker, client: Redis) -> None:
    async with maker() as session:
        account = Account(name="owner", notes=[Note(body="a"), Note(body="b")])
        session.add(account)
        await session.commit()
        await session.refresh(account, ["notes"])
        orphan = account.notes.pop(0)  # delete-orphan: deleted by the flush
        await session.commit()
    notes = await payloads(client, "notes")
    assert notes[:2] == [{"id": 1, "account_id": account.id}, {"id": 2, "account_id": account.id}]
    assert notes[2:] == [{"id": orphan.id, "account_id": account.id}]
    assert len(await payloads(client, "accounts")) == 1  # the account itself did not change


async def test_delay_failure_fails_the_commit(engine: AsyncEngine, make_client: Any) -> None:
    from aioredstream.testing import free_port

    dead = Producer(make_client(f"redis://127.0.0.1:{free_port()}/0"), registry=registry())
    maker = async_sessionmaker(engine)
    tracker = track(dead, models=[Account], sessions=maker)
    try:
        async with maker() as session:
            session.add(Account(name="never"))
            with pytest.raises(ServerConnectionError):
                await session.commit()
            await session.rollback()
        assert await count_accounts(engine) == 0
    finally:
        tracker.remove()


async def test_queue_failure_after_commit_is_logged_and_the_commit_stands(
    engine: AsyncEngine, client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenQueue(Producer):
        async def bulk_queue(self, records: Any, delay_message_ids: Any = None) -> bool:
            raise ServerConnectionError("queue: connection failed (test)")

    maker = async_sessionmaker(engine)
    tracker = track(BrokenQueue(client, registry=registry()), models=[Account], sessions=maker)
    try:
        with caplog.at_level(logging.ERROR, logger="aioredstream.integrations.sqlalchemy"):
            async with maker() as session:
                session.add(Account(name="committed"))
                await session.commit()
                session.add(Account(name="session still usable"))
                await session.commit()
        assert await count_accounts(engine) == 2
        assert await payloads(client, "accounts.delay") == [{"id": 1}, {"id": 2}]
        assert "remain for the delayer" in caplog.text
    finally:
        tracker.remove()


async def test_bulk_statement_with_producer_bulk(
    maker: Maker, engine: AsyncEngine, client: Redis, producer: Producer
) -> None:
    async with maker.begin() as session:
        session.add_all([Account(name=f"user{i}") for i in range(7)])
    await client.flushall()

    # README "Bulk statements", with Account for User.
    async with maker() as session:
        last_id = 0
        while ids := list(
            await session.scalars(
                select(Account.id)
                .where(Account.id > last_id, Account.name.like("user%"))
                .order_by(Account.id)
                .limit(3)
            )
        ):
            async with producer.bulk([Account(id=i) for i in ids]):  # delay messages first
                await session.execute(
                    update(Account).where(Account.id.in_(ids)).values(name="renamed")
                )
                await session.commit()
            # queue messages + delay deletions here, after the commit
            last_id = ids[-1]

    assert [p["id"] for p in await payloads(client, "accounts")] == list(range(1, 8))
    assert await payloads(client, "accounts.delay") == []
    async with engine.connect() as conn:
        names = set((await conn.execute(select(Account.name))).scalars())
    assert names == {"renamed"}


async def test_untracked_sessions_write_nothing(
    maker: Maker, engine: AsyncEngine, client: Redis
) -> None:
    other = async_sessionmaker(engine)
    async with other.begin() as session:
        session.add(Account(name="elsewhere"))
    assert await client.keys("*") == []
    async with maker.begin() as session:
        session.add(Account(name="here"))
    assert await payloads(client, "accounts") == [{"id": 2}]


async def test_sync_session_refuses_to_flush_tracked_instances(
    producer: Producer, tmp_path: Any, client: Redis
) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    class SyncSession(Session):
        pass

    engine = create_engine(f"sqlite:///{tmp_path}/sync.db")
    Account.metadata.create_all(engine)
    tracker = track(producer, models=[Account], sessions=SyncSession)
    try:
        with SyncSession(engine) as session:
            session.add(Account(name="sync"))
            with pytest.raises(UnsupportedError, match="AsyncSession"):
                session.commit()
            session.rollback()
            assert session.scalar(select(func.count()).select_from(Account)) == 0
    finally:
        tracker.remove()
        engine.dispose()
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
    maker = async_sessionmaker(engine)
    tracker = track(producer, models=[Account], sessions=maker)
    assert "Account" in repr(tracker)
    try:
        async with maker() as session:
            session.add(Account(name="bad payload"))
            with pytest.raises(PayloadError, match=r"tests\.sql\.Account.*missing"):
                await session.flush()
            await session.rollback()
        assert await count_accounts(engine) == 0
        assert await client.keys("*") == []
    finally:
        tracker.remove()


# -- the SQLAlchemy user's path (issue 14): table-named and per-row streams, errors after
# commit, one tracker per maker


@asynccontextmanager
async def tracked(engine: AsyncEngine, producer: Producer, model: type) -> AsyncIterator[Maker]:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    tracker = track(producer, models=[model], sessions=maker)
    try:
        yield maker
    finally:
        tracker.remove()


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


async def test_tracked_rows_of_a_table_named_model_go_to_the_tables_stream(
    engine: AsyncEngine, producer: Producer, client: Redis
) -> None:
    async with tracked(engine, producer, BlogPost) as maker, maker.begin() as session:
        session.add(BlogPost(title="hello"))
    assert await payloads(client, "posts") == [{"id": 1}]
    assert await payloads(client, "posts.delay") == []
    assert await payloads(client, "blog_posts") == []


async def test_tracked_rows_that_name_their_stream_keep_delay_and_queue_together(
    engine: AsyncEngine, producer: Producer, client: Redis
) -> None:
    async with tracked(engine, producer, Shop) as maker, maker.begin() as session:
        session.add_all([Shop(region="eu"), Shop(region="us"), Shop(region="eu")])
    assert await payloads(client, "shops-eu") == [{"id": 1}, {"id": 3}]
    assert await payloads(client, "shops-us") == [{"id": 2}]
    assert await client.xlen("redstream:stream:shops-eu.delay") == 0
    assert await client.xlen("redstream:stream:shops-us.delay") == 0


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
