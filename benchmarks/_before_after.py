"""Before and after in one run: the same benchmark code against two source trees.

    git archive 8a9609a | (mkdir -p /tmp/base && tar -x -C /tmp/base)
    .venv/bin/python -m benchmarks._before_after /tmp/base/src [N] [ROUNDS]

starts one server and, for each of ``ROUNDS`` rounds, runs ``benchmarks._busy`` (one
``bulk()`` of ``N`` records, stdlib json) with the base tree's ``aioredstream`` first
on ``PYTHONPATH``, then with this tree's, then the valkey-glide anchor (the order of
the three alternates between rounds). Each is a process of its own; each figure is
the median of the rounds. Prints a Markdown table.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from aioredstream.testing import ServerProcess, find_server_binary
from benchmarks._busy import FIELDS

HERE = Path(__file__).parent


def _one(url: str, n: int, src: Path | None, what: str = "bulk") -> dict[str, Any]:
    env = {**os.environ, "BENCH_ENCODER": "json"}
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    args = [sys.executable, "-m", "benchmarks._busy", url, str(n), "1", what]
    out = subprocess.run(
        args, capture_output=True, text=True, check=True, cwd=HERE.parent, env=env, timeout=1800
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def compare(base_src: Path, n: int, rounds: int) -> dict[str, dict[str, float]]:
    found = find_server_binary("redis")
    assert found is not None, "no redis-server on PATH and no embedded valkey"
    kind, binary = found
    sides: dict[str, Path | None] = {"before": base_src, "after": None}
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in [*sides, "glide"]}
    with ServerProcess(binary, kind=kind, args=("--save", "", "--appendonly", "no")) as server:
        for number in range(rounds):
            order = [*sides, "glide"]
            for name in order if number % 2 == 0 else order[::-1]:
                if name == "glide":
                    samples[name].append(_one(server.url, n, None, "glide"))
                else:
                    samples[name].append(_one(server.url, n, sides[name]))
    glide = statistics.median(s["records_per_s"] for s in samples["glide"])
    table: dict[str, dict[str, float]] = {}
    for name in sides:
        row = {f: statistics.median(s[f] for s in samples[name]) for f in FIELDS}
        row["vs_glide_multi_xdel"] = row["records_per_s"] / glide
        table[name] = row
    table["glide"] = {"records_per_s": glide}
    return table


def markdown(table: dict[str, dict[str, float]], n: int, rounds: int) -> str:
    lines = [
        f"bulk() of {n:,} records, stdlib json, median of {rounds} alternating rounds; "
        f"valkey-glide anchor (batches of 250, one multi-id XDEL per batch): "
        f"{table['glide']['records_per_s']:,.0f} records/s",
        "",
        "| | records/s | server busy | server-bound limit | client µs/record | "
        "server µs/record | vs glide anchor |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("before", "after"):
        r = table[name]
        lines.append(
            f"| {name} | {r['records_per_s']:,.0f} | {r['server_busy']:.0%} | "
            f"{r['server_bound_records_per_s']:,.0f} | {r['client_us_per_record']:.2f} | "
            f"{r['server_us_per_record']:.2f} | {r['vs_glide_multi_xdel']:.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    base = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    print(markdown(compare(base, n, rounds), n, rounds))
