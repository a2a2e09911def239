"""Bulk statements under track(): ``session.execute(update(...))`` and friends produce as
flushes do, against SQLite and PostgreSQL, Redis and Valkey."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from sqlalchemy import String, Table, delete, insert, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from aioredstream import (
    Model,
    PayloadError,
    Producer,
    Registry,
    ServerConnectionError,
    UnsupportedError,
)
from aioredstream.integrations.sqlalchemy import UntrackedWriteWarning, track

from ..sql import Account, AuditLog, Database, Note, Shop, registry
from .tracking import Maker, count_accounts, payloads, streams, tracked

ACCOUNTS = cast(Table, Account.__table__)
NOTES = cast(Table, Note.__table__)


async def seed(engine: AsyncEngine, count: int, *, notes: bool = False) -> None:
    """``count`` accounts (ids 1..count from the database's own sequence, names a1..),
    written around the tracker; with ``notes``, one note per account (same id)."""
    async with engine.begin() as conn:
        for start in range(1, count + 1, 10_000):
            part = range(start, min(start + 10_000, count + 1))
            await conn.execute(insert(ACCOUNTS), [{"name": f"a{i}"} for i in part])
        if notes:
            rows = [{"account_id": i, "body": f"n{i}"} for i in range(1, count + 1)]
            await conn.execute(insert(NOTES), rows)


def cursor(result: Result[Any]) -> CursorResult[Any]:
    """What session.execute() of an INSERT, UPDATE or DELETE returns (its type says Result)."""
    assert isinstance(result, CursorResult), type(result)
    return result


def ids(messages: list[Any]) -> list[int]:
    return [message["id"] for message in messages]


async def names(engine: AsyncEngine) -> dict[int, str]:
    """Every account, read through another connection (committed rows only)."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(Account.id, Account.name))
        return {row[0]: row[1] for row in rows}


# -- the cases ------------------------------------------------------------------


async def test_update_of_3_rows_writes_3_delay_then_3_queue_messages(
    maker: Maker, engine: AsyncEngine, client: Redis
) -> None:
    await seed(engine, 6)
    async with maker() as session:
        statement = update(Account).where(Account.id.in_([2, 3, 5])).values(name="renamed")
        result = await session.execute(statement)
        assert cursor(result).rowcount == 3
        # Before COMMIT: the delay messages, and the rows not yet visible to others.
        assert await streams(client) == {"accounts.delay": [{"id": 2}, {"id": 3}, {"id": 5}]}
        assert set((await names(engine)).values()) == {f"a{i}" for i in range(1, 7)}
        await session.commit()
    assert await streams(client) == {
        "accounts": [{"id": 2}, {"id": 3}, {"id": 5}],
        "accounts.delay": [],
    }
    assert [i for i, name in (await names(engine)).items() if name == "renamed"] == [2, 3, 5]


async def test_delete_and_a_multi_row_insert(
    maker: Maker, engine: AsyncEngine, client: Redis
) -> None:
    await seed(engine, 4)
    async with maker() as session:
        deleted = await session.execute(delete(Account).where(Account.id <= 2))
        assert cursor(deleted).rowcount == 2
        await session.execute(insert(Account), [{"name": f"new{i}"} for i in range(3)])
        await session.commit()
    assert await streams(client) == {
        "accounts": [{"id": 1}, {"id": 2}, {"id": 5}, {"id": 6}, {"id": 7}],
        "accounts.delay": [],
    }
    assert sorted(await names(engine)) == [3, 4, 5, 6, 7]


async def test_statements_that_match_no_row_write_nothing(
    maker: Maker, engine: AsyncEngine, client: Redis
) -> None:
    await seed(engine, 3)
    async with maker() as session:
        result = await session.execute(update(Account).where(Account.id > 100).values(name="x"))
        assert cursor(result).rowcount == 0
        await session.execute(delete(Account).where(Account.name == "nobody"))
        await session.execute(update(Note).values(body="no notes at all"))
        await session.execute(insert(Account).from_select(["name"], select(AuditLog.line)))
        await session.commit()
    assert await streams(client) == {}


async def test_rollback_writes_nothing_more(
    maker: Maker, engine: AsyncEngine, client: Redis
) -> None:
    await seed(engine, 3)
    async with maker() as session:
        await session.execute(update(Account).values(name="doomed"))
        await session.rollback()
    # The delay messages stay for the delayer (a harmless re-sync), as for a flush.
    assert await streams(client) == {"accounts.delay": [{"id": 1}, {"id": 2}, {"id": 3}]}
    assert set((await names(engine)).values()) == {"a1", "a2", "a3"}


async def test_a_rolled_back_savepoint_drops_its_statements_messages(
    maker: Maker, engine: AsyncEngine, client: Redis
) -> None:
    await seed(engine, 4)
    async with maker() as session:
        await session.execute(update(Account).where(Account.id == 1).values(name="kept"))
        savepoint = await session.begin_nested()
        await session.execute(update(Account).where(Account.id.in_([2, 3])).values(name="gone"))
        await savepoint.rollback()
        async with session.begin_nested():  # released: its messages go with the commit
            await session.execute(delete(Account).where(Account.id == 4))
        await session.commit()
    assert await streams(client) == {
        "accounts": [{"id": 1}, {"id": 4}],
        "accounts.delay": [{"id": 2}, {"id": 3}],  # for the delayer
    }
    assert await names(engine) == {1: "kept", 2: "a2", 3: "a3"}


async def test_a_row_flushed_and_then_updated_in_bulk_is_one_message(
    maker: Maker, engine: AsyncEngine, client: Redis
) -> None:
    async with maker() as session:
        session.add(Account(name="flushed"))
        await session.flush()
        await session.execute(update(Account).values(name="bulk"))  # autoflush, then UPDATE
        await session.execute(update(Account).values(name="again"))
        await session.commit()
    assert await streams(client) == {"accounts": [{"id": 1}], "accounts.delay": []}


# -- payloads ---------------------------------------------------------------------------


async def test_payloads_are_built_from_the_changed_rows(
    engine: AsyncEngine, producer: Producer, client: Redis
) -> None:
    await seed(engine, 3, notes=True)
    async with engine.begin() as conn:
        await conn.execute(
            insert(cast(Table, Shop.__table__)), [{"region": "eu"}, {"region": "us"}]
        )
    async with tracked(engine, producer, Note, Shop) as maker, maker() as session:
        # Note's payload reads account_id: the row as the UPDATE left it.
        await session.execute(update(Note).where(Note.id <= 2).values(account_id=3))
        # ... and as the DELETE found it.
        await session.execute(delete(Note).where(Note.id == 3))
        # Shop names the stream of each row: the new region's stream.
        await session.execute(update(Shop).where(Shop.region == "eu").values(region="asia"))
        # By primary key: the rows read back after the statement.
        await session.execute(update(Shop), [{"id": 2, "region": "africa"}])
        await session.commit()
    assert await streams(client) == {
        "notes": [
            {"id": 1, "account_id": 3},
            {"id": 2, "account_id": 3},
            {"id": 3, "account_id": 3},
        ],
        "notes.delay": [],
        "shops-asia": [{"id": 1}],
        "shops-asia.delay": [],
        "shops-africa": [{"id": 2}],
        "shops-africa.delay": [],
    }


async def test_a_payload_the_row_cannot_give_fails_the_statement_and_the_commit(
    engine: AsyncEngine, client: Redis
) -> None:
    await seed(engine, 2, notes=True)
    reading = Registry()
    reading.register(Note, name="notes", payload=lambda n: {"id": n.id, "owner": n.account.name})
    producer = Producer(client, registry=reading)
    async with tracked(engine, producer, Note) as maker, maker() as session:
        with pytest.raises(PayloadError, match=r"tests\.sql\.Note.*account"):
            await session.execute(update(Note).values(body="changed"))
        with pytest.raises(sa_exc.PendingRollbackError, match="roll the transaction back"):
            await session.commit()
        await session.rollback()
        await session.commit()  # a new, empty transaction commits as usual
    assert await client.keys("*") == []
    async with engine.connect() as conn:
        assert set((await conn.execute(select(Note.body))).scalars()) == {"n1", "n2"}


async def test_a_failed_delay_write_fails_the_statement_and_the_commit(
    engine: AsyncEngine, make_client: Any
) -> None:
    from aioredstream.testing import free_port

    await seed(engine, 2)
    dead = Producer(make_client(f"redis://127.0.0.1:{free_port()}/0"), registry=registry())
    async with tracked(engine, dead, Account) as maker, maker() as session:
        with pytest.raises(ServerConnectionError):
            await session.execute(update(Account).values(name="never"))
        with pytest.raises(sa_exc.PendingRollbackError) as caught:
            await session.commit()
        assert isinstance(caught.value.__cause__, ServerConnectionError)
        await session.rollback()
    assert await names(engine) == {1: "a1", 2: "a2"}


async def test_a_failure_inside_a_rolled_back_savepoint_does_not_block_the_commit(
    engine: AsyncEngine, client: Redis
) -> None:
    await seed(engine, 2)

    class DeadForNotes(Producer):
        async def bulk_delay(self, records: Any) -> list[str]:
            records = list(records)
            if type(records[0]).__name__ == "Note":
                raise ServerConnectionError("notes: connection failed (test)")
            return await super().bulk_delay(records)

    producer = DeadForNotes(client, registry=registry())
    async with tracked(engine, producer, Account, Note) as maker, maker() as session:
        await session.execute(update(Account).where(Account.id == 1).values(name="kept"))
        savepoint = await session.begin_nested()
        with pytest.raises(ServerConnectionError):
            await session.execute(insert(Note), [{"account_id": 1, "body": "x"}])
        await savepoint.rollback()
        await session.commit()
    assert await streams(client) == {"accounts": [{"id": 1}], "accounts.delay": []}
    assert await names(engine) == {1: "kept", 2: "a2"}


# -- the application's result -----------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[AsyncSession], Awaitable[Any]]
    changed: list[int]  # the ids whose delay messages the statement writes


def _case(name: str, changed: list[int], statement: Any, params: Any = None) -> Case:
    async def run(session: AsyncSession) -> Any:
        return await session.execute(statement, params)

    return Case(name, run, changed)


CASES = [
    _case("update", [2, 4], update(Account).where(Account.id.in_([2, 4])).values(name="x")),
    _case("update matching nothing", [], update(Account).where(Account.id > 9).values(name="x")),
    _case(
        "update, synchronize_session=fetch",
        [1, 2],
        update(Account)
        .where(Account.id < 3)
        .values(name="x")
        .execution_options(synchronize_session="fetch"),
    ),
    _case(
        "update returning columns",
        [1, 2],
        update(Account).where(Account.id < 3).values(name="y").returning(Account.id, Account.name),
    ),
    _case(
        "update returning the entity",
        [3],
        update(Account).where(Account.id == 3).values(name="z").returning(Account),
    ),
    _case("delete", [4, 5], delete(Account).where(Account.id > 3)),
    _case(
        "delete returning a column",
        [1],
        delete(Account).where(Account.id == 1).returning(Account.name),
    ),
    _case("insert values", [10], insert(Account).values(id=10, name="v")),
    _case(
        "insert multi-values",
        [11, 12],
        insert(Account).values([{"id": 11, "name": "m"}, {"id": 12, "name": "n"}]),
    ),
    _case(
        "bulk insert",
        [13, 14, 15],
        insert(Account),
        [{"id": i, "name": f"b{i}"} for i in (13, 14, 15)],
    ),
    _case(
        "bulk insert returning, in parameter order",
        [17, 16],
        insert(Account).returning(Account.id, Account.name, sort_by_parameter_order=True),
        [{"id": 17, "name": "r"}, {"id": 16, "name": "s"}],
    ),
    _case(
        "bulk update by primary key",
        [1, 3],
        update(Account),
        [{"id": 1, "name": "p"}, {"id": 3, "name": "q"}],
    ),
    _case(
        "insert from select",
        [101, 102],
        insert(Account).from_select(
            ["id", "name"], select(Account.id + 100, Account.name).where(Account.id < 3)
        ),
    ),
    _case("Core update", [5], update(ACCOUNTS).where(ACCOUNTS.c.id == 5).values(name="c")),
    _case("Core insert values", [20], insert(ACCOUNTS).values(id=20, name="c")),
    _case(
        "Core delete returning",
        [2],
        delete(ACCOUNTS).where(ACCOUNTS.c.id == 2).returning(ACCOUNTS.c.name),
    ),
]


def observe(result: Any) -> dict[str, Any]:
    """What an application can read of a result."""
    seen: dict[str, Any] = {}
    for attribute in ("rowcount", "inserted_primary_key"):
        try:
            seen[attribute] = getattr(result, attribute)
        except (AttributeError, sa_exc.InvalidRequestError) as exc:
            seen[attribute] = type(exc).__name__
    try:
        rows = result.all()
    except sa_exc.ResourceClosedError:  # ("does not return rows": none to read either)
        rows = []
    seen["rows"] = [tuple(_plain(value) for value in row) for row in rows]
    return seen


def _plain(value: Any) -> Any:
    return ("Account", value.id, value.name) if isinstance(value, Account) else value


async def test_the_application_gets_the_result_it_would_get_untracked(
    engine: AsyncEngine, producer: Producer, client: Redis
) -> None:
    await seed(engine, 5)
    async with tracked(engine, producer, Account) as maker:
        for case in CASES:
            async with async_sessionmaker(engine)() as session:
                expected = observe(await case.run(session))
                await session.rollback()
            async with maker() as session:
                got = observe(await case.run(session))
                written = await payloads(client, "accounts.delay")
                await session.rollback()
            await client.flushall()
            assert got["rows"] == expected["rows"], case.name
            if expected["rowcount"] != "AttributeError":  # (a bulk INSERT's result gains one)
                assert got["rowcount"] == expected["rowcount"], case.name
            if isinstance(expected["inserted_primary_key"], tuple) and all(
                expected["inserted_primary_key"]  # a single-row INSERT's key
            ):
                assert got["inserted_primary_key"] == expected["inserted_primary_key"], case.name
            assert ids(written) == case.changed, case.name


# -- what is not followed, and why it says so -------------------------------------------


async def test_writes_around_the_orm_warn_and_opted_out_ones_do_not(
    maker: Maker, engine: AsyncEngine, client: Redis, database: Database
) -> None:
    await seed(engine, 2)
    schema = f'"{database.schema}".' if database.schema else ""  # text() is not translated
    async with maker() as session:
        with pytest.warns(UntrackedWriteWarning, match=r"text\(\) statement .*'accounts'"):
            await session.execute(text(f"UPDATE {schema}accounts SET name = 'raw' WHERE id = 1"))
        connection = await session.connection()
        with pytest.warns(UntrackedWriteWarning, match=r"Core UPDATE writes .*'accounts'"):
            await connection.execute(update(ACCOUNTS).values(name="core"))
        with pytest.warns(UntrackedWriteWarning, match="'notes'"):
            await session.run_sync(
                lambda sync: sync.bulk_insert_mappings(Note, [{"account_id": 1, "body": "b"}])
            )
        # No warning: an untracked table, or the application says it produces itself.
        await session.execute(text(f"INSERT INTO {schema}audit_logs (line) VALUES ('x')"))
        await session.execute(
            text(f"DELETE FROM {schema}accounts WHERE id = 2"),
            execution_options={"redstream": False},
        )
        await session.commit()
    assert await streams(client) == {}


async def test_opted_out_statements_with_producer_bulk_by_hand(
    maker: Maker, engine: AsyncEngine, client: Redis, producer: Producer
) -> None:
    await seed(engine, 7)
    async with maker() as session:
        last_id = 0
        query = select(Account.id).where(Account.id > 0).order_by(Account.id).limit(3)
        while chunk := list(await session.scalars(query.where(Account.id > last_id))):
            async with producer.bulk([Account(id=i) for i in chunk]):
                await session.execute(
                    update(Account).where(Account.id.in_(chunk)).values(name="renamed"),
                    execution_options={"redstream": False},
                )
                await session.commit()
            last_id = chunk[-1]
    assert ids(await payloads(client, "accounts")) == list(range(1, 8))  # once each
    assert await payloads(client, "accounts.delay") == []
    assert set((await names(engine)).values()) == {"renamed"}


async def test_a_sync_session_refuses_bulk_statements_too(
    producer: Producer, tmp_path: Any, client: Redis
) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    class SyncSession(Session):
        pass

    engine = create_engine(f"sqlite:///{tmp_path}/sync.db")
    Account.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(ACCOUNTS).values(name="sync"))
    tracker = track(producer, models=[Account], sessions=SyncSession)
    try:
        with SyncSession(engine) as session:
            with pytest.raises(UnsupportedError, match="AsyncSession"):
                session.execute(update(Account).values(name="changed"))
            with pytest.raises(sa_exc.PendingRollbackError):
                session.commit()
            session.rollback()
            assert session.scalars(select(Account.name)).all() == ["sync"]
    finally:
        tracker.remove()
        engine.dispose()
    assert await client.keys("*") == []


