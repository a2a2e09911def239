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

Redirects: a node that answers ``MOVED`` or ``ASK`` did not apply that command,
so exactly the redirected commands are sent again, in call order, to the node the
reply names (behind ``ASKING`` for ``ASK``), at most three times (then
:class:`TopologyError`); the slot map is re-read before the next call. A redirect
therefore never writes anything twice.
``TRYAGAIN``/``CLUSTERDOWN`` raise :class:`TopologyError`. A lost connection leaves
that node's writes unknown: :class:`ServerConnectionError` naming the node, raised
after every group has finished. Nothing else is retried inside the call: a retry of
the whole call writes at most duplicates, which consumers tolerate by design, while
returned ids always belong to their records (a call that raises returns none).

The alternative, redis-py's ``ClusterPipeline``, builds a command object per
record, routes and parses each reply in Python and cannot WAIT per node on the
writing connection; ``benchmarks/test_cluster_throughput.py`` measures its cost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
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
    from ._packing import Target
    from .producer import Producer

__all__ = ["ClusterWriter", "is_cluster", "use_hash_tags"]

logger = logging.getLogger("aioredstream.cluster")

#: builds the RESP bytes of the commands of record ``i`` of a call
Build = Callable[[int], tuple[bytes, ...]]
#: (reply, command index within the record, record index) -> raise if it is an error
Check = Callable[[Any, int, int], None]
#: (error reply, command name, record index) -> raises the matching RedstreamError
RaiseError = Callable[[Any, str, int | None], None]


_MAX_REDIRECTS = 3
_ASKING = b"*1\r\n$6\r\nASKING\r\n"


class _Call:
    """What one producer call sends: records' commands, how to check replies, WAIT or not."""

    __slots__ = ("build", "check", "per_record", "producer", "targets", "wait", "what")

    def __init__(
        self,
        producer: Producer,
        targets: Sequence[Target],
        build: Build,
        per_record: int,
        check: Check,
        what: str,
        wait: bool,
    ) -> None:
        self.producer = producer
        self.targets = targets
        self.build = build
        self.per_record = per_record  # commands per record
        self.check = check
        self.what = what
        self.wait = wait


class _Redirect:
    """Where a record's redirected commands go next, and which of them (not applied)."""

    __slots__ = ("address", "ask", "positions")

    def __init__(self, ask: bool, address: str, positions: list[int]) -> None:
        self.ask = ask
        self.address = address
        self.positions = positions


def _redirect(reply: Any) -> tuple[bool, str] | None:
    """``(is_ask, "host:port")`` for a ``MOVED``/``ASK`` reply, else ``None``."""
    if isinstance(reply, _wire.ReplyError):
        parts = str(reply).split(" ")
        if len(parts) == 3 and parts[0] in ("MOVED", "ASK"):
            return parts[0] == "ASK", parts[2]
    return None


class _Group:
    """One node group of a call: its chunks, and its replies mapped back to records.

    The first attempt sends every command of every record, so reply ``k`` belongs
    to record ``indices[k // per_record]``; a re-send lists each reply's (record,
    command) in ``expected``, ASKING's ``+OK`` as ``(-1, -1)``.
    """

    def __init__(
        self,
        call: _Call,
        indices: list[int],
        asking: bool,
        redirected: dict[int, _Redirect],
        again: dict[int, _Redirect],
    ) -> None:
        self.call = call
        self.indices = indices
        self.asking = asking
        self.redirected = redirected
        self.again = again
        self.plain = not asking and not redirected
        self.expected: list[tuple[int, int]] = []
        self.acks: list[Any] = []
        self.cursor = 0

    def chunks(self) -> Iterator[_wire.Chunk]:
        call, indices = self.call, self.indices
        size = call.producer.slice_size
        tail, tail_count = (call.producer._wait_tail, call.producer._wait_replies)
        if not call.wait:
            tail, tail_count = b"", 0
        for start in range(0, len(indices), size):
            chunk = indices[start : start + size]
            if self.plain:
                parts = [c for i in chunk for c in call.build(i)]
            else:
                parts = self._resend_parts(chunk)
            if start + size >= len(indices) and tail_count:
                yield b"".join(parts) + tail, len(parts) + tail_count
            else:
                yield b"".join(parts), len(parts)

    def _resend_parts(self, chunk: list[int]) -> list[bytes]:
        parts: list[bytes] = []
        for i in chunk:
            commands = self.call.build(i)
            redirect = self.redirected.get(i)
            for position in redirect.positions if redirect else range(len(commands)):
                if self.asking:  # ASKING holds for the one command after it
                    parts.append(_ASKING)
                    self.expected.append((-1, -1))
                parts.append(commands[position])
                self.expected.append((i, position))
        return parts

    def sink(self, _: int, replies: list[Any]) -> None:
        per = self.call.per_record
        end = len(self.indices) * per if self.plain else len(self.expected)
        for reply in replies:
            if self.cursor >= end:
                self.acks.append(reply)
                continue
            if self.plain:
                record, position = self.indices[self.cursor // per], self.cursor % per
            else:
                record, position = self.expected[self.cursor]
            self.cursor += 1
            if record < 0:
                continue  # ASKING's +OK
            redirect = _redirect(reply)
            if redirect is None:
                self.call.check(reply, position, record)
            elif record in self.again:
                self.again[record].positions.append(position)
            else:
                self.again[record] = _Redirect(*redirect, [position])


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster)


