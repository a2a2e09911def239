"""`make bench`: the full benchmark on a server it starts; writes results.* next to this file."""

from __future__ import annotations

from pathlib import Path

import pytest

from aioredstream.testing import ServerProcess, find_server_binary
from benchmarks._run import run_suite, write
from benchmarks._suite import Sizes


@pytest.mark.timeout(3600)
async def test_benchmark_writes_results() -> None:
    found = find_server_binary("redis")
    assert found is not None, "no redis-server on PATH and no embedded valkey"
    kind, binary = found
    with ServerProcess(binary, kind=kind, args=("--save", "", "--appendonly", "no")) as server:
        results = await run_suite(server.url, server.port, Sizes())
    write(results, Path(__file__).parent)
    print(Path(__file__).with_name("results.md").read_text())
