"""Hostile input: generated payloads, odd names, huge payloads. Never a partial write."""

from __future__ import annotations

import datetime
import decimal
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from aioredstream import ArgumentError, PayloadError, Producer, RecordError, Registry

from ..helpers import raw_payloads

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
not_json = (
    st.sampled_from([math.nan, math.inf, -math.inf])
    | st.binary(min_size=1, max_size=5)
    | st.sets(st.integers(), min_size=1, max_size=3)
    | st.datetimes()
    | st.just(decimal.Decimal("1.5"))
    | st.just(datetime.date(2024, 1, 1))
)


def _registry() -> Registry:
    registry = Registry()
    registry.register(dict, name="docs", payload=lambda record: record["payload"])
    return registry


# The client fixture is shared by a test's examples; each example clears what it reads.
_settings = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_settings
@given(payloads=st.lists(json_values, min_size=1, max_size=8))
async def test_any_json_payload_is_written_as_compact_json_that_parses_back(
    client: Redis, payloads: list[Any]
) -> None:
    await client.delete("redstream:stream:docs")
    producer = Producer(client, registry=_registry(), slice_size=3)
    await producer.bulk_queue([{"payload": p} for p in payloads])
    written = await raw_payloads(client, "redstream:stream:docs")
    assert [json.loads(raw) for raw in written] == payloads
    for raw in written:
        assert raw == json.dumps(
            json.loads(raw), separators=(",", ":"), ensure_ascii=False
        ).encode() or _floaty(raw)


def _floaty(raw: bytes) -> bool:
    # orjson may spell a float differently (1e-7 vs 1e-07, 0.00006103515625 vs
    # 6.103515625e-05): the same double, which the equality of the parsed values shows
    return b"e" in raw.lower() or b"." in raw


@_settings
@given(
    good=st.lists(json_values, max_size=5),
    bad=not_json,
    position=st.integers(min_value=0, max_value=5),
    nested=st.booleans(),
)
async def test_one_non_json_value_anywhere_fails_the_whole_call_and_writes_nothing(
    client: Redis, good: list[Any], bad: Any, position: int, nested: bool
) -> None:
    await client.flushall()
    producer = Producer(client, registry=_registry(), slice_size=2)
    payloads = list(good)
    index = min(position, len(payloads))
    payloads.insert(index, {"deep": [1, {"bad": bad}]} if nested else bad)
    records = [{"payload": p} for p in payloads]
    with pytest.raises(PayloadError) as info:
        await producer.bulk_delay(records)
    assert info.value.index == index
    assert f"index {index}" in str(info.value)
    assert "dict" in str(info.value)
    with pytest.raises(PayloadError):
        async with producer.bulk(records):
            pytest.fail("body must not run")
    assert await client.dbsize() == 0


@pytest.mark.parametrize(
    "name", [":", "a:b", "{tag}", "a*", "with space", "new\nline", "x" * 300, "", "users.delay"]
)
async def test_hostile_stream_names_are_refused_before_any_write(client: Redis, name: str) -> None:
    registry = Registry()

    class Hostile:
        @classmethod
        def redstream_name(cls) -> str:
            return name

        def redstream_payload(self) -> Any:
            return {"id": 1}

    with pytest.raises(RecordError) as info:
        await Producer(client, registry=registry).bulk_delay([Hostile()])
    assert "Hostile" in str(info.value)
    with pytest.raises(RecordError):
        registry.register(dict, name=name)
    assert await client.dbsize() == 0


@pytest.mark.parametrize("name", ["a:b", "{x}", "ns ns", "*"])
def test_hostile_namespaces_are_refused(client: Redis, name: str) -> None:
    with pytest.raises(ArgumentError, match="namespace"):
        Producer(client, namespace=name)


async def test_a_ten_megabyte_payload_is_written_whole(client: Redis) -> None:
    big = "x" * (10 * 1024 * 1024)
    producer = Producer(client, registry=_registry())
    ids = await producer.bulk_delay([{"payload": {"id": 1, "blob": big}}, {"payload": {"id": 2}}])
    assert len(ids) == 2
    [first, second] = await raw_payloads(client, "redstream:stream:docs.delay")
    assert json.loads(first)["blob"] == big
    assert second == b'{"id":2}'


async def test_wrong_record_types_name_the_record(client: Redis) -> None:
    producer = Producer(client)
    for bad in (None, 42, "users", object()):
        with pytest.raises(RecordError, match=type(bad).__name__):
            await producer.bulk_delay([bad])
    assert await client.dbsize() == 0
