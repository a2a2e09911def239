"""The hash-tagged key layout for Redis Cluster, and how it is chosen."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from aioredstream import ArgumentError, Keys, Producer

from .helpers import User


def test_hash_tags_wrap_the_name_in_every_key() -> None:
    keys = Keys("shop", hash_tags=True)
    assert keys.stream("users") == "shop:redstream:stream:{users}"
    assert keys.delay_stream("users") == "shop:redstream:stream:{users}.delay"
    assert keys.offset("users", "indexer") == "shop:redstream:offset:{users}:indexer"
    assert keys.lock("consumer:users:indexer") == "shop:redstream:lock:{consumer:users:indexer}"
    assert keys.lock_notify("trimmer") == "shop:redstream:lock:{trimmer}.notify"
    assert keys.offset_pattern("users") == "shop:redstream:offset:{users}:*"


@pytest.mark.parametrize("name", ["users", "products-3", "a.b", "ä"])
def test_a_stream_its_delay_stream_and_offsets_share_a_slot(name: str) -> None:
    keys = Keys(hash_tags=True)
    slot = key_slot(keys.stream(name).encode())
    assert key_slot(keys.delay_stream(name).encode()) == slot
    assert key_slot(keys.offset(name, "indexer").encode()) == slot
    lock = f"consumer:{name}:indexer"
    assert key_slot(keys.lock(lock).encode()) == key_slot(keys.lock_notify(lock).encode())


def test_the_ruby_layout_splits_them_which_is_why_a_cluster_needs_tags() -> None:
    keys = Keys()
    assert key_slot(keys.stream("users").encode()) != key_slot(keys.delay_stream("users").encode())


def test_the_ruby_layout_stays_the_default() -> None:
    assert Keys().hash_tags is False
    assert Keys().stream("users") == "redstream:stream:users"
    assert repr(Keys("ns", hash_tags=True)) == "Keys('ns', hash_tags=True)"


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_hash_tags_must_be_a_bool(bad: object) -> None:
    with pytest.raises(ArgumentError, match="hash_tags"):
        Keys(hash_tags=bad)  # type: ignore[arg-type]


async def test_a_single_node_producer_can_opt_into_hash_tags(client: Redis) -> None:
    producer = Producer(client, hash_tags=True)
    assert "hash_tags=True" in repr(producer)
    await producer.delay(User(1))
    assert await client.exists("redstream:stream:{users}.delay") == 1
    with pytest.raises(ArgumentError, match="hash_tags"):
        Producer(client, hash_tags="yes")  # type: ignore[arg-type]
