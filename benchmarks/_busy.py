"""How busy ``bulk()`` keeps the server: the single-threaded server's CPU time is the limit.

During ``bulk()`` of ``n`` records the server's CPU time (``INFO cpu``:
``used_cpu_user + used_cpu_sys``, before and after) divided by the wall time is the
share of the time the server was working; the rest it waited for the client. The
server-bound limit is the records/s the server could do if it never waited
(``n`` / its CPU time). The client's own cost is its process CPU time per record
(``time.process_time``: user + system, socket calls included). Each figure is the
median of the rounds.

``python -m benchmarks._busy URL N ROUNDS [glide]`` prints the figures as JSON (or
the valkey-glide anchor's records/s); the before/after runner,
``benchmarks/_before_after.py``, runs it against two trees.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import sys
import time
from typing import Any

from redis.asyncio import Redis

from aioredstream import Producer
from benchmarks._suite import BenchUser

FIELDS = (
    "records_per_s",
    "server_busy",
    "server_bound_records_per_s",
    "client_us_per_record",
    "server_us_per_record",
)


async def _server_cpu_s(client: Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def one_bulk(client: Redis, producer: Producer, records: list[BenchUser]) -> dict[str, float]:
    """One measured ``bulk()`` on a flushed server."""
    await client.flushall()
    gc.collect()
    server_s = await _server_cpu_s(client)
    wall_s, client_s = time.perf_counter(), time.process_time()
    async with producer.bulk(records):
        pass
    wall_s = time.perf_counter() - wall_s
    client_s = time.process_time() - client_s
    server_s = await _server_cpu_s(client) - server_s
    n = len(records)
    return {
        "records_per_s": n / wall_s,
        "server_busy": server_s / wall_s,
        "server_bound_records_per_s": n / server_s if server_s else float("inf"),
        "client_us_per_record": client_s * 1e6 / n,
        "server_us_per_record": server_s * 1e6 / n,
    }


def medians(samples: list[dict[str, float]]) -> dict[str, float]:
    return {field: statistics.median(s[field] for s in samples) for field in FIELDS}


async def run(url: str, n: int, rounds: int) -> dict[str, Any]:
    async with Redis.from_url(url) as client:
        producer = Producer(client)
        records = [BenchUser(i) for i in range(n)]
        async with producer.bulk(records[:1000]):  # warm up: connect, pack prefixes
            pass
        samples = [await one_bulk(client, producer, records) for _ in range(rounds)]
        await client.flushall()
    return {"records": n, "rounds": rounds, **medians(samples), "samples": samples}


async def glide_anchor(url: str, n: int, rounds: int) -> dict[str, Any]:
    """Records/s of the hand-written valkey-glide anchor (``_bulk.GLIDE_MULTI``)."""
    from benchmarks._bulk import Clients, glide_multi_xdel_bulk
    from benchmarks._suite import glide_client

    async with Redis.from_url(url) as client:
        glide = await glide_client(url)
        clients = Clients(client, url, glide)
        records = [BenchUser(i) for i in range(n)]
        await glide_multi_xdel_bulk(clients, records[:1000])
        rates = []
        for _ in range(rounds):
            await client.flushall()
            start = time.perf_counter()
            await glide_multi_xdel_bulk(clients, records)
            rates.append(n / (time.perf_counter() - start))
        await client.flushall()
        await glide.close()
    return {"records": n, "rounds": rounds, "records_per_s": statistics.median(rates)}


if __name__ == "__main__":
    url, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    what = sys.argv[4] if len(sys.argv) > 4 else "bulk"
    measure = glide_anchor if what == "glide" else run
    print(json.dumps(asyncio.run(measure(url, n, rounds))))