# -- databases without RETURNING ----------------------------------------------------------


@pytest.fixture
async def without_returning(database: Database) -> AsyncIterator[AsyncEngine]:
    """An engine whose dialect claims no RETURNING (as MySQL's, or SQLite's before 3.35)."""
    engine = database.engine()
    dialect = engine.sync_engine.dialect
    for flag in ("insert_returning", "update_returning", "delete_returning"):
        setattr(dialect, flag, False)
    dialect.insert_executemany_returning = False
    yield engine
    await engine.dispose()


async def test_without_returning_the_rows_are_selected_in_the_transaction(
    without_returning: AsyncEngine, producer: Producer, client: Redis
) -> None:
    engine = without_returning
    await seed(engine, 5, notes=True)
    async with tracked(engine, producer, Account, Note) as maker, maker() as session:
        result = await session.execute(update(Account).where(Account.id >= 4).values(name="u"))
        assert cursor(result).rowcount == 2
        await session.execute(update(Note).where(Note.id == 1).values(account_id=2))
        await session.execute(delete(Note).where(Note.id == 5))
        await session.execute(insert(Account), [{"id": 9, "name": "k"}, {"id": 8, "name": "l"}])
        inserted = await session.execute(insert(Account).values(name="single"))
        key = cursor(inserted).inserted_primary_key
        assert key is not None
        single = key[0]  # SQLite: 10, PostgreSQL's sequence: 6
        await session.commit()
    written = await streams(client)
    assert sorted(ids(written.pop("accounts"))) == sorted([4, 5, 8, 9, single])
    assert written == {
        "accounts.delay": [],
        "notes": [{"id": 1, "account_id": 2}, {"id": 5, "account_id": 5}],
        "notes.delay": [],
    }


