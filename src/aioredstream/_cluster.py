"""Producer writes on a Redis Cluster: per-node groups on the raw-RESP path, WAIT per node.

A call's records are grouped by the node that owns their stream's slot (the
client's slot map); each group is sent on one connection of that node through
:func:`aioredstream._wire.execute`, so slicing, windowing, error translation and
the close-on-error rule are the single-node ones. The groups run concurrently.
With ``wait``, each group ends in its own ``WAIT`` on the connection that made
its writes, because WAIT only counts that connection's writes on that node.

Hash tags (:class:`~aioredstream._keys.Keys` with ``hash_tags=True``) put a
stream and its delay stream in one slot, so ``XADD <stream>`` and
``XDEL <stream>.delay`` for one record always go to the same node.

Failures: a node that answers ``MOVED``/``ASK``/``TRYAGAIN``/``CLUSTERDOWN`` did
not apply that command; a lost connection leaves the node's writes unknown. Both
raise (:class:`TopologyError` / :class:`ServerConnectionError`) after every group
has finished, and the slot map is refreshed before the next call. Nothing is
retried inside the call: a retry of the whole call writes at most duplicates,
which consumers tolerate by design, while returned ids always belong to their
records (a call that raises returns none).

The alternative, redis-py's ``ClusterPipeline``, builds a command object per
record, routes and parses each reply in Python and cannot WAIT per node on the
writing connection; ``benchmarks/test_cluster_throughput.py`` measures its cost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

import anyio
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection
from redis.exceptions import SlotNotCoveredError

from . import _wire
from .errors import (
    ArgumentError,
    RedstreamError,
    ReplicationError,
    ServerConnectionError,
    TopologyError,
)

if TYPE_CHECKING:
    from .producer import Producer, _Target

__all__ = ["ClusterWriter", "is_cluster", "use_hash_tags"]

logger = logging.getLogger("aioredstream.cluster")

#: builds the RESP bytes of record ``i`` of a call
Build = Callable[[int], bytes]
#: (reply, command index within the record, record index) -> raise if it is an error
Check = Callable[[Any, int, int], None]
#: (error reply, command name, record index) -> raises the matching RedstreamError
RaiseError = Callable[[Any, str, int | None], None]


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster)


def use_hash_tags(client: object, hash_tags: bool | None) -> bool:
    """``None`` means: on for a cluster, off (the Ruby layout) otherwise."""
    cluster = is_cluster(client)
    if hash_tags is None:
        return cluster
    if not isinstance(hash_tags, bool):
        raise ArgumentError(f"hash_tags must be None, True or False, got {hash_tags!r}")
    if cluster and not hash_tags:
        raise ArgumentError(
            "hash_tags=False on a RedisCluster: the Ruby layout puts a stream and its "
            "delay stream (and a lock and its notify list) in different slots, which the "
            "delayer and the lock cannot use together; use hash_tags=True (or None)"
        )
    return hash_tags


class _NodePool:
    """The two methods of a connection pool that ``_wire.execute`` uses, on a ClusterNode."""

    __slots__ = ("node",)

    def __init__(self, node: ClusterNode) -> None:
        self.node = node

    async def get_connection(self) -> Connection:
        conn = self.node.acquire_connection()
        if not conn.is_connected:
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
            except BaseException:
                self.node.release(conn)
                raise
        return conn

    async def release(self, conn: Connection) -> None:
        self.node.release(conn)


class _NodeClient:
    __slots__ = ("connection_pool",)

    def __init__(self, node: ClusterNode) -> None:
        self.connection_pool = _NodePool(node)


def _as_client(node: ClusterNode) -> Redis:
    # _wire.execute needs only `.connection_pool` (get_connection/release): duck-typed.
    return cast(Redis, _NodeClient(node))


class ClusterWriter:
    """The cluster send path of one :class:`~aioredstream.Producer`."""

    def __init__(self, client: RedisCluster, raise_error: RaiseError) -> None:
        self.client = client
        self._raise_error = raise_error
        self._stale = False

    async def _owners(self, slots: Iterable[int]) -> dict[int, ClusterNode]:
        with _wire.translate_errors("cluster slot map"):
            if self._stale:  # stays set until a refresh succeeds
                await self.client.nodes_manager.initialize()
                self._stale = False
            await self.client.initialize()  # a no-op once the client knows the cluster
        manager = self.client.nodes_manager
        try:
            return {slot: manager.get_node_from_slot(slot) for slot in set(slots)}
        except SlotNotCoveredError as exc:
            self._stale = True
            raise TopologyError(f"cluster slot map: {exc}") from exc

    async def call(self, *args: bytes | str | int, what: str) -> Any:
        """One raw command on a primary (for checks such as ``COMMAND INFO``)."""
        await self._owners(())
        return await _wire.call(_as_client(self.client.get_random_primary_node()), *args, what=what)

    async def send_delay(
        self, producer: Producer, targets: Sequence[_Target], args: Sequence[bytes]
    ) -> list[str]:
        ids: list[str | None] = [None] * len(args)

        def build(i: int) -> bytes:
            return targets[i].xadd_delay + args[i]

        def check(reply: Any, _: int, i: int) -> None:
            if isinstance(reply, bytes):
                ids[i] = reply.decode()
            else:
                self._raise_error(reply, "XADD", i)

        await self._send(producer, targets, build, 1, check, "delay", producer._wait_replies)
        if None in ids:  # cannot happen: every node group raised or filled its ids
            raise ServerConnectionError("delay: a node returned fewer replies than commands")
        return cast(list[str], ids)

    async def send_queue(
        self,
        producer: Producer,
        targets: Sequence[_Target],
        args: Sequence[bytes],
        ids: Sequence[bytes] | None,
    ) -> None:
        def build(i: int) -> bytes:
            data = targets[i].xadd + args[i]
            if ids is None:
                return data
            return data + targets[i].xdel_delay + b"$%d\r\n%b\r\n" % (len(ids[i]), ids[i])

        def check(reply: Any, position: int, i: int) -> None:
            if isinstance(reply, _wire.ReplyError):
                self._raise_error(reply, "XDEL" if position else "XADD", i)

        await self._send(producer, targets, build, 1 if ids is None else 2, check, "queue", 0)

    async def _send(
        self,
        producer: Producer,
        targets: Sequence[_Target],
        build: Build,
        per_record: int,
        check: Check,
        what: str,
        wait_replies: int,
    ) -> None:
        owners = await self._owners(target.slot for target in targets)
        groups: dict[str, tuple[ClusterNode, list[int]]] = {}
        for i, target in enumerate(targets):
            node = owners[target.slot]
            groups.setdefault(node.name, (node, []))[1].append(i)
        wait = bool(wait_replies)
        results = await asyncio.gather(
            *(
                self._send_group(producer, node, indices, build, per_record, check, what, wait)
                for node, indices in groups.values()
            ),
            return_exceptions=True,
        )
        await self._raise_first([node for node, _ in groups.values()], results)

    async def _send_group(
        self,
        producer: Producer,
        node: ClusterNode,
        indices: list[int],
        build: Build,
        per_record: int,
        check: Check,
        what: str,
        wait: bool = False,
    ) -> None:
        size = producer.slice_size
        tail, tail_count = (producer._wait_tail, producer._wait_replies) if wait else (b"", 0)
        n = len(indices)
        acks: list[Any] = []

        def chunks() -> Iterable[_wire.Chunk]:
            for start in range(0, n, size):
                stop = min(start + size, n)
                data = b"".join([build(indices[k]) for k in range(start, stop)])
                count = (stop - start) * per_record
                if stop == n and tail_count:
                    yield data + tail, count + tail_count
                else:
                    yield data, count

        def sink(chunk: int, replies: list[Any]) -> None:
            base = chunk * size * per_record
            for offset, reply in enumerate(replies):
                position = base + offset
                if position >= n * per_record:
                    acks.append(reply)
                else:
                    check(reply, position % per_record, indices[position // per_record])

        await _wire.execute(
            _as_client(node),
            chunks(),
            sink,
            what=f"{what} on {node.name}",
            last_read_extra_s=(producer.wait_timeout or None) if wait else 0.0,
        )
        if wait:
            producer._check_acks(acks)

    async def _raise_first(self, nodes: list[ClusterNode], results: list[Any]) -> None:
        """Raise what the node groups raised: bugs, then lost nodes, then command errors,
        then replication shortfalls (naming every node that fell short)."""
        failed = [(n, r) for n, r in zip(nodes, results, strict=True) if r is not None]
        for _, error in failed:
            if not isinstance(error, RedstreamError):
                raise error  # not ours (a bug): untouched
        lost = [(n, e) for n, e in failed if isinstance(e, ServerConnectionError)]
        for node, error in lost:
            # The node may be gone or no longer own its slots: drop its idle
            # connections and re-read the slot map before the next call.
            self._stale = True
            logger.info("cluster node %s failed mid-call: %s", node.name, error)
            node.update_active_connections_for_reconnect()
            with anyio.CancelScope(shield=True):
                await node.disconnect_free_connections()
        if lost:
            raise lost[0][1]
        for _, error in failed:
            if not isinstance(error, ReplicationError):
                raise error
        if failed:
            raise _combined([(n.name, e) for n, e in failed])


def _combined(shortfalls: list[tuple[str, Any]]) -> ReplicationError:
    first = shortfalls[0][1]
    return ReplicationError(
        "; ".join(f"on {name}: {error}" for name, error in shortfalls),
        acknowledged=min(error.acknowledged for _, error in shortfalls),
        required=first.required,
        local_acknowledged=first.local_acknowledged,
        local_required=first.local_required,
        nodes=tuple(name for name, _ in shortfalls),
    )
