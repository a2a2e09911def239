"""The whole pattern on one Redis: SQLite as the primary, a dict as the "search index".

A consumer keeps the index in sync, a delayer repairs a crash between commit and
queue(), and a trimmer empties the stream once the consumer has committed it.
Run through `make demo` (examples/demo.py), which starts the server.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from redis.asyncio import Redis

from aioredstream import (
    Consumer,
    Delayer,
    Message,
    Model,
    Producer,
    Trimmer,
    max_consumer_id,
    stream_size,
)

NAMESPACE = "shop"
# In production: longer than any transaction, e.g. 300. tests/test_demo.py sets
# DEMO_DELAY_S=1 (still longer than the story's 0.5 s look at user 4) to save a second.
DELAY_S = float(os.environ.get("DEMO_DELAY_S", "2.0"))
STARTED = [time.monotonic()]


def say(who: str, text: str) -> None:
    print(f"  {time.monotonic() - STARTED[0]:5.2f}s  {who:10} {text}", flush=True)


class User(Model):  # stream "users", payload {"id": ...}
    def __init__(self, id: int) -> None:
        self.id = id


class Database:
    """The primary store: a SQLite file, used from worker threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._run(lambda db: db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)"))

    def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with sqlite3.connect(self.path) as db:  # commits on a clean exit
            return fn(db)

    async def write(self, sql: str, *args: object) -> None:
        await anyio.to_thread.run_sync(self._run, lambda db: db.execute(sql, args))

    async def rows(self, ids: list[int]) -> dict[int, str]:
        marks = ",".join("?" * len(ids))
        sql = f"SELECT id, name FROM users WHERE id IN ({marks})"
        found = await anyio.to_thread.run_sync(
            self._run, lambda db: db.execute(sql, ids).fetchall()
        )
        return dict(found)

    async def everything(self) -> dict[int, str]:
        sql = "SELECT id, name FROM users"
        return dict(
            await anyio.to_thread.run_sync(self._run, lambda db: db.execute(sql).fetchall())
        )


class App:
    """The request side: delay before the write, queue after the commit."""

    def __init__(self, db: Database, producer: Producer) -> None:
        self.db = db
        self.producer = producer

    async def save(self, id: int, name: str, *, crash_before_queue: bool = False) -> None:
        user = User(id)
        delay_id = await self.producer.delay(user)
        await self.db.write("INSERT OR REPLACE INTO users (id, name) VALUES (?, ?)", id, name)
        if crash_before_queue:
            say("app", f"saved user {id} ({name!r}) and CRASHED before queue()")
            return
        await self.producer.queue(user, delay_message_id=delay_id)
        say("app", f"saved user {id} ({name!r}), queued")

    async def delete(self, id: int) -> None:
        user = User(id)
        delay_id = await self.producer.delay(user)
        await self.db.write("DELETE FROM users WHERE id = ?", id)
        await self.producer.queue(user, delay_message_id=delay_id)
        say("app", f"deleted user {id}, queued")


class Indexer:
    """The consumer's handler: re-sync each named record from the primary."""

    def __init__(self, db: Database, index: dict[int, dict[str, object]], label: str) -> None:
        self.db = db
        self.index = index
        self.label = label

    async def __call__(self, messages: list[Message]) -> None:
        ids = sorted({m.payload["id"] for m in messages})
        rows = await self.db.rows(ids)
        for id in ids:
            if id in rows:
                self.index[id] = {"id": id, "name": rows[id]}
            else:
                self.index.pop(id, None)
        say(self.label, f"batch of {len(messages)}: re-synced users {ids}")


async def until(what: str, check: Callable[[], Awaitable[bool]], timeout_s: float = 15) -> None:
    with anyio.fail_after(timeout_s):
        while not await check():  # noqa: ASYNC110 - polling, as a person watching would
            await anyio.sleep(0.05)
    say("demo", f"-> {what}")


