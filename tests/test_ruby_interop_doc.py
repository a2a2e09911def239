"""docs/ruby-interop.md lists every difference from the gem (v0.6.1) a user can observe,
and ``wait=0`` is one of them: no ``WAIT 0 0`` is sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from aioredstream import Producer, ReplicationError

from .helpers import User

DOC = Path(__file__).resolve().parent.parent / "docs" / "ruby-interop.md"


async def _wait_calls(client: Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


async def test_wait_0_sends_no_wait_command(client: Redis) -> None:
    """The gem sends ``WAIT 0 0``, which returns at once and proves nothing."""
    await client.config_resetstat()
    producer = Producer(client, wait=0)
    await producer.delay(User(1))
    await producer.bulk_delay([User(2), User(3)])
    async with producer.bulk([User(4)]):
        pass
    assert await _wait_calls(client) == 0
    with pytest.raises(ReplicationError):
        await Producer(client, wait=1, wait_timeout=0.01).bulk_delay([User(5)])
    assert await _wait_calls(client) == 1  # the counter counts: WAIT 1 is sent (and falls short)


@pytest.mark.parametrize(
    "row",
    [
        "| `wait=0` | sends `WAIT 0 0` | sends nothing",
        "| nesting deeper than 100 arrays/objects |",
        "| floats | `1.0e-07` | `1e-07` (orjson: `1e-7`)",
        "| an integer of more than 4,300 digits written by Ruby |",
        "| `uuid.UUID` values |",
        "| per-record names |",
        "| default stream of a class |",
        "| `run_once()` in a loop |",
        "| delayer `run_once()` |",
        "| a listed consumer without an offset |",
        "| consumers not in the trimmer's list **new** |",
        "| installing twice |",
        "| delay messages after the queue write |",
        "| payload errors |",
    ],
)
def test_the_deviations_table_has_the_row(row: str) -> None:
    assert row in DOC.read_text()
