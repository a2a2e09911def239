"""Bulk statements under track(): the application's results, what is not followed,
databases without RETURNING, inheritance, and many rows."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from sqlalchemy import String, Table, bindparam, delete, insert, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from aioredstream import (
    Model,
    Producer,
    UnsupportedError,
    shard_of,
)
from aioredstream.integrations.sqlalchemy import UntrackedWriteWarning

from ..sql import Account, Database, Note
from .tracking import (
    ACCOUNTS,
    Maker,
    SyncSession,
    count_accounts,
    cursor,
    ids,
    names,
    payloads,
    seed,
    streams,
    sync_tracked,
    tracked,
)

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
    _case(
        "update with a bound parameter",
        [4],
        update(Account).where(Account.id == bindparam("which")).values(name="b"),
        {"which": 4},
    ),
    _case("Core update", [5], update(ACCOUNTS).where(ACCOUNTS.c.id == 5).values(name="c")),
    _case("Core insert, one parameter set", [21], insert(ACCOUNTS), {"id": 21, "name": "p"}),
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


async def test_what_a_result_reports_differently(
    maker: Maker, engine: AsyncEngine, client: Redis
) -> None:
    """The three details docs/sqlalchemy.md lists, each of a statement that returned no
    rows to the application before."""
    await seed(engine, 2)
    async with maker() as session:
        bulk = await session.execute(insert(Account), [{"name": "x"}, {"name": "y"}])
        assert cursor(bulk).rowcount == 2  # (the untracked result has no rowcount)
        many = insert(Account).values([{"id": 50, "name": "m"}, {"id": 51, "name": "n"}])
        assert cursor(await session.execute(many)).inserted_primary_key == (50,)  # (None,)
        copied = insert(Account).from_select(["name"], select(Account.name))
        with pytest.raises(sa_exc.InvalidRequestError):  # (None,)
            _ = cursor(await session.execute(copied)).inserted_primary_key
        await session.rollback()


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
    producer: Producer, tmp_path: Path, client: Redis
) -> None:
    with sync_tracked(producer, tmp_path, ("sync",)) as engine, SyncSession(engine) as session:
        with pytest.raises(UnsupportedError, match="AsyncSession"):
            session.execute(update(Account).values(name="changed"))
        with pytest.raises(sa_exc.PendingRollbackError):
            session.commit()
        session.rollback()
        assert session.scalars(select(Account.name)).all() == ["sync"]
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
        with pytest.raises(UnsupportedError, match=r"multi-row INSERT .*nothing ran"):
            await session.execute(insert(Account).values([{"name": "a"}, {"name": "b"}]))
        with pytest.raises(UnsupportedError, match=r"multi-row INSERT .*nothing ran"):
            await session.execute(insert(Account).from_select(["name"], select(Account.name)))
        with pytest.raises(UnsupportedError, match="UPDATE of the primary key"):
            await session.execute(update(Account).where(Account.id == 1).values(id=100))
        await session.commit()  # nothing ran: the transaction is fine
    assert await count_accounts(engine) == 2
    assert await client.keys("*") == []


# -- models with tables of their own: inheritance, shards ---------------------------


class OwnBase(DeclarativeBase):
    pass


class Pet(Model, OwnBase):
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
        await conn.run_sync(OwnBase.metadata.create_all)
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


class Part(Model, OwnBase):
    """Sharded: the gem's streams bulk_parts-0 .. bulk_parts-2, by id."""

    __tablename__ = "bulk_parts"
    redstream_shards = 3
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20))


async def test_a_sharded_model_writes_to_the_shard_of_each_row(
    engine: AsyncEngine, producer: Producer, client: Redis
) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(OwnBase.metadata.create_all)
    async with tracked(engine, producer, Part) as maker:
        async with maker.begin() as session:  # a flush
            session.add_all([Part(name=f"p{i}") for i in range(1, 7)])
        async with maker.begin() as session:  # a bulk statement
            await session.execute(update(Part).values(name="renamed"))
    expected: dict[str, list[Any]] = {}
    for part in range(1, 7):
        expected.setdefault(f"bulk_parts-{shard_of(part, 3)}", []).append({"id": part})
    written = await streams(client)
    for name, messages in expected.items():
        assert written.pop(f"{name}.delay") == []
        assert sorted(ids(written.pop(name))) == sorted(ids(messages) * 2), name
    assert written == {}


# -- many rows ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changed_rows",
    [
        pytest.param(5_000, id="5k"),
        pytest.param(100_000, id="100k", marks=[pytest.mark.slow, pytest.mark.timeout(300)]),
    ],
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
