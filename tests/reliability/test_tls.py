"""Producer (and, with the workers, every worker) over rediss:// to a TLS-only server."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest

from aioredstream import Consumer, Delayer, Message, Producer, ServerConnectionError, Trimmer

from ..conftest import ClientFactory
from ..helpers import User, entries
from .conftest import TLSServer, tls_kwargs
from .tls import Certs, make_ca


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
    await producer.delay(User(2000))  # for the delayer
    await _run_workers(client)
    # the trimmer removed what the consumer committed: both messages went through
    assert await entries(client, "redstream:stream:users") == []
    assert await client.xlen("redstream:stream:users.delay") == 0


async def _run_workers(client: Any) -> None:
    seen: list[int] = []

    async def handler(messages: list[Message]) -> None:
        seen.extend(m.payload["id"] for m in messages)

    consumer = Consumer(client, stream_name="users", name="indexer", block=0.05)
    assert await Delayer(client, stream_name="users", delay=0, block=0.05).run_once() == 301
    assert await consumer.run_once(handler) == 302
    assert seen.count(1000) == 1
    assert seen.count(2000) == 1
    assert await Trimmer(client, stream_name="users", consumer_names=["indexer"]).run_once() == 302


async def test_a_wrong_ca_fails_with_a_clear_connection_error(
    tls_pair: tuple[TLSServer, TLSServer], make_client: ClientFactory, tmp_path: Any
) -> None:
    primary, _ = tls_pair
    other_ca, _, _ = make_ca(tmp_path, "some other CA")
    client = make_client(primary.url, ssl_ca_certs=str(other_ca))
    with pytest.raises(ServerConnectionError, match=r"(?i)certificate verify failed") as info:
        await Producer(client).delay(User(1))
    assert info.value.__cause__ is not None


def test_the_test_certificates_satisfy_a_strict_verifier(certs: Certs) -> None:
    """Python 3.13's default context verifies with VERIFY_X509_STRICT: the test CA and
    server certificate must pass it on every Python (a handshake in memory, no server)."""
    client = ssl.create_default_context(cafile=str(certs.ca))
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(certs.cert), str(certs.key))
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = client.wrap_bio(to_client, to_server, server_hostname="127.0.0.1")
    tls_server = server.wrap_bio(to_server, to_client, server_side=True)
    for _ in range(10):
        done = 0
        for side in (tls_client, tls_server):
            try:
                side.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        if done == 2:
            break
    else:
        raise AssertionError("the in-memory handshake did not finish")
    peer = tls_client.getpeercert()
    assert peer is not None
    assert peer["subjectAltName"] == (
        ("IP Address", "127.0.0.1"),
        ("DNS", "localhost"),
    )
