"""The hash-tagged key layout for Redis Cluster, and how it is chosen."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from aioredstream import ArgumentError, Consumer, Delayer, Keys, Message, Producer, stream_size
from aioredstream._keys import untag

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
    # the delayer reads <name>.delay as a stream and commits an offset on it
    assert key_slot(keys.stream(f"{name}.delay").encode()) == slot
    assert key_slot(keys.offset(f"{name}.delay", "delayer").encode()) == slot
    lock = f"consumer:{name}:indexer"
    assert key_slot(keys.lock(lock).encode()) == key_slot(keys.lock_notify(lock).encode())


def test_a_delay_stream_named_as_a_stream_keeps_its_base_names_tag() -> None:
    tagged, ruby = Keys(hash_tags=True), Keys()
    for keys in (tagged, ruby):
        assert keys.stream("users.delay") == keys.delay_stream("users")
    assert tagged.offset("users.delay", "delayer") == "redstream:offset:{users}.delay:delayer"
    assert ruby.offset("users.delay", "delayer") == "redstream:offset:users.delay:delayer"
    assert tagged.stream(".delay") == "redstream:stream:{.delay}"  # no empty tag


@pytest.mark.parametrize(
    ("found", "name"),
    [("{users}", "users"), ("{users}.delay", "users.delay"), ("users.delay", "users.delay")],
)
def test_untag_reads_a_key_part_of_either_layout_back(found: str, name: str) -> None:
    assert untag(found) == name


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


async def test_single_node_workers_follow_the_same_rule(client: Redis) -> None:
    assert Consumer(client, stream_name="users", name="x").keys.hash_tags is False
    producer = Producer(client, hash_tags=True)
    await producer.delay(User(1))  # never queued
    delayer = Delayer(client, stream_name="users", delay=0, hash_tags=True, block=0.05)
    assert await delayer.run_once() == 1
    assert await client.exists("redstream:offset:{users}.delay:delayer") == 1
    seen: list[object] = []

    async def handle(messages: list[Message]) -> None:
        seen.extend(m.payload for m in messages)

    consumer = Consumer(client, stream_name="users", name="x", hash_tags=True, block=0.05)
    assert await consumer.run_once(handle) == 1
    assert seen == [{"id": 1}]
    assert await stream_size(client, "users", hash_tags=True) == 1
    assert await stream_size(client, "users") == 0  # the Ruby layout's key: another stream
