"""The send path's rules against scripted servers (no server process, no cluster).

Redirects (MOVED, ASK, TRYAGAIN, a slot no node serves), WAIT / WAITAOF replies and
partial failures, through the real ``Producer``, redis-py clients and ``send/`` code:
only the socket is replaced (see ``tests/scripted.py``). The same rules are tested
against real servers in ``test_wait.py``, ``test_refused_writes.py``,
``test_queue_deletes.py`` and ``tests/scale/test_cluster*.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.crc import key_slot

from aioredstream import Model, Producer, ReplicationError, ServerError, TopologyError

from .helpers import Post, User
from .scripted import Cluster, Command, ScriptedServer, node_client


class Order(Model):
    def __init__(self, id: int) -> None:
        self.id = id


# where each record class's streams live on the three-primary scripted cluster
USERS_SLOT = key_slot(b"users")  # 14124 -> 127.0.0.1:7002
USERS_DELAY = b"redstream:stream:{users}.delay"
POSTS_DELAY = b"redstream:stream:{posts}.delay"  # 7051 -> 127.0.0.1:7001
NODE_DELAY = b"redstream:stream:users.delay"
NODE_STREAM = b"redstream:stream:users"


def xadd_of(record_id: int) -> Callable[[Command], bool]:
    """Matches the XADD whose payload is ``{"id":record_id}``."""
    payload = b'{"id":%d}' % record_id
    return lambda command: command[0] == b"XADD" and command[-1] == payload


def any_xadd(command: Command) -> bool:
    return command[0] == b"XADD"


def error(message: str) -> bytes:
    return b"-%b\r\n" % message.encode()


def landed(cluster: Cluster, key: bytes) -> dict[str, list[bytes]]:
    """The payloads each node applied to ``key`` (XADDs it answered with an id)."""
    return {
        name: server.payloads(key)
        for name, server in cluster.servers.items()
        if server.payloads(key)
    }


@pytest.fixture
def cluster() -> Cluster:
    return Cluster([7000, 7001, 7002])


@pytest.fixture
async def cluster_producer(cluster: Cluster) -> AsyncIterator[Producer]:
    client = cluster.client()
    yield Producer(client)
    await client.aclose()


# -- redirects -------------------------------------------------------------------------


async def test_moved_resends_exactly_the_redirected_records_to_the_named_node(
    cluster: Cluster, cluster_producer: Producer
) -> None:
    await cluster_producer.bulk_delay([Order(9)])  # the client has read the slot map
    maps_read = cluster.sent(b"CLUSTER")
    cluster[7002].script(xadd_of(1), error(f"MOVED {USERS_SLOT} 127.0.0.1:7000"))
    ids = await cluster_producer.bulk_delay([User(0), User(1), User(2), Post(3)])
    # each record landed once, on the node that applied it, and its id is that node's
    assert landed(cluster, USERS_DELAY) == {
        "127.0.0.1:7002": [b'{"id":0}', b'{"id":2}'],
        "127.0.0.1:7000": [b'{"id":1}'],
    }
    assert landed(cluster, POSTS_DELAY) == {"127.0.0.1:7001": [b'{"id":3}']}
    assert [i.split("-")[0] for i in ids] == ["7002", "7000", "7002", "7001"]
    assert len(cluster[7002].sent(b"XADD")) == 3  # nothing sent there twice
    # the redirect marked the slot map stale: it was read again before the re-send
    assert cluster.sent(b"CLUSTER") == maps_read + 1


async def test_after_the_slot_map_is_read_again_every_connection_is_one_the_client_closes(
    cluster: Cluster, cluster_producer: Producer
) -> None:
    """redis-py 7.x maps the slots to new node objects after a refresh, while aclose()
    closes only the nodes it keeps in nodes_cache: connections opened on the others
    would never be closed."""
    client: Any = cluster_producer.client
    await cluster_producer.bulk_delay([User(0)])  # the client has read the slot map
    await client.nodes_manager.initialize()  # read again (as after a MOVED)
    await cluster_producer.bulk_delay([User(1), Post(2)])
    await cluster_producer.delay(User(3))
    kept = {id(node) for node in client.nodes_manager.nodes_cache.values()}
    slot_nodes = {id(n): n for nodes in client.nodes_manager.slots_cache.values() for n in nodes}
    unkept = [n for i, n in slot_nodes.items() if i not in kept]
    assert not [n.name for n in unkept if any(c.is_connected for c in n._connections)]


async def test_after_a_migration_the_next_call_goes_straight_to_the_new_owner(
    cluster: Cluster, cluster_producer: Producer
) -> None:
    await cluster_producer.bulk_delay([User(0)])  # the client knows the old slot map
    cluster.move(USERS_SLOT, 7000)
    cluster[7002].script(any_xadd, error(f"MOVED {USERS_SLOT} 127.0.0.1:7000"), times=100)
    await cluster_producer.bulk_delay([User(1), User(2)])
    sent_to_old = len(cluster[7002].sent(b"XADD"))
    assert sent_to_old == 3  # User(0), then the two the old owner redirected
    single = await cluster_producer.delay(User(3))
    await cluster_producer.bulk_delay([User(4)])
    assert len(cluster[7002].sent(b"XADD")) == sent_to_old  # no second detour
    assert single.startswith("7000-")
    assert landed(cluster, USERS_DELAY) == {
        "127.0.0.1:7002": [b'{"id":0}'],
        "127.0.0.1:7000": [b'{"id":1}', b'{"id":2}', b'{"id":3}', b'{"id":4}'],
    }


async def test_ask_resends_behind_asking_and_keeps_the_slot_owner(
    cluster: Cluster, cluster_producer: Producer
) -> None:
    cluster[7002].script(xadd_of(1), error(f"ASK {USERS_SLOT} 127.0.0.1:7001"))
    ids = await cluster_producer.bulk_delay([User(0), User(1), User(2)])
    commands = [c[0] for c in cluster[7001].commands if c[0] in (b"ASKING", b"XADD")]
    assert commands == [b"ASKING", b"XADD"]  # ASKING right in front of the one re-sent XADD
    assert cluster[7001].sent(b"XADD")[0][-1] == b'{"id":1}'
    assert landed(cluster, USERS_DELAY) == {
        "127.0.0.1:7002": [b'{"id":0}', b'{"id":2}'],
        "127.0.0.1:7001": [b'{"id":1}'],
    }
    assert [i.split("-")[0] for i in ids] == ["7002", "7001", "7002"]
    await cluster_producer.bulk_delay([User(3)])  # ASK moves nothing: the owner stays
    assert landed(cluster, USERS_DELAY)["127.0.0.1:7002"][-1] == b'{"id":3}'


async def test_a_single_call_that_is_redirected_is_sent_again_once(
    cluster: Cluster, cluster_producer: Producer
) -> None:
    await cluster_producer.delay(User(0))
    cluster.move(USERS_SLOT, 7000)
    cluster[7002].script(any_xadd, error(f"MOVED {USERS_SLOT} 127.0.0.1:7000"))
    message_id = await cluster_producer.delay(User(1))
    assert message_id.startswith("7000-")
    assert landed(cluster, USERS_DELAY) == {
        "127.0.0.1:7002": [b'{"id":0}'],
        "127.0.0.1:7000": [b'{"id":1}'],
    }


async def test_a_single_queue_call_that_is_redirected_deletes_on_the_new_owner(
    cluster: Cluster, cluster_producer: Producer
) -> None:
    delay_id = await cluster_producer.delay(User(1))
    cluster.move(USERS_SLOT, 7000)
    cluster[7002].script(
        lambda c: c[0] == b"EVALSHA", error(f"MOVED {USERS_SLOT} 127.0.0.1:7000"), times=100
    )
    assert await cluster_producer.queue(User(1), delay_message_id=delay_id)
    # sent again as XADD, then (it succeeded) XDEL, both on the new owner
    assert landed(cluster, b"redstream:stream:{users}") == {"127.0.0.1:7000": [b'{"id":1}']}
    assert cluster[7000].deleted == [(USERS_DELAY, [delay_id.encode()])]
    assert cluster[7002].deleted == []


async def test_a_refused_single_queue_call_keeps_its_delay_message() -> None:
    client, server = node_client()
    producer = Producer(client)
    try:
        delay_id = await producer.delay(User(1))
        server.script(lambda c: c[0] == b"EVALSHA", error(OOM))
        with pytest.raises(ServerError, match="XADD") as caught:
            await producer.queue(User(1), delay_message_id=delay_id)
        assert OOM in str(caught.value)
        await producer.queue(User(2), delay_message_id=delay_id)  # the script is loaded
    finally:
        await client.aclose()
    assert server.payloads(NODE_STREAM) == [b'{"id":2}']
    assert server.deleted == [(NODE_DELAY, [delay_id.encode()])]  # by the second call only
    assert len(server.sent(b"SCRIPT")) == 1


async def test_redirects_that_never_end_raise_topology_error_after_three(
    cluster: Cluster, cluster_producer: Producer
) -> None:
    cluster[7002].script(any_xadd, error(f"MOVED {USERS_SLOT} 127.0.0.1:7000"), times=100)
    cluster[7000].script(any_xadd, error(f"MOVED {USERS_SLOT} 127.0.0.1:7002"), times=100)
    with pytest.raises(TopologyError, match="still redirected after 3 attempts") as caught:
        await cluster_producer.bulk_delay([User(0), User(1)])
    assert "record at index 0" in str(caught.value)
    assert landed(cluster, USERS_DELAY) == {}
    # the first attempt and three redirects, each sending both records
    assert cluster.sent(b"XADD") == 4 * 2


async def test_tryagain_raises_topology_error_with_the_servers_words(
    cluster: Cluster, cluster_producer: Producer
) -> None:
    words = "TRYAGAIN Multiple keys request during rehashing of slot"
    cluster[7002].script(xadd_of(1), error(words))
    with pytest.raises(TopologyError) as caught:
        await cluster_producer.bulk_delay([User(0), User(1), User(2)])
    message = str(caught.value)
    assert words in message
    assert "XADD" in message
    assert "record at index 1" in message
    # not applied; the others of the call were (the error says a retry may duplicate them)
    assert landed(cluster, USERS_DELAY) == {"127.0.0.1:7002": [b'{"id":0}', b'{"id":2}']}


async def test_tryagain_names_the_node(cluster: Cluster, cluster_producer: Producer) -> None:
    cluster[7002].script(xadd_of(0), error("TRYAGAIN Multiple keys request"))
    with pytest.raises(TopologyError) as caught:
        await cluster_producer.bulk_delay([User(0)])
    assert "127.0.0.1:7002" in str(caught.value)


@pytest.mark.parametrize("full_coverage", [False, True])
async def test_a_slot_no_node_serves_raises_topology_error_until_the_map_heals(
    full_coverage: bool,
) -> None:
    cluster = Cluster([7000, 7001, 7002], full_coverage=full_coverage)
    cluster.drop(USERS_SLOT)
    client = cluster.client()
    producer = Producer(client)
    try:
        attempts: list[Callable[[], Awaitable[object]]] = [
            lambda: producer.bulk_delay([User(0)]),
            lambda: producer.delay(User(0)),
        ]
        for attempt in attempts:
            with pytest.raises(TopologyError, match="cluster slot map") as caught:
                await attempt()
            # redis-py's words are kept: the slot (or the coverage) is named
            assert str(USERS_SLOT) in str(caught.value) or "covered" in str(caught.value)
        assert cluster.sent(b"XADD") == 0
        cluster.move(USERS_SLOT, 7001)  # a replica took over: the map is whole again
        assert (await producer.delay(User(1))).startswith("7001-")
    finally:
        await client.aclose()


# -- WAIT / WAITAOF ----------------------------------------------------------------------


def supports_waitaof(server: ScriptedServer) -> None:
    server.script(
        lambda c: c[:2] == [b"COMMAND", b"INFO"], b"*1\r\n*1\r\n$7\r\nwaitaof\r\n", times=100
    )


@pytest.mark.parametrize(("replicas", "ok"), [(0, False), (1, False), (2, True), (3, True)])
async def test_bulk_delay_waits_once_and_checks_the_count(replicas: int, ok: bool) -> None:
    client, server = node_client()
    server.replicas = replicas
    producer = Producer(client, wait=2, slice_size=2)
    try:
        if ok:
            ids = await producer.bulk_delay([User(i) for i in range(5)])
            assert len(ids) == 5
        else:
            with pytest.raises(ReplicationError) as caught:
                await producer.bulk_delay([User(i) for i in range(5)])
            assert (caught.value.acknowledged, caught.value.required) == (replicas, 2)
    finally:
        await client.aclose()
    # one WAIT, after the last slice's writes, on the connection that made them
    names = [c[0] for c in server.commands if c[0] in (b"XADD", b"WAIT")]
    assert names == [b"XADD"] * 5 + [b"WAIT"]
    assert server.sent(b"WAIT") == [[b"WAIT", b"2", b"0"]]
    assert len(server.payloads(NODE_DELAY)) == 5  # written either way: on the primary only


@pytest.mark.parametrize(
    ("aof", "ok"), [((1, 1), True), ((2, 3), True), ((0, 1), False), ((1, 0), False)]
)
async def test_waitaof_checks_local_and_replica_counts(aof: tuple[int, int], ok: bool) -> None:
    client, server = node_client()
    supports_waitaof(server)
    server.aof = aof
    producer = Producer(client, wait_aof=(1, 1), wait_timeout=0.5)
    try:
        if ok:
            await producer.bulk_delay([User(0)])
            await producer.delay(User(1))
        else:
            with pytest.raises(ReplicationError, match="WAITAOF") as caught:
                await producer.bulk_delay([User(0)])
            assert caught.value.local_acknowledged == aof[0]
            assert caught.value.acknowledged == aof[1]
            assert (caught.value.local_required, caught.value.required) == (1, 1)
            with pytest.raises(ReplicationError, match="WAITAOF"):
                await producer.delay(User(1))
    finally:
        await client.aclose()
    assert [c[1:] for c in server.sent(b"WAITAOF")] == [[b"1", b"1", b"500"]] * 2


async def test_coalesced_callers_each_get_their_own_answer() -> None:
    """A WAIT that falls short fails every delay call of its batch with its own error;
    a refused write is its caller's answer whatever WAIT says; queue calls need no WAIT."""
    client, server = node_client()
    server.replicas = 0
    server.script(xadd_of(2), error("OOM command not allowed when used memory > 'maxmemory'."))
    producer = Producer(client, wait=1)
    try:
        results = await asyncio.gather(
            producer.delay(User(0)),
            producer.delay(User(1)),
            producer.delay(User(2)),
            producer.queue(User(3)),
            producer.delay(User(4)),
            return_exceptions=True,
        )
    finally:
        await client.aclose()
    shortfalls = [results[i] for i in (0, 1, 4)]
    assert all(isinstance(r, ReplicationError) for r in shortfalls), results
    assert len({id(r) for r in shortfalls}) == 3  # one exception object per caller
    assert isinstance(results[2], ServerError)
    assert not isinstance(results[2], ReplicationError)
    assert "OOM command not allowed" in str(results[2])
    assert results[3] is True
    assert len(server.sent(b"WAIT")) >= 1


