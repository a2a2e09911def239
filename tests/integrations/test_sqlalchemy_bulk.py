"""Bulk statements under track(): ``session.execute(update(...))`` and friends produce as
flushes do, against SQLite and PostgreSQL, Redis and Valkey."""

from __future__ import annotations

from typing import Any, cast

import pytest
from redis.asyncio import Redis
from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from aioredstream import (
    PayloadError,
    Producer,
    Registry,
    ServerConnectionError,
)

from ..sql import Account, AuditLog, Database, Note, Shop, registry
from .tracking import (
    Maker,
    cursor,
    names,
    seed,
    streams,
    tracked,
)

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


async def test_upserts_write_messages_for_inserted_and_updated_rows_only(
    maker: Maker, engine: AsyncEngine, client: Redis, database: Database
) -> None:
    if database.kind == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as upsert
    else:
        from sqlalchemy.dialects.postgresql import insert as upsert  # type: ignore[assignment]
    await seed(engine, 3)
    async with maker() as session:
        values = upsert(Account).values([{"id": 2, "name": "B"}, {"id": 7, "name": "g"}])
        await session.execute(
            values.on_conflict_do_update(index_elements=["id"], set_={"name": "updated"})
        )
        rows = [{"id": 3, "name": "kept as is"}, {"id": 8, "name": "h"}]
        await session.execute(upsert(Account).on_conflict_do_nothing(), rows)
        await session.commit()
    assert await streams(client) == {
        "accounts": [{"id": 2}, {"id": 7}, {"id": 8}],
        "accounts.delay": [],
    }
    assert await names(engine) == {1: "a1", 2: "updated", 3: "a3", 7: "g", 8: "h"}


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
