"""Every command of ``aioredstream`` exits as docs/cli.md's "Exit status" table says: 2 for a
wrong command line (before connecting), 1 for a failure once it runs, 0 when done."""

from __future__ import annotations

import argparse
import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from aioredstream import Keys, Producer
from aioredstream.ops.cli import build_parser, main
from aioredstream.testing import free_port
from aioredstream.workers import _dead
from aioredstream.workers.message import Message

from ..helpers import User

ROOT = Path(__file__).resolve().parents[2]
HANDLER = ["--handler", "tests.cli_handlers:record"]
CONSUME = ["consume", "users", "--name", "x", *HANDLER]
BACKFILL = ["backfill", "--model", "tests.integrations.backfill_models:Item", "--database-url"]

#: (argv, status, what stderr says); "{url}" is the test server, "{dead}" a closed port
CASES: list[tuple[list[str], int, str]] = [
    (["status", "--url", "{url}"], 0, ""),
    (["status", "--colour"], 2, "unrecognized arguments: --colour"),
    (["status", "--namespace", "a:b"], 2, "argument --namespace: namespace 'a:b' contains ':'"),
    (["status", "--url", "{dead}"], 1, "status: connection failed"),
    (["exporter"], 2, "the following arguments are required: --port"),
    (["exporter", "--port", "70000"], 2, "argument --port: must be a port number"),
    (["exporter", "--port", "0", "--url", "{dead}"], 1, "exporter: connection failed"),
    (["offset", "get", "users", "indexer", "--url", "{url}"], 0, ""),
    (["offset", "get", "users"], 2, "the following arguments are required: CONSUMER"),
    (["offset", "get", "users", "x", "--url", "{dead}"], 1, "offset get: connection failed"),
    (["offset", "set", "users", "indexer", "5"], 2, "argument ID: the offset must be"),
    (["offset", "set", "users", "x", "0-0", "--url", "{dead}"], 1, "offset set: connection"),
    (["offset", "set", "users", "indexer", "0-0", "--url", "{url}"], 1, "pass --force to do it"),
    (["offset", "set", "users", "indexer", "0-0", "--force", "--url", "{url}"], 0, ""),
    (["dead", "list", "users", "--url", "{url}"], 0, ""),
    (["dead", "list"], 2, "the following arguments are required: STREAM"),
    (["dead", "list", "users", "--url", "{dead}"], 1, "dead list: connection failed"),
    (["dead", "replay", "users"], 2, "dead replay: error: name the IDs to replay, or --all"),
    (["dead", "replay", "users", "1-0", "--all"], 2, "name the IDs to replay or give --all, not"),
    (["dead", "replay", "users", "x"], 2, "argument ID: dead letter id must be"),
    (["dead", "replay", "users", "--all", "--url", "{dead}"], 1, "dead replay: connection"),
    (["dead", "replay", "users", "1-0", "--url", "{url}"], 1, "users.dead has no dead letter 1-0"),
    (["dead", "replay", "users", "--all", "--url", "{url}"], 0, ""),
    (["dead", "drop", "users"], 2, "dead drop: error: name the IDs to drop, or --all"),
    (["dead", "drop", "users", "--all", "--url", "{dead}"], 1, "dead drop: connection failed"),
    (["dead", "drop", "users", "1-0", "2-0", "--url", "{url}"], 1, "no dead letter 1-0, 2-0"),
    (["dead", "drop", "users", "--all", "--url", "{url}"], 0, ""),
    (["delayer", "users"], 2, "the following arguments are required: --delay"),
    (["delayer", "users", "--delay", "1", "--url", "{dead}"], 1, "delayer: PING: connection"),
    (["trimmer", "users", "--consumers", " "], 2, "argument --consumers: must name at least"),
    (["trimmer", "users", "--consumers", "a", "--url", "{dead}"], 1, "trimmer: PING: connection"),
    ([*CONSUME, "--batch-size", "0"], 2, "argument --batch-size: must be an int >= 1"),
    ([*CONSUME, "--retry-attempts", "0"], 2, "argument --retry-attempts: must be an int >= 1"),
    ([*CONSUME, "--retry-backoff", "2,1"], 2, "argument --retry-backoff: most (1.0) must be at"),
    ([*CONSUME, "--retry-backoff", "1"], 2, "argument --retry-backoff: must be FIRST,MOST"),
    ([*CONSUME, "--dead-letter"], 2, "--dead-letter needs --retry-attempts N"),
    ([*CONSUME, "--retry-attempts", "2", "--dead-letter", "--url", "{dead}"], 1, "consume: PING"),
    (["backfill", "--database-url", "sqlite+aiosqlite://"], 2, "arguments are required: --model"),
    ([*BACKFILL, "sqlite+aiosqlite:////no/such/dir/x.db", "--url", "{url}"], 1, "unable to open"),
]


def documented_statuses() -> set[int]:
    text = (ROOT / "docs" / "cli.md").read_text()
    table = text[text.index("### Exit status") :]
    return {int(status) for status in re.findall(r"^\| (\d+) \|", table, re.M)}


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every runnable command: ``("status",)``, ``("dead", "list")`` ..."""
    found: set[tuple[str, ...]] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found |= commands(sub, (*prefix, name))
    return found or {prefix}


def command_of(argv: list[str]) -> tuple[str, ...]:
    return tuple(argv[:2]) if argv[0] in ("dead", "offset") else (argv[0],)


def test_every_command_has_a_case_for_each_documented_failure_status() -> None:
    assert documented_statuses() == {0, 1, 2, 130}  # 130: Ctrl-C during the start
    covered = {(command_of(argv), status) for argv, status, _ in CASES}
    missing = [
        (" ".join(command), status)
        for command in sorted(commands(build_parser()))
        for status in (1, 2)
        if (command, status) not in covered
    ]
    assert not missing, f"add cases for {missing}"


def exit_status(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's usage errors
        return int(exc.code or 0)


async def seed_dead_letter(client: Redis) -> None:
    await Producer(client).queue(User(7))
    rows: Any = await client.xrange("redstream:stream:users")
    entry_id, fields = rows[0]
    message = Message(entry_id.decode(), {"payload": fields[b"payload"].decode()})
    await _dead.write(client, Keys(), "users", "x", message, ValueError("cannot index 7"), 3)


@pytest.mark.parametrize(("argv", "status", "message"), CASES, ids=lambda v: str(v))
async def test_exit_status(
    argv: list[str],
    status: int,
    message: str,
    client: Redis,
    redis_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await seed_dead_letter(client)
    dead = f"redis://127.0.0.1:{free_port()}/0"
    args = [redis_url if a == "{url}" else dead if a == "{dead}" else a for a in argv]
    assert await asyncio.to_thread(exit_status, args) == status
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert message in err, err
    if status == 1:
        assert err.startswith("aioredstream: error: ")
        assert err.count("\n") == 1, err
    elif status == 2:
        assert err.startswith("usage: aioredstream ")
        assert "error: " in err
    if argv[:2] in (["dead", "replay"], ["dead", "drop"]) and status == 1 and "{url}" in argv:
        assert await client.xlen("redstream:stream:users.dead") == 1  # nothing done
