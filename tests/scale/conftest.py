"""Fixtures for Redis Cluster and Sentinel deployments, started by the tests on free ports.

Session-scoped deployments (one per server kind) serve the quick tests, which
flush them; tests that kill nodes take function-scoped ``fresh_*`` ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

from aioredstream.testing import ClusterDeployment, SentinelDeployment

from ..conftest import _binary


@pytest.fixture(scope="session")
def cluster(server_kind: str) -> Iterator[ClusterDeployment]:
    """3 primaries with 1 replica each, shared by the quick tests of one server kind."""
    with ClusterDeployment(_binary(server_kind), kind=server_kind) as deployment:
        yield deployment


@pytest.fixture
def fresh_cluster(server_kind: str) -> Iterator[ClusterDeployment]:
    """A cluster this test owns and may break."""
    with ClusterDeployment(_binary(server_kind), kind=server_kind) as deployment:
        yield deployment


async def open_cluster_client(deployment: ClusterDeployment, **kwargs: object) -> RedisCluster:
    host, port = deployment.startup
    client = RedisCluster(host=host, port=port, **kwargs)  # type: ignore[arg-type]
    await client.initialize()
    return client


@asynccontextmanager
async def flushed_cluster_client(deployment: ClusterDeployment) -> AsyncIterator[RedisCluster]:
    """A client on ``deployment`` with every primary flushed, closed afterwards."""
    client = await open_cluster_client(deployment)
    await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def cluster_client(cluster: ClusterDeployment) -> AsyncIterator[RedisCluster]:
    """A client on the shared cluster, every primary flushed before the test."""
    async with flushed_cluster_client(cluster) as client:
        yield client


@pytest.fixture(scope="session")
def sentinel_group(server_kind: str) -> Iterator[SentinelDeployment]:
    with SentinelDeployment(_binary(server_kind), kind=server_kind) as deployment:
        yield deployment


@pytest.fixture
def fresh_sentinel_group(server_kind: str) -> Iterator[SentinelDeployment]:
    with SentinelDeployment(_binary(server_kind), kind=server_kind) as deployment:
        yield deployment


@pytest.fixture
async def sentinel_client(sentinel_group: SentinelDeployment) -> AsyncIterator[Redis]:
    """``Sentinel(...).master_for(...)`` on the shared group, flushed."""
    sentinel = Sentinel(sentinel_group.addresses)  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis-py 8.2
    client = sentinel.master_for(sentinel_group.service)
    await client.flushall()
    yield client
    await client.aclose()
    await close_sentinel(sentinel)


async def close_sentinel(sentinel: Sentinel) -> None:
    """``Sentinel.aclose()`` is redis-py 7.1+: close its sentinel clients one by one."""
    for client in sentinel.sentinels:
        await client.aclose()
