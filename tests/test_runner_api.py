"""The public runner (`run_workers`) and status API (`status`)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from aioredstream import (
    ArgumentError,
    Consumer,
    Status,
    StreamStatus,
    run_workers,
    status,
)
from aioredstream.testing import ServerProcess

from .test_cli import run, seed

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 20.0  # a failure detector, not a speed claim

SCRIPT = textwrap.dedent(
    """
    import logging
    import sys
    import anyio
    from redis.asyncio import Redis
    from aioredstream import Consumer, Delayer, Trimmer, run_workers

    async def handler(messages):
        pass

    async def main():
        logging.basicConfig(format="%(name)s %(levelname)s %(message)s", level=logging.INFO)
        client = Redis.from_url(sys.argv[1])
        consumer = Consumer(client, stream_name="users", name="indexer", block=0.2)
        delayer = Delayer(client, stream_name="users", delay=300)
        trimmer = Trimmer(client, stream_name="users", consumer_names=["indexer"])
        await run_workers((consumer, handler), delayer, trimmer)
        await client.aclose()
        print("stopped")

    anyio.run(main)
    """
)

LOCKS = [
    "redstream:lock:consumer:users:indexer",
    "redstream:lock:consumer:users.delay:delayer",
    "redstream:lock:trimmer:users",
]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_run_workers_stops_every_worker_on_a_signal_and_releases_their_locks(
    client: Redis, server: ServerProcess, signum: signal.Signals
) -> None:
    process = subprocess.Popen(  # noqa: ASYNC220 (waited for in a thread)
        [sys.executable, "-c", SCRIPT, server.url],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + WAIT_S
        while sum([await client.exists(lock) for lock in LOCKS]) < len(LOCKS):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the workers never took their locks"
            await asyncio.sleep(0.02)
        process.send_signal(signum)
        out, err = await asyncio.to_thread(process.communicate, timeout=WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err.decode()
    assert out.decode().strip() == "stopped"  # run_workers returned: the code after it ran
    # the runner's own logger: a user's process runs no CLI
    assert f"aioredstream.runner INFO {signum.name} received, stopping" in err.decode()
    assert "aioredstream.cli" not in err.decode()
    assert [await client.exists(lock) for lock in LOCKS] == [0, 0, 0]


async def test_run_workers_refuses_what_it_cannot_run(client: Redis) -> None:
    with pytest.raises(ArgumentError, match="needs at least one worker"):
        await run_workers()
    consumer = Consumer(client, stream_name="users", name="x")
    with pytest.raises(ArgumentError, match=r"pass \(consumer, handler\)"):
        await run_workers(consumer)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="got 3"):
        await run_workers(3)  # type: ignore[arg-type]


async def test_status_returns_the_dataclasses_the_cli_prints_as_json(
    client: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed(client, namespace="shop")
    report = await status(client, namespace="shop")
    assert isinstance(report, Status)
    assert all(isinstance(stream, StreamStatus) for stream in report.streams)
    assert await run("status", "--url", redis_url, "--namespace", "shop", "--json") == 0
    printed = json.loads(capsys.readouterr().out)
    printed.pop("namespaces_with_streams")
    ours = dataclasses.asdict(report)
    for data in (ours, printed):  # read a moment apart: the clock and ages move
        data.pop("server_time_ms")
        for stream in data["streams"]:
            stream.pop("oldest_delay_age_s")
        for group in data["groups"]:
            group.pop("oldest_delay_age_s")
    assert ours == printed
    users = report.streams[1]
    assert {c.name: c.lag for c in users.consumers} == {"cache": 0, "fresh": 5, "indexer": 3}
