"""`status --prometheus`, the `exporter` command, status hints and small CLI things."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

import aioredstream
import aioredstream.cli
from aioredstream.testing import ServerProcess, free_port

from .helpers import User
from .test_cli import run, seed

SCRIPT = Path(sys.executable).parent / "aioredstream"
ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 20.0  # a failure detector, not a speed claim


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition (parsed by prometheus-client), by name and labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


async def test_status_prometheus_prints_backlog_and_lag(
    client: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed(client, namespace="shop")
    assert await run("status", "--url", redis_url, "--namespace", "shop", "--prometheus") == 0
    found = samples(capsys.readouterr().out)
    users = {"namespace": "shop", "stream": "users"}
    assert found[key("aioredstream_stream_length", **users)] == 5
    assert found[key("aioredstream_delay_backlog", **users)] == 2
    assert 600 <= found[key("aioredstream_oldest_delay_age_seconds", **users)] < 3600
    assert (
        key("aioredstream_oldest_delay_age_seconds", namespace="shop", stream="posts") not in found
    )
    lag = {
        c: found[key("aioredstream_consumer_lag", consumer=c, **users)]
        for c in ("cache", "fresh", "indexer")
    }
    assert lag == {"cache": 0, "fresh": 5, "indexer": 3}
    delayer = {"namespace": "shop", "stream": "users.delay", "consumer": "delayer"}
    assert found[key("aioredstream_consumer_lag", **delayer)] == 1
    assert 600 <= found[key("aioredstream_consumer_offset_age_seconds", **delayer)] < 3600
    # "fresh" committed 0-0: no entry, so no age
    assert key("aioredstream_consumer_offset_age_seconds", consumer="fresh", **users) not in found


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


async def test_exporter_serves_fresh_numbers_on_every_scrape_and_stops_on_sigterm(
    client: Redis, server: ServerProcess
) -> None:
    await seed(client)
    port = free_port()
    process = subprocess.Popen(  # noqa: ASYNC220 (started once; waited for in a thread)
        [str(SCRIPT), "exporter", "--port", str(port), "--url", server.url],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                first = samples(await asyncio.to_thread(_scrape, url))
                break
            except OSError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the exporter never answered"
                await asyncio.sleep(0.05)
        indexer = key("aioredstream_consumer_lag", namespace="", stream="users", consumer="indexer")
        assert first[indexer] == 3
        await aioredstream.Producer(client).bulk_queue([User(i) for i in range(4)])
        second = samples(await asyncio.to_thread(_scrape, url))
        assert second[indexer] == 7  # read afresh on this scrape
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(process.communicate, timeout=WAIT_S)
        assert process.returncode == 0, err.decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_exporter_on_a_dead_server_fails_at_once_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    assert await run("exporter", "--port", str(free_port()), "--url", dead) == 1
    err = capsys.readouterr().err
    assert err.startswith("aioredstream: error: exporter: connection failed"), err


async def test_status_without_namespace_names_the_namespaces_that_have_streams(
    client: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed(client, namespace="shop")
    await seed(client, namespace="billing")
    assert await run("status", "--url", redis_url) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "no streams (no namespace)",
        "streams exist in 2 namespaces: billing, shop (aioredstream status --namespace NAME)",
    ]
    assert await run("status", "--url", redis_url, "--json") == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert data["namespaces_with_streams"] == ["billing", "shop"]


async def test_one_stream_is_singular(
    client: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await aioredstream.Producer(client).queue(User(1))
    assert await run("status", "--url", redis_url) == 0
    assert capsys.readouterr().out.splitlines()[0] == "1 stream (no namespace)"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        aioredstream.cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"aioredstream {aioredstream.__version__}\n"
