"""Every worker's run() logs server errors, backs off, goes on, and still stops on cancel."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import pytest
from redis import exceptions as redis_exc
from redis.asyncio import Redis

from aioredstream import Consumer, Delayer, Message, ServerConnectionError, Trimmer
from aioredstream.testing import ServerProcess, free_port

from .conftest import ClientFactory, ServerFactory
from .helpers import eventually


async def _nothing(messages: list[Message]) -> None:
    pass


def _runner(kind: str, client: Redis) -> tuple[str, Callable[[], Coroutine[Any, Any, None]]]:
    if kind == "consumer":
        consumer = Consumer(client, stream_name="users", name="c", backoff=0.01)
        return "aioredstream.consumer", lambda: consumer.run(_nothing)
    if kind == "delayer":
        return "aioredstream.delayer", Delayer(
            client, stream_name="users", delay=0, backoff=0.01
        ).run
    trimmer = Trimmer(client, stream_name="users", consumer_names=["c"], backoff=0.01)
    return "aioredstream.trimmer", trimmer.run


@pytest.mark.parametrize("kind", ["consumer", "delayer", "trimmer"])
async def test_run_logs_connection_errors_backs_off_and_stops_on_cancel(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    client = make_client(f"redis://127.0.0.1:{free_port()}/0")  # nobody listens there
    logger_name, run = _runner(kind, client)

    async def failed_twice() -> bool:
        return len([r for r in caplog.records if r.name == logger_name]) >= 2

    before = asyncio.all_tasks()
    with caplog.at_level(logging.WARNING, logger=logger_name):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await eventually(failed_twice)
            tg.cancel_scope.cancel()
    record = next(r for r in caplog.records if r.name == logger_name)
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ServerConnectionError)
    assert isinstance(record.exc_info[1].__cause__, redis_exc.ConnectionError)
    assert asyncio.all_tasks() == before


async def test_a_consumer_resumes_after_its_server_comes_back(
    server_factory: ServerFactory, make_client: ClientFactory
) -> None:
    server: ServerProcess = server_factory()
    client = make_client(server.url)
    await client.xadd("redstream:stream:users", {"payload": '{"id":1}'})
    handled: list[int] = []

    async def handler(messages: list[Message]) -> None:
        handled.extend(m.payload["id"] for m in messages)

    consumer = Consumer(client, stream_name="users", name="c", block=0.05, backoff=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run, handler)

        async def got(n: int) -> bool:
            return len(handled) >= n

        await eventually(lambda: got(1))
        server.stop()
        await anyio.sleep(0.2)  # the worker meets the dead server and backs off
        server.start()
        await client.xadd("redstream:stream:users", {"payload": '{"id":2}'})
        await eventually(lambda: got(2))
        tg.cancel_scope.cancel()
    assert handled[-1] == 2
