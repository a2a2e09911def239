"""Producer throughput on a 3-primary cluster (no replicas) vs a single node, same run.

Bulk: ``bulk()`` and ``bulk_queue`` of many records over 64 streams. Handlers: 10,000
concurrent delay -> sleep(0) -> queue handlers on a client built with defaults (100
connections per node), counting the handlers that failed.

Run: ``make bench PYTEST_ARGS="-k cluster"`` (or ``.venv/bin/pytest benchmarks/
test_cluster_throughput.py -p no:cacheprovider -q``). Starts its own servers
(``BENCH_SERVER_KIND=redis|valkey``, default redis) and writes its entry of
``benchmarks/cluster_results.json``. Numbers are best-of-rounds records/s; the
ratios are what to compare across machines (this one may have 2 shared cores, on
which 3 cluster nodes and the client compete: a cluster buys capacity and
availability, not single-client speed on one box).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from aioredstream import Keys, Model, Producer, shard_of
from aioredstream._codec import dumps
from aioredstream.testing import ClusterDeployment, ServerProcess, valkey_binary

RECORDS = int(os.environ.get("BENCH_RECORDS", "50000"))
STREAMS = 64
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
HANDLERS = int(os.environ.get("BENCH_HANDLERS", "10000"))
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


#: (run, reset, records per run)
Variant = tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]], int]


async def _best(variants: dict[str, Variant]) -> dict[str, float]:
    """Records per second of each variant's fastest round; rounds interleave the variants
    so that load from elsewhere on the machine hits them alike (each warmed up first)."""
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(ROUNDS + 1):
        for name, (run, reset, _count) in variants.items():
            await reset()
            start = time.perf_counter()
            await run()
            if _ > 0:  # round 0 warms up: connections, slot map, scripts
                best[name] = min(best[name], time.perf_counter() - start)
    return {name: variants[name][2] / seconds for name, seconds in best.items()}


async def _handlers(producer: Producer, failures: list[str]) -> None:
    """HANDLERS concurrent handlers at once; failures are noted, not raised."""

    async def handler(n: int) -> None:
        message_id = await producer.delay(Item(n))
        await asyncio.sleep(0)
        await producer.queue(Item(n), message_id)

    results = await asyncio.gather(*(handler(n) for n in range(HANDLERS)), return_exceptions=True)
    failures += [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]


async def _bulk(producer: Producer, items: list[Item]) -> None:
    async with producer.bulk(items):
        pass


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


def _variants(
    one: Redis, cluster: RedisCluster, failures: dict[str, list[str]]
) -> dict[str, Variant]:
    items = [Item(i) for i in range(RECORDS)]
    ours, theirs = Producer(one), Producer(cluster)

    async def flush_cluster() -> Any:
        return await cluster.flushall(target_nodes=RedisCluster.PRIMARIES)

    n = RECORDS
    return {
        "single_node_bulk": (lambda: _bulk(ours, items), one.flushall, n),
        "cluster_bulk": (lambda: _bulk(theirs, items), flush_cluster, n),
        "single_node_bulk_queue": (lambda: ours.bulk_queue(items), one.flushall, n),
        "cluster_bulk_queue": (lambda: theirs.bulk_queue(items), flush_cluster, n),
        "cluster_redis_py_pipeline": (
            lambda: _cluster_pipeline(cluster, items, 250),
            flush_cluster,
            n,
        ),
        "single_node_handlers": (
            lambda: _handlers(ours, failures["single_node"]),
            one.flushall,
            HANDLERS,
        ),
        "cluster_handlers": (
            lambda: _handlers(theirs, failures["cluster"]),
            flush_cluster,
            HANDLERS,
        ),
    }


@pytest.mark.timeout(3600)  # the suite's 60 s are for tests; this runs minutes
async def test_cluster_vs_single_node_throughput() -> None:
    kind = os.environ.get("BENCH_SERVER_KIND", "redis")
    binary = _binary(kind)
    results: dict[str, Any] = {
        "server": kind,
        "records": RECORDS,
        "handlers": HANDLERS,
        "streams": STREAMS,
        "rounds": ROUNDS,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    failures: dict[str, list[str]] = {"single_node": [], "cluster": []}
    deployment = ClusterDeployment(binary, kind=kind, replicas=0)
    with ServerProcess(binary, kind=kind) as single, deployment as c:
        one = Redis.from_url(single.url)  # both clients built with defaults
        host, port = c.startup
        cluster = RedisCluster(host=host, port=port)
        await cluster.initialize()
        try:
            rate = await _best(_variants(one, cluster, failures))
        finally:
            await one.aclose()
            await cluster.aclose()
    results["records_per_s"] = {name: round(value) for name, value in rate.items()}
    results["failed_handlers"] = {name: len(errors) for name, errors in failures.items()}
    results["first_errors"] = {name: errors[:1] for name, errors in failures.items()}
    results["ratios"] = {
        f"cluster_vs_single_node_{what}": round(
            rate[f"cluster_{what}"] / rate[f"single_node_{what}"], 3
        )
        for what in ("bulk", "bulk_queue", "handlers")
    }
    results["ratios"]["redis_py_pipeline_vs_ours_on_cluster"] = round(
        rate["cluster_redis_py_pipeline"] / rate["cluster_bulk_queue"], 3
    )
    merged = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    merged[kind] = results  # one entry per server kind; the last run of each wins
    RESULTS.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    assert all(value > 0 for value in rate.values())
    assert results["failed_handlers"] == {"single_node": 0, "cluster": 0}, results["first_errors"]
