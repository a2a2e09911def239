"""The whole pipeline under faults, end to end (issue 19).

A primary database (SQLite) written through ``track()`` and through the manual
delay -> commit -> queue path (a few writers "crash" between commit and queue), two
same-named consumers keeping an index, a delayer and a trimmer, on a Redis with AOF
(``appendfsync always``) that is SIGKILLed and restarted on its port (half of the
kills aimed at the consumer lock holder's next refresh) or paused (SIGSTOP), while
the workers are cancelled and replaced. Once the faults stop and the delayer's delay
has passed, it checks:

- the index equals the primary;
- nothing acknowledged is lost: every committed (id, version) reached a handler;
- no two same-named consumers ran their handler at the same time;
- offsets never moved backwards (sampled all along);
- nothing was left unobserved (the suite's warnings-as-errors and loop-error fixture).

``AIOREDSTREAM_FAULTS_S`` sets how long the faults last (default 30 s; run it longer by
hand), ``AIOREDSTREAM_FAULTS_SEED`` the schedule's seed (printed on failure).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from aioredstream import Producer
from aioredstream.integrations.sqlalchemy import track

from ..conftest import ServerFactory
from ..helpers import decoded, eventually
from .chaos import (
    DELAY_S,
    OFFSET_KEYS,
    STREAM,
    Faults,
    Item,
    Observed,
    Workers,
    manual_writer,
    plain_client,
    primary,
    primary_database,
    sample_offsets,
    tracked_writer,
)

FAULTS_S = float(os.environ.get("AIOREDSTREAM_FAULTS_S", "30"))
WRITERS = 4  # of each kind


async def _settled(client: Redis) -> bool:
    """Every delay message delivered (nothing more will come), every entry committed
    (so every handler that updates the index has returned)."""
    try:
        if await client.xlen(f"redstream:stream:{STREAM}.delay"):
            return False
        info: Any = await client.xinfo_stream(f"redstream:stream:{STREAM}")
        return bool(decoded(await client.get(OFFSET_KEYS[0])) == decoded(info["last-generated-id"]))
    except Exception:  # the server restarting: not yet
        return False


def _written(versions: dict[int, int]) -> dict[int, int]:
    return {i: v for i, v in versions.items() if v}


async def _produce(url: str, engine: AsyncEngine, seed: int, seen: Observed, until: float) -> None:
    """The writers, on default clients (as an application has them)."""
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with plain_client(url) as tracked_client, plain_client(url) as manual_client:
        tracker = track(Producer(tracked_client), models=[Item], sessions=maker)
        manual = Producer(manual_client)
        try:
            async with anyio.create_task_group() as tg:
                for n in range(WRITERS):
                    tg.start_soon(tracked_writer, maker, random.Random(seed + n), seen, until)
                    tg.start_soon(
                        manual_writer, manual, engine, random.Random(seed + 100 + n), seen, until
                    )
        finally:
            tracker.remove()


def _report(seen: Observed, seed: int) -> str:
    return (
        f"seed={seed} faults={seen.faults} worker restarts={seen.restarts} "
        f"acknowledged={len(seen.acked)} failed writes={seen.failed_writes} "
        f"crashes={seen.crashes} handler calls={len(seen.calls)} "
        f"offset samples={seen.offset_samples}"
    )


@pytest.mark.slow
@pytest.mark.timeout(FAULTS_S + 150)
async def test_the_pipeline_keeps_its_promises_under_server_and_worker_faults(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    seed = int(os.environ.get("AIOREDSTREAM_FAULTS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    server = server_factory("--appendonly", "yes", "--appendfsync", "always")
    seen = Observed()
    async with primary_database(str(tmp_path / "primary.db")) as engine:
        async with plain_client(server.url) as client, anyio.create_task_group() as tg:
            tg.start_soon(sample_offsets, server.url, seen)
            workers = Workers(tg, server.url, engine, rng, seen)
            for slot in Workers.SLOTS:
                workers.start(slot)
            until = time.monotonic() + FAULTS_S
            async with anyio.create_task_group() as chaos:
                chaos.start_soon(Faults(server, rng, seen).run, until)
                chaos.start_soon(workers.keep_restarting, until)
                chaos.start_soon(_produce, server.url, engine, seed, seen, until)
            await anyio.sleep(DELAY_S)
            await eventually(lambda: _settled(client), _report(seen, seed), timeout_s=60)
            await workers.stop()
            tg.cancel_scope.cancel()
        index, db = _written(seen.index), _written(await primary(engine))
    report = _report(seen, seed)
    print(report)  # shown with -s: what a passing run went through
    assert seen.faults, report
    assert seen.restarts, report
    assert len(seen.acked) > 100, report
    overlaps = seen.overlaps()
    assert not overlaps, (
        f"{len(overlaps)} overlapping handler calls, first "
        f"{' and '.join(seen.describe(call) for call in overlaps[0])}; {report}"
    )
    assert not seen.backwards, f"offsets moved backwards: {seen.backwards[:5]}; {report}"
    lost = sorted(seen.acked - seen.handled)
    assert not lost, f"{len(lost)} acknowledged writes never handled: {lost[:10]}; {report}"
    assert index == db, f"index != primary: {_diff(index, db)}; {report}"


def _diff(index: dict[int, int], db: dict[int, int]) -> list[tuple[int, int | None, int | None]]:
    return [
        (i, index.get(i), db.get(i))
        for i in sorted(set(index) | set(db))
        if index.get(i) != db.get(i)
    ][:10]