async def test_a_cluster_waits_per_node_and_names_the_nodes_that_fell_short(
    cluster: Cluster,
) -> None:
    cluster[7001].replicas = 0  # posts
    cluster[7002].replicas = 1  # users
    client = cluster.client()
    producer = Producer(client, wait=1)
    try:
        with pytest.raises(ReplicationError) as caught:
            await producer.bulk_delay([User(0), Post(1), User(2)])
    finally:
        await client.aclose()
    assert caught.value.nodes == ("127.0.0.1:7001",)
    assert caught.value.acknowledged == 0
    for port in (7001, 7002):  # each node's WAIT follows its own writes
        names = [c[0] for c in cluster[port].commands if c[0] in (b"XADD", b"WAIT")]
        assert names[-1] == b"WAIT"
        assert b"XADD" in names
    assert cluster[7000].sent(b"WAIT") == []


# -- partial failures ------------------------------------------------------------------


WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
OOM = "OOM command not allowed when used memory > 'maxmemory'."


@pytest.mark.parametrize("failed", [0, 2, 4])
async def test_a_refused_delay_write_names_its_record(failed: int) -> None:
    client, server = node_client()
    server.script(xadd_of(failed), error(WRONGTYPE))
    producer = Producer(client, slice_size=2)
    try:
        with pytest.raises(ServerError) as caught:
            await producer.bulk_delay([User(i) for i in range(5)])
    finally:
        await client.aclose()
    assert f"record at index {failed}" in str(caught.value)
    assert WRONGTYPE in str(caught.value)
    assert b'{"id":%d}' % failed not in server.payloads(NODE_DELAY)


