"""Which topology a client is, and the key layout it implies."""

from __future__ import annotations

from redis.asyncio.cluster import RedisCluster

from .errors import ArgumentError

__all__ = ["is_cluster", "use_hash_tags"]


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster)


def use_hash_tags(client: object, hash_tags: bool | None) -> bool:
    """``None`` means: on for a cluster, off (the Ruby layout) otherwise."""
    cluster = is_cluster(client)
    if hash_tags is None:
        return cluster
    if not isinstance(hash_tags, bool):
        raise ArgumentError(f"hash_tags must be None, True or False, got {hash_tags!r}")
    if cluster and not hash_tags:
        raise ArgumentError(
            "hash_tags=False on a RedisCluster: the Ruby layout puts a stream and its "
            "delay stream (and a lock and its notify list) in different slots, which the "
            "delayer and the lock cannot use together; use hash_tags=True (or None)"
        )
    return hash_tags
