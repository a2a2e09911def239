"""Which topology a client is, and the key layout it implies."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from ._validate import check_flag
from .errors import ArgumentError

__all__ = ["check_client", "is_cluster", "use_hash_tags"]


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster)


def check_client(client: object) -> None:
    """Refuse what is not an asyncio client before it fails at the first ``await``."""
    if not isinstance(client, Redis | RedisCluster):
        kind = f"{type(client).__module__}.{type(client).__qualname__}"
        raise ArgumentError(
            f"client must be a redis.asyncio.Redis (or a redis.asyncio.cluster.RedisCluster, "
            f"or a redis.asyncio.sentinel master_for() client), got {kind}; build it with "
            "redis.asyncio.Redis.from_url(...)"
        )


def use_hash_tags(client: object, hash_tags: bool | None) -> bool:
    """``None`` means: on for a cluster, off (the Ruby layout) otherwise.

    Producer and workers all pick their key layout here, so the client is checked here.
    """
    check_client(client)
    cluster = is_cluster(client)
    if hash_tags is None:
        return cluster
    check_flag(hash_tags, "hash_tags", none=True)
    if cluster and not hash_tags:
        raise ArgumentError(
            "hash_tags=False on a RedisCluster: the Ruby layout puts a stream and its "
            "delay stream (and a lock and its notify list) in different slots, which the "
            "delayer and the lock cannot use together; use hash_tags=True (or None)"
        )
    return hash_tags
