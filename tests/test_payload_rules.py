"""One payload rule with and without orjson, and what the gem's JSON cannot read.

Every case runs with both encoders (``ENCODERS``: the standard library's, and orjson's
when the ``speed`` extra is installed, as in the dev environment), then through a
producer against a real server: a refused payload means nothing written.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from aioredstream import Message, MessageError, PayloadError, Producer, register
from aioredstream._codec import ENCODERS, MAX_NESTING

from .helpers import entries

ENCODER_NAMES = sorted(ENCODERS)


def test_both_encoders_are_under_test() -> None:
    assert ENCODER_NAMES == ["json", "orjson"]  # dev installs the speed extra


def _nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_uuids_are_written_as_strings_by_both_encoders(encoder: str) -> None:
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    expected = b'{"id":"12345678-1234-5678-1234-567812345678","n":[1]}'
    assert ENCODERS[encoder]({"id": value, "n": [1]}) == expected


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_the_gems_nesting_limit_is_kept_by_both_encoders(encoder: str) -> None:
    dumps = ENCODERS[encoder]
    assert json.loads(dumps(_nested(MAX_NESTING))) == _nested(MAX_NESTING)  # the gem reads it
    with pytest.raises(ValueError, match="JSON::NestingError"):
        dumps(_nested(MAX_NESTING + 1))
    with pytest.raises(ValueError, match="nested more than 100"):
        dumps({"deep": _nested(300)})  # past orjson's own limit too
    assert dumps(["[" * 500]) == b'["' + b"[" * 500 + b'"]'  # brackets in strings are text


@pytest.mark.parametrize("encoder", ENCODER_NAMES)
def test_floats_are_the_same_doubles_as_rubys_spelling(encoder: str) -> None:
    """Ruby writes 1.0e-07, 1.0e+20, 100.0; we may write 1e-07 / 1e-7: same values."""
    values = [1e-07, 1e20, 100.0, 0.1, 1.5e-07, -2.5e300, 6.103515625e-05]
    # Float#to_s, for comparison
    ruby = b"[1.0e-07,1.0e+20,100.0,0.1,1.5e-07,-2.5e+300,6.103515625e-05]"
    assert json.loads(ENCODERS[encoder](values)) == json.loads(ruby) == values


class Deep:
    def __init__(self, id: int, depth: int) -> None:
        self.id = id
        self.depth = depth


register(Deep, name="deeps", payload=lambda r: {"id": r.id, "tree": _nested(r.depth)})


async def test_a_payload_nested_too_deep_for_the_gem_is_refused_and_nothing_written(
    client: Redis,
) -> None:
    producer = Producer(client)
    records = [Deep(1, 3), Deep(2, MAX_NESTING)]  # 101 levels with the outer object
    with pytest.raises(PayloadError, match=r"index 1 .*JSON::NestingError") as caught:
        await producer.bulk_delay(records)
    assert caught.value.index == 1
    with pytest.raises(PayloadError, match="nested more than 100"):
        await producer.delay(records[1])
    assert await client.keys("*") == []
    await producer.delay(Deep(3, MAX_NESTING - 1))  # 100 levels: written
    assert len(await entries(client, "redstream:stream:deeps.delay")) == 1


class Keyed:
    def __init__(self, id: uuid.UUID) -> None:
        self.id = id


register(Keyed, name="keyed")


async def test_uuid_ids_reach_the_stream_as_strings(client: Redis) -> None:
    key = uuid.UUID(int=42)
    await Producer(client).bulk_queue([Keyed(key)])
    assert [p for _, p in await entries(client, "redstream:stream:keyed")] == [{"id": str(key)}]


def test_a_ruby_integer_longer_than_pythons_digit_limit_is_named_as_such() -> None:
    """Ruby writes any Integer; Python refuses to parse one of more than 4,300 digits."""
    raw = '{"id":' + "9" * 5000 + "}"
    with pytest.raises(MessageError, match="int max str digits limit") as caught:
        Message("1-0", {"payload": raw})
    assert "not UTF-8" not in str(caught.value)
    with pytest.raises(MessageError, match=r"not UTF-8 JSON \(not UTF-8\)"):
        Message("1-0", {"payload": "\udcff"})  # a byte that is not UTF-8 (surrogateescape)


class Expiring:
    """Stands for a SQLAlchemy model read after commit() expired it."""

    def __init__(self, id: int) -> None:
        self._id = id

    @property
    def id(self) -> int:
        raise _DetachedInstanceError(
            "Instance <User at 0x7f> is not bound to a Session; attribute refresh "
            "operation cannot proceed"
        )


class _DetachedInstanceError(Exception):
    pass


class Exploding:
    def __init__(self, id: int) -> None:
        self.id = id

    def redstream_payload(self) -> Any:
        raise RuntimeError("the payload function broke")


register(Expiring, name="expiring")
register(Exploding, name="exploding", payload=Exploding.redstream_payload)


async def test_a_failing_payload_function_is_named_not_called_unserialisable(
    client: Redis,
) -> None:
    producer = Producer(client)
    with pytest.raises(PayloadError) as caught:
        await producer.bulk_delay([Exploding(1)])
    message = str(caught.value)
    assert "RuntimeError: the payload function broke" in message
    assert "JSON" not in message
    with pytest.raises(PayloadError, match="cannot build its payload: RuntimeError"):
        await producer.delay(Exploding(1))


async def test_a_detached_instance_gets_the_advice_for_expire_on_commit(client: Redis) -> None:
    with pytest.raises(PayloadError) as caught:
        await Producer(client).bulk_queue([Expiring(1)])
    message = str(caught.value)
    assert "is not bound to a Session" in message
    assert "before commit()" in message
    assert "expire_on_commit=False" in message
    assert "JSON" not in message
