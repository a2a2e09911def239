"""What a user's FastAPI handler pays: uvicorn (one process) under wrk, per variant.

uvicorn serves ``_http_app.py`` (uvicorn's defaults: uvloop and httptools when
installed, else the asyncio loop and h11; the results say which). ``wrk`` (Debian's
``wrk`` package: ``apt-get install -y wrk``; the benchmark is skipped without it)
sends ``PUT /<variant>/users/<n>`` on 64 and 512 connections, one run per variant
and connection count, the variants alternating (reverse order every other round).
Each figure is the median of the rounds.

A variant's extra cost per request is the uvicorn process's CPU time per completed
request (``/proc/<pid>/stat``: user + system, every thread, so valkey-glide's Rust
core counts too) minus the bare handler's: what a handler pays in the process that
serves it, independent of how loaded the machine is. The throughput form,
``1e6 / rps_variant - 1e6 / rps_bare``, is reported beside it: the same figure on an
idle machine, where the one uvicorn process is the bottleneck at 100% of a core.

After every run the streams are checked: the queue stream holds exactly as many
entries as the app completed handlers (at least wrk's successful requests; wrk
stops with requests in flight), and the delay stream is empty.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from aioredstream.testing import free_port

HERE = Path(__file__).parent
VARIANTS = ("bare", "aioredstream", "redis", "glide")
INSTALL = "apt-get install -y wrk"


def unavailable() -> str | None:
    """Why the benchmark cannot run here, or ``None``."""
    if shutil.which("wrk") is None:
        return f"wrk is not installed ({INSTALL})"
    for module in ("uvicorn", "fastapi", "glide"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (the bench extra)"
    return None


def _get(url: str, method: str = "GET") -> Any:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _uvicorn(redis_url: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {**os.environ, "BENCH_REDIS_URL": redis_url}
    args = [sys.executable, "-m", "uvicorn", "benchmarks._http_app:app", "--host", "127.0.0.1"]
    args += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen(args, cwd=HERE.parent, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # until it answers (it connects its clients first)
            try:
                _get(base + "/counts")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("uvicorn did not start") from None
                time.sleep(0.1)
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(30)


def _wrk(url: str, connections: int, duration_s: int) -> dict[str, Any]:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--timeout", "10s"]
    args += ["-s", str(HERE / "wrk_put.lua"), url]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=600).stdout
    line = next(line for line in out.splitlines() if line.startswith("{"))
    result: dict[str, Any] = json.loads(line)
    return result


def _settled(base: str, variant: str) -> int:
    """Completed handlers of ``variant`` once none is in flight (wrk left some running)."""
    last = -1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = int(_get(base + "/counts")["counts"].get(variant, 0))
        if done == last:
            return done
        last = done
        time.sleep(0.2)
    raise RuntimeError(f"{variant}: handlers still running 30 s after wrk stopped")


async def _streams(redis_url: str, variant: str, delete: bool) -> tuple[int, int]:
    from benchmarks._http_app import STREAMS

    if variant not in STREAMS:
        return 0, 0
    queue, delay = STREAMS[variant]
    async with Redis.from_url(redis_url) as client:
        lengths = (int(await client.xlen(queue)), int(await client.xlen(delay)))
        if delete:
            await client.delete(queue, delay)
    return lengths


def _one(
    server: tuple[str, int], redis_url: str, variant: str, connections: int, duration_s: int
) -> Any:
    base, pid = server
    asyncio.run(_streams(redis_url, variant, delete=True))
    _get(base + "/reset", "POST")
    cpu_s = _cpu_s(pid)
    result = _wrk(f"{base}/{variant}/users/", connections, duration_s)
    handled = _settled(base, variant)
    cpu_s = _cpu_s(pid) - cpu_s
    queued, delayed = asyncio.run(_streams(redis_url, variant, delete=True))
    ok = result["requests"] - result["status_errors"]
    errors = sum(result[k] for k in result if k.endswith("_errors") or k == "timeouts")
    return {
        "rps": result["requests"] / (result["duration_us"] / 1e6),
        "cpu_us_per_request": cpu_s * 1e6 / max(handled, 1),
        "p50_us": result["p50_us"],
        "p99_us": result["p99_us"],
        "errors": errors,
        "consistent": variant == "bare" or (queued == handled >= ok and delayed == 0),
        "check": {"wrk_ok": ok, "handled": handled, "queued": queued, "delay_left": delayed},
    }


def run(
    redis_url: str, connections: tuple[int, ...], rounds: int, duration_s: int
) -> dict[str, Any]:
    """Every variant at every connection count, ``rounds`` alternating rounds; medians."""
    samples: dict[str, dict[str, list[Any]]] = {
        str(c): {v: [] for v in VARIANTS} for c in connections
    }
    with _uvicorn(redis_url) as server:
        loop = _get(server[0] + "/counts")["loop"]
        for variant in VARIANTS:  # warm up: connections, pools, imports
            _one(server, redis_url, variant, min(connections), 1)
        for number in range(rounds):
            for count in connections:
                for variant in VARIANTS if number % 2 == 0 else VARIANTS[::-1]:
                    sample = _one(server, redis_url, variant, count, duration_s)
                    samples[str(count)][variant].append(sample)
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    result: dict[str, Any] = {
        "server": f"uvicorn, one process, loop {loop}, http {http}",
        "rounds": rounds,
        "duration_s": duration_s,
        "connections": {},
    }
    for level, by_variant in samples.items():
        rows = {v: _median_row(runs) for v, runs in by_variant.items()}
        bare = rows["bare"]
        for row in rows.values():
            row["extra_us_per_request"] = row["cpu_us_per_request"] - bare["cpu_us_per_request"]
            row["extra_us_per_request_from_rps"] = 1e6 / row["rps"] - 1e6 / bare["rps"]
        result["connections"][level] = rows
    return result


def _median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rps": statistics.median(r["rps"] for r in runs),
        "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in runs),
        "p50_us": statistics.median(r["p50_us"] for r in runs),
        "p99_us": statistics.median(r["p99_us"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "consistent": all(r["consistent"] for r in runs),
        "checks": [r["check"] for r in runs],
    }
