"""`make bench`: what a delay message's XDEL costs the server, by how deletes are grouped
(ids per XDEL, their order, the listpack node size); writes xdel_results.{json,md}."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import _xdel


@pytest.mark.timeout(3600)
def test_xdel_grouping_writes_results() -> None:
    result = _xdel.measure(count=50_000, rounds=3)
    _xdel.write(result, Path(__file__).parent)
    print((Path(__file__).parent / "xdel_results.md").read_text())
    assert result["servers"]
