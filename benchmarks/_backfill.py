"""``python -m benchmarks._backfill URL DB_PATH MODE``: one backfill of a SQLite table, in a
process of its own; prints a JSON line with its rows/s and the process's peak RSS.

MODE ``by id`` backfills :class:`BenchRow` (the default payload ``{"id": id}``: only the
key is read); ``by object`` backfills :class:`BenchRowObjects`, the same table with a
payload method of its own (whole ORM objects are loaded). :func:`make_database` writes
the table beforehand (stdlib ``sqlite3``, one transaction, ``executemany``).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
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


class BenchRowObjects(Model, Base):
    """The same table; a payload method of its own, so whole objects are loaded."""

    __table__ = BenchRow.__table__

    def redstream_payload(self) -> Any:
        return {"id": self.id}  # type: ignore[attr-defined]


MODELS: dict[str, type[Model]] = {"by id": BenchRow, "by object": BenchRowObjects}


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


def _status_bytes(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (the peak) of this process. Not ``ru_maxrss``: Linux
    keeps that across ``execve``, so a child's starts at its parent's RSS at the fork."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


async def main(url: str, path: str, mode: str) -> dict[str, Any]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    client = Redis.from_url(url)
    try:
        await client.delete(STREAM, "redstream:backfill:bench_rows")
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        before = _status_bytes("VmRSS")  # everything imported, nothing read yet
        memory_before = (await client.info("memory"))["used_memory"]
        started = time.perf_counter()
        rows = await backfill(Producer(client), sessions, MODELS[mode], batch_size=BATCH_SIZE)
        seconds = time.perf_counter() - started
        queued = await client.xlen(STREAM)
        stream_bytes = (await client.info("memory"))["used_memory"] - memory_before
        await client.delete(STREAM)
    finally:
        await client.aclose()
        await engine.dispose()
    assert queued == rows, (queued, rows)
    peak = _status_bytes("VmHWM")
    return {
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "rss_before_bytes": before,
        "peak_rss_bytes": peak,
        "server_bytes_per_message": stream_bytes / max(rows, 1),
    }


def run(url: str, path: Path, mode: str) -> dict[str, Any]:
    """:func:`main` in a fresh process (its peak RSS is this backfill's alone)."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks._backfill", url, str(path), mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
        cwd=Path(__file__).parents[1],
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def suite(url: str, directory: Path, sizes: tuple[int, ...], rounds: int = 3) -> dict[str, Any]:
    """Each mode at each size, ``rounds`` times (the fastest run is kept: the machine is
    shared); ``peak_rss_ratio``: the largest size's peak over the smallest's."""
    results: dict[str, Any] = {"batch_size": BATCH_SIZE, "rounds": rounds, "modes": {}}
    for size in sizes:
        path = directory / f"backfill-{size}.sqlite"
        started = time.perf_counter()
        make_database(path, size)
        results.setdefault("make_database_s", {})[str(size)] = time.perf_counter() - started
        for mode in MODELS:
            runs = [run(url, path, mode) for _ in range(rounds)]
            best = max(runs, key=lambda r: float(r["rows_per_s"]))
            best["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in runs)
            results["modes"].setdefault(mode, {})[str(size)] = best
        path.unlink()
    for runs in results["modes"].values():
        peaks = [runs[str(size)]["peak_rss_bytes"] for size in sizes]
        runs["peak_rss_ratio"] = peaks[-1] / peaks[0]
    return results


def write(results: dict[str, Any], out_dir: Path) -> Path:
    path = out_dir / "backfill.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))))
