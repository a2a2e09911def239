"""A call's commands on a Redis Cluster: per-node groups on the raw-RESP path, WAIT per node.

A call's records are grouped by the node that owns their stream's slot (the
client's slot map); each group is sent on one connection of that node through
`aioredstream.send.wire.execute`, so slicing, windowing, error translation and
the close-on-error rule are the single-node ones. The groups run concurrently.
With ``wait``, each group ends in its own ``WAIT`` on the connection that made
its writes, because WAIT only counts that connection's writes on that node.

Hash tags (`Keys` with ``hash_tags=True``) put a
stream and its delay stream in one slot, so ``XADD <stream>`` and
``XDEL <stream>.delay`` for one record always go to the same node.

Redirects: a node that answers ``MOVED`` or ``ASK`` did not apply that command,
so exactly the redirected commands are sent again, in call order, to the node the
reply names (behind ``ASKING`` for ``ASK``), at most three times (then
`TopologyError`); the slot map is re-read before the next call. A redirect
therefore never writes anything twice.
``TRYAGAIN``/``CLUSTERDOWN`` raise `TopologyError`. A lost connection leaves
that node's writes unknown: `ServerConnectionError` naming the node, raised
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

from .._failures import command_error
from ..errors import (
    RedstreamError,
    ReplicationError,
    ServerConnectionError,
    TopologyError,
)
from . import wire

if TYPE_CHECKING:
    from .._packing import Target
    from .acks import Acks

__all__ = ["Call", "Router", "as_node_client", "slot_owner"]

logger = logging.getLogger("aioredstream.cluster")

#: builds the RESP bytes of the commands of record ``i`` of a call
Build = Callable[[int], tuple[bytes, ...]]
#: (reply, command index within the record, record index, the node that replied) -> raise
#: if it is an error
Check = Callable[[Any, int, int, ClusterNode], None]


_MAX_REDIRECTS = 3
_ASKING = b"*1\r\n$6\r\nASKING\r\n"


class Call:
    """What one producer call sends: records' commands, how to check replies, WAIT or not.

    ``command`` names the records' command in errors (``XADD``); ``what`` the call in logs.
    """

    __slots__ = ("acks", "build", "check", "command", "per_record", "slice_size", "targets", "what")

    def __init__(
        self,
        targets: Sequence[Target],
        build: Build,
        check: Check,
        what: str,
        *,
        command: str,
        slice_size: int,
        acks: Acks | None = None,
        per_record: int = 1,
    ) -> None:
        self.command = command
        self.targets = targets
        self.build = build
        self.per_record = per_record  # commands per record
        self.check = check
        self.what = what
        self.slice_size = slice_size
        self.acks = acks if acks is not None and acks.count else None  # WAIT per node group


class _Redirect:
    """Where a record's redirected commands go next, and which of them (not applied);
    ``source`` is the node that redirected them."""

    __slots__ = ("address", "ask", "positions", "source")

    def __init__(self, ask: bool, address: str, positions: list[int], source: str) -> None:
        self.ask = ask
        self.address = address
        self.positions = positions
        self.source = source


def _redirect(reply: Any) -> tuple[bool, str] | None:
    """``(is_ask, "host:port")`` for a ``MOVED``/``ASK`` reply, else ``None``."""
    if isinstance(reply, wire.ReplyError):
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
        call: Call,
        node: ClusterNode,
        indices: list[int],
        asking: bool,
        redirected: dict[int, _Redirect],
        again: dict[int, _Redirect],
    ) -> None:
        self.call = call
        self.node = node
        self.indices = indices
        self.asking = asking
        self.redirected = redirected
        self.again = again
        self.plain = not asking and not redirected
        self.expected: list[tuple[int, int]] = []
        self.acks: list[Any] = []
        self.cursor = 0

    def chunks(self) -> Iterator[wire.Chunk]:
        call, indices = self.call, self.indices
        size = call.slice_size
        tail, tail_count = (call.acks.tail, call.acks.count) if call.acks else (b"", 0)
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
                self.call.check(reply, position, record, self.node)
            elif record in self.again:
                self.again[record].positions.append(position)
            else:
                self.again[record] = _Redirect(*redirect, [position], self.node.name)


class _NodePool:
    """The two methods of a connection pool that ``wire.execute`` uses, on a ClusterNode."""

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
    """``node`` as a target of `aioredstream.send.wire.execute` (its pool is all it uses)."""
    return cast(Redis, _NodeClient(node))


def slot_owner(client: RedisCluster, slot: int) -> ClusterNode:
    """The node that serves ``slot``, as the client's own object for that node.

    redis-py 7.x refreshes its slot map with new ``ClusterNode`` objects yet keeps
    the old ones in ``nodes_cache``, the only nodes ``aclose()`` closes (8.2 maps the
    slots to the kept ones again): connections opened on the new objects would never
    be closed. Looking the name up in ``nodes_cache`` keeps every connection in a
    pool the client closes. Raises what ``get_node_from_slot`` raises.
    """
    manager = client.nodes_manager
    node = manager.get_node_from_slot(slot)
    kept: ClusterNode | None = manager.nodes_cache.get(node.name)
    return node if kept is None else kept


class Router:
    """Sends calls to the nodes that own their records' slots, following redirects.

    ``connect_timeout_s`` bounds each wait for a node's connection and each re-read of
    the slot map (``None``: as the client says)."""

    def __init__(self, client: RedisCluster, connect_timeout_s: float | None = None) -> None:
        self.client = client
        self.connect_timeout_s = connect_timeout_s
        self._stale = False
        self._known = False  # the client has read the slot map once

    async def owners(self, slots: Iterable[int], command: str) -> dict[int, ClusterNode]:
        budget = asyncio.timeout(self.connect_timeout_s)  # the nodes may be down
        with wire.translate_errors("cluster slot map", command):
            try:
                async with budget:
                    if self._stale:  # stays set until a refresh succeeds
                        await self.client.nodes_manager.initialize()
                        self._stale = False
                    await self.client.initialize()  # a no-op once the client knows the cluster
            except Exception as exc:
                if not budget.expired():
                    raise
                raise ServerConnectionError(
                    f"cluster slot map: not read within connect_timeout_s="
                    f"{self.connect_timeout_s} (the nodes are unreachable or restarting)"
                ) from exc
        self._known = True
        try:
            return {slot: slot_owner(self.client, slot) for slot in set(slots)}
        except (SlotNotCoveredError, KeyError) as exc:  # KeyError: a slot the map lacks
            self._stale = True
            words = f"no node serves slot {exc}" if isinstance(exc, KeyError) else exc
            raise command_error(
                TopologyError, f"cluster slot map: {words}", command=command
            ) from exc

    async def owner(self, slot: int, command: str) -> ClusterNode:
        """The node of one slot: the slot map's answer at once while it is current."""
        if self._known and not self._stale:
            try:
                return slot_owner(self.client, slot)
            except (SlotNotCoveredError, KeyError):
                pass  # the slow path marks the map stale and raises
        return (await self.owners((slot,), command))[slot]

    async def call(self, *args: bytes | str | int, what: str) -> Any:
        """One raw command on a primary (for checks such as ``COMMAND INFO``)."""
        await self.owners((), str(args[0]))
        # get_primaries() exists on every redis-py we support (get_random_primary_node: 7.1+)
        return await wire.call(
            as_node_client(self.client.get_primaries()[0]),
            *args,
            what=what,
            connect_timeout_s=self.connect_timeout_s,
        )

    async def send(self, call: Call) -> None:
        """Send every record; re-send the commands a node redirected to the node the
        redirect names (behind ASKING for ASK), up to _MAX_REDIRECTS times."""
        pending = list(range(len(call.targets)))
        redirected: dict[int, _Redirect] = {}
        for _ in range(_MAX_REDIRECTS + 1):
            owners = await self.owners((call.targets[i].slot for i in pending), call.command)
            groups: dict[tuple[str, bool], tuple[ClusterNode, list[int]]] = {}
            for i in pending:
                redirect = redirected.get(i)
                node = (
                    self.node(redirect.address, call.command)
                    if redirect
                    else owners[call.targets[i].slot]
                )
                asking = redirect is not None and redirect.ask
                groups.setdefault((node.name, asking), (node, []))[1].append(i)
            again: dict[int, _Redirect] = {}
            results = await asyncio.gather(
                *(
                    self._send_group(_Group(call, node, indices, asking, redirected, again))
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
        raise command_error(
            TopologyError,
            f"still redirected after {_MAX_REDIRECTS} attempts "
            f"({'ASK' if first.ask else 'MOVED'} to {first.address})",
            command=call.command,
            index=pending[0],
            node=first.source,
        )

    def node(self, address: str, command: str) -> ClusterNode:
        node = self.client.get_node(node_name=address)
        if node is None:
            self._stale = True
            raise command_error(
                TopologyError,
                f"redirected to {address}, which the slot map does not know",
                command=command,
            )
        return node

    async def _send_group(self, group: _Group) -> None:
        """Send the group's records on one connection of its node: all their commands, or
        only those ``redirected`` names; note the redirected ones in ``again``."""
        call, node = group.call, group.node
        await wire.execute(
            as_node_client(node),
            group.chunks(),
            group.sink,
            what=f"{call.what} on {node.name}",
            last_read_extra_s=call.acks.last_read_extra_s if call.acks else 0.0,
            connect_timeout_s=self.connect_timeout_s,
        )
        if call.acks:
            call.acks.check(group.acks, node)

    async def lost(self, node: ClusterNode, error: Exception) -> None:
        """The node may be gone or no longer own its slots: drop its idle
        connections and re-read the slot map before the next call."""
        self._stale = True
        logger.info("cluster node %s failed mid-call: %s", node.name, error)
        with anyio.CancelScope(shield=True):
            if hasattr(node, "disconnect_free_connections"):
                node.update_active_connections_for_reconnect()
                await node.disconnect_free_connections()
            else:  # redis-py 6.2 (the floor) has neither: its idle connections are in _free
                for conn in list(node._free):
                    await conn.disconnect()

    async def _raise_first(self, nodes: list[ClusterNode], results: list[Any]) -> None:
        """Raise what the node groups raised: bugs, then lost nodes, then command errors,
        then replication shortfalls (naming every node that fell short)."""
        failed = [(n, r) for n, r in zip(nodes, results, strict=True) if r is not None]
        for _, error in failed:
            if not isinstance(error, RedstreamError):
                raise error  # not ours (a bug): untouched
        lost = [(n, e) for n, e in failed if isinstance(e, ServerConnectionError)]
        for node, error in lost:
            await self.lost(node, error)
        if lost:
            raise lost[0][1]
        for _, error in failed:
            if not isinstance(error, ReplicationError):
                raise error
        if failed:
            raise _combined([(n.name, e) for n, e in failed])


def _combined(shortfalls: list[tuple[str, Any]]) -> ReplicationError:
    """One error for the nodes that fell short (each one's message names its node)."""
    first = shortfalls[0][1]
    return ReplicationError(
        "; ".join(str(error) for _, error in shortfalls),
        command=first.command,
        node=first.node if len(shortfalls) == 1 else None,
        acknowledged=min(error.acknowledged for _, error in shortfalls),
        required=first.required,
        local_acknowledged=first.local_acknowledged,
        local_required=first.local_required,
        nodes=tuple(name for name, _ in shortfalls),
    )
