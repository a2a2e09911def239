"""Least privilege: an ACL user limited to one namespace's keys runs producer and workers."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from aioredstream import (
    Consumer,
    Delayer,
    Message,
    Producer,
    ReplicationError,
    ServerError,
    Trimmer,
    stream_size,
)
from aioredstream.testing import ServerProcess

from ..conftest import ClientFactory
from ..helpers import User

# The line docs/deployment.md documents (a test below checks that it does).
ACL_RULES = (
    "on >{password} resetkeys ~{ns}:redstream:* resetchannels -@all "
    "+xadd +xdel +xread +xrange +xrevrange +xlen +xtrim +get +mget +set +del +rpush +brpop "
    "+eval +evalsha +script|load +pexpire +pttl +multi +exec +wait +time +ping"
)


@pytest.fixture
async def restricted(
    server: ServerProcess, client: Redis, make_client: ClientFactory
) -> AsyncIterator[Redis]:
    user, password = f"app{secrets.token_hex(4)}", secrets.token_hex(8)
    rules = ACL_RULES.format(password=password, ns="shop").split()
    await client.acl_setuser(user, reset=True)
    execute: Any = client.execute_command
    await execute("ACL", "SETUSER", user, *rules)
    try:
        yield make_client(f"redis://{user}:{password}@{server.host}:{server.port}/0")
    finally:
        await client.acl_deluser(user)


async def test_the_restricted_user_runs_producer_and_every_worker(
    restricted: Redis, client: Redis
) -> None:
    producer = Producer(restricted, namespace="shop")
    async with producer.bulk([User(1), User(2)]):
        pass
    await producer.queue(User(5), await producer.delay(User(5)))  # EVALSHA (+ SCRIPT LOAD)
    await producer.delay(User(3))  # left for the delayer
    with pytest.raises(ReplicationError):  # WAIT is allowed; there is just no replica
        await Producer(restricted, namespace="shop", wait=1, wait_timeout=0.01).delay(User(4))

    seen: list[Any] = []

    async def handler(messages: list[Message]) -> None:
        seen.extend(m.payload["id"] for m in messages)

    consumer = Consumer(restricted, stream_name="users", name="indexer", namespace="shop")
    assert await consumer.run_once(handler) == 3
    delayer = Delayer(restricted, stream_name="users", delay=0, namespace="shop", block=0.05)
    assert await delayer.run_once() == 2
    assert await consumer.run_once(handler) == 2
    assert sorted(seen) == [1, 2, 3, 4, 5]
    trimmer = Trimmer(restricted, stream_name="users", consumer_names=["indexer"], namespace="shop")
    assert await trimmer.run_once() == 5
    assert await stream_size(restricted, "users", namespace="shop") == 0
    with anyio.fail_after(5):  # the lock's release + notify under the ACL
        assert await consumer.lock.acquire(anyio.lowlevel.checkpoint)
    assert await client.exists(consumer.lock.key) == 0  # released under the ACL


async def test_the_restricted_user_cannot_reach_other_namespaces(restricted: Redis) -> None:
    with pytest.raises(ServerError, match="NOPERM"):
        await Producer(restricted, namespace="blog").delay(User(1))
    with pytest.raises(ServerError, match="NOPERM"):
        await Producer(restricted).delay(User(1))
    with pytest.raises(NoPermissionError):
        await restricted.set("shop:other", 1)


def test_the_deployment_guide_documents_this_acl() -> None:
    guide = (Path(__file__).parents[2] / "docs" / "deployment.md").read_text()
    assert ACL_RULES.format(password="<password>", ns="<ns>") in guide
