"""Per-record stream names: ``def redstream_name(self) -> str``, as the gem README shards.

The gem's README::

    def self.redstream_name(shard) = "products-#{shard}"
    def redstream_name = self.class.redstream_name(Digest::SHA1.hexdigest(id.to_s)[0, 4]...)

Python cannot have both under one name, so the instance method does it all. Resolved
once per class (is it an instance method?), then asked of every record of that class.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from redis.asyncio import Redis

from aioredstream import (
    ArgumentError,
    Keys,
    Model,
    Producer,
    RecordError,
    RedstreamError,
    Registry,
    shard_of,
)
from aioredstream._sharding import shard_name

from .helpers import User, entries

KEYS = Keys()
SHARDS = 4


class Product(Model):
    """The gem README's sharding, with the sharding helpers."""

    def __init__(self, id: int) -> None:
        self.id = id

    def redstream_name(self) -> str:  # type: ignore[override]
        return shard_name("products", shard_of(self.id, SHARDS))


class ShardedProduct(Model):
    """The same streams, by the class-level option."""

    redstream_shards = SHARDS

    @classmethod
    def redstream_name(cls) -> str:
        return "products"

    def __init__(self, id: int) -> None:
        self.id = id


class Tenant:
    """Not a Model: a plain class whose records name their stream."""

    def __init__(self, id: int, tenant: str) -> None:
        self.id = id
        self.tenant = tenant

    def redstream_name(self) -> str:
        return f"{self.tenant}-orders"

    def redstream_payload(self) -> Any:
        return {"id": self.id}


class Flaky(Tenant):
    """A name that changes on every call: one record's messages must still share one."""

    counter = itertools.count()

    def redstream_name(self) -> str:
        return f"flaky-{next(self.counter) % 2}"


async def _all_keys(client: Redis) -> list[Any]:
    return sorted(await client.keys("*"))


async def test_each_record_names_its_stream_for_every_call(client: Redis) -> None:
    producer = Producer(client)
    a, b = Tenant(1, "acme"), Tenant(2, "globex")
    delay_a = await producer.delay(a)
    delay_b = await producer.delay(b)
    await producer.queue(a, delay_message_id=delay_a)
    await producer.queue(b)
    assert [p for _, p in await entries(client, KEYS.stream("acme-orders"))] == [{"id": 1}]
    assert [p for _, p in await entries(client, KEYS.stream("globex-orders"))] == [{"id": 2}]
    assert await client.xlen(KEYS.delay_stream("acme-orders")) == 0  # deleted by queue()
    assert [i for i, _ in await entries(client, KEYS.delay_stream("globex-orders"))] == [delay_b]


async def test_bulk_calls_with_mixed_streams_keep_the_records_order(client: Redis) -> None:
    records: list[Any] = []
    for i in range(700):
        records.append(Tenant(i, ["acme", "globex", "initech"][i % 3]))
        if i % 100 == 50:
            records.append(User(i))  # a class with one stream, in between
    producer = Producer(client, slice_size=250)
    ids = await producer.bulk_delay(records)
    assert len(ids) == len(records)
    for record, message_id in zip(records, ids, strict=True):
        stream = KEYS.delay_stream(
            record.redstream_name() if isinstance(record, Tenant) else "users"
        )
        rows: Any = await client.xrange(stream, min=message_id, max=message_id)
        assert len(rows) == 1, (record, message_id)
    await producer.bulk_queue(records, delay_message_ids=ids)
    for tenant in ("acme", "globex", "initech"):
        queued = [p["id"] for _, p in await entries(client, KEYS.stream(f"{tenant}-orders"))]
        assert queued == [r.id for r in records if isinstance(r, Tenant) and r.tenant == tenant]
        assert await client.xlen(KEYS.delay_stream(f"{tenant}-orders")) == 0


