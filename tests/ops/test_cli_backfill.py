"""``aioredstream backfill``: exit codes, messages in-process, killed and resumed as a process."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import re
import signal
import sqlite3
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import create_engine

from aioredstream.cli import main
from aioredstream.ops._progress import ProgressDisplay
from aioredstream.testing import free_port

from ..integrations.backfill_models import Base
from ..sql import PG_URL, _postgres_reachable

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "aioredstream"
ITEM = "tests.integrations.backfill_models:Item"
WAIT_S = 30.0  # generous: a deadline for things that must happen, not a speed check


def make_sqlite(path: Path, rows: int) -> str:
    """The backfill tables in a SQLite file, ``rows`` items (ids 1..rows); its async URL."""
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    engine.dispose()
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO bf_items VALUES (?, 'plain')", ((i,) for i in range(1, rows + 1))
        )
    db.close()
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(autouse=True)
def sigint_reaches_the_cli() -> Iterator[None]:
    """The CLI started here sees SIGINT as from a terminal's Ctrl-C.

    A command started in the background by a non-interactive shell (``make test &``, a
    CI runner's job) ignores SIGINT, and every process it starts inherits that: the
    backfill would never see the SIGINT these tests send (it runs to the end, exit 0).
    A foreground command has the default disposition; this test process takes it while
    it starts its children.
    """
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return make_sqlite(tmp_path / "app.db", 30)


async def run(*argv: str) -> int:
    """main() in a thread: it runs its own event loop, as from a shell."""
    return await asyncio.to_thread(main, list(argv))


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


# -- arguments: exit 2 -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "url", "message"),
    [
        ("nosuch_mod:X", "{db}", "argument --model: 'nosuch_mod:X': no module named 'nosuch_mod'"),
        ("tests.integrations.backfill_models", "{db}", "must look like 'module:Class'"),
        ("tests.integrations.backfill_models:Gone", "{db}", "backfill_models has no 'Gone'"),
        ("tests.integrations.backfill_models:Base", "{db}", "is not a mapped SQLAlchemy class"),
        ("tests.integrations.backfill_models:Parent", "{db}", "Parent: it has no redstream_name"),
        (ITEM, "sqlite:///x.db", "'sqlite:///x.db': the driver 'pysqlite' is not async; use an"),
        (
            ITEM,
            "postgresql+nosuchdriver://u:secret@h/db",
            "argument --database-url: 'postgresql+nosuchdriver://u:***@h/db': Can't load plugin",
        ),
        (ITEM, "not a url", "'not a url' is not a database URL"),
    ],
)
def test_bad_models_and_database_urls_exit_2_naming_them(
    db_url: str, capsys: pytest.CaptureFixture[str], model: str, url: str, message: str
) -> None:
    err = usage_error(
        ["backfill", "--model", model, "--database-url", url.format(db=db_url)], capsys
    )
    assert message in err
    assert "secret" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--batch-size", "0"], "argument --batch-size: must be an int >= 1, got '0'"),
        (["--stream", "a:b"], "argument --stream: stream 'a:b' contains ':'"),
    ],
)
def test_bad_options_exit_2(
    db_url: str, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = ["backfill", "--model", ITEM, "--database-url", db_url, *extra]
    assert message in usage_error(argv, capsys)


async def test_a_where_the_database_refuses_exits_2(
    db_url: str, redis_url: str, client: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["backfill", "--model", ITEM, "--database-url", db_url, "--url", redis_url]
    assert await run(*argv, "--where", "kind = = 1") == 2
    err = capsys.readouterr().err
    assert "aioredstream backfill: error: argument --where:" in err
    assert "syntax error" in err
    assert await client.exists("redstream:stream:bf_items") == 0


# -- unreachable: exit 1, one line -------------------------------------------------------


async def test_unreachable_database_or_server_exits_1_with_one_line(
    db_url: str, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (f"sqlite+aiosqlite:///{tmp_path}/no/such/dir.db", redis_url, "database: unable to open"),
        (
            f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test",
            redis_url,
            "database: [Errno 111]",
        ),
        (f"sqlite+aiosqlite:///{tmp_path}/other.db", redis_url, "database: no such table"),
        (db_url, f"redis://127.0.0.1:{free_port()}/0", "backfill: connection failed"),
    ]
    for database, redis, message in cases:
        argv = ["backfill", "--model", ITEM, "--database-url", database, "--url", redis]
        assert await run(*argv) == 1, database
        err = capsys.readouterr().err
        assert err.startswith("aioredstream: error: ")
        assert message in err
        assert err.count("\n") == 1, err


# -- running -----------------------------------------------------------------------------


async def test_backfill_prints_a_line_per_tenth_and_a_summary(
    db_url: str, redis_url: str, client: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["backfill", "--model", ITEM, "--database-url", db_url, "--url", redis_url]
    assert await run(*argv, "--batch-size", "3", "--namespace", "shop") == 0
    out, err = capsys.readouterr()
    assert out.startswith("queued 30 rows of bf_items to bf_items in ")
    assert out.endswith(" s\n")
    lines = err.splitlines()
    assert [re.sub(r", [\d,]+ rows/s\)$", ")", line) for line in lines] == [
        f"backfill: {10 * n}% ({3 * n} of 30 rows)" for n in range(1, 11)
    ]
    assert await client.xlen("shop:redstream:stream:bf_items") == 30


async def test_where_and_stream_options(
    db_url: str, redis_url: str, client: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["backfill", "--model", ITEM, "--database-url", db_url, "--url", redis_url]
    assert await run(*argv, "--where", "id % 10 = 0", "--stream", "bf_new_index") == 0
    assert capsys.readouterr().out.startswith("queued 3 rows of bf_items to bf_new_index in ")
    rows: Any = await client.xrange("redstream:stream:bf_new_index")
    assert [json.loads(fields[b"payload"]) for _, fields in rows] == [
        {"id": 10},
        {"id": 20},
        {"id": 30},
    ]


async def test_resume_says_where_it_continues_and_when_there_is_nothing_left(
    db_url: str, redis_url: str, client: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["backfill", "--model", ITEM, "--database-url", db_url, "--url", redis_url, "--resume"]
    await client.set(
        "redstream:backfill:bf_items", '{"table":"bf_items","key":[20],"rows":20,"finished":false}'
    )
    assert await run(*argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("resuming after key [20] (20 rows queued before)\nqueued 10 rows of")
    assert await run(*argv) == 0
    assert capsys.readouterr().out == (
        "the backfill of bf_items to bf_items had finished (30 rows): nothing to resume\n"
    )
    assert await client.xlen("redstream:stream:bf_items") == 10


async def test_a_bad_checkpoint_exits_1(
    db_url: str, redis_url: str, client: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    await client.set("redstream:backfill:bf_items", "junk")
    argv = ["backfill", "--model", ITEM, "--database-url", db_url, "--url", redis_url, "--resume"]
    assert await run(*argv) == 1
    assert "not a backfill checkpoint" in capsys.readouterr().err


# -- killed and resumed, as a process ----------------------------------------------------

ROWS = 50_000
BATCH = 500


async def start(
    url: str, database: str, *extra: str, stderr: int = asyncio.subprocess.PIPE
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "backfill",
        "--model",
        ITEM,
        "--database-url",
        database,
        "--url",
        url,
        "--batch-size",
        str(BATCH),
        *extra,
        cwd=ROOT,  # the model's module is imported from the working directory
        env={"PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )


async def stream_ids(client: Redis) -> list[int]:
    rows: Any = await client.xrange("redstream:stream:bf_items")
    return [json.loads(fields[b"payload"])["id"] for _, fields in rows]


async def kill_midway(client: Redis, proc: asyncio.subprocess.Process, signum: int) -> int:
    """Signal ``proc`` once it queued a few batches; its exit status."""
    async with asyncio.timeout(WAIT_S):
        while await client.xlen("redstream:stream:bf_items") < 6 * BATCH:
            assert proc.returncode is None, "the backfill ended before it was killed"
            await asyncio.sleep(0.005)
        proc.send_signal(signum)
        await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode


async def assert_resumed_precisely(client: Redis, url: str, database: str) -> None:
    """The killed run queued 1..n in order, its checkpoint at most one batch behind n; the
    resumed run queues every row after the checkpoint: each row at least once, and twice
    exactly those the killed run queued past its checkpoint."""
    first = await stream_ids(client)
    saved = json.loads(await client.get("redstream:backfill:bf_items") or "null")
    assert saved["finished"] is False, "the backfill finished before it was killed"
    [last] = saved["key"]
    assert first == list(range(1, len(first) + 1))
    assert last % BATCH == 0
    assert last <= len(first) <= last + BATCH
    resumed = await start(url, database, "--resume")
    out, err = await asyncio.wait_for(resumed.communicate(), WAIT_S)
    assert resumed.returncode == 0, err
    assert out.decode().startswith(f"resuming after key [{last}] ({last} rows queued before)\n")
    counts = Counter(await stream_ids(client))
    assert set(counts) == set(range(1, ROWS + 1))
    assert sorted(i for i, n in counts.items() if n == 2) == list(range(last + 1, len(first) + 1))
    assert max(counts.values()) <= 2
    assert len(first) - last <= BATCH  # none twice beyond one batch


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT])
async def test_killed_midway_then_resumed_queues_every_row_none_twice_beyond_a_batch(
    tmp_path: Path, redis_url: str, client: Redis, signum: int
) -> None:
    database = make_sqlite(tmp_path / "big.db", ROWS)
    proc = await start(redis_url, database)
    status = await kill_midway(client, proc, signum)
    if signum == signal.SIGINT:
        assert status == 130
        assert proc.stderr is not None
    else:
        assert status == -signal.SIGKILL
    await assert_resumed_precisely(client, redis_url, database)


async def test_interrupted_says_how_to_resume(
    tmp_path: Path, redis_url: str, client: Redis
) -> None:
    database = make_sqlite(tmp_path / "big.db", ROWS)
    proc = await start(redis_url, database)
    async with asyncio.timeout(WAIT_S):
        while await client.xlen("redstream:stream:bf_items") < 2 * BATCH:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode == 130
    assert err.decode().endswith("interrupted: run again with --resume to continue\n")
    assert "Traceback" not in err.decode()


# -- the progress bar on a terminal ------------------------------------------------------


async def test_on_a_terminal_stderr_shows_a_bar(db_url: str, redis_url: str, client: Redis) -> None:
    leader, follower = pty.openpty()
    try:
        proc = await start(redis_url, db_url, stderr=follower)
        out, _ = await asyncio.wait_for(proc.communicate(), WAIT_S)
        os.close(follower)
        follower = -1
        drawn = await asyncio.to_thread(_read_all, leader)
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert proc.returncode == 0
    assert out.decode().startswith("queued 30 rows of bf_items to bf_items in ")
    assert drawn.startswith("\r  0% |                    | 0/30 rows  0 rows/s  ETA ?\x1b[K")
    assert "\r100% |####################| 30/30 rows  " in drawn
    assert drawn.endswith("ETA 0:00:00\x1b[K\r\n")  # the tty turns \n into \r\n


def _read_all(fd: int) -> str:
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        data += chunk
    return data.decode()


def test_bar_redraws_at_most_ten_times_a_second_with_rate_and_eta() -> None:
    now = [100.0]
    out = io.StringIO()
    bar = ProgressDisplay(out, tty=True, label="backfill", clock=lambda: now[0])
    bar(0, 10_000)
    now[0] += 2.0
    bar(1_000, 10_000)
    now[0] += 0.04
    bar(1_100, 10_000)  # too soon: not drawn
    now[0] += 0.06
    bar(1_200, 10_000)
    bar.close()
    frames = out.getvalue().split("\r")[1:]
    assert frames == [
        "  0% |                    | 0/10,000 rows  0 rows/s  ETA ?\x1b[K",
        " 10% |##                  | 1,000/10,000 rows  500 rows/s  ETA 0:00:18\x1b[K",
        " 12% |##                  | 1,200/10,000 rows  571 rows/s  ETA 0:00:15\x1b[K\n",
    ]


def test_log_lines_come_once_per_tenth_even_when_a_batch_spans_several() -> None:
    now = [0.0]
    out = io.StringIO()
    log = ProgressDisplay(out, tty=False, label="backfill", clock=lambda: now[0])
    for done in (0, 50, 99, 350, 1000):
        now[0] += 1.0
        log(done, 1000)
    log.close()
    assert out.getvalue().splitlines() == [
        "backfill: 30% (350 of 1,000 rows, 88 rows/s)",
        "backfill: 100% (1,000 of 1,000 rows, 200 rows/s)",
    ]


# -- PostgreSQL --------------------------------------------------------------------------


async def test_backfill_from_postgresql_with_a_model_from_the_working_directory(
    tmp_path: Path, redis_url: str, client: Redis
) -> None:
    reason = await _postgres_reachable()
    if reason is not None:
        pytest.skip(reason)
    import asyncpg

    table = f"bf_cli_{uuid.uuid4().hex[:12]}"
    (tmp_path / "pg_models.py").write_text(
        "from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column\n"
        "from aioredstream import Model\n\n\n"
        "class Base(DeclarativeBase):\n    pass\n\n\n"
        "class Row(Model, Base):\n"
        f"    __tablename__ = {table!r}\n"
        "    id: Mapped[int] = mapped_column(primary_key=True)\n"
    )
    conn = await asyncpg.connect(PG_URL.replace("+asyncpg", ""))
    try:
        await conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY)")
        await conn.execute(f"INSERT INTO {table} SELECT generate_series(1, 2500)")
        proc = await asyncio.create_subprocess_exec(
            str(SCRIPT),
            "backfill",
            "--model",
            "pg_models:Row",
            "--database-url",
            PG_URL,
            "--url",
            redis_url,
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()
    assert proc.returncode == 0, err
    assert out.decode().startswith(f"queued 2500 rows of {table} to {table} in ")
    rows: Any = await client.xrange(f"redstream:stream:{table}")
    assert [json.loads(f[b"payload"])["id"] for _, f in rows] == list(range(1, 2501))
