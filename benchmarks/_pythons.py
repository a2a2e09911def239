"""The bulk and 2,000-handler rows on every Python that has a venv here, in one run.

    .venv/bin/python -m benchmarks._pythons [VENV ...]

(default: ``.venv`` and each ``.venv-py3.*`` of this tree, e.g. made by
``~/.pyenv/versions/3.12.1/bin/python -m venv .venv-py3.12 && .venv-py3.12/bin/pip
install -e . --group dev``, or ``make test-pythons``). One server; every round runs each
interpreter once (the order alternates), each in a process of its own with stdlib json:
``bulk()`` of ``BULK`` records (records/s, server busy, client µs/record) beside the
valkey-glide anchor, and waves of 2,000 concurrent handlers (delay, sleep(0), queue) on
the producer's default client beside one valkey-glide client. Each figure is the median
of the rounds. Prints a Markdown table and writes ``benchmarks/python_results.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
BULK = 200_000
HANDLERS = 2_000
HANDLER_RECORDS = 16_000
ROUNDS = 7


async def rows(url: str) -> dict[str, Any]:
    """One round of every row, in this interpreter."""
    import platform

    from redis.asyncio import Redis

    from aioredstream import Producer
    from benchmarks import _busy, _handlers
    from benchmarks._bulk import Clients, glide_multi_xdel_bulk
    from benchmarks._suite import BenchUser, glide_client

    async with Redis.from_url(url) as client:
        glide = await glide_client(url)
        producer = Producer(client)
        records = [BenchUser(i) for i in range(BULK)]
        async with producer.bulk(records[:1000]):
            pass
        bulk = await _busy.one_bulk(client, producer, records)
        clients = Clients(client, url, glide)
        await glide_multi_xdel_bulk(clients, records[:1000])
        await client.flushall()
        start = asyncio.get_running_loop().time()
        await glide_multi_xdel_bulk(clients, records)
        glide_bulk = BULK / (asyncio.get_running_loop().time() - start)
        # The handler rows run on the heap the main table's do: with the 200,000 records
        # still alive, every full collection during the waves would walk them too (the
        # collector takes about a quarter of the producer's handler time without them).
        del records
        handlers = {}
        for name, handler in (
            ("aioredstream", _handlers.producer_handler(producer)),
            ("glide", _handlers.glide_handler(glide)),
        ):
            await client.flushall()
            handlers[name] = await _handlers.handlers_rate(handler, HANDLERS, HANDLER_RECORDS)
        await client.flushall()
        await glide.close()
    return {
        "python": platform.python_version(),
        "bulk_records_per_s": bulk["records_per_s"],
        "server_busy": bulk["server_busy"],
        "client_us_per_record": bulk["client_us_per_record"],
        "bulk_vs_glide_multi_xdel": bulk["records_per_s"] / glide_bulk,
        "handlers_2000_records_per_s": handlers["aioredstream"],
        "handlers_2000_vs_glide": handlers["aioredstream"] / handlers["glide"],
    }


def _venvs(names: list[str]) -> list[Path]:
    root = HERE.parent
    if names:
        return [root / name for name in names]
    return [root / ".venv", *sorted(root.glob(".venv-py3.*"))]


def compare(venvs: list[Path], rounds: int = ROUNDS) -> dict[str, dict[str, float]]:
    from aioredstream.testing import ServerProcess, find_server_binary

    found = find_server_binary("redis")
    assert found is not None, "no redis-server on PATH and no embedded valkey"
    kind, binary = found
    samples: dict[Path, list[dict[str, Any]]] = {venv: [] for venv in venvs}
    env = {**os.environ, "BENCH_ENCODER": "json"}
    with ServerProcess(binary, kind=kind, args=("--save", "", "--appendonly", "no")) as server:
        for number in range(rounds):
            for venv in venvs if number % 2 == 0 else venvs[::-1]:
                args = [str(venv / "bin" / "python"), "-m", "benchmarks._pythons", "--rows"]
                out = subprocess.run(
                    [*args, server.url],
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=HERE.parent,
                    env=env,
                    timeout=1800,
                ).stdout
                samples[venv].append(json.loads(out.strip().splitlines()[-1]))
    table: dict[str, dict[str, float]] = {}
    for venv, runs in samples.items():
        fields = [k for k in runs[0] if k != "python"]
        row = {k: statistics.median(r[k] for r in runs) for k in fields}
        # the rounds' spread: two Pythons whose ranges overlap this much are not apart
        ratios = [r["handlers_2000_vs_glide"] for r in runs]
        row["handlers_2000_vs_glide_min"] = min(ratios)
        row["handlers_2000_vs_glide_max"] = max(ratios)
        table[f"{runs[0]['python']} ({venv.name})"] = row
    return table


def markdown(table: dict[str, dict[str, float]]) -> str:
    lines = [
        f"stdlib json, median of {ROUNDS} alternating rounds, one server; bulk() of "
        f"{BULK:,} records; waves of {HANDLERS:,} concurrent handlers, {HANDLER_RECORDS:,} "
        "records",
        "",
        "| Python | bulk records/s | server busy | client µs/record | bulk vs glide "
        "(multi-id XDEL) | 2,000 handlers records/s | 2,000 handlers vs glide | "
        "(lowest-highest round) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for python, r in table.items():
        lines.append(
            f"| {python} | {r['bulk_records_per_s']:,.0f} | {r['server_busy']:.0%} | "
            f"{r['client_us_per_record']:.2f} | {r['bulk_vs_glide_multi_xdel']:.2f} | "
            f"{r['handlers_2000_records_per_s']:,.0f} | {r['handlers_2000_vs_glide']:.2f} | "
            f"{r['handlers_2000_vs_glide_min']:.2f}-{r['handlers_2000_vs_glide_max']:.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--rows"]:
        print(json.dumps(asyncio.run(rows(sys.argv[2]))))
    else:
        result = compare(_venvs(sys.argv[1:]))
        (HERE / "python_results.json").write_text(json.dumps(result, indent=2) + "\n")
        print(markdown(result))
