"""``aioredstream delayer|trimmer|consume``: argument errors in-process, real runs as processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from aioredstream import Keys, Producer
from aioredstream.cli import main
from aioredstream.testing import ServerProcess, free_port
from aioredstream.workers.lock import worker_lock_name

from .helpers import User

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "aioredstream"
CONSUME = ["consume", "users", "--name", "x", "--handler"]
WAIT_S = 30.0  # generous: a deadline for things that must happen, not a speed check


def dead_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["delayer", "users", "--delay", "-1"], "argument --delay: must be seconds >= 0, got '-1'"),
        (["delayer", "users.delay", "--delay", "1"], "names a delay stream"),
        (["delayer", "a:b", "--delay", "1"], "argument STREAM: stream name 'a:b' contains ':'"),
        (["trimmer", "users", "--consumers", " , "], "argument --consumers: must name at least"),
        (["trimmer", "users", "--consumers", "a,b c"], "argument --consumers: consumer name 'b c'"),
        (
            ["trimmer", "users", "--consumers", "a", "--interval", "-2"],
            "argument --interval: must be seconds >= 0",
        ),
        ([*CONSUME, "nosuch_mod:f"], "argument --handler: 'nosuch_mod:f': no module named"),
        ([*CONSUME, "tests"], "argument --handler:"),
        ([*CONSUME, "tests.cli_handlers:gone"], "tests.cli_handlers has no 'gone'"),
        ([*CONSUME, "tests.cli_handlers:NOT_CALLABLE"], "is a int, not a function"),
        ([*CONSUME, "tests.cli_handlers:not_async"], "must be an async function"),
        ([*CONSUME, "tests.broken_handler_module:f"], "RuntimeError: configuration missing"),
        (
            [*CONSUME, "tests.handler_missing_dep:f"],
            "importing tests.handler_missing_dep failed: No module named 'nosuch_dependency_xyz'",
        ),
        (
            ["consume", "users", "--name", "x:y", "--handler", "tests.cli_handlers:record"],
            "argument --name: consumer name 'x:y' contains ':'",
        ),
        (
            [*CONSUME, "tests.cli_handlers:record", "--batch-size", "0"],
            "argument --batch-size: must be an int >= 1, got '0'",
        ),
        (["delayer", "users", "--delay", "1", "--url", "http://x/0"], "argument --url:"),
        (["delayer", "users", "--delay", "1", "--shards", "0"], "argument --shards:"),
        (["delayer", "users", "--delay", "1", "--namespace", "a:b"], "argument --namespace:"),
    ],
)
def test_bad_arguments_exit_2_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--url", dead_url()] if "--url" not in argv else argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"aioredstream {argv[0]}: error: " in captured.err
    assert message in captured.err, captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["delayer", "users", "--delay", "1", "--url", "{dead}"], "delayer: PING: connection"),
        (["trimmer", "users", "--consumers", "a", "--url", "{dead}"], "trimmer: PING: connection"),
        (
            [*CONSUME, "tests.cli_handlers:recorder", "--url", "{dead}"],
            "consume: PING: connection failed",
        ),
    ],
)
def test_worker_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [dead_url() if arg == "{dead}" else arg for arg in argv]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("aioredstream: error: ")
    assert message in captured.err
    assert captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    "argv",
    [
        ["delayer", "users"],  # --delay is required
        ["delayer", "users", "--delay", "soon"],
        ["trimmer", "users"],
        ["consume", "users", "--handler", "m:f"],
        ["consume", "users", "--name", "x", "--handler", "m:f", "--log-level", "chatty"],
        ["delayer", "users", "--delay", "1", "--shards", "0"],
        ["delayer", "users", "--delay", "1", "--shards", "four"],
    ],
)
def test_worker_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


# -- real runs ---------------------------------------------------------------------------


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S}s: {what}")
        await asyncio.sleep(0.05)


class Worker:
    """``aioredstream <argv>`` as a child process on the test server."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, url: str, *argv: str, env: dict[str, str] | None = None) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            str(SCRIPT),
            *argv,
            "--url",
            url,
            cwd=ROOT,  # the handler module is imported from the working directory
            env={"PATH": "/usr/bin:/bin", **(env or {})},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def stop(self, signum: int) -> tuple[int, str]:
        """Send ``signum``; the exit status and stderr."""
        if self.proc.returncode is None:
            self.proc.send_signal(signum)
        _, err = await asyncio.wait_for(self.proc.communicate(), WAIT_S)
        assert self.proc.returncode is not None
        return self.proc.returncode, err.decode()

    async def alive(self) -> bool:
        return self.proc.returncode is None


def assert_clean_exit(status: int, stderr: str, what: str) -> None:
    assert status == 0, stderr
    assert "Traceback" not in stderr
    assert f"{what} running" in stderr
    assert f"{what} stopped" in stderr


async def stream_ids(client: Redis, key: str) -> list[str]:
    rows: Any = await client.xrange(key)
    return [entry_id.decode() for entry_id, _ in rows]


