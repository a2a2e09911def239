"""Retries with backoff, dead letters, and the lifecycle logs operators read."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis

from aioredstream import ArgumentError, Consumer, Message, Producer, Retry, exponential
from aioredstream.testing import ServerProcess
from aioredstream.workers._dead import dead_letters

from .helpers import User
from .test_cli import run

ROOT = Path(__file__).resolve().parent.parent
POISON = {3, 7}


class Handler:
    """Fails any batch that holds a poison id; records the ids of batches it finished."""

    def __init__(self, poison: set[int] = POISON, fail_first: int = 0) -> None:
        self.poison = poison
        self.fail_first = fail_first
        self.calls = 0
        self.done: list[int] = []

    async def __call__(self, messages: list[Message]) -> None:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise RuntimeError("index is down")
        ids = [m.payload["id"] for m in messages]
        bad = self.poison.intersection(ids)
        if bad:
            raise ValueError(f"cannot index {sorted(bad)}")
        self.done.extend(ids)


def no_wait(failures: int) -> float:
    return 0.0


async def test_exponential_backoff_grows_to_its_cap_with_jitter_in_the_upper_half() -> None:
    steady = exponential(0.5, 4.0, jitter=False)
    assert [steady(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    jittered = exponential(0.5, 4.0)
    for n in range(1, 7):
        assert steady(n) / 2 <= jittered(n) <= steady(n)
    with pytest.raises(ArgumentError, match="most"):
        exponential(5.0, 1.0)
    with pytest.raises(ArgumentError, match="attempts"):
        Retry(attempts=0)


async def test_dead_letter_needs_a_retry_policy(client: Redis) -> None:
    with pytest.raises(ArgumentError, match="needs retry"):
        Consumer(client, stream_name="users", name="x", dead_letter=True)


async def test_a_transient_failure_is_retried_with_backoff_and_logged_as_a_warning(
    client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await Producer(client).bulk_queue([User(i) for i in (1, 2)])
    waits: list[int] = []

    def backoff(failures: int) -> float:
        waits.append(failures)
        return 0.0

    consumer = Consumer(
        client, stream_name="users", name="x", retry=Retry(attempts=5, backoff=backoff)
    )
    handler = Handler(poison=set(), fail_first=2)
    with caplog.at_level(logging.INFO, logger="aioredstream"):
        assert await consumer.run_once(handler) == 2
    assert handler.done == [1, 2]
    assert waits == [1, 2]
    retrying = [r for r in caplog.records if "retrying in" in r.getMessage()]
    assert [r.levelno for r in retrying] == [logging.WARNING, logging.WARNING]
    assert retrying[0].getMessage() == (
        "handler failed on users (attempt 1 of 5), retrying in 0.0s: RuntimeError: index is down"
    )
    assert getattr(retrying[0], "error", None) == "RuntimeError: index is down"
    assert [getattr(r, "attempt", None) for r in retrying] == [1, 2]
    handled = [r for r in caplog.records if r.getMessage().startswith("handled 2 entries")]
    assert len(handled) == 1
    assert getattr(handled[0], "count", None) == 2
    assert any(
        r.getMessage().startswith("lock ") and "acquired" in r.getMessage() for r in caplog.records
    )


async def test_dead_letters_take_exactly_the_poison_and_the_rest_is_handled_once(
    client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await Producer(client).bulk_queue([User(i) for i in range(10)])
    consumer = Consumer(
        client,
        stream_name="users",
        name="x",
        retry=Retry(attempts=2, backoff=no_wait),
        dead_letter=True,
    )
    handler = Handler()
    with caplog.at_level(logging.ERROR, logger="aioredstream.consumer"):
        assert await consumer.run_once(handler) == 10
    assert sorted(handler.done) == [i for i in range(10) if i not in POISON]
    assert len(handler.done) == len(set(handler.done))
    letters = await dead_letters(client, consumer.keys, "users")
    assert sorted(json.loads(d.payload)["id"] for d in letters) == sorted(POISON)
    for letter in letters:
        assert letter.error.startswith("ValueError: cannot index")
        assert letter.attempts > 2
        assert letter.consumer == "x"
    rows: Any = await client.xrange("redstream:stream:users")
    assert {d.original_id for d in letters} == {
        row[0].decode() for row in rows if json.loads(row[1][b"payload"])["id"] in POISON
    }
    assert (await consumer.max_committed_id()) == rows[-1][0].decode()
    dead = [r for r in caplog.records if r.getMessage().startswith("dead-lettered")]
    assert len(dead) == 2
    assert all(r.levelno == logging.ERROR for r in dead)
    assert dead[0].getMessage().endswith(" attempts: ValueError: cannot index [3]")
    assert getattr(dead[0], "error", None) == "ValueError: cannot index [3]"


async def test_without_dead_letters_the_batch_is_retried_at_the_longest_wait(
    client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await Producer(client).queue(User(3))
    seen: list[int] = []

    def backoff(failures: int) -> float:
        seen.append(failures)
        return 0.0

    consumer = Consumer(
        client, stream_name="users", name="x", retry=Retry(attempts=2, backoff=backoff)
    )
    with caplog.at_level(logging.ERROR, logger="aioredstream.consumer"):
        with anyio.move_on_after(0.5):
            await consumer.run_once(Handler())
    assert len(seen) > 3
    assert set(seen[1:]) == {2}  # capped at the last attempt's wait
    gave_up = [r for r in caplog.records if r.getMessage().startswith("gave up")]
    assert len(gave_up) == 1  # once, not per retry
    assert gave_up[0].getMessage() == (
        "gave up on a batch of users after 2 attempts (ValueError: cannot index [3]); "
        "retrying at the longest wait"
    )
    assert getattr(gave_up[0], "error", None) == "ValueError: cannot index [3]"
    assert await consumer.max_committed_id() is None


# -- nothing lost when the process dies anywhere on the dead-letter path ---------------

WORKER = textwrap.dedent(
    """
    import json, os, signal, sys
    import anyio
    from redis.asyncio import Redis
    from aioredstream import Consumer, Retry

    calls = 0
    kill_at = int(sys.argv[2])

    async def handler(messages):
        global calls
        calls += 1
        if calls == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        ids = [m.payload["id"] for m in messages]
        if {3, 7} & set(ids):
            raise ValueError("poison")
        with open(sys.argv[3], "a") as out:
            out.write("".join(f"{i}\\n" for i in ids))

    async def main():
        client = Redis.from_url(sys.argv[1])
        consumer = Consumer(client, stream_name="users", name="x", batch_size=10,
                            retry=Retry(attempts=2, backoff=lambda n: 0.0), dead_letter=True)
        while await consumer.run_once(handler):
            pass
        await client.aclose()

    anyio.run(main)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", range(1, 13))
