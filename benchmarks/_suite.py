"""The benchmark methods: the producer and the baselines a user would write by hand.

Every method writes to a flushed server and returns the Redis commands it sent,
so results compare commands/s (and records/s) on the same server, in the same
process, alternating rounds. ``run_suite`` collects them; ``_report`` writes them.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from aioredstream import Model, Producer
from aioredstream._codec import ENCODER

DELAY = "redstream:stream:benchusers.delay"
QUEUE = "redstream:stream:benchusers"
SLICE = 250


class BenchUser(Model):
    def __init__(self, id: int) -> None:
        self.id = id


def _payload(record: BenchUser) -> str:
    return json.dumps({"id": record.id}, separators=(",", ":"))


# -- bulk: delay + queue + delay deletion for n records (3 commands each) ----------------


async def producer_bulk(client: Redis, records: list[BenchUser]) -> int:
    async with Producer(client).bulk(records):
        pass
    return 3 * len(records)


async def handwritten_bulk(client: Redis, records: list[BenchUser]) -> int:
    """redis.asyncio pipelines of 250, the loop a user would write."""
    ids: list[Any] = []
    for start in range(0, len(records), SLICE):
        pipe = client.pipeline(transaction=False)
        for record in records[start : start + SLICE]:
            pipe.xadd(DELAY, {"payload": _payload(record)})
        ids += await pipe.execute()
    for start in range(0, len(records), SLICE):
        pipe = client.pipeline(transaction=False)
        for record, message_id in zip(
            records[start : start + SLICE], ids[start : start + SLICE], strict=True
        ):
            pipe.xadd(QUEUE, {"payload": _payload(record)})
            pipe.xdel(DELAY, message_id)
        await pipe.execute()
    return 3 * len(records)


async def one_at_a_time(client: Redis, records: list[BenchUser]) -> int:
    for record in records:
        message_id = await client.xadd(DELAY, {"payload": _payload(record)})
        await client.xadd(QUEUE, {"payload": _payload(record)})
        await client.xdel(DELAY, message_id)
    return 3 * len(records)


async def faststream_publish(client: Redis, records: list[BenchUser]) -> int:
    """FastStream's stream publish in pipelines of 250 (XADD only: it has no XDEL)."""
    from faststream.redis import RedisBroker

    broker = RedisBroker(_url(client))
    await broker.connect()
    try:
        for start in range(0, len(records), SLICE):
            async with client.pipeline(transaction=False) as pipe:
                for record in records[start : start + SLICE]:
                    await broker.publish({"id": record.id}, stream=DELAY, pipeline=pipe)
                await pipe.execute()
    finally:
        await broker.stop()
    return len(records)


def _url(client: Redis) -> str:
    kwargs: Any = client.connection_pool.connection_kwargs
    return f"redis://{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}/0"


BULK_METHODS: dict[str, Callable[[Redis, list[BenchUser]], Awaitable[int]]] = {
    "aioredstream bulk": producer_bulk,
    "hand-written pipelines of 250": handwritten_bulk,
    "one-at-a-time xadd": one_at_a_time,
    "FastStream publish, pipelines of 250": faststream_publish,
}


def faststream_installed() -> bool:
    try:
        import faststream.redis  # noqa: F401
    except ImportError:
        return False
    return True


def redis_benchmark(port: int, n: int) -> float | None:
    """XADD commands/s of the C client pipelining 250 on one connection, if on PATH."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    args = [binary, "-p", str(port), "-P", "250", "-c", "1", "-n", str(n), "--csv"]
    out = subprocess.run(
        [*args, "XADD", "redis-benchmark:stream", "*", "payload", '{"id":1}'],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    # the test name is the command line itself, quotes of the payload included
    match = re.search(r'^"XADD .*?","([\d.]+)"', out, re.MULTILINE)
    return float(match.group(1)) if match else None


# -- handlers: delay -> sleep(0) -> queue, `concurrency` at once ---------------------------


async def producer_handlers(client: Redis, concurrency: int) -> int:
    producer = Producer(client)

    async def handler(n: int) -> None:
        message_id = await producer.delay(BenchUser(n))
        await asyncio.sleep(0)
        await producer.queue(BenchUser(n), message_id)

    await _all(handler(n) for n in range(concurrency))
    return 3 * concurrency


async def handwritten_handlers(client: Redis, concurrency: int) -> int:
    async def handler(n: int) -> None:
        payload = _payload(BenchUser(n))
        message_id = await client.xadd(DELAY, {"payload": payload})
        await asyncio.sleep(0)
        pipe = client.pipeline(transaction=False)
        pipe.xadd(QUEUE, {"payload": payload})
        pipe.xdel(DELAY, message_id)
        await pipe.execute()

    await _all(handler(n) for n in range(concurrency))
    return 3 * concurrency


async def _all(calls: Iterable[Awaitable[None]]) -> None:
    """Like gather, but every call has ended before the first error is raised."""
    for result in await asyncio.gather(*calls, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


# -- latency: one delay at a time ----------------------------------------------------------


async def producer_delay_latency(client: Redis, count: int) -> float:
    producer = Producer(client)
    start = time.perf_counter()
    for n in range(count):
        await producer.delay(BenchUser(n))
    return (time.perf_counter() - start) / count


async def bare_xadd_latency(client: Redis, count: int) -> float:
    start = time.perf_counter()
    for n in range(count):
        await client.xadd(DELAY, {"payload": _payload(BenchUser(n))})
    return (time.perf_counter() - start) / count


@dataclass
class Sizes:
    bulk: int = 50_000
    one_at_a_time: int = 3_000
    rounds: int = 5
    concurrency: tuple[int, ...] = (1, 10, 100, 500, 2000)
    latency_calls: int = 2_000
    memory: int = 1_000_000


@dataclass
class Results:
    machine: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, Any] = field(default_factory=dict)
    bulk: dict[str, dict[str, float]] = field(default_factory=dict)
    concurrency: dict[str, dict[str, float | str]] = field(default_factory=dict)
    latency_us: dict[str, float] = field(default_factory=dict)
    memory_bytes_per_record: dict[str, float] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)


async def machine_info(client: Redis) -> dict[str, Any]:
    info = await client.info("server")
    server = (
        f"valkey {info['valkey_version']}"
        if "valkey_version" in info
        else f"redis {info['redis_version']}"
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "server": server,
        "payload_encoder": ENCODER,
        "platform": platform.platform(),
    }


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_per_record(url: str, method: str, n: int) -> float:
    """Peak RSS growth per record of one bulk method, in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks._memory", url, method, str(n)],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
        cwd=Path(__file__).parents[1],
    ).stdout
    return float(out.strip().splitlines()[-1])