async def test_the_delay_and_queue_message_of_a_record_go_to_one_stream(client: Redis) -> None:
    records = [Flaky(i, "x") for i in range(10)]  # a name method that changes every call
    async with Producer(client).bulk(records) as ids:
        assert len(ids) == 10
    for shard in (0, 1):
        # every delay message was deleted from the delay stream it was written to
        assert await client.xlen(KEYS.delay_stream(f"flaky-{shard}")) == 0
    queued = [
        p["id"] for shard in (0, 1) for _, p in await entries(client, KEYS.stream(f"flaky-{shard}"))
    ]
    assert sorted(queued) == list(range(10))


async def test_the_gem_readme_sharding_matches_the_class_level_shards(client: Redis) -> None:
    producer = Producer(client)
    await producer.bulk_queue([Product(i) for i in range(50)])
    by_method = {n: await entries(client, KEYS.stream(f"products-{n}")) for n in range(SHARDS)}
    await client.flushdb()
    await producer.bulk_queue([ShardedProduct(i) for i in range(50)])
    by_option = {n: await entries(client, KEYS.stream(f"products-{n}")) for n in range(SHARDS)}
    assert {n: [p for _, p in rows] for n, rows in by_method.items()} == {
        n: [p for _, p in rows] for n, rows in by_option.items()
    }
    assert all(by_method.values())


class Raising(Tenant):
    def redstream_name(self) -> str:
        if self.id == 3:
            raise LookupError("no tenant loaded")
        return "orders"


class NotStr(Tenant):
    def redstream_name(self) -> str:
        return 5 if self.id == 3 else "orders"  # type: ignore[return-value]


class BadName(Tenant):
    def redstream_name(self) -> str:
        return "a:b" if self.id == 3 else "orders"


@pytest.mark.parametrize(
    ("cls", "match"),
    [
        (Raising, r"redstream_name\(\) raised LookupError: no tenant loaded"),
        (NotStr, r"redstream_name\(\) returned 5, not a str"),
        (BadName, "bad stream name"),
    ],
)
async def test_a_bad_name_method_is_a_record_error_and_nothing_is_written(
    client: Redis, cls: type[Tenant], match: str
) -> None:
    producer = Producer(client)
    records = [cls(i, "t") for i in range(5)]
    with pytest.raises(RecordError, match=match) as caught:
        await producer.bulk_delay(records)
    assert caught.value.index == 3
    assert caught.value.record_type is cls
    assert f"record at index 3 of type {cls.__module__}.{cls.__qualname__}" in str(caught.value)
    for call in (producer.delay, producer.queue):
        with pytest.raises(RecordError, match=match):
            await call(records[3])
    with pytest.raises(RedstreamError):
        async with producer.bulk(records):
            raise AssertionError("the body must not run")
    assert await _all_keys(client) == []


class CountingRegistry(Registry):
    def __init__(self) -> None:
        super().__init__()
        self.resolved: list[type] = []

    def resolve(self, cls: type, index: int | None = None) -> Any:
        self.resolved.append(cls)
        return super().resolve(cls, index)


async def test_instance_method_ness_is_found_once_per_class_and_other_classes_keep_the_hot_path(
    client: Redis,
) -> None:
    registry = CountingRegistry()
    producer = Producer(client, registry=registry)
    await producer.bulk_delay([Tenant(i, str(i % 7)) for i in range(100)] + [User(1), User(2)])
    await producer.delay(Tenant(1, "a"))
    assert registry.resolved == [Tenant, User]
    assert User in producer._targets  # one cached stream: the per-message hot path
    assert Tenant not in producer._targets
    assert len(producer._pickers[Tenant].targets) == 8


def test_a_per_record_class_has_no_list_of_streams_ahead() -> None:
    with pytest.raises(ArgumentError, match="instance method"):
        Product.redstream_names()
    with pytest.raises(ArgumentError, match="not known ahead"):
        Registry().stream_names(Tenant)


def test_per_record_names_and_redstream_shards_together_are_refused() -> None:
    class Both(Product):
        redstream_shards = 2

    with pytest.raises(RecordError, match="both an instance method"):
        Registry().resolve(Both)
