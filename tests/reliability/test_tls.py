"""Producer (and, with the workers, every worker) over rediss:// to a TLS-only server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aioredstream import Producer, ServerConnectionError

from ..conftest import ClientFactory
from ..helpers import User, entries
from .conftest import TLSServer, tls_kwargs
from .tls import make_ca


async def _linked(client: Any) -> None:
    for _ in range(200):
        info = await client.info("replication")
        if info.get("connected_slaves") == 1 and "online" in str(info.get("slave0")):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the TLS replica never came online")


async def test_producer_over_tls_with_wait(
    tls_pair: tuple[TLSServer, TLSServer], make_client: ClientFactory
) -> None:
    primary, replica = tls_pair
    client = make_client(primary.url, **tls_kwargs(primary.certs.ca))
    await _linked(client)
    producer = Producer(client, wait=1, wait_timeout=10)
    ids = await producer.bulk_delay([User(i) for i in range(300)])
    async with producer.bulk([User(1000)]):
        pass
    on_replica = make_client(replica.url, **tls_kwargs(replica.certs.ca))
    delayed = await entries(on_replica, "redstream:stream:users.delay")
    assert [e[0] for e in delayed] == ids
    assert [p for _, p in await entries(client, "redstream:stream:users")] == [{"id": 1000}]


async def test_a_wrong_ca_fails_with_a_clear_connection_error(
    tls_pair: tuple[TLSServer, TLSServer], make_client: ClientFactory, tmp_path: Any
) -> None:
    primary, _ = tls_pair
    other_ca, _, _ = make_ca(tmp_path, "some other CA")
    client = make_client(primary.url, ssl_ca_certs=str(other_ca))
    with pytest.raises(ServerConnectionError, match=r"(?i)certificate verify failed") as info:
        await Producer(client).delay(User(1))
    assert info.value.__cause__ is not None