async def test_without_returning_what_cannot_be_followed_is_refused_before_it_runs(
    without_returning: AsyncEngine, producer: Producer, client: Redis
) -> None:
    engine = without_returning
    await seed(engine, 2)
    async with tracked(engine, producer, Account) as maker, maker() as session:
        with pytest.raises(UnsupportedError, match=r"INSERT .*'accounts'.*nothing ran"):
            await session.execute(insert(Account), [{"name": "no key"}])
        with pytest.raises(UnsupportedError, match="UPDATE of the primary key"):
            await session.execute(update(Account).where(Account.id == 1).values(id=100))
        await session.commit()  # nothing ran: the transaction is fine
    assert await count_accounts(engine) == 2
    assert await client.keys("*") == []


# -- inheritance: one table, several classes ------------------------------------------------


class PetBase(DeclarativeBase):
    pass


class Pet(Model, PetBase):
    __tablename__ = "bulk_pets"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(20))
    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "pet"}  # noqa: RUF012


class Dog(Pet):
    __mapper_args__ = {"polymorphic_identity": "dog"}  # noqa: RUF012


class Cat(Pet):
    __mapper_args__ = {"polymorphic_identity": "cat"}  # noqa: RUF012


async def test_only_rows_of_tracked_classes_produce(
    engine: AsyncEngine, producer: Producer, client: Redis
) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(PetBase.metadata.create_all)
        await conn.execute(
            insert(cast(Table, Pet.__table__)),
            [{"kind": kind, "name": kind} for kind in ("dog", "cat", "dog", "pet")],
        )
    async with tracked(engine, producer, Dog) as maker, maker() as session:
        await session.execute(update(Pet).values(name="renamed"))  # every row, dogs produce
        await session.execute(
            update(cast(Table, Pet.__table__)).values(name="core")
        )  # the same, by table
        await session.execute(update(Cat).values(name="cats only"))  # no dog: nothing
        await session.commit()
    assert await streams(client) == {"bulk_pets": [{"id": 1}, {"id": 3}], "bulk_pets.delay": []}


