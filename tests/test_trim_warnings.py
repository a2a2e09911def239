"""Offsets a trimmer does not wait for: the CLI trimmer and ``status`` warn about them."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest
from redis.asyncio import Redis

from aioredstream import Trimmer
from aioredstream.testing import ServerProcess

from .test_cli import run
from .test_cli_workers import Worker, eventually

STREAM = "redstream:stream:users"


async def _fill(client: Redis) -> list[str]:
    ids = [f"{1000 + i}-0" for i in range(6)]
    for message_id in ids:
        await client.xadd(STREAM, {"payload": b'{"id":1}'}, id=message_id)
    await client.set("redstream:offset:users:cache", ids[4])
    await client.set("redstream:offset:users:indexer", ids[1])  # not in the trimmer's list
    return ids


async def test_status_warns_about_a_consumer_whose_unread_entries_were_trimmed(
    client: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = await _fill(client)
    assert await run("status", "--url", redis_url) == 0
    assert "warning" not in capsys.readouterr().out  # nothing deleted yet
    trimmer = Trimmer(client, stream_name="users", consumer_names=["cache"], interval=0)
    assert await trimmer.trim() == 5
    assert await run("status", "--url", redis_url) == 0
    [warning] = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    assert warning.startswith("warning: consumer 'indexer' of users has offset 1001-0")
    assert "trimmer's consumers" in warning
    assert await run("status", "--url", redis_url, "--json") == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert len(report["warnings"]) == 1
    assert ids[1] in report["warnings"][0]


async def test_the_cli_trimmer_warns_about_offsets_of_consumers_it_does_not_list(
    client: Redis, server: ServerProcess
) -> None:
    await _fill(client)
    worker = await Worker.start(server.url, "trimmer", "users", "--consumers", "cache")

    async def trimmed() -> bool:
        assert await worker.alive()
        return int(await client.xlen(STREAM)) == 1

    await eventually(trimmed, "the trimmer trimmed up to the cache's offset")
    status, stderr = await worker.stop(signal.SIGTERM)
    assert status == 0, stderr
    [line] = [line for line in stderr.splitlines() if "not in this trimmer's" in line]
    assert "indexer" in line
    assert "cache" not in line.split("have offsets")[0]
