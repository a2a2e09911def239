"""Run every method in alternating rounds; ``python -m benchmarks._run URL PORT SIZES_JSON``
runs the suite in a process of its own (with ``BENCH_ENCODER``) and prints its results."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import asdict
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from aioredstream import Producer
from benchmarks import _bulk, _busy, _handlers, _http, _suite
from benchmarks._bulk import BULK_METHODS, Clients
from benchmarks._suite import BenchUser, Results, Sizes


async def run_suite(
    url: str, port: int, sizes: Sizes, *, memory: bool = True, http: bool = True
) -> Results:
    """Every benchmark; ``memory`` and ``http`` (its own processes) run once per suite run
    that asks (the json run: the encoder changes them little)."""
    _suite.set_task_factory()
    client = Redis.from_url(url)
    glide = await _suite.glide_client(url) if _suite.glide_installed() else None
    clients = Clients(client, url, glide)
    results = Results(machine=await _suite.machine_info(client), sizes=asdict(sizes))
    try:
        c_rate = await _bulk_rounds(clients, port, sizes, results)
        busy = await _busy.run(url, sizes.busy, sizes.rounds)
        results.busy = {k: v for k, v in busy.items() if k != "samples"}
        await _concurrency(clients, sizes, results)
        await _latency(client, sizes, results)
        await _consumer(client, url, sizes, results)
        for method in (_bulk.PRODUCER, _bulk.HANDWRITTEN) if memory else ():
            results.memory_bytes_per_record[method] = _suite.memory_per_record(
                url, method, sizes.memory
            )
        if http and sizes.http_rounds:
            results.http = await asyncio.to_thread(_http_rows, url, sizes)
    finally:
        await client.flushall()
        await client.aclose()
        if glide is not None:
            await glide.close()
    _ratios(results, c_rate)
    return results


def _http_rows(url: str, sizes: Sizes) -> dict[str, Any]:
    reason = _http.unavailable()
    if reason is not None:
        return {"skipped": reason}
    return _http.run(url, sizes.http_connections, sizes.http_rounds, sizes.http_duration_s)


async def _bulk_rounds(clients: Clients, port: int, sizes: Sizes, results: Results) -> float | None:
    """Every method once per round, the C client too; returns its best XADD/s."""
    methods = dict(BULK_METHODS)
    if not _suite.faststream_installed():
        methods.pop(_bulk.FASTSTREAM)
    if clients.glide is None:
        methods.pop(_bulk.GLIDE)
        methods.pop(_bulk.GLIDE_MULTI)
    client = clients.redis
    for method in methods.values():  # warm up: imports, connections, first use
        await method(clients, [BenchUser(i) for i in range(10)])
    rates: dict[str, list[float]] = {name: [] for name in methods}
    c_rates: list[float | None] = []
    for _ in range(sizes.rounds):  # alternate: every method once per round
        for name, method in methods.items():
            n = sizes.one_at_a_time if name == _bulk.ONE_AT_A_TIME else sizes.bulk
            records = [BenchUser(i) for i in range(n)]
            await client.flushall()
            start = time.perf_counter()
            commands = await method(clients, records)
            elapsed = time.perf_counter() - start
            rates[name].append(commands / elapsed)
            results.bulk[name] = {
                "commands_per_s": max(rates[name]),
                "records_per_s": max(rates[name]) * n / commands,
            }
        await client.flushall()
        c_rates.append(_suite.redis_benchmark(port, max(3 * sizes.bulk, 1000)))
    # best of the rounds (as timeit does): other load only ever slows a run down
    c_rate = max((rate for rate in c_rates if rate is not None), default=None)
    if c_rate is not None:
        results.bulk["redis-benchmark -P 250 -c 1 (C, XADD only)"] = {"commands_per_s": c_rate}
    return c_rate


async def _concurrency(clients: Clients, sizes: Sizes, results: Results) -> None:
    url = clients.url
    default = Redis.from_url(url)  # a plain client: pool of 100 connections at most
    pool = BlockingConnectionPool.from_url(url, max_connections=100, timeout=60)
    blocking = Redis(connection_pool=pool)
    methods = {
        "aioredstream, default client": _handlers.producer_handler(Producer(default)),
        "hand-written, blocking pool": _handlers.handwritten_handler(blocking),
        "hand-written, default client": _handlers.handwritten_handler(default),
    }
    if clients.glide is not None:
        methods["valkey-glide, one client"] = _handlers.glide_handler(clients.glide)
    try:
        for concurrency in sizes.concurrency:
            row: dict[str, float | str] = {}
            for _ in range(sizes.rounds):
                for name, handler in methods.items():
                    if isinstance(row.get(name), str):
                        continue  # failed once: it fails at this size
                    await default.flushall()
                    try:
                        rate = await _handlers.handlers_rate(
                            handler, concurrency, max(sizes.handler_records, concurrency)
                        )
                    except Exception as exc:
                        row[name] = f"failed: {type(exc).__name__}"
                        continue
                    row[name] = max(rate, float(row.get(name, 0.0)))
            results.concurrency[str(concurrency)] = row
    finally:
        await default.aclose()
        await blocking.aclose()
        await pool.disconnect()


async def _latency(client: Redis, sizes: Sizes, results: Results) -> None:
    producer = Producer(client)
    ours: list[float] = []
    bare: list[float] = []
    for _ in range(sizes.rounds):
        await client.flushall()
        ours.append(await _handlers.producer_delay_latency(producer, sizes.latency_calls))
        bare.append(await _handlers.bare_xadd_latency(client, sizes.latency_calls))
    results.latency_us = {
        "aioredstream delay()": min(ours) * 1e6,
        "bare client.xadd()": min(bare) * 1e6,
    }


async def _consumer(client: Redis, url: str, sizes: Sizes, results: Results) -> None:
    ours: list[float] = []
    bare: list[float] = []
    for number in range(sizes.rounds):
        await client.flushall()
        last = await _handlers.fill_queue(client, sizes.consumer)
        ours.append(await _handlers.consumer_rate(url, sizes.consumer, last, f"c{number}"))
        bare.append(await _handlers.bare_loop_rate(client, sizes.consumer))
    results.consumer = {
        "aioredstream Consumer.run": max(ours),
        "bare XREAD COUNT 1000 + json.loads + SET offset": max(bare),
    }


def _ratios(results: Results, c_rate: float | None) -> None:
    bulk = results.bulk
    ours = bulk[_bulk.PRODUCER]["commands_per_s"]
    ratios = results.ratios
    if _bulk.GLIDE_MULTI in bulk:  # the headline: the strongest hand-written form
        ratios["bulk vs hand-written valkey-glide, multi-id XDEL"] = (
            ours / bulk[_bulk.GLIDE_MULTI]["commands_per_s"]
        )
    ratios["bulk vs hand-written redis.asyncio"] = ours / bulk[_bulk.HANDWRITTEN]["commands_per_s"]
    if _bulk.GLIDE in bulk:
        ratios["bulk vs hand-written valkey-glide, XDEL per record"] = (
            ours / bulk[_bulk.GLIDE]["commands_per_s"]
        )
    if results.busy:
        ratios["server busy during bulk()"] = results.busy["server_busy"]
    if c_rate:
        ratios["bulk vs redis-benchmark -P 250 -c 1 (3 commands/record)"] = ours / c_rate
    top = max(results.concurrency, key=int)
    row = results.concurrency[top]
    for theirs in ("valkey-glide, one client", "hand-written, blocking pool"):
        mine, base = row.get("aioredstream, default client"), row.get(theirs)
        if isinstance(mine, float) and isinstance(base, float):
            ratios[f"{top} handlers vs {theirs}"] = mine / base
    one = results.concurrency.get("1", {})
    mine, base = one.get("aioredstream, default client"), one.get("hand-written, default client")
    if isinstance(mine, float) and isinstance(base, float):
        ratios["1 handler vs hand-written"] = mine / base
    consumer = list(results.consumer.values())
    ratios["Consumer.run vs bare loop"] = consumer[0] / consumer[1]
    lat = results.latency_us
    ratios["delay latency vs bare xadd"] = lat["aioredstream delay()"] / lat["bare client.xadd()"]
    mem = results.memory_bytes_per_record
    if mem and mem[_bulk.HANDWRITTEN] > 0:
        ratios["1M bulk peak memory vs hand-written"] = mem[_bulk.PRODUCER] / mem[_bulk.HANDWRITTEN]


def main(argv: list[str]) -> None:
    url, port, sizes_json = argv
    fields: dict[str, Any] = json.loads(sizes_json)
    fields["concurrency"] = tuple(fields["concurrency"])
    fields["http_connections"] = tuple(fields["http_connections"])
    sizes = Sizes(**fields)
    once = _suite.payload_encoder() == "json"  # memory, http: the encoder changes them little
    results: Any = asyncio.run(run_suite(url, int(port), sizes, memory=once, http=once))
    print(json.dumps(asdict(results)))


if __name__ == "__main__":
    main(sys.argv[1:])
