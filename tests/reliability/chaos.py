"""The pieces of the end-to-end fault test: a primary database, writers, workers, faults.

``test_end_to_end_faults.py`` puts them together. Everything that happened is kept in
an :class:`Observed`, and the test's assertions are made on it afterwards.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import event, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from aioredstream import Consumer, Delayer, Message, Model, Producer, Trimmer
from aioredstream._validate import parse_id
from aioredstream.testing import ServerProcess

STREAM = "items"
CONSUMER = "indexer"
IDS = 200
DELAY_S = 2.0
CRASH_RATE = 0.05
LOCK_KEY = f"redstream:lock:consumer:{STREAM}:{CONSUMER}"
OFFSET_KEYS = (f"redstream:offset:{STREAM}:{CONSUMER}", f"redstream:offset:{STREAM}.delay:delayer")
# The gem's lock timings: the holder refreshes when 5 - 3 = 2 s of its key are left.
REFRESH_AT_PTTL_MS = 2000


class Base(DeclarativeBase):
    pass


class Item(Model, Base):
    """A row of the primary database; its messages carry the version they announce."""

    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(default=0)

    def redstream_payload(self) -> dict[str, int]:
        return {"id": self.id, "version": self.version}


@dataclass
class Observed:
    """What the run did and saw."""

    #: (id, version) of every write whose commit returned
    acked: set[tuple[int, int]] = field(default_factory=set)
    #: (id, version) of every message a handler finished with
    handled: set[tuple[int, int]] = field(default_factory=set)
    #: the secondary store: id -> version, as the handlers read it from the database
    index: dict[int, int] = field(default_factory=dict)
    #: (start, end, consumer instance) of every handler call, monotonic seconds
    calls: list[tuple[float, float, str]] = field(default_factory=list)
    #: offsets seen going backwards: (key, before, after)
    backwards: list[tuple[str, str, str]] = field(default_factory=list)
    offset_samples: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    restarts: int = 0
    crashes: int = 0
    failed_writes: int = 0

    #: wall clock minus monotonic clock: to find a handler call in the logs
    wall_offset_s: float = field(default_factory=lambda: time.time() - time.monotonic())

    def describe(self, call: tuple[float, float, str]) -> str:
        """A handler call as '<instance> <start>-<end>' in wall-clock time (as in logs)."""
        start, end = (
            time.strftime("%H:%M:%S", time.localtime(t + self.wall_offset_s))
            + f".{int((t + self.wall_offset_s) % 1 * 1000):03d}"
            for t in call[:2]
        )
        return f"{call[2]} {start}-{end}"

    def count(self, fault: str) -> None:
        self.faults[fault] = self.faults.get(fault, 0) + 1

    def overlaps(self) -> list[tuple[tuple[float, float, str], tuple[float, float, str]]]:
        """Pairs of handler calls of different instances that ran at the same time."""
        found = []
        latest: tuple[float, float, str] | None = None
        for call in sorted(self.calls):
            if latest is not None and call[0] < latest[1] and call[2] != latest[2]:
                found.append((latest, call))
            if latest is None or call[1] > latest[1]:
                latest = call
        return found


def plain_client(url: str, *, retries: bool = True) -> Redis:
    """A default client, or one whose connections never retry (a call fails at once)."""
    if retries:
        return Redis.from_url(url)
    return Redis.from_url(url, retry=Retry(NoBackoff(), 0), socket_timeout=2)


@asynccontextmanager
async def primary_database(path: str) -> AsyncIterator[AsyncEngine]:
    """SQLite (WAL, 1 s busy timeout) with ``IDS`` rows at version 0."""
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 1}, pool_size=20
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _wal(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.execute(insert(Item), [{"id": i, "version": 0} for i in range(IDS)])
    try:
        yield engine
    finally:
        await engine.dispose()


async def primary(engine: AsyncEngine) -> dict[int, int]:
    async with engine.connect() as conn:
        result = await conn.execute(select(Item.id, Item.version))
        return {row.id: row.version for row in result}


async def tracked_writer(
    maker: async_sessionmaker[Any], rng: random.Random, seen: Observed, until: float
) -> None:
    """Bumps versions through ``track()``: delay on flush, queue after the commit."""
    while time.monotonic() < until:
        item_id = rng.randrange(IDS)
        try:
            async with maker() as session, session.begin():
                item = await session.get(Item, item_id)
                assert item is not None
                item.version += 1
                version = item.version
        except Exception:  # Redis down, database busy: not acknowledged
            seen.failed_writes += 1
            await anyio.sleep(0.05)
        else:
            seen.acked.add((item_id, version))
        await anyio.sleep(rng.uniform(0, 0.02))


async def manual_writer(
    producer: Producer, engine: AsyncEngine, rng: random.Random, seen: Observed, until: float
) -> None:
    """delay -> commit -> queue by hand; a few 'crash' between the commit and the queue."""
    while time.monotonic() < until:
        item_id = rng.randrange(IDS)
        try:
            async with engine.connect() as conn:
                current = (await conn.execute(select(Item.version).where(Item.id == item_id))).one()
            version = current[0] + 1
            delay_id = await producer.delay(Item(id=item_id, version=version))
            async with engine.begin() as conn:
                done = await conn.execute(
                    update(Item)
                    .where(Item.id == item_id, Item.version == version - 1)
                    .values(version=version)
                )
        except Exception:
            seen.failed_writes += 1
            await anyio.sleep(0.05)
            continue
        if done.rowcount != 1:
            continue  # another writer was first: not acknowledged
        seen.acked.add((item_id, version))
        if rng.random() < CRASH_RATE:
            seen.crashes += 1  # the process "died": the delayer delivers the delay message
        else:
            try:
                await producer.queue(Item(id=item_id, version=version), delay_message_id=delay_id)
            except Exception:
                seen.crashes += 1
        await anyio.sleep(rng.uniform(0, 0.02))


def indexer(
    label: str, engine: AsyncEngine, seen: Observed, rng: random.Random
) -> Callable[[list[Message]], Any]:
    """A consumer's handler: re-read the announced rows into the index (timed).

    Writing to a real index takes a while (here 0.5-2 s a batch): a server fault then
    mostly comes while the holder is in its handler, with no command in flight, so its
    work may go on while its lock's refresh fails.
    """

    async def handle(messages: list[Message]) -> None:
        started = time.monotonic()
        try:
            await anyio.sleep(rng.uniform(0.5, 2.0))
            ids = {m.payload["id"] for m in messages}
            # Shielded: SQLAlchemy's aiosqlite connection, cancelled mid-query, leaves a
            # close task pending forever (the read is local and quick).
            with anyio.CancelScope(shield=True):
                async with engine.connect() as conn:
                    rows = list(
                        await conn.execute(select(Item.id, Item.version).where(Item.id.in_(ids)))
                    )
            seen.index.update(dict(rows))
            seen.handled.update((m.payload["id"], m.payload["version"]) for m in messages)
        finally:
            seen.calls.append((started, time.monotonic(), label))

    return handle


class Workers:
    """Two same-named consumers, a delayer and a trimmer, each in a slot that can be
    restarted (cancelled and replaced by a new worker on a new client)."""

    SLOTS = ("a", "b", "delayer", "trimmer")

    def __init__(
        self, tg: Any, url: str, engine: AsyncEngine, rng: random.Random, seen: Observed
    ) -> None:
        self._tg, self._url, self._engine, self._rng, self._seen = tg, url, engine, rng, seen
        self._running: dict[str, tuple[anyio.CancelScope, anyio.Event]] = {}
        self._generation = 0

    def _job(self, slot: str, client: Redis) -> Callable[[], Awaitable[None]]:
        fast: Any = {"block": 0.2, "backoff": 0.2}
        if slot == "delayer":
            return Delayer(client, stream_name=STREAM, delay=DELAY_S, batch_size=50, **fast).run
        if slot == "trimmer":
            trimmer = Trimmer(
                client, stream_name=STREAM, consumer_names=[CONSUMER], interval=0.5, backoff=0.2
            )
            return trimmer.run
        consumer = Consumer(client, stream_name=STREAM, name=CONSUMER, batch_size=500, **fast)
        label = f"{slot}{self._generation}"
        return lambda: consumer.run(indexer(label, self._engine, self._seen, self._rng))

    def start(self, slot: str) -> None:
        self._generation += 1
        client = plain_client(self._url, retries=self._rng.random() < 0.5)
        scope, done = anyio.CancelScope(), anyio.Event()
        self._running[slot] = (scope, done)
        self._tg.start_soon(self._run, scope, done, client, self._job(slot, client))

    @staticmethod
    async def _run(
        scope: anyio.CancelScope, done: anyio.Event, client: Redis, job: Callable[[], Any]
    ) -> None:
        try:
            with scope:
                await job()
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()
            done.set()

    async def restart(self, slot: str) -> None:
        scope, done = self._running[slot]
        scope.cancel()
        await done.wait()
        self._seen.restarts += 1
        self.start(slot)

    async def keep_restarting(self, until: float) -> None:
        while time.monotonic() < until:
            await anyio.sleep(self._rng.uniform(1.5, 4.0))
            await self.restart(self._rng.choice(self.SLOTS))

    async def stop(self) -> None:
        for scope, done in self._running.values():
            scope.cancel()
            await done.wait()


class Faults:
    """Kills (SIGKILL + restart on the same port, AOF kept) and pauses (SIGSTOP) of the
    server; half of the kills are aimed at the consumer lock holder's next refresh."""

    def __init__(self, server: ServerProcess, rng: random.Random, seen: Observed) -> None:
        self.server, self._rng, self._seen = server, rng, seen
        self._admin = plain_client(server.url, retries=False)

    async def run(self, until: float) -> None:
        try:
            while time.monotonic() < until:
                await anyio.sleep(self._rng.uniform(0.5, 2.0))
                choice = self._rng.random()
                if choice < 0.5:
                    await self._kill_at_refresh()
                elif choice < 0.75:
                    await self._kill(self._rng.uniform(0.2, 1.0), "kill")
                else:
                    await self._pause(self._rng.uniform(0.3, 1.5))
        finally:
            with anyio.CancelScope(shield=True):
                self.server.signal(signal.SIGCONT)
                await anyio.to_thread.run_sync(self.server.start)
                await self._admin.aclose()

    async def _kill_at_refresh(self) -> None:
        try:
            with anyio.fail_after(1):
                pttl = int(await self._admin.pttl(LOCK_KEY))
        except Exception:
            return
        if pttl > 0:  # down from up to 0.3 s before the holder's next refresh until after it
            lead_s = self._rng.uniform(0.0, 0.2)
            await anyio.sleep(max(0.0, (pttl - REFRESH_AT_PTTL_MS) / 1000 - lead_s))
        await self._kill(self._rng.uniform(0.3, 0.6), "kill at refresh")

    async def _kill(self, down_s: float, what: str) -> None:
        self._seen.count(what)
        await anyio.to_thread.run_sync(self.server.kill)
        await anyio.sleep(down_s)
        await anyio.to_thread.run_sync(self.server.start)

    async def _pause(self, paused_s: float) -> None:
        self._seen.count("pause")
        self.server.signal(signal.SIGSTOP)
        try:
            await anyio.sleep(paused_s)
        finally:
            self.server.signal(signal.SIGCONT)


async def sample_offsets(url: str, seen: Observed) -> None:
    """Read the offsets all the time; note any that moved backwards (until cancelled)."""
    last: dict[str, str] = {}
    admin = plain_client(url, retries=False)
    try:
        while True:
            await anyio.sleep(0.03)
            try:
                with anyio.fail_after(1):
                    values: Any = await admin.mget(OFFSET_KEYS)
            except Exception:
                continue
            seen.offset_samples += 1
            for key, raw in zip(OFFSET_KEYS, values, strict=True):
                if raw is None:
                    continue
                value = raw.decode()
                if key in last and parse_id(value) < parse_id(last[key]):
                    seen.backwards.append((key, last[key], value))
                last[key] = value
    finally:
        with anyio.CancelScope(shield=True):  # it ends by cancellation
            await admin.aclose()
