"""The ``aioredstream`` command line: ``status``, its errors, and the console script."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from aioredstream import Model, Producer
from aioredstream.ops.cli import main
from aioredstream.ops.table import format_age
from aioredstream.testing import ServerProcess, free_port

from .helpers import Post, User


async def run(*argv: str) -> int:
    """main() in a thread: it runs its own event loop, as from a shell."""
    return await asyncio.to_thread(main, list(argv))


async def status_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert await run("status", *argv, "--json") == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


async def seed(client: Redis, namespace: str | None = None) -> list[str]:
    """users: 5 entries, 2 delay messages (one 10 minutes old), 3 consumers; posts: 1 entry."""
    producer = Producer(client, namespace=namespace)
    prefix = f"{namespace}:redstream:" if namespace else "redstream:"
    now_s, _ = await client.time()
    old_ms = (int(now_s) - 600) * 1000
    delay_key = f"{prefix}stream:users.delay"
    await client.xadd(delay_key, {"payload": b'{"id":9}'}, id=f"{old_ms}-0")  # left over
    ids = [await producer.delay(User(i)) for i in range(5)]
    await producer.bulk_queue([User(i) for i in range(5)], delay_message_ids=ids)
    rows: Any = await client.xrange(f"{prefix}stream:users")
    queued = [entry_id.decode() for entry_id, _ in rows]
    await producer.delay(User(10))
    await client.set(f"{prefix}offset:users:indexer", queued[1])  # 3 ahead of it
    await client.set(f"{prefix}offset:users:cache", queued[-1])  # up to date
    await client.set(f"{prefix}offset:users:fresh", "0-0")  # never ran: all 5 ahead
    await client.set(f"{prefix}offset:users.delay:delayer", f"{old_ms}-0")  # 1 ahead
    await producer.queue(Post(1))
    return queued


async def test_status_json_reports_lengths_ages_offsets_and_lag(
    client: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    queued = await seed(client)
    report = await status_json(capsys, "--url", redis_url)
    assert report["namespace"] is None
    posts, users = report["streams"]
    assert (posts["name"], posts["length"], posts["delay_length"]) == ("posts", 1, 0)
    assert posts["oldest_delay_age_s"] is None
    assert posts["consumers"] == []
    assert (users["name"], users["length"], users["delay_length"]) == ("users", 5, 2)
    assert 600 <= users["oldest_delay_age_s"] < 3600  # the server's clock, not ours
    lags = {c["name"]: (c["offset"], c["lag"], c["lag_exact"]) for c in users["consumers"]}
    assert lags == {
        "cache": (queued[-1], 0, True),
        "fresh": ("0-0", 5, True),
        "indexer": (queued[1], 3, True),
    }
    [delayer] = users["delay_consumers"]
    assert (delayer["name"], delayer["lag"]) == ("delayer", 1)


async def test_status_counts_lag_past_trimmed_entries(
    client: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    queued = await seed(client)
    await client.xtrim(
        "redstream:stream:users", minid=queued[3], approximate=False
    )  # 2 left, offset before them
    await client.set("redstream:offset:users:gone", "not-an-id")
    users = (await status_json(capsys, "--url", redis_url))["streams"][1]
    lags = {c["name"]: (c["lag"], c["lag_exact"]) for c in users["consumers"]}
    assert lags["indexer"] == (2, True)
    assert lags["gone"] == (2, False)


async def test_status_table_and_namespaces(
    client: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed(client, namespace="shop")
    await seed(client)  # no namespace: must not show under "shop"
    assert await run("status", "--url", redis_url, "--namespace", "shop") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "2 streams (namespace 'shop')"
    assert lines[1] == (
        "STREAM  LENGTH  DELAYED  OLDEST DELAY  DEAD  CONSUMER         OFFSET           LAG"
    )
    assert lines[2].split() == ["posts", "1", "0", "-", "0", "-"]
    users = [line.split() for line in lines[3:]]
    assert users[0][:3] == ["users", "5", "2"]
    assert users[0][3].startswith("10m")  # 600 s old by the server's clock
    assert users[0][4] == "0"  # no dead letters
    assert [row[-3] for row in users] == ["cache", "fresh", "indexer", "(delay)"]
    assert [row[-1] for row in users] == ["0", "5", "3", "1"]
    assert users[-1][:2] == ["delayer", "(delay)"]


async def test_status_of_an_empty_server(
    client: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run("status", "--url", redis_url) == 0
    assert capsys.readouterr().out == "no streams (no namespace)\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--url", "http://127.0.0.1:1/0"], "argument --url: 'http://127.0.0.1:1/0' is not a"),
        (["--url", "redis://127.0.0.1:notaport/0"], "argument --url: "),
        (["--namespace", "a:b"], "argument --namespace: namespace 'a:b' contains ':'"),
    ],
)
def test_status_bad_arguments_exit_2_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["status", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "aioredstream status: error: " in err
    assert message in err, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--url", "redis://127.0.0.1:{port}/0"], "connection failed")],
)
def test_status_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [arg.replace("{port}", str(free_port())) for arg in argv]
    if "--url" not in args:
        args += ["--url", f"redis://127.0.0.1:{free_port()}/0"]
    assert main(["status", *args]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("aioredstream: error: ")
    assert message in captured.err
    assert captured.err.count("\n") == 1
    assert "Traceback" not in captured.err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["status", "--colour"])
    assert exc.value.code == 2


def test_format_age() -> None:
    assert [format_age(s) for s in (None, 0.25, 59.9, 61, 3600 * 5 + 7 * 60, 86400 * 3 + 3600)] == [
        "-",
        "0.2s",
        "59.9s",
        "1m01s",
        "5h07m",
        "3d01h",
    ]


async def test_console_script_runs_as_a_process(client: Redis, server: ServerProcess) -> None:
    await seed(client)
    script = Path(sys.executable).parent / "aioredstream"
    done = await asyncio.to_thread(
        subprocess.run,
        [str(script), "status", "--json"],
        env={"REDIS_URL": server.url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [s["name"] for s in json.loads(done.stdout)["streams"]] == ["posts", "users"]
    failed = await asyncio.to_thread(
        subprocess.run,
        [str(script), "status", "--url", f"redis://127.0.0.1:{free_port()}/0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 1
    assert failed.stderr.startswith("aioredstream: error: status: connection failed")
    assert "Traceback" not in failed.stderr


class Shop(Model):
    redstream_shards = 3

    def __init__(self, id: int) -> None:
        self.id = id


async def test_status_groups_shards_with_totals_and_keeps_per_shard_rows(
    client: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    producer = Producer(client)
    shops = [Shop(i) for i in range(30)]
    await producer.bulk_queue(shops)
    await producer.delay(shops[0])
    for name in Shop.redstream_names():
        await client.set(f"redstream:offset:{name}:indexer", "0-0")
    await producer.queue(Post(1))  # posts: not sharded
    await client.xadd("redstream:stream:posts-7", {"payload": b'{"id":1}'})  # one: no group

    report = await status_json(capsys, "--url", redis_url)
    names = [s["name"] for s in report["streams"]]
    assert names == ["posts", "posts-7", "shops-0", "shops-1", "shops-2"]
    [group] = report["groups"]
    assert group["name"] == "shops"
    assert group["shards"] == ["shops-0", "shops-1", "shops-2"]
    assert (group["length"], group["delay_length"]) == (30, 1)
    assert group["lag"] == {"indexer": 30}
    assert group["lag_exact"] is True
    assert sum(s["length"] for s in report["streams"][2:]) == 30

    assert await run("status", "--url", redis_url) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "5 streams (no namespace, 1 sharded)"
    assert lines[4].split()[:5] == ["shops", "(3", "shards)", "30", "1"]
    assert lines[4].split()[-3:] == ["indexer", "(total)", "30"]
    assert [line.split()[0] for line in lines[5:]] == ["shops-0", "shops-1", "shops-2"]
    assert all(line.startswith("  shops-") for line in lines[5:])
