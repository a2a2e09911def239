"""`aioredstream offset get|set`: read a consumer's offset, move it only with --force."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from aioredstream import Producer

from .helpers import User
from .test_cli import run

OFFSET = "redstream:offset:users:indexer"


async def _ids(client: Redis, n: int) -> list[str]:
    await Producer(client).bulk_queue([User(i) for i in range(n)])
    rows: Any = await client.xrange("redstream:stream:users")
    return [row[0].decode() for row in rows]


async def test_get_prints_the_offset_or_says_there_is_none(
    client: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run("offset", "get", "users", "indexer", "--url", redis_url) == 0
    assert capsys.readouterr().out == "(none: it never committed)\n"
    await client.set(OFFSET, "5-1")
    assert await run("offset", "get", "users", "indexer", "--url", redis_url) == 0
    assert capsys.readouterr().out == "5-1\n"


async def test_set_forward_says_how_many_entries_it_skips_and_needs_force(
    client: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = await _ids(client, 10)
    await client.set(OFFSET, ids[1])
    argv = ["offset", "set", "users", "indexer", ids[6], "--url", redis_url]
    assert await run(*argv) == 1
    err = capsys.readouterr().err
    assert f"from {ids[1]} to {ids[6]} skips 5 entries; pass --force" in err
    assert (await client.get(OFFSET)) == ids[1].encode()  # untouched
    assert await run(*argv, "--force") == 0
    assert "skips 5 entries" in capsys.readouterr().out
    assert (await client.get(OFFSET)) == ids[6].encode()


async def test_set_backward_says_how_many_entries_come_again(
    client: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = await _ids(client, 4)
    await client.set(OFFSET, ids[3])
    assert await run("offset", "set", "users", "indexer", "0-0", "--url", redis_url) == 1
    assert "hands 4 entries to it again; pass --force" in capsys.readouterr().err
    assert await run("offset", "set", "users", "indexer", "0-0", "--url", redis_url, "--force") == 0
    assert (await client.get(OFFSET)) == b"0-0"


def test_a_bad_id_exits_2_naming_the_argument(capsys: pytest.CaptureFixture[str]) -> None:
    from aioredstream.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["offset", "set", "users", "indexer", "soon"])
    assert exc.value.code == 2
    expected = "argument ID: the offset must be a stream id like '1700000000000-0' (<ms>-<seq>)"
    assert f"{expected}, got 'soon'" in capsys.readouterr().err
