"""Errors carry where they happened as attributes (command, index, node), not only as text.

On one node, for both servers; tests/scale/test_cluster_errors.py does the same on a cluster.
"""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from aioredstream import (
    Producer,
    ReplicationError,
    ServerError,
    TopologyError,
    stream_size,
)
from aioredstream.send import wire
from aioredstream.testing import ServerProcess

from .conftest import ClientFactory, StallableReplica
from .helpers import Post, User

MIXED = [User(0), User(1), Post(2), User(3)]  # the 3rd record writes to posts


def _node(server: ServerProcess) -> str:
    return f"{server.host}:{server.port}"


async def test_a_refused_record_of_a_bulk_names_xadd_its_index_and_the_node(
    client: Redis, server: ServerProcess
) -> None:
    await client.set("redstream:stream:posts.delay", "not a stream")
    await client.set("redstream:stream:posts", "not a stream")
    producer = Producer(client)
    for call in (producer.bulk_delay(MIXED), producer.bulk_queue(MIXED)):
        with pytest.raises(ServerError) as caught:
            await call
        error = caught.value
        assert (error.command, error.index, error.node) == ("XADD", 2, _node(server))
        assert str(error).startswith(f"XADD (record at index 2) on {_node(server)}: WRONGTYPE")
    with pytest.raises(ServerError) as caught:
        await producer.bulk_queue(MIXED, ["1-1", "1-2", "1-3", "1-4"])  # with delay deletes
    assert (caught.value.command, caught.value.index) == ("XADD", 2)


async def test_a_refused_single_call_has_no_index(client: Redis, server: ServerProcess) -> None:
    await client.set("redstream:stream:posts.delay", "not a stream")
    with pytest.raises(ServerError) as caught:
        await Producer(client).delay(Post(1))
    error = caught.value
    assert (error.command, error.index, error.node) == ("XADD", None, _node(server))
    assert str(error).startswith(f"XADD on {_node(server)}: WRONGTYPE")


async def test_a_worker_command_error_names_the_command_and_the_node(
    client: Redis, server: ServerProcess
) -> None:
    await client.set("redstream:stream:users", "not a stream")
    with pytest.raises(ServerError) as caught:
        await stream_size(client, "users")
    error = caught.value
    assert (error.command, error.index, error.node) == ("XLEN", None, _node(server))
    assert str(error).startswith(f"XLEN redstream:stream:users on {_node(server)}: WRONGTYPE")


async def test_a_wait_that_times_out_names_wait_and_the_node(
    client: Redis, server: ServerProcess
) -> None:
    producer = Producer(client, wait=1, wait_timeout=0.05)  # the session server has no replica
    for call in (producer.delay(User(1)), producer.bulk_delay([User(1), User(2)])):
        with pytest.raises(ReplicationError) as caught:
            await call
        error = caught.value
        assert (error.command, error.index, error.node) == ("WAIT", None, _node(server))
        assert str(error).startswith(f"WAIT on {_node(server)}: 0 of 1 required replicas")


async def test_a_waitaof_that_falls_short_names_waitaof(
    client: Redis, server: ServerProcess
) -> None:
    info: Any = await wire.call(client, "COMMAND", "INFO", "WAITAOF", what="test")
    if not info or info[0] is None:
        pytest.skip("this server has no WAITAOF (Redis < 7.2)")
    producer = Producer(client, wait_aof=(0, 1), wait_timeout=0.05)
    with pytest.raises(ReplicationError) as caught:
        await producer.delay(User(1))
    error = caught.value
    assert (error.command, error.index, error.node) == ("WAITAOF", None, _node(server))


async def test_a_demoted_primary_is_a_topology_error_naming_the_node(
    stallable_replica: StallableReplica, make_client: ClientFactory
) -> None:
    """A replica answers writes with READONLY (what a primary says once it was demoted)."""
    replica = stallable_replica.replica
    producer = Producer(make_client(replica.url))
    with pytest.raises(TopologyError) as caught:
        await producer.bulk_delay([User(1), User(2)])
    error = caught.value
    assert (error.command, error.index, error.node) == ("XADD", 0, _node(replica))
    assert "READONLY" in str(error)
