"""What an operator reads in the logs (standing by, delayed, trimmed); the CLI as a process."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from aioredstream import Consumer, Delayer, Message, Producer, Trimmer
from aioredstream.testing import ServerProcess

from .helpers import User

ROOT = Path(__file__).resolve().parent.parent


async def test_standing_by_delayed_and_trimmed_are_info_records_with_fields(
    client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    producer = Producer(client)
    await producer.bulk_delay([User(i) for i in range(3)])
    holder = Consumer(client, stream_name="users", name="x", block=0.05)
    standby = Consumer(client, stream_name="users", name="x", block=0.05)
    caplog.set_level(logging.INFO, logger="aioredstream")

    async def handler(messages: list[Message]) -> None:
        await standby.lock.try_acquire()  # taken: the standby learns the holder's TTL
        await standby.lock.standby(0.01)
        await standby.lock.standby(0.01)

    await producer.queue(User(9))
    await holder.run_once(handler)
    standing = [r for r in caplog.records if r.getMessage().startswith("standing by")]
    assert len(standing) == 1  # once per stretch, not per wait
    assert 0 < getattr(standing[0], "holder_ttl_ms", 0) <= 5000

    assert await Delayer(client, stream_name="users", delay=0).run_once() == 3
    [delayed] = [r for r in caplog.records if r.getMessage().startswith("delayed 3 messages")]
    assert (delayed.levelno, getattr(delayed, "count", None)) == (logging.INFO, 3)

    await holder.run_once(handler)
    trimmer = Trimmer(client, stream_name="users", consumer_names=["x"], interval=0.01)
    assert await trimmer.run_once() == 4
    [trimmed] = [r for r in caplog.records if r.getMessage().startswith("trimmed 4 entries")]
    assert getattr(trimmed, "stream", None) == "users"


def test_offset_and_dead_commands_run_as_processes(server: ServerProcess) -> None:
    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).parent / "aioredstream"), *argv, "--url", server.url],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            capture_output=True,
            text=True,
            timeout=60,
        )

    got = cli("offset", "get", "nothing", "here")
    assert (got.returncode, got.stdout) == (0, "(none: it never committed)\n")
    listed = cli("dead", "list", "nothing")
    assert (listed.returncode, listed.stdout) == (0, "no dead letters of nothing (no namespace)\n")
    refused = cli("dead", "drop", "nothing")
    assert refused.returncode == 2  # a usage error
    assert "aioredstream dead drop: error: name the IDs to drop, or --all" in refused.stderr


async def test_log_lines_of_one_say_entry_and_message_in_the_singular(
    client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aioredstream")
    producer = Producer(client)
    await producer.delay(User(1))
    assert await Delayer(client, stream_name="users", delay=0).run_once() == 1

    async def handler(messages: list[Message]) -> None:
        pass

    assert await Consumer(client, stream_name="users", name="x", block=0.05).run_once(handler) == 1
    trimmer = Trimmer(client, stream_name="users", consumer_names=["x"], interval=0.01)
    assert await trimmer.run_once() == 1
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("delayed 1 message on users") for line in lines), lines
    assert any(line.startswith("handled 1 entry of users") for line in lines), lines
    assert "trimmed 1 entry from users" in lines
