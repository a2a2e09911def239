from __future__ import annotations

import math
from typing import Any

import pytest
from redis.asyncio import Redis

from aioredstream import (
    ArgumentError,
    PayloadError,
    Producer,
    RecordError,
    Registry,
    ServerConnectionError,
    ServerError,
)
from aioredstream.testing import free_port

from .conftest import ClientFactory
from .helpers import Post, User, entries, raw_payloads


async def test_delay_writes_compact_payload_to_the_delay_stream(client: Redis) -> None:
    producer = Producer(client)
    message_id = await producer.delay(User(1))
    assert isinstance(message_id, str)
    assert await raw_payloads(client, "redstream:stream:users.delay") == [b'{"id":1}']
    assert (await entries(client, "redstream:stream:users.delay"))[0][0] == message_id
    assert await client.exists("redstream:stream:users") == 0


@pytest.mark.parametrize("decode", [False, True])
async def test_ids_are_str_whatever_decode_responses(
    redis_url: str, make_client: ClientFactory, decode: bool
) -> None:
    client = make_client(redis_url, decode_responses=decode)
    await client.flushall()
    producer = Producer(client, namespace="shop")
    ids = await producer.bulk_delay([User(1), User(2)])
    assert all(isinstance(i, str) for i in ids)
    assert [e[0] for e in await entries(client, "shop:redstream:stream:users.delay")] == ids
    assert await producer.queue(User(1), delay_message_id=ids[0]) is True
    assert [p for _, p in await entries(client, "shop:redstream:stream:users")] == [{"id": 1}]
    remaining = await entries(client, "shop:redstream:stream:users.delay")
    assert [e[0] for e in remaining] == [ids[1]]


async def test_queue_writes_the_stream_and_deletes_the_delay_message(client: Redis) -> None:
    producer = Producer(client)
    delay_id = await producer.delay(User(5))
    assert await producer.queue(User(5), delay_message_id=delay_id) is True
    assert await entries(client, "redstream:stream:users.delay") == []
    assert [p for _, p in await entries(client, "redstream:stream:users")] == [{"id": 5}]
    await producer.queue(Post(6))
    assert [p for _, p in await entries(client, "redstream:stream:posts")] == [{"id": 6}]


async def test_bulk_delay_slices_and_returns_ids_in_record_order(client: Redis) -> None:
    producer = Producer(client, slice_size=7)
    records: list[Any] = [User(i) if i % 3 else Post(i) for i in range(100)]
    ids = await producer.bulk_delay(records)
    assert len(ids) == 100
    users = dict(await entries(client, "redstream:stream:users.delay"))
    posts = dict(await entries(client, "redstream:stream:posts.delay"))
    found = [(users if i % 3 else posts)[message_id]["id"] for i, message_id in enumerate(ids)]
    assert found == list(range(100))


async def test_bulk_queue_deletes_exactly_the_given_delay_ids(client: Redis) -> None:
    producer = Producer(client, slice_size=3)
    users = [User(i) for i in range(10)]
    ids = await producer.bulk_delay(users)
    other = await producer.delay(User(99))
    assert await producer.bulk_queue(users, delay_message_ids=ids) is True
    assert [e[0] for e in await entries(client, "redstream:stream:users.delay")] == [other]
    assert [p["id"] for _, p in await entries(client, "redstream:stream:users")] == list(range(10))


async def test_bulk_queues_after_a_clean_body(client: Redis) -> None:
    producer = Producer(client, slice_size=4)
    records = (User(i) for i in range(10))  # a generator: must be materialised once
    async with producer.bulk(records) as delay_ids:
        assert len(delay_ids) == 10
        assert await client.xlen("redstream:stream:users.delay") == 10
        assert await client.exists("redstream:stream:users") == 0
    assert await client.xlen("redstream:stream:users.delay") == 0
    assert [p["id"] for _, p in await entries(client, "redstream:stream:users")] == list(range(10))


async def test_bulk_body_error_propagates_and_leaves_the_delay_messages(client: Redis) -> None:
    producer = Producer(client)

    class Boom(Exception):
        pass

    error = Boom("db failed")
    with pytest.raises(Boom) as info:
        async with producer.bulk([User(1), User(2)]):
            raise error
    assert info.value is error
    assert await client.xlen("redstream:stream:users.delay") == 2
    assert await client.exists("redstream:stream:users") == 0


async def test_empty_record_lists_are_no_ops(client: Redis) -> None:
    producer = Producer(client)
    assert await producer.bulk_delay([]) == []
    assert await producer.bulk_queue([], delay_message_ids=[]) is True
    async with producer.bulk([]) as ids:
        assert ids == []
    assert await client.dbsize() == 0


class Payload:
    def __init__(self, value: Any) -> None:
        self.value = value

    @classmethod
    def redstream_name(cls) -> str:
        return "payloads"

    def redstream_payload(self) -> Any:
        return {"v": self.value}


