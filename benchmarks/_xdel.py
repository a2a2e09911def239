"""What a delay message's deletion costs the server, by how the deletes are grouped.

``python -m benchmarks._xdel`` (or ``make bench``: ``test_xdel_grouping.py``) fills a
delay stream the way ``bulk()`` does (pipelined ``XADD``s) and deletes every entry
with multi-id ``XDEL``s, one variant at a time, on a fresh server per variant
(``CONFIG RESETSTAT``). It reads the server's own accounting, ``INFO commandstats``
(``usec`` of ``XDEL`` / ids deleted), and its CPU time (``used_cpu_user + sys``,
protocol parsing included) per id. Variants alternate over the rounds; each figure is
the median of the rounds.

Variants: ids per ``XDEL`` (50 … 1000) in the order the ``XADD``s returned them;
the same ids in descending or shuffled order; ids grouped per listpack node
(``stream-node-max-entries``, 100 by default, so ``XDEL``s that each empty one node);
and the node size itself (a server setting: 10, 50, 100, 500 entries per node).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from aioredstream.testing import ServerProcess, find_server_binary, valkey_binary

KEY = "redstream:stream:users.delay"
FILL_SLICE = 250

#: name -> (ids per XDEL, order of the ids in each XDEL, stream-node-max-entries)
Variant = tuple[int, str, int]
VARIANTS: dict[str, Variant] = {
    "250 per XDEL, as returned (bulk's default)": (250, "as returned", 100),
    "50 per XDEL": (50, "as returned", 100),
    "100 per XDEL (one listpack node each)": (100, "as returned", 100),
    "500 per XDEL": (500, "as returned", 100),
    "1000 per XDEL": (1000, "as returned", 100),
    "250 per XDEL, descending": (250, "descending", 100),
    "250 per XDEL, shuffled": (250, "shuffled", 100),
    "250 per XDEL, nodes of 10 entries": (250, "as returned", 10),
    "250 per XDEL, nodes of 50 entries": (250, "as returned", 50),
    "250 per XDEL, nodes of 500 entries": (250, "as returned", 500),
}

_ORDER: dict[str, Callable[[list[bytes]], list[bytes]]] = {
    "as returned": lambda ids: ids,
    "descending": lambda ids: ids[::-1],
    "shuffled": lambda ids: random.Random(0).sample(ids, len(ids)),
}


async def _fill(client: Redis, count: int) -> list[bytes]:
    ids: list[bytes] = []
    for start in range(0, count, FILL_SLICE):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(start + FILL_SLICE, count)):
            pipe.xadd(KEY, {"payload": b'{"id":%d}' % n})
        ids += await pipe.execute()
    return ids


async def _cpu_s(client: Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _one(url: str, variant: Variant, count: int) -> dict[str, float]:
    per_call, order, node_entries = variant
    async with Redis.from_url(url) as client:
        await client.flushall()
        await client.config_set("stream-node-max-entries", node_entries)
        await client.config_resetstat()
        ids = await _fill(client, count)
        xadd = (await client.info("commandstats"))["cmdstat_xadd"]
        await client.config_resetstat()
        cpu = await _cpu_s(client)
        for start in range(0, count, per_call * 4):  # 4 XDELs per pipeline
            pipe = client.pipeline(transaction=False)
            for first in range(start, min(start + per_call * 4, count), per_call):
                pipe.execute_command("XDEL", KEY, *_ORDER[order](ids[first : first + per_call]))
            deleted = await pipe.execute()
            assert sum(deleted) == min(per_call * 4, count - start), deleted
        cpu = await _cpu_s(client) - cpu
        stats = (await client.info("commandstats"))["cmdstat_xdel"]
        assert await client.xlen(KEY) == 0
    return {
        "usec_per_id": float(stats["usec"]) / count,
        "server_cpu_us_per_id": cpu * 1e6 / count,
        "xadd_usec_per_call": float(xadd["usec_per_call"]),
    }


async def run(url: str, count: int, rounds: int) -> dict[str, dict[str, float]]:
    """Median per variant of ``rounds`` alternating rounds (reverse order every other)."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    for number in range(rounds):
        names = list(VARIANTS) if number % 2 == 0 else list(VARIANTS)[::-1]
        for name in names:
            samples[name].append(await _one(url, VARIANTS[name], count))
    return {
        name: {
            field: round(statistics.median(s[field] for s in runs), 3)
            for field in ("usec_per_id", "server_cpu_us_per_id", "xadd_usec_per_call")
        }
        for name, runs in samples.items()
    }


def measure(count: int = 100_000, rounds: int = 5) -> dict[str, Any]:
    """Every variant on Redis (``redis-server`` on PATH) and the embedded Valkey, if any."""
    servers: list[tuple[str, str]] = []
    found = find_server_binary("redis")
    if found is not None and found[0] == "redis":
        servers.append(found)
    valkey = valkey_binary()
    if valkey is not None:
        servers.append(("valkey", valkey))
    result: dict[str, Any] = {"ids": count, "rounds": rounds, "servers": {}}
    for kind, binary in servers:
        args = ("--save", "", "--appendonly", "no")
        with ServerProcess(binary, kind=kind, args=args) as server:
            version = _version(server.url)
            result["servers"][f"{kind} {version}"] = asyncio.run(run(server.url, count, rounds))
    return result


def _version(url: str) -> str:
    async def ask() -> str:
        async with Redis.from_url(url) as client:
            info = await client.info("server")
        return str(info.get("valkey_version") or info["redis_version"])

    return asyncio.run(ask())


def markdown(result: dict[str, Any]) -> str:
    servers = list(result["servers"])
    head = " | ".join(
        f"{s}: XDEL CPU µs/id | {s}: XDEL usec/id (commandstats) | {s}: XADD usec/call"
        for s in servers
    )
    lines = [
        f"What deleting a delay message costs the server ({result['ids']:,} ids per variant, "
        f"median of {result['rounds']} alternating rounds, a fresh stream each):",
        "",
        f"| variant | {head} |",
        "|---|" + "---:|---:|---:|" * len(servers),
    ]
    for name in VARIANTS:
        cells = []
        for server in servers:
            row = result["servers"][server][name]
            cells += [
                f"{row['server_cpu_us_per_id']:.2f}",
                f"{row['usec_per_id']:.2f}",
                f"{row['xadd_usec_per_call']:.2f}",
            ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], out_dir: Path) -> Path:
    path = out_dir / "xdel_results.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "xdel_results.md").write_text(markdown(result))
    return path


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    out = measure(count, rounds)
    write(out, Path(__file__).parent)
    print(markdown(out))
