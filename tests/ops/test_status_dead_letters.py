"""Dead letters in ``status`` (a column and a field of their stream, never a stream of their
own) and in the exporter (``aioredstream_dead_letters``); ``dead drop|replay`` empty them."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from aioredstream import Consumer, Keys, Message, Producer, Retry, status

from ..helpers import User
from ..test_cli import run, status_json
from ..test_prometheus import key, samples


async def poison(messages: list[Message]) -> None:
    if any(m.payload["id"] in (3, 7) for m in messages):
        raise ValueError("cannot index")


async def dead_letter(client: Redis, stream: str = "users", count: int = 10) -> None:
    """``count`` messages on ``stream``; ids 3 and 7 end up dead letters."""
    for i in range(count):
        await client.xadd(f"redstream:stream:{stream}", {"payload": f'{{"id":{i}}}'.encode()})
    consumer = Consumer(
        client,
        stream_name=stream,
        name="indexer",
        retry=Retry(1, lambda n: 0.0),
        dead_letter=True,
    )
    assert await consumer.run_once(poison) == count


async def test_status_shows_dead_letters_as_a_column_not_as_a_stream(
    client: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await dead_letter(client)
    await Producer(client).queue(User(1))  # users now has 11 entries
    report = await status_json(capsys, "--url", redis_url)
    assert [s["name"] for s in report["streams"]] == ["users"]
    [users] = report["streams"]
    assert (users["length"], users["dead_letters"]) == (11, 2)

    assert await run("status", "--url", redis_url) == 0
    header, row = capsys.readouterr().out.splitlines()[1:3]
    assert header.split()[:6] == ["STREAM", "LENGTH", "DELAYED", "OLDEST", "DELAY", "DEAD"]
    assert row.split()[:5] == ["users", "11", "0", "-", "2"]
    dead_end = header.index("DEAD") + len("DEAD")
    assert row[:dead_end].endswith("2")  # right-aligned under DEAD

    assert await run("status", "--url", redis_url, "--prometheus") == 0
    found = samples(capsys.readouterr().out)
    assert found[key("aioredstream_dead_letters", namespace="", stream="users")] == 2
    assert not [k for k in found if dict(k[1]).get("stream") == "users.dead"]

    assert await run("dead", "drop", "users", "--all", "--url", redis_url) == 0
    capsys.readouterr()
    assert await client.exists("redstream:stream:users.dead") == 0  # emptied: deleted
    assert (await status(client)).streams[0].dead_letters == 0
    assert await run("status", "--url", redis_url, "--prometheus") == 0
    found = samples(capsys.readouterr().out)
    assert found[key("aioredstream_dead_letters", namespace="", stream="users")] == 0


async def test_a_stream_known_only_by_its_dead_letters_is_listed_while_it_has_some(
    client: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await client.xadd("redstream:stream:gone.dead", {"payload": b'{"id":1}'})
    await client.xadd("redstream:stream:empty.dead", {"payload": b'{"id":1}'})
    await client.xtrim("redstream:stream:empty.dead", maxlen=0)  # an empty dead stream
    report = await status(client)
    assert [(s.name, s.length, s.dead_letters) for s in report.streams] == [("gone", 0, 1)]
    assert await run("dead", "drop", "empty", "--all", "--url", redis_url) == 0
    assert capsys.readouterr().out == "dropped 0 dead letters of empty\n"
    assert await client.exists("redstream:stream:empty.dead") == 0  # left empty: deleted


async def test_shards_and_the_hash_tag_layout_count_dead_letters_too(client: Redis) -> None:
    tagged = Keys(hash_tags=True)
    for shard, count in (("shops-0", 1), ("shops-1", 2)):
        await client.xadd(tagged.stream(shard), {"payload": b'{"id":1}'})
        for _ in range(count):
            await client.xadd(tagged.stream(shard + ".dead"), {"payload": b'{"id":1}'})
    report = await status(client)
    assert [(s.name, s.dead_letters) for s in report.streams] == [("shops-0", 1), ("shops-1", 2)]
    [group] = report.groups
    assert group.dead_letters == 3


async def test_replaying_every_dead_letter_deletes_the_dead_stream(
    client: Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await dead_letter(client)
    assert await run("dead", "replay", "users", "--all", "--url", redis_url) == 0
    assert capsys.readouterr().out == "replayed 2 dead letters to users\n"
    assert await client.exists("redstream:stream:users.dead") == 0
    rows: Any = await client.xrange("redstream:stream:users")
    assert [fields[b"payload"] for _, fields in rows[-2:]] == [b'{"id":3}', b'{"id":7}']
