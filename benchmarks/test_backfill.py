"""`make bench`: backfill() of 100k and 1M SQLite rows; rows/s and peak RSS (flat in the
table's size), each run in a process of its own; writes backfill.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aioredstream.testing import ServerProcess, find_server_binary
from benchmarks import _backfill

HERE = Path(__file__).parent


@pytest.mark.timeout(3600)
def test_backfill_writes_results(tmp_path: Path) -> None:
    found = find_server_binary("redis")
    assert found is not None, "no redis-server on PATH and no embedded valkey"
    kind, binary = found
    args = ("--save", "", "--appendonly", "no")
    with ServerProcess(binary, kind=kind, args=args) as server:
        results = _backfill.suite(server.url, tmp_path, sizes=(100_000, 1_000_000))
    path = _backfill.write(results, HERE)
    print(json.dumps(json.loads(path.read_text()), indent=2))
