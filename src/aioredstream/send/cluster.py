"""The sender for a Redis Cluster: per node, as `node` is for one node.

Bulk calls go through `Router` (per-node groups, concurrent,
redirects followed). Concurrent single calls go straight to the node that owns
their slot, through that node's own `Coalescer`:
one producer keeps at most two connections per node busy however many handlers
call it, so a client built with defaults (100 connections per node) never runs
out. A single call whose node answers with a redirect (or ``TRYAGAIN`` during a
slot migration) wrote nothing; it is sent again through the router's path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio.cluster import ClusterNode, RedisCluster

from .._packing import Slice, Target, flatten
from ..errors import ServerConnectionError, UnsupportedError
from . import wire
from .acks import Acks
from .base import encoded, submit_queue_delete
from .coalesce import Coalescer
from .replies import raise_command_error
from .routing import Call, Router, as_node_client

__all__ = ["ClusterSender"]

logger = logging.getLogger("aioredstream.cluster")

# replies after which a single call is sent again through the router (nothing was written)
_REROUTE = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN")


class ClusterSender(Router):
    """Bulk calls per node group; single calls through a coalescer per node."""

    def __init__(
        self,
        client: RedisCluster,
        acks: Acks,
        slice_size: int,
        connect_timeout_s: float | None = None,
    ) -> None:
        super().__init__(client, connect_timeout_s)
        self.acks = acks
        self.slice_size = slice_size
        self._coalescers: dict[str, tuple[ClusterNode, Coalescer]] = {}

    async def send_delay(self, slices: list[Slice]) -> list[str]:
        targets, args = flatten(slices)
        return await self._delay(targets, args)

    async def _delay(self, targets: Sequence[Target], args: Sequence[bytes]) -> list[str]:
        ids: list[str | None] = [None] * len(args)

        def build(i: int) -> tuple[bytes, ...]:
            return (targets[i].xadd_delay + args[i],)

        def check(reply: Any, _: int, i: int, node: ClusterNode) -> None:
            if isinstance(reply, bytes):
                ids[i] = reply.decode()
            else:
                raise_command_error(reply, "XADD", i, node)

        await self.send(
            Call(
                targets,
                build,
                check,
                "delay",
                command="XADD",
                slice_size=self.slice_size,
                acks=self.acks,
            )
        )
        if None in ids:  # cannot happen: every node group raised or filled its ids
            raise ServerConnectionError("delay: a node returned fewer replies than commands")
        return cast(list[str], ids)

    async def send_queue(self, slices: list[Slice], ids: Sequence[str | bytes] | None) -> None:
        targets, args = flatten(slices)
        await self._queue(targets, args, None if ids is None else encoded(ids))

    async def _queue(
        self, targets: Sequence[Target], args: Sequence[bytes], ids: Sequence[bytes] | None
    ) -> None:
        refused: list[tuple[int, Any, ClusterNode]] = []

        def build(i: int) -> tuple[bytes, ...]:
            return (targets[i].xadd + args[i],)

        def check(reply: Any, _: int, i: int, node: ClusterNode) -> None:
            if reply.__class__ is wire.ReplyError:
                refused.append((i, reply, node))

        call = Call(targets, build, check, "queue", command="XADD", slice_size=self.slice_size)
        await self.send(call)
        if ids is not None:
            # Delete the delay messages of the writes that succeeded, one multi-id XDEL
            # per delay stream and slice (not one XADD-then-XDEL script per record: during
            # a slot migration the importing node answers multi-key scripts with TRYAGAIN).
            failed = {i for i, _, _ in refused}
            await self._delete(
                [
                    (t, raw)
                    for i, (t, raw) in enumerate(zip(targets, ids, strict=True))
                    if i not in failed
                ]
            )
        if refused:
            index, reply, node = min(refused, key=lambda item: item[0])
            raise_command_error(reply, "XADD", index, node)

    async def _delete(self, done: list[tuple[Target, bytes]]) -> None:
        by_stream: dict[bytes, tuple[Target, list[bytes]]] = {}
        for target, raw in done:
            by_stream.setdefault(target.xdel_head, (target, []))[1].append(raw)
        groups = [
            (target, raws[start : start + self.slice_size])
            for target, raws in by_stream.values()
            for start in range(0, len(raws), self.slice_size)
        ]

        def build(g: int) -> tuple[bytes, ...]:
            target, raws = groups[g]
            head = b"*%d\r\n%b" % (len(raws) + 2, target.xdel_head)
            return (head + b"".join([b"$%d\r\n%b\r\n" % (len(r), r) for r in raws]),)

        def check(reply: Any, _: int, g: int, node: ClusterNode) -> None:
            if reply.__class__ is wire.ReplyError:
                raise_command_error(reply, "XDEL", None, node)

        targets = [target for target, _ in groups]
        call = Call(targets, build, check, "queue", command="XDEL", slice_size=self.slice_size)
        await self.send(call)

    # -- single calls: straight to the owning node, coalesced per node -------------------

    async def _coalescer(self, target: Target) -> tuple[ClusterNode, Coalescer]:
        node = await self.owner(target.slot, "XADD")
        entry = self._coalescers.get(node.name)
        if entry is None or entry[0] is not node:  # a new node object after a refresh
            entry = self._coalescers[node.name] = (
                node,
                Coalescer(
                    as_node_client(node),
                    acks=self.acks,
                    slice_size=self.slice_size,
                    connect_timeout_s=self.connect_timeout_s,
                ),
            )
        return entry

    async def _submit(
        self, target: Target, head: bytes, arg: bytes, *, delay: bool
    ) -> tuple[Any, ClusterNode]:
        node, coalescer = await self._coalescer(target)
        try:
            reply = await coalescer.submit(head, arg, delay=delay)
        except ServerConnectionError as exc:
            await self.lost(node, exc)
            raise
        return reply, node

    async def delay_one(self, target: Target, arg: bytes) -> str:
        reply, node = await self._submit(target, target.xadd_delay, arg, delay=True)
        if reply.__class__ is bytes:
            message_id: str = reply.decode()
            return message_id
        if not _rerouted(reply):
            raise_command_error(reply, "XADD", None, node)
        self._rerouting("delay", reply)
        [message_id] = await self._delay([target], [arg])
        return message_id

    async def queue_one(self, target: Target, arg: bytes, delay_id: bytes | None) -> None:
        if delay_id is None:
            reply, node = await self._submit(target, target.xadd, arg, delay=False)
        else:
            node, coalescer = await self._coalescer(target)
            try:
                reply = await submit_queue_delete(coalescer, target, arg, delay_id)
            except ServerConnectionError as exc:
                await self.lost(node, exc)
                raise
        if reply.__class__ is not wire.ReplyError:
            return
        if _rerouted(reply):
            self._rerouting("queue", reply)
            await self._queue([target], [arg], None if delay_id is None else [delay_id])
            return
        raise_command_error(reply, "XADD" if delay_id is None else "XADD+XDEL", None, node)

    def _rerouting(self, what: str, reply: Any) -> None:
        self._stale = True  # re-read the slot map first
        logger.info("%s: 1 record(s) redirected (%s); sending it again", what, reply)

    async def check_waitaof(self) -> None:
        info = await self.call("COMMAND", "INFO", "WAITAOF", what="WAITAOF check")
        if not isinstance(info, list) or not info or info[0] is None:
            raise UnsupportedError(
                "wait_aof needs WAITAOF (Redis >= 7.2 or Valkey); this cluster lacks it"
            )


def _rerouted(reply: Any) -> bool:
    return reply.__class__ is wire.ReplyError and str(reply).startswith(_REROUTE)
