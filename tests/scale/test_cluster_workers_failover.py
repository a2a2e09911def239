"""Killing a cluster primary while consumers, delayers and trimmers run on every shard."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from aioredstream import Consumer, Delayer, Message, Producer, Trimmer, stream_size
from aioredstream.testing import ClusterDeployment

from ..helpers import eventually
from .conftest import open_cluster_client
from .test_cluster import KEYS, Item, owner
from .test_cluster_failover import until_healed
from .test_sentinel_workers import produce_until_it_works

FAST: dict[str, Any] = {"block": 0.2, "backoff": 0.2}


@pytest.mark.slow
async def test_workers_on_every_shard_survive_a_primary_failover(
    fresh_cluster: ClusterDeployment,
) -> None:
    client = await open_cluster_client(fresh_cluster, socket_timeout=2)
    seen: set[int] = set()

    async def handle(messages: list[Message]) -> None:
        seen.update(m.payload["id"] for m in messages)

    names = Item.redstream_names()
    workers: list[Any] = []
    for name in names:
        workers.append(
            lambda name=name: Consumer(client, stream_name=name, name="indexer", **FAST).run(handle)
        )
        workers.append(Delayer(client, stream_name=name, delay=0, **FAST).run)
        workers.append(
            Trimmer(client, stream_name=name, consumer_names=["indexer"], interval=0.2).run
        )
    try:
        async with anyio.create_task_group() as tg:
            for work in workers:
                tg.start_soon(work)
            # Acknowledged by a replica on each node, so they survive a primary's death.
            await Producer(client, wait=1).bulk_queue([Item(i) for i in range(300)])

            async def before_seen() -> bool:
                return set(range(300)) <= seen

            await eventually(before_seen, timeout_s=30)

            victim = owner(fresh_cluster, KEYS.stream("items-0"))
            victim.kill()
            await until_healed(fresh_cluster)
            # Delay messages only: the delayers must queue them, on the promoted node too.
            await produce_until_it_works(Producer(client), [Item(i) for i in range(300, 600)])

            async def all_seen() -> bool:
                return set(range(600)) <= seen

            await eventually(all_seen, timeout_s=60)

            async def trimmed() -> bool:
                sizes = [await stream_size(client, name) for name in names]
                return sum(sizes) == 0

            await eventually(trimmed, timeout_s=30)
            tg.cancel_scope.cancel()
        # (whether a worker logs an error depends on timing: redis-py's cluster client
        # may absorb the failover with its own retries; what matters is asserted above)
    finally:
        await client.aclose()
