"""The benchmarks run once at a tiny size so they cannot rot (speed is not asserted here)."""

from __future__ import annotations

import json
import platform
import shutil
from dataclasses import asdict
from pathlib import Path

import redis
from benchmarks import _otel
from benchmarks._report import write
from benchmarks._run import run_suite
from benchmarks._suite import Sizes

from aioredstream.testing import ServerProcess


async def test_benchmarks_run_at_a_tiny_size_and_write_every_output(
    server: ServerProcess, tmp_path: Path
) -> None:
    sizes = Sizes(
        bulk=300,
        one_at_a_time=20,
        rounds=1,
        concurrency=(1, 150),
        handler_records=150,
        latency_calls=5,
        consumer=2500,
        memory=600,
        busy=600,
        http_connections=(8,),
        http_duration_s=1,
        http_rounds=1,
    )
    results = await run_suite(server.url, server.port, sizes)
    write({"local": asdict(results)}, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())["local"]
    assert data["machine"]["cpus"] >= 1
    assert data["machine"]["python"] == platform.python_version()
    assert data["machine"]["redis_py"] == redis.__version__
    assert set(data["ratios"]) >= {
        "bulk vs hand-written valkey-glide, multi-id XDEL",
        "bulk vs hand-written redis.asyncio",
        "bulk vs hand-written valkey-glide, XDEL per record",
        "server busy during bulk()",
        "Consumer.run vs bare loop",
        "delay latency vs bare xadd",
    }
    assert data["busy"]["server_busy"] > 0
    assert data["busy"]["client_us_per_record"] > 0
    if shutil.which("wrk"):  # the HTTP row: every variant answered, the streams add up
        rows = data["http"]["connections"]["8"]
        assert set(rows) == {"bare", "aioredstream", "redis", "glide"}
        assert all(row["errors"] == 0 and row["consistent"] for row in rows.values()), rows
    else:
        assert "wrk" in data["http"]["skipped"]
    # 150 concurrent handlers succeed on a default client with the producer
    assert isinstance(data["concurrency"]["150"]["aioredstream, default client"], float)
    if shutil.which("redis-benchmark"):
        assert any(name.startswith("redis-benchmark") for name in data["bulk"])
    markdown = (tmp_path / "results.md").read_text()
    assert "| aioredstream bulk |" in markdown
    assert f"Python {platform.python_version()}, redis-py {redis.__version__}," in markdown
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"


async def test_otel_overhead_benchmark_runs_at_a_tiny_size(redis_url: str, tmp_path: Path) -> None:
    result = await _otel.run(redis_url, records=20, calls=2, rounds=1)
    assert set(result["records_per_s_median"]) == set(_otel.MODES)
    assert json.loads(_otel.write(result, tmp_path).read_text()) == result
