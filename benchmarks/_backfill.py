"""``python -m benchmarks._backfill URL DB_PATH``: one backfill of a SQLite table, in its own
process; prints a JSON line with its rows/s and the process's peak RSS.

:func:`make_database` writes the table beforehand (stdlib ``sqlite3``, one transaction,
``executemany``): a million rows take a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import String
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from aioredstream import Model, Producer
from aioredstream.integrations.sqlalchemy import backfill

BATCH_SIZE = 1000
STREAM = "redstream:stream:bench_rows"


class Base(DeclarativeBase):
    pass


class BenchRow(Model, Base):
    """A users-like row; payload {"id": id}."""

    __tablename__ = "bench_rows"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(200))


def make_database(path: Path, rows: int) -> None:
    """``rows`` rows in a new SQLite file at ``path``."""
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE bench_rows (id INTEGER PRIMARY KEY, name TEXT, email TEXT)")
        db.executemany(
            "INSERT INTO bench_rows VALUES (?, ?, ?)",
            ((i, f"user {i}", f"user{i}@example.com") for i in range(1, rows + 1)),
        )
    db.close()


async def main(url: str, path: str) -> dict[str, Any]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    client = Redis.from_url(url)
    try:
        await client.delete(STREAM, "redstream:backfill:bench_rows")
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        started = time.perf_counter()
        rows = await backfill(Producer(client), sessions, BenchRow, batch_size=BATCH_SIZE)
        seconds = time.perf_counter() - started
        queued = await client.xlen(STREAM)
        await client.delete(STREAM)
    finally:
        await client.aclose()
        await engine.dispose()
    assert queued == rows, (queued, rows)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "peak_rss_bytes": peak}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