def check_client(client: object) -> None:
    """Refuse what is not an asyncio client before it fails at the first ``await``."""
    if not isinstance(client, Redis | RedisCluster):
        kind = f"{type(client).__module__}.{type(client).__qualname__}"
        raise ArgumentError(
            f"client must be a redis.asyncio.Redis (or a redis.asyncio.cluster.RedisCluster, "
            f"or a redis.asyncio.sentinel master_for() client), got {kind}; build it with "
            "redis.asyncio.Redis.from_url(...)"
        )


def use_hash_tags(client: object, hash_tags: bool | None) -> bool:
    """``None`` means: on for a cluster, off (the Ruby layout) otherwise.

    Producer and workers all pick their key layout here, so the client is checked here.
    """
    check_client(client)
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


def as_node_client(node: ClusterNode) -> Redis:
    """``node`` as a target of :func:`aioredstream._wire.execute` (its pool is all it uses)."""
    return cast(Redis, _NodeClient(node))


_as_client = as_node_client


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
        # get_primaries() exists on every redis-py we support (get_random_primary_node: 7.1+)
        return await _wire.call(_as_client(self.client.get_primaries()[0]), *args, what=what)

    async def send_delay(
        self, producer: Producer, targets: Sequence[Target], args: Sequence[bytes]
    ) -> list[str]:
        ids: list[str | None] = [None] * len(args)

        def build(i: int) -> tuple[bytes, ...]:
            return (targets[i].xadd_delay + args[i],)

        def check(reply: Any, _: int, i: int) -> None:
            if isinstance(reply, bytes):
                ids[i] = reply.decode()
            else:
                self._raise_error(reply, "XADD", i)

        call = _Call(producer, targets, build, 1, check, "delay", bool(producer._wait_replies))
        await self._send(call)
        if None in ids:  # cannot happen: every node group raised or filled its ids
            raise ServerConnectionError("delay: a node returned fewer replies than commands")
        return cast(list[str], ids)

    async def send_queue(
        self,
        producer: Producer,
        targets: Sequence[Target],
        args: Sequence[bytes],
        ids: Sequence[bytes] | None,
    ) -> None:
        def build(i: int) -> tuple[bytes, ...]:
            return (targets[i].xadd + args[i],)

        def check(reply: Any, _: int, i: int) -> None:
            if isinstance(reply, _wire.ReplyError):
                self._raise_error(reply, "XADD", i)

        await self._send(_Call(producer, targets, build, 1, check, "queue", False))
        if ids is None:
            return
        # Delete the delay messages only now that every queue write succeeded (a refused
        # XADD must not take its delay message with it). Not one XADD-then-XDEL script
        # per record as on a single node: during a slot migration the importing node
        # answers multi-key scripts on new keys with TRYAGAIN.

        def build_xdel(i: int) -> tuple[bytes, ...]:
            raw = ids[i]
            return (targets[i].xdel_delay + b"$%d\r\n%b\r\n" % (len(raw), raw),)

        def check_xdel(reply: Any, _: int, i: int) -> None:
            if isinstance(reply, _wire.ReplyError):
                self._raise_error(reply, "XDEL", i)

        await self._send(_Call(producer, targets, build_xdel, 1, check_xdel, "queue", False))

    async def _send(self, call: _Call) -> None:
        """Send every record; re-send the commands a node redirected to the node the
        redirect names (behind ASKING for ASK), up to _MAX_REDIRECTS times."""
        pending = list(range(len(call.targets)))
        redirected: dict[int, _Redirect] = {}
        for _ in range(_MAX_REDIRECTS + 1):
            owners = await self._owners(call.targets[i].slot for i in pending)
            groups: dict[tuple[str, bool], tuple[ClusterNode, list[int]]] = {}
            for i in pending:
                redirect = redirected.get(i)
                node = self._node(redirect.address) if redirect else owners[call.targets[i].slot]
                asking = redirect is not None and redirect.ask
                groups.setdefault((node.name, asking), (node, []))[1].append(i)
            again: dict[int, _Redirect] = {}
            results = await asyncio.gather(
                *(
                    self._send_group(call, node, indices, asking, redirected, again)
                    for (_, asking), (node, indices) in groups.items()
                ),
                return_exceptions=True,
            )
            await self._raise_first([node for node, _ in groups.values()], results)
            if not again:
                return
            self._stale = True  # re-read the slot map before the next call
            pending = sorted(again)  # call order, so a stream keeps its order
            redirected = again
            logger.info("%s: %d record(s) redirected; sending them again", call.what, len(pending))
        first = redirected[pending[0]]
        raise TopologyError(
            f"{call.what}: still redirected after {_MAX_REDIRECTS} attempts "
            f"({'ASK' if first.ask else 'MOVED'} to {first.address} "
            f"for the record at index {pending[0]})"
        )

    def _node(self, address: str) -> ClusterNode:
        node = self.client.get_node(node_name=address)
        if node is None:
            self._stale = True
            raise TopologyError(f"redirected to {address}, which the slot map does not know")
        return node

    async def _send_group(
        self,
        call: _Call,
        node: ClusterNode,
        indices: list[int],
        asking: bool,
        redirected: dict[int, _Redirect],
        again: dict[int, _Redirect],
    ) -> None:
        """Send ``indices`` on one connection of ``node``: all their commands, or only those
        ``redirected`` names; note the redirected ones in ``again``."""
        group = _Group(call, indices, asking, redirected, again)
        await _wire.execute(
            _as_client(node),
            group.chunks(),
            group.sink,
            what=f"{call.what} on {node.name}",
            last_read_extra_s=(call.producer.wait_timeout or None) if call.wait else 0.0,
        )
        if call.wait:
            call.producer._check_acks(group.acks)

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