async def test_a_kill_at_any_handler_call_loses_nothing(
    client: Redis, server: ServerProcess, tmp_path: Path, kill_at: int
) -> None:
    await Producer(client).bulk_queue([User(i) for i in range(10)])
    done = tmp_path / "done.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args = [sys.executable, "-c", WORKER, server.url]
    first = await anyio.run_process([*args, str(kill_at), str(done)], env=env, check=False)
    assert first.returncode in (0, -signal.SIGKILL)
    await client.delete("redstream:lock:consumer:users:x")  # the killed holder's lock
    second = await anyio.run_process([*args, "0", str(done)], env=env, check=False)
    assert second.returncode == 0, second.stderr.decode()
    handled = {int(line) for line in done.read_text().split()} if done.exists() else set()
    rows: Any = await client.xrange("redstream:stream:users.dead")
    dead = {json.loads(fields[b"payload"])["id"] for _, fields in rows}
    assert dead == POISON  # poison only, each at least once
    assert handled == set(range(10)) - POISON  # every other record handled


async def test_dead_cli_lists_replays_and_drops(
    client: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await Producer(client).bulk_queue([User(i) for i in range(10)])
    consumer = Consumer(
        client, stream_name="users", name="x", retry=Retry(1, no_wait), dead_letter=True
    )
    await consumer.run_once(Handler())
    assert await run("dead", "list", "users", "--url", redis_url) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0] == "2 dead letters of users (no namespace)"
    assert len(listed) == 4  # the count, a header and the two poison messages
    assert "ValueError: cannot index [3]" in listed[2]
    first_dead = listed[2].split()[0]
    assert await run("dead", "replay", "users", first_dead, "--url", redis_url) == 0
    assert capsys.readouterr().out == "replayed 1 dead letter to users\n"
    rows: Any = await client.xrevrange("redstream:stream:users", count=1)
    assert json.loads(rows[0][1][b"payload"]) == {"id": 3}
    assert await run("dead", "drop", "users", "--all", "--url", redis_url) == 0
    assert capsys.readouterr().out == "dropped 1 dead letter of users\n"
    assert await client.exists("redstream:stream:users.dead") == 0  # empty: deleted
