"""Sharding (the gem's 0.6 feature): SHA1 of the id, first 4 hex digits, modulo N."""

from __future__ import annotations

import enum
import hashlib
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from aioredstream import Keys, Model, Producer, RecordError, Registry, shard_of

from .helpers import User, entries

KEYS = Keys()


class Product(Model):
    redstream_shards = 4

    def __init__(self, id: Any) -> None:
        self.id = id


def gem_shard(key: object, shards: int) -> int:
    """The gem README's ``Digest::SHA1.hexdigest(id.to_s)[0, 4].to_i(16) % NUM_SHARDS``."""
    return int(hashlib.sha1(str(key).encode()).hexdigest()[0:4], 16) % shards


# First 4 hex digits of SHA1, computed outside Python (`printf 1 | sha1sum`).
FIXED = {"1": 0x356A, "2": 0xDA4B, "3": 0x77DE, "4": 0x1B64, "abc": 0xA999}


@pytest.mark.parametrize(("text", "prefix"), FIXED.items())
def test_fixed_vectors_from_sha1sum(text: str, prefix: int) -> None:
    key: object = int(text) if text.isdigit() else text
    assert shard_of(key, 65536) == prefix
    assert shard_of(key, 4) == prefix % 4
    assert shard_of(key, 7) == prefix % 7


@pytest.mark.parametrize("shards", [1, 2, 3, 4, 16, 100, 65536])
def test_matches_the_gem_function_for_many_ids(shards: int) -> None:
    for key in [*range(2000), "a", "Ä-ü", "00042", str(uuid.UUID(int=7))]:
        assert shard_of(key, shards) == gem_shard(key, shards), key


def test_a_uuid_hashes_as_its_text() -> None:
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert shard_of(value, 64) == shard_of(str(value), 64) == gem_shard(str(value), 64)


@pytest.mark.parametrize("bad", [True, 1.0, b"1", None, (1,)])
def test_keys_whose_text_would_differ_from_rubys_are_refused(bad: object) -> None:
    with pytest.raises(TypeError, match=type(bad).__name__):
        shard_of(bad, 4)


def test_a_sharded_model_names_all_its_streams() -> None:
    assert Product.redstream_names() == ["products-0", "products-1", "products-2", "products-3"]
    assert User.redstream_names() == ["users"]
    registry = Registry()
    registry.register(dict, name="orders", shards=2)
    assert registry.stream_names(dict) == ["orders-0", "orders-1"]


@pytest.mark.parametrize("bad", [0, -1, True, "4", 65537])
def test_bad_shard_counts_are_refused_naming_the_class(bad: object) -> None:
    bad_class = type("Widget", (Product,), {"redstream_shards": bad})
    with pytest.raises(RecordError, match=r"Widget.*redstream_shards"):
        Registry().resolve(bad_class)
    with pytest.raises(RecordError, match="redstream_shards"):
        Registry().register(dict, name="orders", shards=bad)  # type: ignore[arg-type]


async def test_each_record_goes_to_its_shard_stream_in_both_halves(client: Redis) -> None:
    products = [Product(i) for i in range(40)]
    async with Producer(client).bulk([*products, User(1)]):
        pass
    for shard in range(4):
        expected = [{"id": p.id} for p in products if gem_shard(p.id, 4) == shard]
        queued = await entries(client, KEYS.stream(f"products-{shard}"))
        assert [payload for _, payload in queued] == expected
        assert await client.xlen(KEYS.delay_stream(f"products-{shard}")) == 0
    assert [p for _, p in await entries(client, KEYS.stream("users"))] == [{"id": 1}]
    assert not await client.exists(KEYS.stream("products"))


async def test_every_change_of_one_record_stays_in_one_stream(client: Redis) -> None:
    producer = Producer(client)
    for _ in range(5):
        await producer.queue(Product("sku-9"))
        await producer.bulk_queue([Product(1), Product("sku-9")])
    home = gem_shard("sku-9", 4)
    for shard in range(4):
        ids = [p["id"] for _, p in await entries(client, KEYS.stream(f"products-{shard}"))]
        assert ids.count("sku-9") == (10 if shard == home else 0)


async def test_registered_classes_shard_by_their_key(client: Redis) -> None:
    registry = Registry()
    registry.register(
        dict, name="orders", shards=3, shard_key=lambda r: r["number"], payload=lambda r: r
    )
    orders = [{"number": f"N{i}", "total": i} for i in range(12)]
    await Producer(client, registry=registry).bulk_queue(orders)
    for shard in range(3):
        got = [p["number"] for _, p in await entries(client, KEYS.stream(f"orders-{shard}"))]
        assert got == [o["number"] for o in orders if gem_shard(o["number"], 3) == shard]


async def test_a_record_without_a_shard_key_fails_the_call_before_any_write(
    client: Redis,
) -> None:
    class Broken(Product):
        def __init__(self) -> None:
            pass  # no id

    with pytest.raises(RecordError, match=r"index 1 .*Broken.*shard") as info:
        await Producer(client).bulk_delay([Product(1), Broken()])
    assert info.value.index == 1
    assert await client.dbsize() == 0
    with pytest.raises(RecordError, match="shard"):
        await Producer(client).delay(Broken())


def test_an_int_subclass_hashes_as_its_digits() -> None:
    class Code(enum.IntEnum):
        ONE = 1

    assert shard_of(Code.ONE, 65536) == FIXED["1"]
