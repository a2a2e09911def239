"""`make bench`: the bulk and 2,000-handler rows on every Python with a venv here.

Runs `benchmarks._pythons` over ``.venv`` and each ``.venv-py3.*`` (``make
test-pythons`` makes one per minor this machine has), one server, alternating rounds;
writes ``python_results.{json,md}`` next to this file. Skipped where ``.venv`` is the
only venv, and under ``make bench-pythons`` (``BENCH_OUT`` set: it already runs the
whole benchmark on each Python).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks import _pythons

HERE = Path(__file__).parent


@pytest.mark.timeout(7200)
def test_every_python_writes_its_rows() -> None:
    if os.environ.get("BENCH_OUT"):
        pytest.skip("BENCH_OUT is set: make bench-pythons runs each Python on its own")
    venvs = [venv for venv in _pythons._venvs([]) if (venv / "bin" / "python").exists()]
    if len(venvs) < 2:
        pytest.skip("only .venv here: `make test-pythons` makes a venv per Python minor")
    table = _pythons.compare(venvs)
    assert len(table) == len(venvs)
    (HERE / "python_results.json").write_text(json.dumps(table, indent=2) + "\n")
    text = _pythons.markdown(table)
    (HERE / "python_results.md").write_text(text)
    print(text)
