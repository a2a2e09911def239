"""One rule per kind of argument (aioredstream._validate): every numeric parameter of the
public API refuses booleans, and every stream id follows the server's ``<ms>-<seq>``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from aioredstream import (
    ArgumentError,
    Consumer,
    Delayer,
    Lock,
    Producer,
    Retry,
    Trimmer,
    exponential,
    shard_of,
)
from aioredstream._validate import check_id, parse_id
from aioredstream.cli import main


@pytest.fixture
async def idle() -> AsyncIterator[Redis]:
    """A client that never connects: construction checks run before any command."""
    client = Redis()
    yield client
    await client.aclose()


def _consumer(client: Redis, **kw: Any) -> Consumer:
    return Consumer(client, stream_name="users", name="c", **kw)


# (what is built, the parameter, the builder given that parameter's value)
NUMERIC: list[tuple[str, Callable[[Redis, Any], object]]] = [
    ("wait", lambda c, v: Producer(c, wait=v)),
    ("wait_timeout", lambda c, v: Producer(c, wait_timeout=v)),
    ("wait_aof numlocal", lambda c, v: Producer(c, wait_aof=(v, 0))),
    ("wait_aof numreplicas", lambda c, v: Producer(c, wait_aof=(0, v))),
    ("slice_size", lambda c, v: Producer(c, slice_size=v)),
    ("batch_size", lambda c, v: _consumer(c, batch_size=v)),
    ("block", lambda c, v: _consumer(c, block=v)),
    ("backoff", lambda c, v: _consumer(c, backoff=v)),
    ("delay", lambda c, v: Delayer(c, stream_name="users", delay=v)),
    ("interval", lambda c, v: Trimmer(c, stream_name="u", consumer_names=["a"], interval=v)),
    ("expiry", lambda c, v: Lock(c, "l", expiry=v, refresh=0.5)),
    ("refresh", lambda c, v: Lock(c, "l", refresh=v)),
    ("attempts", lambda c, v: Retry(attempts=v)),
    ("first", lambda c, v: exponential(first=v)),
    ("most", lambda c, v: exponential(first=0.5, most=v)),
    ("factor", lambda c, v: exponential(factor=v)),
    ("shards", lambda c, v: shard_of(7, v)),
]


@pytest.mark.parametrize(("name", "build"), NUMERIC, ids=[n for n, _ in NUMERIC])
@pytest.mark.parametrize("value", [True, "1", None, float("nan")])
def test_a_numeric_parameter_refuses_booleans_and_non_numbers_naming_itself(
    idle: Redis, name: str, build: Callable[[Redis, Any], object], value: object
) -> None:
    """``Lock(expiry=True)`` and ``Producer(wait_timeout=True)`` used to be accepted."""
    with pytest.raises(ArgumentError) as caught:
        build(idle, value)
    assert str(caught.value).startswith(f"{name} must be "), caught.value
    assert str(caught.value).endswith(f"got {value!r}"), caught.value


@pytest.mark.parametrize(("name", "build"), NUMERIC, ids=[n for n, _ in NUMERIC])
def test_a_numeric_parameter_accepts_a_plain_number(
    idle: Redis, name: str, build: Callable[[Redis, Any], object]
) -> None:
    build(idle, 2)


async def test_lock_wait_refuses_a_boolean(idle: Redis) -> None:
    with pytest.raises(ArgumentError, match=r"^max_wait must be seconds >= 0, got True$"):
        await Lock(idle, "l").wait(True)


GOOD_IDS = ["0-0", "1700000000000-0", f"{2**64 - 1}-{2**64 - 1}", b"5-1"]
BAD_IDS = ["6", "5-", "-5", "5-1-1", "x-1", " 5-1", "5-1\n", "٣-1", f"{2**64}-0", "", 5, None]


@pytest.mark.parametrize("good", GOOD_IDS)
def test_a_stream_id_is_ms_dash_seq(good: str | bytes) -> None:
    text = good.decode() if isinstance(good, bytes) else good
    assert check_id(good) == text
    assert parse_id(good) == tuple(int(part) for part in text.split("-"))


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
async def test_every_place_that_takes_an_id_refuses_the_same_ones(
    idle: Redis, bad: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """parse_id (the workers), the producer's delay ids, Consumer.commit and the CLI's
    ``offset set`` share one rule: the producer accepted ``1-2`` only, the workers also
    ``6``, and ``commit`` anything."""
    expected = re.escape(f"must be a stream id like '1700000000000-0' (<ms>-<seq>), got {bad!r}")
    with pytest.raises(ArgumentError, match="^id " + expected):
        parse_id(bad)
    with pytest.raises(ArgumentError, match=r"^delay_message_ids\[1\] " + expected):
        await Producer(idle).bulk_queue([object(), object()], ["1-1", bad])  # type: ignore[list-item]
    with pytest.raises(ArgumentError, match="^message_id " + expected):
        await _consumer(idle).commit(bad)  # type: ignore[arg-type]
    if isinstance(bad, str) and bad and not bad.startswith("-"):
        with pytest.raises(SystemExit):
            main(["offset", "set", "users", "c", bad])
        assert re.search("argument ID: the offset " + expected, capsys.readouterr().err)
