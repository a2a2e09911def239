"""The backfill benchmark runs once at a tiny size so it cannot rot (speed is not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import _backfill


def test_backfill_benchmark_runs_at_a_tiny_size(redis_url: str, tmp_path: Path) -> None:
    results = _backfill.suite(redis_url, tmp_path, sizes=(50, 200), rounds=1)
    assert set(results["modes"]) == {"by id", "by object"}
    for runs in results["modes"].values():
        assert [runs[size]["rows"] for size in ("50", "200")] == [50, 200]
        assert runs["peak_rss_ratio"] > 0
    assert json.loads(_backfill.write(results, tmp_path).read_text()) == results
