"""A process that calls ``Consumer.run_once`` in a loop until a stream is consumed.

``python -m tests.run_once_loop URL COUNT``: waits until both processes are ready,
then prints the payload ids of the batches this process handled.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
from redis.asyncio import Redis

from aioredstream import Consumer, Message

READY_KEY = "test:ready"
HANDLER_S = 0.05


async def consume_until_done(consumer: Consumer, last_id: str) -> list[int]:
    """Call ``run_once`` until ``last_id`` is committed; return the ids handled here.

    A consumer that handled a batch calls ``run_once`` again at once, with no round
    trip in between (as a ``loop { run_once }`` does): an extra command there would
    give the standby the time to take the lock and hide an unfair hand-over.
    """
    handled: list[int] = []
    done = False

    async def handler(messages: list[Message]) -> None:
        nonlocal done
        handled.extend(message.payload["id"] for message in messages)
        # Work takes time, as a real handler's does: a standby descheduled for a moment
        # (a loaded machine) is blocked on the notify list again before the release.
        # Turns are decided at release, so this gives the old code no turns.
        await anyio.sleep(HANDLER_S)
        done = messages[-1].message_id == last_id

    while not done:
        if not await consumer.run_once(handler) and await consumer.max_committed_id() == last_id:
            break
    return handled


async def main(url: str, workers: int) -> None:
    client = Redis.from_url(url)
    try:
        consumer = Consumer(client, stream_name="users", name="indexer", batch_size=1, block=0.05)
        rows: Any = await client.xrevrange("redstream:stream:users", count=1)
        last_id = rows[0][0].decode()
        await client.incr(READY_KEY)
        # start together (polling the server: no event crosses processes)
        while int(await client.get(READY_KEY) or 0) < workers:  # noqa: ASYNC110
            await anyio.sleep(0.01)
        ids = await consume_until_done(consumer, last_id)
        print(",".join(map(str, ids)), flush=True)
    finally:
        await client.aclose()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]))