@pytest.mark.parametrize("bad", [math.nan, math.inf, {1}, b"bytes", object()])
async def test_bad_payload_names_the_record_and_writes_nothing(client: Redis, bad: Any) -> None:
    producer = Producer(client, slice_size=2)
    records = [Payload(1), Payload(2), Payload(3), Payload(bad), Payload(5)]
    for call in (
        lambda: producer.bulk_delay(records),
        lambda: producer.bulk_queue(records),
        lambda: producer.delay(Payload(bad)),
    ):
        with pytest.raises(PayloadError) as info:
            await call()
        assert "Payload" in str(info.value)
    with pytest.raises(PayloadError, match="index 3") as info:
        async with producer.bulk(records):
            pytest.fail("the body must not run")
    assert info.value.index == 3
    assert info.value.record_type is Payload
    assert await client.dbsize() == 0


async def test_records_without_methods_or_with_bad_names_write_nothing(client: Redis) -> None:
    producer = Producer(client)

    class Plain:
        id = 1

    class NumberName(Payload):
        @classmethod
        def redstream_name(cls) -> str:
            return 42  # type: ignore[return-value]

    for bad in (Plain(), NumberName(1)):
        with pytest.raises(RecordError, match="index 1"):
            await producer.bulk_delay([User(1), bad])
    with pytest.raises(PayloadError, match="cannot build"):
        await Producer(client, registry=_dict_registry()).delay({"no_id": 1})
    assert await client.dbsize() == 0


def _dict_registry() -> Registry:
    registry = Registry()
    registry.register(dict, name="things")
    return registry


async def test_registered_dicts_are_streamed(client: Redis) -> None:
    producer = Producer(client, registry=_dict_registry())
    await producer.queue({"id": 3, "name": "x"})
    assert await raw_payloads(client, "redstream:stream:things") == [b'{"id":3}']


@pytest.mark.parametrize(
    "ids", [["1-0"], ["1-0", "2-0", "3-0"], "1-0", ["1-0", "nonsense"], ["1-0", None]]
)
async def test_bad_delay_message_ids_write_nothing(client: Redis, ids: Any) -> None:
    producer = Producer(client)
    with pytest.raises(ArgumentError, match="delay"):
        await producer.bulk_queue([User(1), User(2)], delay_message_ids=ids)
    with pytest.raises(ArgumentError):
        await producer.queue(User(1), delay_message_id="x-y")
    assert await client.dbsize() == 0


async def test_a_single_record_instead_of_a_list_is_refused(client: Redis) -> None:
    with pytest.raises(ArgumentError, match="wrap a single record"):
        await Producer(client).bulk_delay({"id": 1})


@pytest.mark.parametrize(
    "kwargs",
    [{"wait": -1}, {"wait": True}, {"wait": "1"}, {"wait_timeout": -1}, {"slice_size": 0},
     {"wait_aof": (1,)}, {"wait_aof": (-1, 0)}, {"namespace": "a b"}],
)  # fmt: skip
def test_bad_producer_arguments_are_refused(client: Redis, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ArgumentError):
        Producer(client, **kwargs)


async def test_server_error_replies_name_the_command_and_record(client: Redis) -> None:
    await client.set("redstream:stream:posts.delay", "not a stream")
    producer = Producer(client)
    with pytest.raises(ServerError, match=r"XADD \(record at index 1\).*WRONGTYPE"):
        await producer.bulk_delay([User(1), Post(2)])
    # the connection that saw the error is still usable
    assert await producer.delay(User(3))


async def test_unreachable_server_raises_server_connection_error(
    make_client: ClientFactory,
) -> None:
    client = make_client(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ServerConnectionError) as info:
        await Producer(client).delay(User(1))
    assert info.value.__cause__ is not None


async def test_queue_error_replies_name_the_record_across_slices(client: Redis) -> None:
    await client.set("redstream:stream:posts", "not a stream")
    producer = Producer(client, slice_size=2)
    records: list[Any] = [User(0), User(1), User(2), User(3), User(4), Post(5)]
    with pytest.raises(ServerError, match=r"XADD \(record at index 5\).*WRONGTYPE"):
        await producer.bulk_queue(records)
    ids = ["1-1"] * 6
    with pytest.raises(ServerError, match=r"XADD \(record at index 5\).*WRONGTYPE"):
        await producer.bulk_queue(records, ids)
    assert await client.xlen("redstream:stream:users") == 10


async def test_a_producer_follows_later_registrations(client: Redis) -> None:
    registry = Registry()
    registry.register(dict, name="first")
    producer = Producer(client, registry=registry)
    await producer.queue({"id": 1})
    registry.register(dict, name="second")
    await producer.queue({"id": 2})
    await producer.bulk_queue([{"id": 3}])
    registry.unregister(dict)
    with pytest.raises(RecordError):
        await producer.queue({"id": 4})
    assert await raw_payloads(client, "redstream:stream:first") == [b'{"id":1}']
    assert await raw_payloads(client, "redstream:stream:second") == [b'{"id":2}', b'{"id":3}']
