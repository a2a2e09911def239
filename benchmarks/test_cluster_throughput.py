"""Producer throughput on a 3-primary cluster vs a single node, same run, many streams.

Run: ``make bench PYTEST_ARGS="-k cluster"`` (or ``.venv/bin/pytest benchmarks/
test_cluster_throughput.py -p no:cacheprovider -q``). Starts its own servers
(``BENCH_SERVER_KIND=redis|valkey``, default redis) and writes its entry of
``benchmarks/cluster_results.json``. Numbers are best-of-rounds records/s; the
ratios are what to compare across machines (this one may have 2 shared cores, on
which 6 cluster nodes and the client compete: a cluster buys capacity and
availability, not single-client speed on one box).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from aioredstream import Keys, Model, Producer, shard_of
from aioredstream._codec import dumps
from aioredstream.testing import ClusterDeployment, ServerProcess, valkey_binary

RECORDS = int(os.environ.get("BENCH_RECORDS", "50000"))
STREAMS = 64
ROUNDS = 5
RESULTS = Path(__file__).with_name("cluster_results.json")


class Item(Model):
    redstream_shards = STREAMS

    def __init__(self, id: int) -> None:
        self.id = id


def _binary(kind: str) -> str:
    path = shutil.which("redis-server") if kind == "redis" else valkey_binary()
    if path is None:
        raise RuntimeError(f"no {kind} server binary")
    return path


Variant = tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]


async def _best(variants: dict[str, Variant]) -> dict[str, float]:
    """Records per second of each variant's fastest round; rounds interleave the variants
    so that load from elsewhere on the machine hits them alike."""
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(ROUNDS):
        for name, (run, reset) in variants.items():
            await reset()
            start = time.perf_counter()
            await run()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: RECORDS / seconds for name, seconds in best.items()}


async def _cluster_pipeline(client: RedisCluster, items: list[Item], slice_size: int) -> None:
    """The alternative: redis-py's ClusterPipeline, one command object per record."""
    keys = Keys(hash_tags=True)
    names = Item.redstream_names()
    for start in range(0, len(items), slice_size):
        pipe = client.pipeline(transaction=False)
        for item in items[start : start + slice_size]:
            key = keys.stream(names[shard_of(item.id, STREAMS)])
            pipe.xadd(key, {"payload": dumps({"id": item.id})})
        await pipe.execute()


async def test_cluster_vs_single_node_throughput() -> None:
    kind = os.environ.get("BENCH_SERVER_KIND", "redis")
    binary = _binary(kind)
    items = [Item(i) for i in range(RECORDS)]
    results: dict[str, Any] = {
        "server": kind,
        "records": RECORDS,
        "streams": STREAMS,
        "rounds": ROUNDS,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    with ServerProcess(binary, kind=kind) as single, ClusterDeployment(binary, kind=kind) as c:
        one = Redis.from_url(single.url)
        host, port = c.startup
        cluster = RedisCluster(host=host, port=port)
        await cluster.initialize()
        try:
            single_producer, cluster_producer = Producer(one), Producer(cluster)
            waiting = Producer(cluster, wait=1)

            async def flush_cluster() -> Any:
                return await cluster.flushall(target_nodes=RedisCluster.PRIMARIES)

            rate = await _best(
                {
                    "single_node": (lambda: single_producer.bulk_queue(items), one.flushall),
                    "cluster": (lambda: cluster_producer.bulk_queue(items), flush_cluster),
                    "cluster_redis_py_pipeline": (
                        lambda: _cluster_pipeline(cluster, items, 250),
                        flush_cluster,
                    ),
                    "cluster_wait_1": (lambda: waiting.bulk_delay(items), flush_cluster),
                }
            )
        finally:
            await one.aclose()
            await cluster.aclose()
    results["records_per_s"] = {name: round(value) for name, value in rate.items()}
    results["ratios"] = {
        "cluster_vs_single_node": round(rate["cluster"] / rate["single_node"], 3),
        "redis_py_pipeline_vs_ours_on_cluster": round(
            rate["cluster_redis_py_pipeline"] / rate["cluster"], 3
        ),
        "cluster_wait_1_vs_no_wait": round(rate["cluster_wait_1"] / rate["cluster"], 3),
    }
    merged = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    merged[kind] = results  # one entry per server kind; the last run of each wins
    RESULTS.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    assert all(value > 0 for value in rate.values())
