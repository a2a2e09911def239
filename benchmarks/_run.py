"""Run every method in alternating rounds and write results.json / results.md / results.png."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from benchmarks import _suite
from benchmarks._suite import BULK_METHODS, BenchUser, Results, Sizes


async def _timed(coro: Any) -> tuple[int, float]:
    start = time.perf_counter()
    commands: int = await coro
    return commands, time.perf_counter() - start


async def run_suite(url: str, port: int, sizes: Sizes) -> Results:
    client = Redis.from_url(url)
    results = Results(machine=await _suite.machine_info(client), sizes=asdict(sizes))
    try:
        c_rate = await _bulk(client, port, sizes, results)
        await _concurrency(url, sizes, results)
        await _latency(client, sizes, results)
        for method in ("aioredstream bulk", "hand-written pipelines of 250"):
            results.memory_bytes_per_record[method] = _suite.memory_per_record(
                url, method, sizes.memory
            )
    finally:
        await client.flushall()
        await client.aclose()
    _ratios(results, c_rate)
    return results


async def _bulk(client: Redis, port: int, sizes: Sizes, results: Results) -> float | None:
    """Every method once per round, the C client too; returns its best XADD/s."""
    methods = dict(BULK_METHODS)
    if not _suite.faststream_installed():
        methods.pop("FastStream publish, pipelines of 250")
    rates: dict[str, list[float]] = {name: [] for name in methods}
    per_record: dict[str, list[float]] = {name: [] for name in methods}
    c_rates: list[float | None] = []
    for _ in range(sizes.rounds):  # alternate: every method once per round
        for name, method in methods.items():
            n = sizes.one_at_a_time if name == "one-at-a-time xadd" else sizes.bulk
            records = [BenchUser(i) for i in range(n)]
            await client.flushall()
            commands, elapsed = await _timed(method(client, records))
            rates[name].append(commands / elapsed)
            per_record[name].append(n / elapsed)
        await client.flushall()
        c_rates.append(_suite.redis_benchmark(port, max(3 * sizes.bulk, 1000)))
    for name in methods:
        # best of the rounds (as timeit does): the machine is shared, and other
        # load only ever slows a run down
        results.bulk[name] = {
            "commands_per_s": max(rates[name]),
            "records_per_s": max(per_record[name]),
        }
    c_rate = max((rate for rate in c_rates if rate is not None), default=None)
    if c_rate is not None:
        results.bulk["redis-benchmark -P 250 -c 1 (C, XADD only)"] = {"commands_per_s": c_rate}
    return c_rate


async def _concurrency(url: str, sizes: Sizes, results: Results) -> None:
    for concurrency in sizes.concurrency:
        row: dict[str, float | str] = {}
        for _ in range(sizes.rounds):
            default = Redis.from_url(url)  # a plain client: pool of 100 connections at most
            pool = BlockingConnectionPool.from_url(url, max_connections=100, timeout=60)
            blocking = Redis(connection_pool=pool)
            try:
                runs = [
                    (
                        "aioredstream, default client",
                        _suite.producer_handlers(default, concurrency),
                    ),
                    (
                        "hand-written, blocking pool",
                        _suite.handwritten_handlers(blocking, concurrency),
                    ),
                    (
                        "hand-written, default client",
                        _suite.handwritten_handlers(default, concurrency),
                    ),
                ]
                for name, coro in runs:
                    await default.flushall()
                    try:
                        _, elapsed = await _timed(coro)
                    except Exception as exc:
                        row[name] = f"failed: {type(exc).__name__}"
                        continue
                    if not isinstance(row.get(name), str):
                        rate = concurrency / elapsed
                        row[name] = max(rate, float(row.get(name, 0.0)))
            finally:
                await default.aclose()
                await blocking.aclose()
                await pool.disconnect()
        results.concurrency[str(concurrency)] = row


async def _latency(client: Redis, sizes: Sizes, results: Results) -> None:
    ours: list[float] = []
    bare: list[float] = []
    for _ in range(sizes.rounds):
        await client.flushall()
        ours.append(await _suite.producer_delay_latency(client, sizes.latency_calls))
        bare.append(await _suite.bare_xadd_latency(client, sizes.latency_calls))
    results.latency_us = {
        "aioredstream delay()": min(ours) * 1e6,
        "bare client.xadd()": min(bare) * 1e6,
    }


def _ratios(results: Results, c_rate: float | None) -> None:
    bulk = results.bulk
    ours = bulk["aioredstream bulk"]["commands_per_s"]
    results.ratios["bulk vs hand-written pipelines"] = (
        ours / bulk["hand-written pipelines of 250"]["commands_per_s"]
    )
    if c_rate:
        results.ratios["bulk vs redis-benchmark -P 250 -c 1"] = ours / c_rate
    top = results.concurrency[str(max(int(c) for c in results.concurrency))]
    theirs = top.get("hand-written, blocking pool")
    if isinstance(theirs, float) and isinstance(top["aioredstream, default client"], float):
        results.ratios["max-concurrency handlers vs hand-written (blocking pool)"] = (
            top["aioredstream, default client"] / theirs
        )
    lat = results.latency_us
    results.ratios["delay latency vs bare xadd"] = (
        lat["aioredstream delay()"] / lat["bare client.xadd()"]
    )
    mem = results.memory_bytes_per_record
    if mem["hand-written pipelines of 250"] > 0:
        results.ratios["1M bulk peak memory vs hand-written"] = (
            mem["aioredstream bulk"] / mem["hand-written pipelines of 250"]
        )


def write(results: Results, out_dir: Path) -> None:
    data = asdict(results)
    (out_dir / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    (out_dir / "results.md").write_text(markdown(results))
    _chart(results, out_dir / "results.png")


def markdown(results: Results) -> str:
    m = results.machine
    lines = [
        f"Measured {m['date']} on {m['cpus']} CPUs ({m['platform']}), Python {m['python']}, "
        f"{m['server']}, payload encoder {m['payload_encoder']}.",
        "",
        "| bulk method | commands/s | records/s |",
        "|---|---:|---:|",
    ]
    for name, bulk_row in results.bulk.items():
        records = bulk_row.get("records_per_s")
        shown = f"{records:,.0f}" if records is not None else "-"
        lines.append(f"| {name} | {bulk_row['commands_per_s']:,.0f} | {shown} |")
    names = sorted({k for row in results.concurrency.values() for k in row})
    lines += ["", "| concurrent handlers | " + " | ".join(names) + " |"]
    lines.append("|---:|" + "---:|" * len(names))
    for concurrency, row in results.concurrency.items():
        cells = [_cell(row.get(name)) for name in names]
        lines.append(f"| {concurrency} | " + " | ".join(cells) + " |")
    lines += ["", "(handlers: records/s, each handler does delay, sleep(0), queue)", ""]
    lines += ["| single delay latency | µs |", "|---|---:|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in results.latency_us.items()]
    lines += ["", "| bulk peak memory | bytes/record |", "|---|---:|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in results.memory_bytes_per_record.items()]
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in results.ratios.items()]
    return "\n".join(lines) + "\n"


def _cell(value: float | str | None) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else f"{value:,.0f}"


def _chart(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    names = list(results.bulk)
    left.barh(names, [results.bulk[n]["commands_per_s"] for n in names], color="#4477aa")
    left.set_xlabel("Redis commands/s (higher is better)")
    left.set_title("Bulk throughput per method")
    left.invert_yaxis()
    levels = list(results.concurrency)
    for name in sorted({k for row in results.concurrency.values() for k in row}):
        points = [
            (int(c), v) for c in levels if isinstance(v := results.concurrency[c].get(name), float)
        ]
        if points:
            right.plot(*zip(*points, strict=True), marker="o", label=name)
    right.set_xscale("log")
    right.set_xlabel("concurrent handlers")
    right.set_ylabel("records/s")
    right.set_title("Handlers: throughput vs concurrency")
    right.legend(fontsize=8)
    m = results.machine
    fig.suptitle(f"{m['date']}, {m['cpus']} CPUs, Python {m['python']}, {m['server']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