@pytest.mark.parametrize("streams", [1, 2], ids=["one stream", "two streams"])
@pytest.mark.parametrize("failed", [0, 4, 6])
async def test_the_queue_half_deletes_exactly_the_delay_ids_whose_xadd_succeeded(
    failed: int, streams: int
) -> None:
    client, server = node_client()
    producer = Producer(client, slice_size=3)
    records = [User(i) if streams == 1 or i % 2 else Post(i) for i in range(7)]
    delay_key = [b"redstream:stream:%bs.delay" % type(r).__name__.lower().encode() for r in records]
    try:
        ids = await producer.bulk_delay(records)
        server.script(
            lambda c: c[0] == b"XADD" and b".delay" not in c[1] and c[-1] == b'{"id":%d}' % failed,
            error(OOM),
        )
        with pytest.raises(ServerError) as caught:
            await producer.bulk_queue(records, delay_message_ids=ids)
    finally:
        await client.aclose()
    assert f"record at index {failed}" in str(caught.value)
    assert OOM in str(caught.value)
    deleted = [(key, i.decode()) for key, batch in server.deleted for i in batch]
    assert ids[failed] not in {i for _, i in deleted}  # the delayer will queue it
    # every other record whose queue message was written lost its delay message, from
    # its own delay stream, once
    written = {p for key in (NODE_STREAM, b"redstream:stream:posts") for p in server.payloads(key)}
    assert sorted(deleted) == sorted(
        (delay_key[i], ids[i]) for i in range(7) if b'{"id":%d}' % i in written and i != failed
    )
    # what was sent before the refusal was read went through: the slice of the refusal
    # and every slice before it
    through = min(failed // 3 * 3 + 3, 7)
    assert {b'{"id":%d}' % i for i in range(through) if i != failed} <= written


async def test_after_a_refused_queue_write_no_further_slice_is_sent() -> None:
    client, server = node_client()
    producer = Producer(client, slice_size=1)
    users = [User(i) for i in range(12)]
    try:
        ids = await producer.bulk_delay(users)
        server.script(lambda c: c[0] == b"XADD" and c[1] == NODE_STREAM, error(OOM))
        with pytest.raises(ServerError, match="record at index 0"):
            await producer.bulk_queue(users, delay_message_ids=ids)
    finally:
        await client.aclose()
    sent = [c[-1] for c in server.sent(b"XADD") if c[1] == NODE_STREAM]
    # the slices already in flight when the refusal was read, and no more
    assert 1 < len(sent) < len(users)
    assert sent == [b'{"id":%d}' % i for i in range(len(sent))]
    deleted = [i.decode() for _, batch in server.deleted for i in batch]
    assert sorted(deleted) == sorted(ids[1 : len(sent)])  # the unsent keep theirs


async def test_bulk_on_a_cluster_keeps_the_refused_records_delay_message(
    cluster: Cluster, cluster_producer: Producer
) -> None:
    records = [User(0), Post(1), User(2), Post(3), Order(4)]
    cluster[7002].script(
        lambda c: c[0] == b"XADD" and c[1] == b"redstream:stream:{users}" and c[-1] == b'{"id":2}',
        error(WRONGTYPE),
    )
    with pytest.raises(ServerError, match="WRONGTYPE") as caught:
        async with cluster_producer.bulk(records) as ids:
            pass
    assert "record at index 2" in str(caught.value)
    deleted = {
        i.decode()
        for server in cluster.servers.values()
        for _, batch in server.deleted
        for i in batch
    }
    assert deleted == {ids[0], ids[1], ids[3], ids[4]}
    # each XDEL went to the node that holds its delay stream
    for server in cluster.servers.values():
        for key, batch in server.deleted:
            assert all(i.decode().startswith(server.name.split(":")[1]) for i in batch), key


async def test_a_refused_bulk_delay_returns_no_ids_but_keeps_what_was_written() -> None:
    client, server = node_client()
    server.script(xadd_of(1), error(OOM))
    producer = Producer(client)
    try:
        with pytest.raises(ServerError, match="OOM"):
            async with producer.bulk([User(0), User(1), User(2)]):
                raise AssertionError("the body must not run when the delay half failed")
    finally:
        await client.aclose()
    # the others are in the delay stream (the delayer queues them); nothing was queued
    assert server.payloads(NODE_DELAY) == [b'{"id":0}', b'{"id":2}']
    assert server.sent(b"XDEL") == []
    assert server.payloads(NODE_STREAM) == []
