"""``python -m benchmarks._memory URL METHOD N``: peak memory growth per record of one bulk.

Runs in its own process so one method's garbage cannot inflate another's peak.
The records themselves are built before the baseline: only what the method
allocates on top of them counts.
"""

from __future__ import annotations

import asyncio
import gc
import sys

from redis.asyncio import Redis

from benchmarks._bulk import BULK_METHODS, Clients
from benchmarks._suite import BenchUser


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak (VmHWM) to the current RSS


async def main(url: str, method: str, n: int) -> float:
    client = Redis.from_url(url)
    clients = Clients(client, url)
    await client.flushall()
    records = [BenchUser(i) for i in range(n)]
    await BULK_METHODS[method](clients, records[:500])  # warm up imports and the pool
    await client.flushall()
    gc.collect()
    _reset_peak()
    baseline = _status_kib("VmRSS")
    await BULK_METHODS[method](clients, records)
    peak = _status_kib("VmHWM")
    await client.flushall()
    await client.aclose()
    return (peak - baseline) * 1024 / n


if __name__ == "__main__":
    print(asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
