"""Small shared helpers for tests: record classes and stream readers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
from asgi_lifespan import LifespanManager
from redis.asyncio import Redis

from aioredstream import Model


class User(Model):
    def __init__(self, id: int) -> None:
        self.id = id


class Post(Model):
    def __init__(self, id: int) -> None:
        self.id = id


async def entries(client: Redis, key: str) -> list[tuple[str, dict[str, Any]]]:
    """(id, payload) of every entry of a stream, decoded whatever the client's settings."""
    result = []
    rows: Any = await client.xrange(key)
    for raw_id, fields in rows:
        message_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
        payload = fields.get(b"payload", fields.get("payload"))
        result.append((message_id, json.loads(payload)))
    return result


async def raw_payloads(client: Redis, key: str) -> list[bytes]:
    rows: Any = await client.xrange(key)
    return [fields[b"payload"] for _, fields in rows]


async def in_use(client: Redis) -> int:
    """Connections of the client's pool that are checked out right now."""
    pool: Any = client.connection_pool
    return len(pool._in_use_connections)


async def eventually(
    condition: Callable[[], Awaitable[bool]], what: str = "", *, timeout_s: float = 10.0
) -> None:
    """Poll ``condition`` until it holds; fail (not time) the test if it never does."""
    try:
        with anyio.fail_after(timeout_s):
            while not await condition():  # noqa: ASYNC110 - polling state, no event exists
                await anyio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {timeout_s}s: {what or condition!r}") from None


@asynccontextmanager
async def asgi_client(app: Any, base_url: str = "http://test") -> AsyncIterator[httpx.AsyncClient]:
    """An ASGI app with its lifespan started, served in-process to an httpx client."""
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url=base_url
        ) as http,
    ):
        yield http


def decoded(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value
