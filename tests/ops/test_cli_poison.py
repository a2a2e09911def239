"""A poison message under ``aioredstream consume``: retried, dead-lettered, the stream goes
on, ``dead list|replay`` see it; and the walkthrough of docs/operations.md (its log lines
and its ``dead`` output), line by line against these real runs."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from aioredstream import Keys, Producer
from aioredstream.testing import ServerProcess
from aioredstream.workers import _dead
from aioredstream.workers.message import Message

from ..helpers import User
from ..test_cli import run

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "aioredstream"
WAIT_S = 30.0  # a deadline for what must happen, not a speed check
DOC_HANDLER = "myapp.sync:reindex"
TEST_HANDLER = "tests.cli_handlers:reindex"  # raises ValueError("cannot index 7") on id 7
#: ``YYYY-MM-DD HH:MM:SS,mmm LEVEL logger: message``, as the CLI logs to stderr
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ aioredstream\.")


def section(page: str, heading: str) -> str:
    text = (ROOT / "docs" / page).read_text()
    start = text.index(heading)
    end = text.find("\n## ", start)
    return text[start : end if end >= 0 else None]


def console_blocks(text: str) -> list[list[str]]:
    """The lines of each ```console block, list indentation removed."""
    found = re.findall(r"^( *)```console\n(.*?)^\1```", text, re.M | re.S)
    return [textwrap.dedent(body).splitlines() for _, body in found]


WALKTHROUGH = console_blocks(section("operations.md", "### A poison message, step by step"))
CLI_DEAD = console_blocks(section("cli.md", "### Dead letters"))


def pattern(line: str) -> re.Pattern[str]:
    """A documented line as a pattern: ids, times and waits vary, so any number matches
    a number; everything else (words, spacing, punctuation) must be as documented."""
    return re.compile("^" + re.sub(r"\d+", r"\\d+", re.escape(line)) + "$")


def assert_logged(documented: list[str], real: list[str]) -> None:
    lines = [line for line in documented if LOG_LINE.match(line)]
    assert lines, "no log lines in this block"
    for line in lines:
        assert any(pattern(line).match(got) for got in real), (line, real)


class Consume:
    """``aioredstream consume ...`` as a process, its stderr read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, argv: list[str], url: str, handled: Path) -> Consume:
        proc = await asyncio.create_subprocess_exec(
            str(SCRIPT),
            *argv,
            "--url",
            url,
            cwd=ROOT,
            env={"PATH": "/usr/bin:/bin", "HANDLED_FILE": str(handled)},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode().rstrip("\n"))

    async def until(self, what: str, check: Any) -> None:
        deadline = time.monotonic() + WAIT_S
        while not await check():
            assert self.proc.returncode is None, self.lines
            assert time.monotonic() < deadline, f"not within {WAIT_S}s: {what}\n{self.lines}"
            await asyncio.sleep(0.05)

    async def stop(self) -> list[str]:
        self.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.proc.wait(), WAIT_S)
        await self._reader
        assert self.proc.returncode == 0, self.lines
        assert "Traceback" not in "\n".join(self.lines[-5:])
        return self.lines


def documented_command(line: str, *extra: str) -> list[str]:
    """A ``$ aioredstream consume ...`` line of the docs as argv, with the test's handler."""
    assert line.startswith("$ aioredstream consume "), line
    argv = shlex.split(line[2:])[1:]
    return [TEST_HANDLER if arg == DOC_HANDLER else arg for arg in argv] + list(extra)


async def run_block(
    block: list[str], url: str, ids: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Run each ``$ aioredstream ...`` of a block (documented ids replaced by real ones);
    its stdout and stderr must be the lines the block shows under it."""
    commands: list[tuple[list[str], list[str]]] = []
    for line in block:
        if line.startswith("$ "):
            argv = [ids.get(arg, arg) for arg in shlex.split(line[2:])[1:]]
            commands.append((argv, []))
        else:
            commands[-1][1].append(line)
    for argv, expected in commands:
        status = await run(*argv, "--url", url)
        captured = capsys.readouterr()
        got = (captured.out + captured.err).splitlines()
        assert status == (1 if captured.err else 0), (argv, got)
        assert len(got) == len(expected), (argv, got, expected)
        for want, line in zip(expected, got, strict=True):
            assert pattern(want).match(line), (argv, line, want)


def documented_ids(block: list[str]) -> list[str]:
    """The ids a block names, in order: ``1700000001000-0`` ..."""
    return list(dict.fromkeys(re.findall(r"\b\d{13}-\d+\b", "\n".join(block))))


async def test_a_poison_message_under_the_cli_is_retried_dead_lettered_and_replayed(
    client: Redis, server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    defaults, with_retries, listed, replayed = WALKTHROUGH
    await Producer(client).bulk_queue([User(i) for i in range(4, 12)])  # 7 is 4th of 8
    rows: Any = await client.xrange("redstream:stream:users")
    entry_ids = [entry_id.decode() for entry_id, _ in rows]
    handled = tmp_path / "handled.jsonl"

    # 1. the defaults: the batch comes again every 5 s, nothing is committed
    stuck = await Consume.start(documented_command(defaults[0]), server.url, handled)

    async def failed_again() -> bool:
        return any("failed again" in line for line in stuck.lines)

    await stuck.until("the retry after the default 5 s backoff", failed_again)
    assert_logged(defaults, await stuck.stop())
    assert await client.get("redstream:offset:users:indexer") is None
    assert not handled.exists()

    # 2. --retry-attempts 5 --dead-letter: retried, parked, the stream goes on
    argv = documented_command(with_retries[0], "--retry-backoff", "0.01,0.01")
    assert argv[-5:-2] == ["--retry-attempts", "5", "--dead-letter"]
    going = await Consume.start(argv, server.url, handled)

    async def moved_on() -> bool:
        return bool(await client.get("redstream:offset:users:indexer") == entry_ids[-1].encode())

    await going.until("the offset is past the poison message", moved_on)
    logged = await going.stop()
    assert_logged(with_retries, logged)
    warnings = [line for line in logged if " WARNING aioredstream.consumer: handler failed" in line]
    assert re.findall(r"attempt (\d) of 5", "\n".join(warnings)) == list("1234")
    handled_ids = [json.loads(line)["id"] for line in handled.read_text().splitlines()]
    assert sorted(handled_ids) == [4, 5, 6, 8, 9, 10, 11]  # each once, the poison never
    [letter] = await _dead.dead_letters(client, Keys(), "users")
    assert (letter.payload, letter.original_id, letter.attempts) == ('{"id":7}', entry_ids[3], 8)
    assert (letter.error, letter.consumer) == ("ValueError: cannot index 7", "indexer")

    # 3.-4. dead list sees it; dead replay hands it back; the dead stream is gone
    dead_id, original_id = documented_ids(listed)
    ids = {dead_id: letter.id, original_id: letter.original_id}
    await run_block(listed, server.url, ids, capsys)
    await run_block(replayed, server.url, ids, capsys)
    last: Any = await client.xrevrange("redstream:stream:users", count=1)
    assert last[0][1][b"payload"] == b'{"id":7}'
    assert await client.exists("redstream:stream:users.dead") == 0


async def test_the_dead_block_of_cli_md_is_what_the_commands_print(
    client: Redis, server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    [block] = CLI_DEAD
    await Producer(client).bulk_queue([User(i) for i in range(4, 12)])
    rows: Any = await client.xrange("redstream:stream:users")
    poison = Message(rows[3][0].decode(), {"payload": rows[3][1][b"payload"].decode()})
    dead_id = await _dead.write(
        client, Keys(), "users", "indexer", poison, ValueError("cannot index 7"), 8
    )
    documented_dead, documented_original = documented_ids(block)
    ids = {documented_dead: dead_id, documented_original: poison.message_id}
    await run_block(block, server.url, ids, capsys)


def test_the_documented_consume_lines_of_cli_md_are_real_log_lines() -> None:
    """cli.md shows the start line of ``consume``; the walkthrough run checks its form."""
    cli_lines = [
        line
        for block in console_blocks((ROOT / "docs" / "cli.md").read_text())
        for line in block
        if LOG_LINE.match(line)
    ]
    walkthrough = [line for block in WALKTHROUGH for line in block if LOG_LINE.match(line)]
    for line in cli_lines:
        assert any(pattern(line).match(shown) for shown in walkthrough), line
