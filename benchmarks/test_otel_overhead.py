"""`make bench`: what OpenTelemetry instrumentation costs bulk(); writes otel_overhead.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aioredstream.testing import ServerProcess, find_server_binary
from benchmarks import _otel


@pytest.mark.timeout(1800)
async def test_otel_overhead_writes_results() -> None:
    found = find_server_binary("redis")
    assert found is not None, "no redis-server on PATH and no embedded valkey"
    kind, binary = found
    with ServerProcess(binary, kind=kind, args=("--save", "", "--appendonly", "no")) as server:
        result = await _otel.run(server.url, records=2_000, calls=10, rounds=9)
    path = _otel.write(result, Path(__file__).parent)
    print(json.dumps(json.loads(path.read_text()), indent=2))
