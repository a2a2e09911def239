"""Stream helpers, id arithmetic, and the arguments every worker refuses at construction."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from aioredstream import (
    ArgumentError,
    Consumer,
    Delayer,
    Trimmer,
    max_consumer_id,
    max_stream_id,
    stream_size,
)
from aioredstream._validate import parse_id
from aioredstream.workers._streams import next_id

from .helpers import decoded


async def test_stream_helpers_report_size_newest_id_and_offset(client: Redis) -> None:
    assert await stream_size(client, "users") == 0
    assert await max_stream_id(client, "users") is None
    assert await max_consumer_id(client, stream_name="users", consumer_name="c") is None
    await client.xadd("redstream:stream:users", {"payload": "{}"}, id="5-1")
    await client.xadd("redstream:stream:users", {"payload": "{}"}, id="5-2")
    await client.xadd("ns:redstream:stream:users.delay", {"payload": "{}"}, id="7-0")
    await client.set("redstream:offset:users:c", "5-1")
    assert await stream_size(client, "users") == 2
    assert await max_stream_id(client, "users") == "5-2"
    assert await max_consumer_id(client, stream_name="users", consumer_name="c") == "5-1"
    assert await stream_size(client, "users.delay", namespace="ns") == 1
    assert await max_stream_id(client, "users.delay", namespace="ns") == "7-0"


def test_ids_compare_numerically_and_next_id_is_the_smallest_greater_one() -> None:
    assert parse_id("5-10") > parse_id("5-9")
    assert parse_id(b"6-0") == (6, 0)
    assert next_id("5-9") == "5-10"
    assert next_id(f"5-{2**64 - 1}") == "6-0"
    with pytest.raises(ArgumentError, match="'x-1'"):
        parse_id("x-1")


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("consumer", {"stream_name": "", "name": "c"}, "must not be empty"),
    ("consumer", {"stream_name": "users", "name": ""}, "consumer name must not be empty"),
    ("consumer", {"stream_name": "a:b", "name": "c"}, "'a:b'"),
    ("consumer", {"stream_name": "users", "name": "x:y"}, "'x:y'"),
    ("consumer", {"stream_name": "users", "name": "c{1}"}, r"'c\{1\}'"),
    ("consumer", {"stream_name": "users", "name": "c", "batch_size": 0}, "batch_size .* 0"),
    ("consumer", {"stream_name": "users", "name": "c", "batch_size": True}, "True"),
    ("consumer", {"stream_name": "users", "name": "c", "backoff": -1}, "backoff .* -1"),
    ("consumer", {"stream_name": "users", "name": "c", "block": 0}, "block .* 0"),
    ("consumer", {"stream_name": "users", "name": "c", "namespace": "a b"}, "'a b'"),
    ("delayer", {"stream_name": "users", "delay": -1.0}, "delay .* -1.0"),
    ("delayer", {"stream_name": "users", "delay": "5"}, "'5'"),
    ("delayer", {"stream_name": "users.delay", "delay": 1}, "'users.delay'"),
    ("delayer", {"stream_name": "us*rs", "delay": 1}, "'us\\*rs'"),
    ("trimmer", {"stream_name": "users", "consumer_names": []}, "at least one"),
    ("trimmer", {"stream_name": "users", "consumer_names": "indexer"}, "'indexer'"),
    ("trimmer", {"stream_name": "users", "consumer_names": ["a", ""]}, "must not be empty"),
    ("trimmer", {"stream_name": "users", "consumer_names": ["a"], "interval": -2}, "-2"),
]


@pytest.mark.parametrize(("kind", "kwargs", "match"), BAD)
def test_bad_worker_arguments_raise_argument_error_naming_the_value(
    client: Redis, kind: str, kwargs: dict[str, Any], match: str
) -> None:
    cls: Any = {"consumer": Consumer, "delayer": Delayer, "trimmer": Trimmer}[kind]
    with pytest.raises(ArgumentError, match=match):
        cls(client, **kwargs)


def test_a_consumer_may_read_a_delay_stream(client: Redis) -> None:
    consumer = Consumer(client, stream_name="users.delay", name="delayer")
    assert consumer.lock.key == "redstream:lock:consumer:users.delay:delayer"
    assert decoded(b"x") == "x"