def lock_key(kind: str, stream: str, name: str | None = None, ns: str | None = None) -> str:
    return Keys(ns).lock(worker_lock_name(kind, stream, name))


async def test_delayer_process_replays_a_due_message_and_stops_on_sigint(
    client: Redis, server: ServerProcess
) -> None:
    now_s, _ = await client.time()
    old_id = f"{(int(now_s) - 60) * 1000}-0"
    await client.xadd("redstream:stream:users.delay", {"payload": b'{"id":7}'}, id=old_id)
    await Producer(client).delay(User(8))  # fresh: stays (delay 30 s)
    worker = await Worker.start(server.url, "delayer", "users", "--delay", "30")

    async def replayed() -> bool:
        assert await worker.alive()
        return bool(await client.xlen("redstream:stream:users"))

    await eventually(replayed, "the due delay message is in the stream")
    key = lock_key("consumer", "users.delay", "delayer")
    assert await client.exists(key) == 1
    status, stderr = await worker.stop(signal.SIGINT)
    assert_clean_exit(status, stderr, "delayer on users")
    assert await client.exists(key) == 0
    rows: Any = await client.xrange("redstream:stream:users")
    assert [fields[b"payload"] for _, fields in rows] == [b'{"id":7}']
    assert await client.xlen("redstream:stream:users.delay") == 1  # the fresh one


async def test_trimmer_process_trims_and_stops_on_sigterm(
    client: Redis, server: ServerProcess
) -> None:
    await Producer(client, namespace="shop").bulk_queue([User(i) for i in range(5)])
    ids = await stream_ids(client, "shop:redstream:stream:users")
    await client.set("shop:redstream:offset:users:a", ids[3])
    await client.set("shop:redstream:offset:users:b", ids[2])
    worker = await Worker.start(
        server.url,
        "trimmer",
        "users",
        "--namespace",
        "shop",
        "--consumers",
        "a, b",
        "--interval",
        "0.2",
        "--log-level",
        "debug",
    )

    async def trimmed() -> bool:
        assert await worker.alive()
        return int(await client.xlen("shop:redstream:stream:users")) == 2

    await eventually(trimmed, "entries up to b's offset are gone")
    key = lock_key("trimmer", "users", ns="shop")
    assert await client.exists(key) == 1
    status, stderr = await worker.stop(signal.SIGTERM)
    assert_clean_exit(status, stderr, "trimmer on users")
    assert "SIGTERM received" in stderr
    assert "trimmed 3 entries from users" in stderr  # --log-level debug shows it
    assert await client.exists(key) == 0


async def test_consume_process_calls_the_handler_and_stops_on_sigint(
    client: Redis, server: ServerProcess, tmp_path: Path
) -> None:
    await Producer(client).bulk_queue([User(i) for i in (1, 2, 3)])
    ids = await stream_ids(client, "redstream:stream:users")
    handled = tmp_path / "handled.jsonl"
    worker = await Worker.start(
        server.url,
        "consume",
        "users",
        "--name",
        "indexer",
        "--handler",
        "tests.cli_handlers:record",
        "--batch-size",
        "2",
        env={"HANDLED_FILE": str(handled)},
    )

    async def committed() -> bool:
        assert await worker.alive()
        return bool(await client.get("redstream:offset:users:indexer") == ids[-1].encode())

    await eventually(committed, "the consumer committed the last entry")
    key = lock_key("consumer", "users", "indexer")
    assert await client.exists(key) == 1
    status, stderr = await worker.stop(signal.SIGINT)
    assert_clean_exit(status, stderr, "consumer indexer on users")
    assert await client.exists(key) == 0
    lines = handled.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"id": 1}, {"id": 2}, {"id": 3}]


def test_consume_in_process_runs_until_sigterm_and_releases_its_lock(
    server: ServerProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """main() itself, in this process: the signal receiver, the lock release, status 0."""
    handled = tmp_path / "handled.jsonl"
    monkeypatch.setenv("HANDLED_FILE", str(handled))
    sync = redis.Redis.from_url(server.url)
    sync.flushall()
    sync.xadd("redstream:stream:posts", {"payload": b'{"id":5}'})
    key = lock_key("consumer", "posts", "mirror")
    seen: list[int] = []

    def stop_when_handled() -> None:
        deadline = time.monotonic() + WAIT_S
        while not (handled.exists() and handled.read_text()):
            if time.monotonic() > deadline:
                break  # main() then runs until the test timeout fails the test
            time.sleep(0.05)
        seen.append(int(sync.exists(key)))
        os.kill(os.getpid(), signal.SIGTERM)  # the loop's receiver is open by now

    stopper = threading.Thread(target=stop_when_handled)
    stopper.start()
    try:
        argv = ["consume", "posts", "--name", "mirror", "--url", server.url]
        status = main([*argv, "--handler", "tests.cli_handlers:recorder"])
    finally:
        stopper.join()
    assert status == 0
    assert seen == [1]  # held while running
    assert sync.exists(key) == 0
    assert handled.read_text() == '{"id": 5}\n'
    assert "Traceback" not in capsys.readouterr().err
    sync.close()
