"""`make bench`: the full benchmark on a server it starts; writes results.* next to this file.

The suite runs twice, in processes of their own: payloads encoded by the standard
library's json, then by orjson (the ``speed`` extra); baselines use the same encoder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from aioredstream.testing import ServerProcess, find_server_binary
from benchmarks._report import write
from benchmarks._suite import Sizes

HERE = Path(__file__).parent


def run_with(encoder: str, url: str, port: int, sizes: Sizes) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks._run", url, str(port), json.dumps(asdict(sizes))],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
        cwd=HERE.parent,
        env={**os.environ, "BENCH_ENCODER": encoder},
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.timeout(7200)
def test_benchmark_writes_results() -> None:
    found = find_server_binary("redis")
    assert found is not None, "no redis-server on PATH and no embedded valkey"
    kind, binary = found
    sizes = Sizes()
    with ServerProcess(binary, kind=kind, args=("--save", "", "--appendonly", "no")) as server:
        runs = {
            encoder: run_with(encoder, server.url, server.port, sizes)
            for encoder in ("json", "orjson")
        }
    # BENCH_OUT: another folder (`make bench-pythons` keeps one per Python)
    out = Path(os.environ.get("BENCH_OUT") or HERE)
    out.mkdir(parents=True, exist_ok=True)
    write(runs, out)
    print((out / "results.md").read_text())
