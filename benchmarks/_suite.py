"""What every benchmark shares: the record, the keys, sizes, results, and the payload encoder.

Each benchmark process runs with one payload encoder: ``BENCH_ENCODER=json`` hides
orjson before aioredstream is imported (``benchmarks/__init__.py``; the producer falls
back to the standard library), anything else leaves it as installed. The hand-written
baselines encode with the same encoder, so every table compares like with like.
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

if os.environ.get("BENCH_ENCODER") == "json":
    sys.modules["orjson"] = None  # type: ignore[assignment]  # an ImportError from now on

import redis
from redis.asyncio import Redis

from aioredstream import Model
from aioredstream._codec import ENCODER

DELAY = "redstream:stream:benchusers.delay"
QUEUE = "redstream:stream:benchusers"
OFFSET = "redstream:offset:benchusers:bare"
SLICE = 250


class BenchUser(Model):
    def __init__(self, id: int) -> None:
        self.id = id


def _make_payload() -> Callable[[BenchUser], bytes | str]:
    if ENCODER == "orjson":
        import orjson

        dumps = orjson.dumps
        return lambda record: dumps({"id": record.id})
    return lambda record: json.dumps({"id": record.id}, separators=(",", ":"))


#: the payload a hand-written baseline sends, with this process's encoder
payload = _make_payload()


def payload_encoder() -> str:
    return ENCODER


#: ``BENCH_TASK_FACTORY=eager``: the benchmark's event loop runs with
#: ``asyncio.eager_task_factory`` (Python 3.12+), as an application may set it; the
#: library never does
TASK_FACTORY = os.environ.get("BENCH_TASK_FACTORY", "")


def set_task_factory() -> None:
    """Give the running loop the task factory ``BENCH_TASK_FACTORY`` names, if any."""
    if not TASK_FACTORY:
        return
    factory = getattr(asyncio, f"{TASK_FACTORY}_task_factory", None)
    if factory is None:
        raise RuntimeError(f"BENCH_TASK_FACTORY={TASK_FACTORY}: no such factory here")
    asyncio.get_running_loop().set_task_factory(factory)


async def all_of(calls: Iterable[Awaitable[None]]) -> None:
    """Like gather, but every call has ended before the first error is raised."""
    for result in await asyncio.gather(*calls, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


def glide_installed() -> bool:
    try:
        import glide  # noqa: F401
    except ImportError:
        return False
    return True


def faststream_installed() -> bool:
    try:
        import faststream.redis  # noqa: F401
    except ImportError:
        return False
    return True


async def glide_client(url: str, inflight: int = 100_000) -> Any:
    """One multiplexed valkey-glide client (its Rust core owns the connection)."""
    from glide import GlideClient, GlideClientConfiguration, NodeAddress

    host, port = host_port(url)
    config = GlideClientConfiguration(
        [NodeAddress(host, port)], inflight_requests_limit=inflight, request_timeout=60_000
    )
    return await GlideClient.create(config)


def host_port(url: str) -> tuple[str, int]:
    match = re.match(r"redis://([^:/]+):(\d+)", url)
    assert match is not None, url
    return match.group(1), int(match.group(2))


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


@dataclass
class Sizes:
    bulk: int = 50_000
    one_at_a_time: int = 3_000
    rounds: int = 5
    concurrency: tuple[int, ...] = (1, 10, 100, 500, 2000)
    #: each concurrency level runs waves of handlers until this many records are done
    handler_records: int = 4_000
    latency_calls: int = 2_000
    consumer: int = 50_000
    memory: int = 1_000_000
    #: bulk() records of the server-busy measurement
    busy: int = 200_000
    #: the HTTP benchmark: wrk's connection counts, seconds per run, rounds (0: not run)
    http_connections: tuple[int, ...] = (64, 512)
    http_duration_s: int = 5
    http_rounds: int = 3


@dataclass
class Results:
    machine: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, Any] = field(default_factory=dict)
    bulk: dict[str, dict[str, float]] = field(default_factory=dict)
    concurrency: dict[str, dict[str, float | str]] = field(default_factory=dict)
    latency_us: dict[str, float] = field(default_factory=dict)
    consumer: dict[str, float] = field(default_factory=dict)
    memory_bytes_per_record: dict[str, float] = field(default_factory=dict)
    busy: dict[str, Any] = field(default_factory=dict)
    http: dict[str, Any] = field(default_factory=dict)
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
        "redis_py": redis.__version__,
        "task_factory": TASK_FACTORY or "default",
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
        env={**os.environ},
    ).stdout
    return float(out.strip().splitlines()[-1])
