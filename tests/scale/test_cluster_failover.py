"""Killing a cluster primary under a long bulk: the call raises or completes, never loses."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis
from redis.asyncio.cluster import RedisCluster

from aioredstream import Producer, RedstreamError, ReplicationError
from aioredstream.testing import ClusterDeployment, ServerProcess, wait_until

from .conftest import open_cluster_client
from .test_cluster import KEYS, SHARDS, Item, node_name, owner


def replica_of(deployment: ClusterDeployment, primary: ServerProcess) -> ServerProcess:
    for node in deployment.live():
        with redis.Redis(host=node.host, port=node.port, decode_responses=True) as conn:
            role: Any = conn.execute_command("ROLE")
        if role[0] == "slave" and int(role[2]) == primary.port:
            return node
    raise AssertionError(f"no replica of {node_name(primary)}")


async def delay_ids(client: RedisCluster) -> set[str]:
    ids: set[str] = set()
    for shard in range(SHARDS):
        rows: Any = await client.xrange(KEYS.delay_stream(f"items-{shard}"))
        ids.update(raw_id.decode() for raw_id, _ in rows)
    return ids


async def until_healed(deployment: ClusterDeployment) -> None:
    await anyio.to_thread.run_sync(lambda: wait_until(deployment.healthy, "the cluster to heal"))


@pytest.mark.slow
async def test_killing_a_primary_during_a_long_bulk_never_drops_records_silently(
    fresh_cluster: ClusterDeployment,
) -> None:
    client = await open_cluster_client(fresh_cluster)
    try:
        producer = Producer(client, wait=1, wait_timeout=1)
        victim = owner(fresh_cluster, KEYS.stream("items-0"))
        heir = replica_of(fresh_cluster, victim)

        outcome: list[list[str] | RedstreamError] = []

        async def long_bulk() -> None:
            try:
                outcome.append(await producer.bulk_delay([Item(i) for i in range(30_000)]))
            except RedstreamError as exc:  # raising is fine: the caller knows
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(long_bulk)
            await anyio.sleep(0.05)
            victim.kill()
        await until_healed(fresh_cluster)

        # The promoted replica has no replica of its own: WAIT fails there, and only there.
        error = await first_replication_error(producer)
        assert error.nodes == (node_name(heir),)

        # A call that completed returned ids that were acknowledged by a replica: all survived.
        result = outcome[0]
        if isinstance(result, list):
            assert set(result) <= await delay_ids(client)
        else:  # the usual outcome: the call names the node it lost
            assert node_name(victim) in str(result)

        victim.start()  # rejoins as a replica of its heir
        await until_healed(fresh_cluster)
        ids = await retry_until_written(producer)
        assert set(ids) <= await delay_ids(client)
    finally:
        await client.aclose()


async def first_replication_error(producer: Producer) -> ReplicationError:
    for _ in range(120):
        try:
            await producer.bulk_delay([Item(i) for i in range(60)])
        except ReplicationError as exc:
            return exc
        except RedstreamError:
            await anyio.sleep(0.25)  # connection/topology errors while the map catches up
            continue
        raise AssertionError("WAIT 1 was satisfied on a primary without replicas")
    raise AssertionError("the producer never reached the promoted primary")


async def retry_until_written(producer: Producer) -> list[str]:
    last: Exception | None = None
    for _ in range(120):
        try:
            return await producer.bulk_delay([Item(i) for i in range(60)])
        except RedstreamError as exc:
            last = exc
            await anyio.sleep(0.25)
    raise AssertionError(f"writes never succeeded after the failover; last error: {last!r}")
