"""The commands of the workers, the lock, status and the CLI, on the producer's wire path.

redis-py's own command path cannot be trusted to deliver a cancellation: 8.1 can
return normally from a command whose task was cancelled (5.x-7.x raise
``CancelledError``), and a worker that swallows its cancellation does not stop. So
no command of this package goes through it. Each command here borrows a connection
from the client's pool (on a cluster: from the node that owns the key's slot),
writes RESP and reads its replies with `aioredstream.send.wire`, where a
cancellation is a plain asyncio one and any interruption closes the connection.

Blocking commands (``XREAD BLOCK``, ``BRPOP``) read with the connection's own
socket timeout *plus* the time they may block, so an idle stream is never a
timeout, whatever the client's socket timeout (redis-py 8 sets 5 s by default
without recording it where ``from_url`` callers could see it).

Replies are raw: bytes (whatever ``decode_responses`` says), ints, lists, or for
RESP3 dicts. An error reply raises `ServerError` naming the command and the
node, or `TopologyError` when the cluster moved.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import SlotNotCoveredError

from .._failures import command_error
from ..errors import ServerError, TopologyError
from . import wire
from .routing import as_node_client, slot_owner

__all__ = ["Script", "pipeline", "run", "scan", "script"]

Arg = bytes | str | int | float
Client = Redis | RedisCluster

#: cluster clients whose slot map a redirect or an uncovered slot proved out of date
_stale: weakref.WeakSet[RedisCluster] = weakref.WeakSet()

# Error replies that mean the deployment moved under the command (not a bad command).
_TOPOLOGY = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "READONLY")


class Script:
    """A Lua script sent as ``EVALSHA`` (its body only after a ``NOSCRIPT``)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def _arg(value: Arg) -> bytes | str | int:
    return repr(value) if isinstance(value, float) else value


async def _target(client: Client, key: Arg | None, node: ClusterNode | None, command: str) -> Redis:
    """The client (one node), ``node``, or the cluster node owning ``key``, as a wire target
    (``command`` names what was to be sent, in errors)."""
    if node is not None:
        return as_node_client(node)
    if not isinstance(client, RedisCluster):
        return client
    with wire.translate_errors("cluster slot map", command), wire.cancellation_kept():
        if client in _stale:
            await client.nodes_manager.initialize()
            _stale.discard(client)
        await client.initialize()  # a no-op once the client knows the cluster
    try:
        node = (
            client.get_default_node()
            if key is None
            else slot_owner(client, client.keyslot(_arg(key)))
        )
    except SlotNotCoveredError as exc:
        _stale.add(client)
        raise command_error(TopologyError, f"cluster slot map: {exc}", command=command) from exc
    if node is None:
        raise command_error(TopologyError, "cluster slot map: no node to send to", command=command)
    return as_node_client(node)


def _check(reply: Any, command: Arg, client: Client, target: Redis, what: str) -> None:
    """Raise for an error reply to ``command`` from ``target`` (named ``what`` in the message)."""
    if isinstance(reply, wire.ReplyError):
        message = str(reply)
        where: dict[str, Any] = {
            "command": str(command),
            "node": wire.address(target),
            "what": what,
        }
        if message.startswith(_TOPOLOGY):
            if isinstance(client, RedisCluster):
                _stale.add(client)  # re-read the slot map before its next command
            raise command_error(TopologyError, message, **where)
        raise command_error(ServerError, message, **where)


async def pipeline(
    client: Client,
    commands: Sequence[Sequence[Arg]],
    *,
    key: Arg | None = None,
    what: str,
    block_s: float | None = 0.0,
    node: ClusterNode | None = None,
) -> list[Any]:
    """Send ``commands`` on one connection (of ``key``'s node on a cluster); their raw replies.

    The first error reply raises `ServerError` / `TopologyError` (once
    every reply was read). ``block_s`` is how long the last command may block on the
    server (``None``: forever).
    """
    target = await _target(client, key, node, str(commands[0][0]))
    replies = await _send(target, commands, what, block_s)
    for command, reply in zip(commands, replies, strict=True):
        _check(reply, command[0], client, target, what)
    return replies


async def _send(
    target: Redis, commands: Sequence[Sequence[Arg]], what: str, block_s: float | None
) -> list[Any]:
    data = b"".join(wire.pack(*[_arg(a) for a in command]) for command in commands)
    replies: list[Any] = []
    await wire.execute(
        target,
        [(data, len(commands))],
        lambda _, chunk: replies.extend(chunk),
        what=what,
        last_read_extra_s=block_s,
    )
    return replies


async def run(
    client: Client,
    *args: Arg,
    key: Arg | None = None,
    what: str | None = None,
    block_s: float | None = 0.0,
    node: ClusterNode | None = None,
) -> Any:
    """One command; its raw reply, or `ServerError` / `TopologyError`.

    It goes to ``node`` when given (a cluster's primaries, one by one), else to the
    node of ``key`` (any node when ``key`` is ``None``).
    """
    label = what or (str(args[0]) if key is None else f"{args[0]!s} {key!s}")
    [reply] = await pipeline(client, [args], key=key, what=label, block_s=block_s, node=node)
    return reply


async def script(
    client: Client, lua: Script, keys: list[Arg], args: list[Arg], *, what: str
) -> Any:
    """Run ``lua`` by its SHA; load its body once when the server does not know it."""
    key = keys[0] if keys else None
    numkeys = len(keys)
    target = await _target(client, key, None, "EVALSHA")
    command: tuple[Arg, ...] = ("EVALSHA", lua.sha, numkeys, *keys, *args)
    [reply] = await _send(target, [command], what, 0.0)
    if isinstance(reply, wire.ReplyError) and str(reply).startswith("NOSCRIPT"):
        command = ("EVAL", lua.source, numkeys, *keys, *args)
        [reply] = await _send(target, [command], what, 0.0)
    _check(reply, command[0], client, target, what)
    return reply


async def scan(client: Client, pattern: str, kind: str) -> list[str]:
    """Every key matching ``pattern`` of type ``kind``; on a cluster, on every primary."""
    nodes = client.get_primaries() if isinstance(client, RedisCluster) else [None]
    found: set[str] = set()
    for node in nodes:
        cursor: bytes | int = 0
        while True:
            args = ("SCAN", cursor, "MATCH", pattern, "COUNT", 1000, "TYPE", kind)
            reply: Any = await run(client, *args, node=node, what=f"SCAN {pattern}")
            cursor, keys = reply
            found.update(k.decode() if isinstance(k, bytes) else str(k) for k in keys)
            if int(cursor) == 0:
                break
    return sorted(found)
