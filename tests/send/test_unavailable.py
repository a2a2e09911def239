"""``LOADING``, ``BUSY`` and ``MASTERDOWN``: the server is up but not serving for now.

Each raises :class:`ServerUnavailableError`, which is a ``ServerError`` (as these
replies were before) and a ``ServerConnectionError`` (what "Redis is unavailable"
handlers catch), whether the reply came to our own commands (producer, worker
commands, the lock's script) or to a redis-py call translated at the boundary.
Produced by real servers: a restart that loads a slowly loading RDB, a script that
spins past ``busy-reply-threshold``, a replica with ``replica-serve-stale-data no``
whose primary died.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import pytest
import redis
from redis.asyncio import Redis

from aioredstream import (
    Consumer,
    Lock,
    Message,
    Producer,
    ServerConnectionError,
    ServerError,
    ServerUnavailableError,
    stream_size,
)
from aioredstream.send import wire
from aioredstream.testing import ServerProcess, wait_until
from aioredstream.testing._topologies import _admin, _call

from ..conftest import ClientFactory, ServerFactory
from ..helpers import User, eventually
from .pools import idle_connections, until_seen_closed

# What a client meets while the server is unavailable: each path that sends commands.
PATHS: dict[str, Callable[[Producer, Redis], Awaitable[Any]]] = {
    "delay": lambda producer, _: producer.delay(User(1)),
    "bulk_delay": lambda producer, _: producer.bulk_delay([User(1), User(2)]),
    "queue": lambda producer, _: producer.queue(User(1), "1-0"),
    "worker command": lambda _, client: stream_size(client, "users"),
    "lock": lambda _, client: Lock(client, "job").try_acquire(),
}


def _check(exc: BaseException, code: str, server: ServerProcess | None = None) -> None:
    assert isinstance(exc, ServerUnavailableError), repr(exc)
    assert isinstance(exc, ServerError)
    assert isinstance(exc, ServerConnectionError)
    assert code in str(exc)
    if server is not None and exc.node is not None:
        assert exc.node == f"{server.host}:{server.port}"


async def _raised(call: Awaitable[Any]) -> BaseException:
    with pytest.raises(ServerError) as raised:  # the class these replies always had
        await call
    return raised.value


@contextmanager
def busy(server: ServerProcess) -> Iterator[None]:
    """A Lua script spins on ``server`` past its ``busy-reply-threshold``; killed after."""
    outcome: list[BaseException] = []

    def spin() -> None:
        with _admin(server) as conn:
            try:
                conn.eval("while true do end", 0)
            except redis.ResponseError as exc:  # "Script killed by user with SCRIPT KILL"
                outcome.append(exc)

    def answers_busy() -> bool:
        try:
            _call(server, "PING")
        except redis.ResponseError as exc:
            return str(exc).startswith("BUSY")
        return False

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        wait_until(answers_busy, "the server to answer BUSY")
        yield
    finally:
        wait_until(lambda: _call(server, "SCRIPT", "KILL") == "OK", "SCRIPT KILL")
        spinner.join()
    assert outcome, "the script ended by itself"


@pytest.fixture
def busy_server(server_factory: ServerFactory) -> ServerProcess:
    return server_factory("--busy-reply-threshold", "50")  # ms (lua-time-limit before 7.0)


@pytest.mark.parametrize("path", list(PATHS))
async def test_busy_is_unavailable(
    busy_server: ServerProcess, make_client: ClientFactory, path: str
) -> None:
    client = make_client(busy_server.url)
    producer = Producer(client)
    await producer.bulk_delay([User(0)])  # a pooled connection, ready before the script
    with busy(busy_server):
        _check(await _raised(PATHS[path](producer, client)), "BUSY", busy_server)
    await PATHS[path](producer, client)  # and served again once it is over


async def test_busy_from_a_redis_py_call_is_unavailable_too(
    busy_server: ServerProcess, make_client: ClientFactory
) -> None:
    client = make_client(busy_server.url)
    await client.ping()
    with (
        busy(busy_server),
        pytest.raises(ServerUnavailableError) as raised,
        wire.translate_errors("XLEN"),
    ):
        await client.xlen("users")
    _check(raised.value, "BUSY")
    assert isinstance(raised.value.__cause__, redis.ResponseError)


def _slowly_loading(server_factory: ServerFactory) -> ServerProcess:
    """A server whose restart loads 200 keys 20 ms apart (about 4 s of ``LOADING``),
    serving clients between keys."""
    server = server_factory(
        "--key-load-delay", "20000",  # µs per key
        "--loading-process-events-interval-bytes", "1024",
    )  # fmt: skip
    with _admin(server) as conn:
        for n in range(200):
            conn.set(f"filler:{n}", "x" * 2000)
        conn.save()
    return server


def _answers_loading(server: ServerProcess) -> bool:
    """A bare PING (a client's handshake could be refused before it is sent)."""
    with socket.create_connection((server.host, server.port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"-LOADING")


@asynccontextmanager
async def loading(server: ServerProcess, idle: list[Any]) -> AsyncIterator[asyncio.Task[Any]]:
    """SIGKILL, then restart (same port, same RDB); inside, the server answers LOADING and
    the event loop has seen the ``idle`` connections closed. The loop keeps running
    meanwhile: the waits run in threads."""
    server.kill()
    starting = asyncio.ensure_future(asyncio.to_thread(server.start))  # returns once loaded
    try:
        await asyncio.to_thread(
            wait_until, lambda: _answers_loading(server), "the server to answer LOADING"
        )
        await until_seen_closed(idle)
        yield starting
    finally:
        await starting


@pytest.mark.parametrize("path", list(PATHS))
async def test_loading_after_a_restart_is_unavailable(
    server_factory: ServerFactory, make_client: ClientFactory, path: str
) -> None:
    server = _slowly_loading(server_factory)
    client = make_client(server.url)
    producer = Producer(client)
    await producer.bulk_delay([User(0)])
    async with loading(server, idle_connections(client)) as starting:
        # the pooled connection died with the server: the call reconnects, and the
        # server answers LOADING to the handshake (redis-py raises it) or to the command
        _check(await _raised(PATHS[path](producer, client)), "LOADING", server)
        assert not starting.done()  # still loading afterwards: LOADING was current
    await PATHS[path](producer, client)


async def test_masterdown_is_unavailable(
    server_factory: ServerFactory, make_client: ClientFactory
) -> None:
    primary = server_factory()
    replica = server_factory.replica_of(primary, "--replica-serve-stale-data", "no")
    client = make_client(replica.url)
    assert await stream_size(client, "users") == 0
    primary.kill()

    async def masterdown() -> bool:
        try:
            await stream_size(client, "users")
        except ServerError as exc:
            _check(exc, "MASTERDOWN", replica)
            return True
        return False

    await eventually(masterdown, "the replica to answer MASTERDOWN")
    with pytest.raises(ServerUnavailableError) as raised, wire.translate_errors("XLEN"):
        await client.xlen("users")  # redis-py's MasterDownError, translated
    _check(raised.value, "MASTERDOWN")


async def test_a_coalesced_batch_gives_each_caller_its_own_unavailable_error(
    busy_server: ServerProcess, make_client: ClientFactory
) -> None:
    client = make_client(busy_server.url)
    producer = Producer(client)
    await producer.bulk_delay([User(0)])
    with busy(busy_server):
        results = await asyncio.gather(
            *(producer.delay(User(n)) for n in range(20)), return_exceptions=True
        )
    for result in results:
        assert isinstance(result, BaseException)
        _check(result, "BUSY")
    assert len({id(result) for result in results}) == len(results)


async def test_a_consumer_waits_out_a_server_that_is_loading(
    server_factory: ServerFactory, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker side: LOADING is logged as what it is, backed off, and work resumes
    once the server has loaded."""
    server = _slowly_loading(server_factory)
    client = make_client(server.url)
    producer = Producer(client)
    seen: list[int] = []

    async def handler(messages: list[Message]) -> None:
        seen.extend(message.payload["id"] for message in messages)

    async def handled(record_id: int) -> bool:
        return record_id in seen

    async def met_loading() -> bool:
        errors = [str(getattr(record, "error", "")) for record in caplog.records]
        return any(e.startswith("ServerUnavailableError") and "LOADING" in e for e in errors)

    consumer = Consumer(client, stream_name="users", name="indexer", block=0.05, backoff=0.05)
    async with anyio.create_task_group() as workers:
        workers.start_soon(consumer.run, handler)
        await producer.bulk_queue([User(1)])
        await eventually(lambda: handled(1), "the record before the restart")
        async with loading(server, idle_connections(client)):
            await eventually(met_loading, "the consumer to meet LOADING")
        await producer.bulk_queue([User(2)])
        await eventually(lambda: handled(2), "the record after the restart")
        workers.cancel_scope.cancel()
