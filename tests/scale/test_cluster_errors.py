"""Errors on a cluster carry command, index and node (see tests/test_error_context.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from aioredstream import (
    Keys,
    Model,
    Producer,
    ReplicationError,
    ServerError,
    TopologyError,
    stream_size,
)
from aioredstream.testing import ClusterDeployment, wait_until

from ..conftest import _binary
from ..helpers import Post, User
from .conftest import flushed_cluster_client
from .test_cluster import node_name as name
from .test_cluster import owner

KEYS = Keys(hash_tags=True)
MIXED = [User(0), User(1), Post(2), User(3)]  # the 3rd record writes to posts


class Item(Model):
    redstream_shards = 12  # streams on every primary

    def __init__(self, id: int) -> None:
        self.id = id


@pytest.fixture(scope="module")
def deployment(server_kind: str) -> Iterator[ClusterDeployment]:
    """One cluster for this module (no replicas: every WAIT falls short); the last test
    takes a slot away and gives it back."""
    with ClusterDeployment(_binary(server_kind), kind=server_kind, replicas=0) as cluster:
        yield cluster


@pytest.fixture
async def client(deployment: ClusterDeployment) -> AsyncIterator[RedisCluster]:
    async with flushed_cluster_client(deployment) as client:
        yield client


async def test_a_refused_record_names_xadd_its_index_and_its_node(
    deployment: ClusterDeployment, client: RedisCluster
) -> None:
    await client.set(KEYS.delay_stream("posts"), "not a stream")
    await client.set(KEYS.stream("posts"), "not a stream")
    node = name(owner(deployment, KEYS.stream("posts")))
    producer = Producer(client)
    for call in (producer.bulk_delay(MIXED), producer.bulk_queue(MIXED)):
        with pytest.raises(ServerError) as caught:
            await call
        error = caught.value
        assert (error.command, error.index, error.node) == ("XADD", 2, node)
        assert str(error).startswith(f"XADD (record at index 2) on {node}: WRONGTYPE")
    with pytest.raises(ServerError) as caught:
        await producer.delay(Post(2))
    assert (caught.value.command, caught.value.index, caught.value.node) == ("XADD", None, node)


async def test_a_worker_command_error_names_the_node_of_its_key(
    deployment: ClusterDeployment, client: RedisCluster
) -> None:
    await client.set(KEYS.stream("users"), "not a stream")
    with pytest.raises(ServerError) as caught:
        await stream_size(client, "users")
    error = caught.value
    node = name(owner(deployment, KEYS.stream("users")))
    assert (error.command, error.index, error.node) == ("XLEN", None, node)


async def test_a_wait_shortfall_names_wait_and_the_node_or_every_node(
    deployment: ClusterDeployment, client: RedisCluster
) -> None:
    producer = Producer(client, wait=1, wait_timeout=0.05)
    node = name(owner(deployment, KEYS.stream("users")))
    with pytest.raises(ReplicationError) as caught:
        await producer.bulk_delay([User(1), User(2)])  # one stream: one node
    error = caught.value
    assert (error.command, error.index, error.node, error.nodes) == ("WAIT", None, node, (node,))
    with pytest.raises(ReplicationError) as caught:
        await producer.delay(User(3))  # a single call: its node's coalescer
    assert (caught.value.command, caught.value.node) == ("WAIT", node)
    with pytest.raises(ReplicationError) as caught:
        await producer.bulk_delay([Item(i) for i in range(60)])  # every primary
    error = caught.value
    assert (error.command, error.node) == ("WAIT", None)
    assert sorted(error.nodes) == sorted(name(p) for p in deployment.primaries())


async def test_a_slot_no_node_serves_is_a_topology_error_with_command_and_node(
    deployment: ClusterDeployment, client: RedisCluster
) -> None:
    holder = owner(deployment, KEYS.stream("users"))
    slot = key_slot(KEYS.stream("users").encode())
    producer = Producer(client)
    await producer.bulk_delay([User(1)])  # the client knows the slot map
    # every node's view lacks the slot: gossip cannot bring it back. The holder first: a
    # node only gossips its own slots, so one that dropped the slot early could otherwise
    # learn it again from the holder before the holder drops it too (seen under load).
    primaries = sorted(deployment.primaries(), key=lambda p: name(p) != name(holder))
    for primary in primaries:
        with redis.Redis(host=primary.host, port=primary.port) as admin:
            admin.execute_command("CLUSTER", "DELSLOTS", slot)
    try:
        with pytest.raises(TopologyError) as caught:
            await producer.bulk_delay([User(1), User(2)])
        error = caught.value  # the slot's last known owner answered
        assert (error.command, error.index, error.node) == ("XADD", 0, name(holder))
        assert "CLUSTERDOWN" in str(error)
        with pytest.raises(TopologyError) as caught:
            await producer.bulk_delay([User(1)])  # the slot map, read again, lacks the slot
        assert (caught.value.command, caught.value.index, caught.value.node) == ("XADD", None, None)
        assert str(caught.value).startswith("cluster slot map: All slots are not covered")
    finally:
        with redis.Redis(host=holder.host, port=holder.port) as admin:
            admin.execute_command("CLUSTER", "ADDSLOTS", slot)
        wait_until(deployment.healthy, "the slot to be served again")
