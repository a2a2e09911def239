"""What the send tests look at in a client's pool: its idle connections and whether the
event loop has seen the server close them."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from ..helpers import eventually


def idle_connections(client: Redis | RedisCluster) -> list[Any]:
    """The connections idle in ``client``'s pool (every node's, on a cluster)."""
    if isinstance(client, RedisCluster):
        return [conn for node in client.get_nodes() for conn in node._free]
    return list(client.connection_pool._available_connections)


def seen_closed(conn: Any) -> bool:
    """The event loop has seen the server close ``conn`` (what a restart leaves behind)."""
    reader = conn._reader
    return reader is None or reader.at_eof() or reader.exception() is not None


async def until_seen_closed(connections: list[Any]) -> None:
    """Until the event loop has seen every one of ``connections`` closed.

    The borrow check sees a close once the loop has read it from the socket; a test that
    blocks the loop across a restart (a synchronous wait) must let it catch up first.
    """

    async def closed() -> bool:
        return all(seen_closed(conn) for conn in connections)

    await eventually(closed, "the event loop to see every idle connection closed")
