"""Two applications on one server, told apart by namespace, never see each other's keys."""

from __future__ import annotations

from redis.asyncio import Redis

from aioredstream import Producer

from ..helpers import User, raw_payloads


async def test_namespaces_isolate_two_applications(client: Redis) -> None:
    shop, blog = Producer(client, namespace="shop"), Producer(client, namespace="blog")
    async with shop.bulk([User(1), User(2)]):
        pass
    await blog.queue(User(3), delay_message_id=await blog.delay(User(3)))
    raw_keys: list[bytes] = await client.keys("*")  # type: ignore[assignment]
    keys = sorted(k.decode() for k in raw_keys)
    assert keys == [
        "blog:redstream:stream:users",
        "blog:redstream:stream:users.delay",
        "shop:redstream:stream:users",
        "shop:redstream:stream:users.delay",
    ]
    assert await raw_payloads(client, "shop:redstream:stream:users") == [b'{"id":1}', b'{"id":2}']
    assert await raw_payloads(client, "blog:redstream:stream:users") == [b'{"id":3}']
    assert await client.xlen("shop:redstream:stream:users.delay") == 0