# -- many rows ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changed_rows",
    [pytest.param(5_000, id="5k"), pytest.param(100_000, id="100k", marks=pytest.mark.slow)],
)
async def test_a_large_update_writes_exactly_the_changed_keys(
    changed_rows: int, engine: AsyncEngine, producer: Producer, client: Redis
) -> None:
    rows = changed_rows // 5 * 6  # the UPDATE leaves every sixth row alone
    await seed(engine, rows)
    changed = [i for i in range(1, rows + 1) if i % 6]
    assert len(changed) == changed_rows
    async with tracked(engine, producer, Account) as maker, maker() as session:
        gc.collect()
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            statement = update(Account).where(Account.id % 6 != 0).values(name="changed")
            result = await session.execute(statement)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert cursor(result).rowcount == changed_rows
        assert await client.xlen("redstream:stream:accounts.delay") == changed_rows
        await session.commit()
    queued = ids(await payloads(client, "accounts"))
    assert sorted(queued) == changed  # each changed key once, and no other
    assert await client.xlen("redstream:stream:accounts.delay") == 0
    per_row = (peak - before) / changed_rows
    print(f"\n{changed_rows} rows changed: peak {peak - before:,} B, {per_row:.0f} B/row")
    # Generous: what stays until the commit (one pending message per row: payload, delay
    # id) plus one partition of rows as instances; every row as an ORM instance at once
    # would not fit (docs/sqlalchemy.md has the figures).
    assert per_row < 1_500
