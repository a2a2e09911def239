"""SIGKILL the server at exact points of a multi-slice bulk call.

Each record is either written or its call raised a RedstreamError (with the
original error chained); nothing is dropped silently; after a restart the same
Producer works and a retry completes the call (duplicates allowed, losses not).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis

from aioredstream import Producer, RedstreamError, ServerConnectionError

from ..conftest import ClientFactory, ServerFactory
from ..helpers import User
from .proxy import KillingProxy

SLICE = 50
RECORDS = 200  # 4 slices


async def _ids_in(client: Redis, key: str) -> Counter[int]:
    rows: Any = await client.xrange(key)
    return Counter(json.loads(fields[b"payload"])["id"] for _, fields in rows)


def _durable_server(server_factory: ServerFactory) -> Any:
    # AOF fsync'd on every write: what the server applied survives SIGKILL.
    return server_factory("--appendonly", "yes", "--appendfsync", "always")


async def _run(
    operation: str, producer: Producer, users: list[User], state: dict[str, Any]
) -> None:
    if operation == "bulk_delay":
        state["ids"] = await producer.bulk_delay(users)
    elif operation == "bulk_queue":
        await producer.bulk_queue(users, delay_message_ids=state["delay_ids"])
    else:
        async with producer.bulk(users) as ids:
            state["body_ran"] = True
            state["ids"] = ids


CASES = [
    # (operation, kill after the N-th stream write the server received)
    ("bulk_delay", 1),
    ("bulk_delay", SLICE),  # a slice boundary
    ("bulk_delay", 2 * SLICE + SLICE // 2),  # mid-slice
    ("bulk_delay", RECORDS),  # the very last write
    ("bulk_queue", 2 * SLICE),  # boundary (one XADD-then-XDEL script per record)
    ("bulk_queue", 3 * SLICE + 1),  # mid-slice
    ("bulk", SLICE),  # in the delay half
    ("bulk", RECORDS),  # right at the end of the delay half
    ("bulk", RECORDS + 2 * SLICE),  # in the queue half, on a boundary
    ("bulk", RECORDS + 3 * SLICE + 7),  # in the queue half, mid-slice
]
FAST = {("bulk_delay", 2 * SLICE + SLICE // 2), ("bulk", RECORDS + 3 * SLICE + 7)}


@pytest.mark.parametrize(
    ("operation", "kill_after"),
    [c if c in FAST else pytest.param(*c, marks=pytest.mark.slow) for c in CASES],
)
async def test_kill_mid_bulk_never_drops_silently(
    server_factory: ServerFactory, make_client: ClientFactory, operation: str, kill_after: int
) -> None:
    server = _durable_server(server_factory)
    direct = make_client(server.url)
    users = [User(i) for i in range(RECORDS)]
    state: dict[str, Any] = {"body_ran": False}
    if operation == "bulk_queue":
        state["delay_ids"] = await Producer(direct).bulk_delay(users)
    async with KillingProxy(server, kill_after=kill_after) as proxy:
        client = make_client(proxy.url)
        producer = Producer(client, slice_size=SLICE)
        raised: BaseException | None = None
        try:
            await _run(operation, producer, users, state)
        except RedstreamError as exc:
            raised = exc
        await asyncio.wait_for(proxy.killed.wait(), 10)  # the crash happened
        server.start()  # same port, same AOF
        direct = make_client(server.url)  # the old client's connection died with the server

        stream = await _ids_in(direct, "redstream:stream:users")
        delayed = await _ids_in(direct, "redstream:stream:users.delay")
        if raised is None:
            _assert_complete(operation, stream, delayed)
        else:
            assert isinstance(raised, ServerConnectionError), raised
            assert raised.__cause__ is not None or "closed" in str(raised)
            if operation == "bulk" and kill_after < RECORDS:
                assert not state["body_ran"], "the body ran without its delay messages"
            if state["body_ran"]:
                # the body ran: every record's delay message was acknowledged, so each
                # record has survived as a delay message or as its queue message
                assert set(delayed) | set(stream) == set(range(RECORDS))
            # the same producer works again and a retry completes the call
            await _run(operation, producer, users, state)
            stream = await _ids_in(direct, "redstream:stream:users")
            delayed = await _ids_in(direct, "redstream:stream:users.delay")
            _assert_complete(operation, stream, delayed)


def _assert_complete(operation: str, stream: Counter[int], delayed: Counter[int]) -> None:
    everyone = set(range(RECORDS))
    if operation == "bulk_delay":
        assert set(delayed) == everyone
    else:
        assert set(stream) == everyone