class _Say(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        say(record.name.rsplit(".", 1)[-1], record.getMessage())


async def run(client: Redis) -> None:
    print(f"\nthe whole pattern (SQLite primary, dict index, delay {DELAY_S}s):")
    STARTED[0] = time.monotonic()
    logger = logging.getLogger("aioredstream")
    logger.addHandler(_Say())
    logger.setLevel(logging.DEBUG)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "primary.sqlite3")
        app = App(db, Producer(client, namespace=NAMESPACE))
        index: dict[int, dict[str, object]] = {}
        opts: dict[str, Any] = {"namespace": NAMESPACE, "block": 0.5}
        async with anyio.create_task_group() as workers:
            # The gem's three workers side by side; two "processes" run the indexer:
            # one works, the other stands by on the lock.
            indexers = []
            for n in (1, 2):
                scope = anyio.CancelScope()
                consumer = Consumer(client, stream_name="users", name="indexer", **opts)
                handler = Indexer(db, index, f"indexer#{n}")
                workers.start_soon(_run_in, scope, consumer, handler)
                indexers.append((scope, consumer))
            workers.start_soon(Delayer(client, stream_name="users", delay=DELAY_S, **opts).run)
            trimmer = Trimmer(
                client,
                stream_name="users",
                consumer_names=["indexer"],
                interval=0.5,
                namespace=NAMESPACE,
            )
            workers.start_soon(trimmer.run)
            await story(client, app, index, indexers)
            workers.cancel_scope.cancel()
        say("demo", "workers stopped (cancelled): locks released, nothing half-committed")
        primary = await db.everything()
        synced = {id: doc["name"] for id, doc in index.items()}
        print(f"\nprimary: {primary}\nindex:   {synced}\nin sync: {primary == synced}")
    logger.handlers.clear()


async def _run_in(scope: anyio.CancelScope, consumer: Consumer, handler: Indexer) -> None:
    with scope:
        await consumer.run(handler)


async def story(
    client: Redis,
    app: App,
    index: dict[int, dict[str, object]],
    indexers: list[tuple[anyio.CancelScope, Consumer]],
) -> None:
    async def indexed(*ids: int) -> bool:
        return all(i in index for i in ids)

    for id, name in [(1, "ada"), (2, "grace"), (3, "linus")]:
        await app.save(id, name)
    await until("users 1-3 are in the index", lambda: indexed(1, 2, 3))

    # A deploy stops the indexer process that holds the lock; the other takes over.
    # Which one holds it, and who took over, is read from the lock itself (its token).
    lock_key = indexers[0][1].lock.key
    holder = await client.get(lock_key)
    tokens = [consumer.lock.token.encode() for _, consumer in indexers]
    stopped = tokens.index(holder) if holder in tokens else 0
    other = 1 - stopped
    indexers[stopped][0].cancel()
    say("demo", f"stopped indexer#{stopped + 1}, the lock holder (as a deploy would)")

    async def took_over() -> bool:
        return await client.get(lock_key) == tokens[other]

    await until(f"indexer#{other + 1} took the lock over", took_over)
    await app.save(3, "linus t.")
    await app.delete(2)

    async def updated() -> bool:
        return 2 not in index and index.get(3, {}).get("name") == "linus t."

    await until("user 3 renamed and user 2 removed in the index", updated)

    await app.save(4, "margaret", crash_before_queue=True)
    await anyio.sleep(0.5)
    say("demo", f"user 4 in the index? {4 in index} (its delay message waits {DELAY_S}s)")
    await until("the delayer replayed user 4 and the indexer synced it", lambda: indexed(4))

    async def trimmed() -> bool:
        return await stream_size(client, "users", namespace=NAMESPACE) == 0

    await until("the trimmer emptied the stream (all committed by the indexer)", trimmed)
    offset = await max_consumer_id(
        client, stream_name="users", consumer_name="indexer", namespace=NAMESPACE
    )
    say("demo", f"indexer offset stays at {offset}; new messages will follow it")
