"""Scripted servers behind real redis-py clients, for the send path's rules without a server.

The seam is the socket and nothing else: :class:`ScriptedConnection` is redis-py's own
``redis.asyncio.Connection`` with ``_connect`` (the TCP connect) replaced by an
in-memory pipe to a :class:`ScriptedServer`. The client, its pool, a cluster client's
slot map and nodes, ``send/wire.py``'s hiredis reader and everything above run as in
production. A scripted server is not a Redis: it records every command it is sent,
answers the few the producer sends (``XADD`` with a fresh id, ``XDEL``, ``WAIT`` /
``WAITAOF`` with the acknowledgement counts a test sets, ``ASKING``, ``CLUSTER
SLOTS`` from the test's slot map, the producer's one script: ``XADD`` then
``XDEL``) and answers a command the test scripted (:meth:`ScriptedServer.script`)
with the reply the test gives, applying nothing.
Anything else gets an error reply, so a test sees a command it did not expect.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any, ClassVar

import hiredis
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection

__all__ = ["Cluster", "Command", "ScriptedServer", "node_client"]

Command = list[bytes]


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(data), data)


def _array(items: list[bytes]) -> bytes:
    return b"*%d\r\n%b" % (len(items), b"".join(items))


class _Rule:
    __slots__ = ("match", "reply", "times")

    def __init__(self, match: Callable[[Command], bool], reply: bytes, times: int) -> None:
        self.match = match
        self.reply = reply
        self.times = times


class ScriptedServer:
    """One scripted node: what it was sent, what it applied, what it answers."""

    def __init__(self, name: str, cluster: Cluster | None = None) -> None:
        self.name = name
        self.cluster = cluster
        self.commands: list[Command] = []  # every command, in the order received
        self.streams: dict[bytes, list[tuple[bytes, bytes]]] = {}  # applied XADDs: (id, payload)
        self.deleted: list[tuple[bytes, list[bytes]]] = []  # applied XDELs: (key, ids)
        self.replicas = 0  # what WAIT answers
        self.aof = (1, 0)  # what WAITAOF answers: (local, replicas)
        self._rules: list[_Rule] = []
        self._sequence = 0

    def script(
        self, match: Callable[[Command], bool], reply: bytes, *, times: int = 1
    ) -> ScriptedServer:
        """Answer the next ``times`` commands that ``match`` with ``reply`` (RESP bytes),
        applying nothing; the first matching rule wins."""
        self._rules.append(_Rule(match, reply, times))
        return self

    def sent(self, name: bytes) -> list[Command]:
        """The commands named ``name`` (``b"XADD"``, ...) this node was sent."""
        return [c for c in self.commands if c[0].upper() == name]

    def payloads(self, key: bytes) -> list[bytes]:
        return [payload for _, payload in self.streams.get(key, [])]

    def answer(self, command: Command) -> bytes:
        self.commands.append(command)
        for rule in self._rules:
            if rule.times and rule.match(command):
                rule.times -= 1
                return rule.reply
        name = command[0].upper()
        if name == b"XADD":  # XADD key * payload <json>
            return _bulk(self._add(command[1], command[4]))
        if name == b"XDEL":
            self.deleted.append((command[1], command[2:]))
            return b":%d\r\n" % len(command[2:])
        if name == b"WAIT":
            return b":%d\r\n" % self.replicas
        if name == b"WAITAOF":
            return _array([b":%d\r\n" % self.aof[0], b":%d\r\n" % self.aof[1]])
        if name == b"SCRIPT" and command[1].upper() == b"LOAD":
            return _bulk(hashlib.sha1(command[2]).hexdigest().encode())
        if name == b"EVALSHA":  # the producer's one script: XADD KEYS[1], XDEL KEYS[2]
            message_id = self._add(command[3], command[5])
            self.deleted.append((command[4], [command[6]]))
            return _bulk(message_id)
        if name == b"HELLO":  # the handshake of a RESP3 client (redis-py 8's default)
            return b"%%1\r\n$5\r\nproto\r\n:%b\r\n" % command[1]
        if name in (b"ASKING", b"CLIENT"):
            return b"+OK\r\n"
        if name == b"COMMAND" and len(command) == 1:
            return b"*0\r\n"  # a cluster client asks once; we need none of its tables
        if name == b"CLUSTER" and command[1].upper() == b"SLOTS" and self.cluster is not None:
            return self.cluster.slots_reply()
        return b"-ERR scripted server: unexpected %b\r\n" % b" ".join(command)[:200]

    def _add(self, key: bytes, payload: bytes) -> bytes:
        self._sequence += 1
        # "<port>-<n>": a valid stream id that tells which node wrote it
        message_id = b"%b-%d" % (self.name.rsplit(":", 1)[1].encode(), self._sequence)
        self.streams.setdefault(key, []).append((message_id, payload))
        return message_id


class _Pipe:
    """The writer half of an in-memory socket: commands in, the server's replies out."""

    def __init__(self, server: ScriptedServer, reader: asyncio.StreamReader) -> None:
        self._server = server
        self._reader = reader
        self._parser = hiredis.Reader()
        self._closed = False

    def write(self, data: bytes) -> None:
        self._parser.feed(data)
        replies: list[bytes] = []
        while (command := self._parser.gets()) is not False:
            replies.append(self._server.answer(command))
        if replies and not self._closed:
            self._reader.feed_data(b"".join(replies))

    def writelines(self, parts: list[bytes]) -> None:
        self.write(b"".join(parts))

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def close(self) -> None:
        self._closed = True
        self._reader.feed_eof()

    def is_closing(self) -> bool:
        return self._closed

    @property
    def transport(self) -> _Pipe:
        """The pipe is its own transport (redis-py 8.2 asks the writer's transport
        whether it is closing before each write)."""
        return self

    async def wait_closed(self) -> None:
        return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class ScriptedConnection(Connection):
    """redis-py's connection with its socket replaced by a pipe to ``servers[host:port]``."""

    servers: ClassVar[dict[str, ScriptedServer]] = {}

    async def _connect(self) -> None:
        server = self.servers[f"{self.host}:{self.port}"]
        reader = asyncio.StreamReader()
        self._reader = reader
        self._writer = _Pipe(server, reader)  # type: ignore[assignment]


def _connection_class(servers: dict[str, ScriptedServer]) -> type[ScriptedConnection]:
    return type("Scripted", (ScriptedConnection,), {"servers": servers})


def node_client(server: ScriptedServer | None = None) -> tuple[Redis, ScriptedServer]:
    """A real ``redis.asyncio.Redis`` whose connections lead to one scripted server."""
    server = server or ScriptedServer("127.0.0.1:6379")
    host, port = server.name.split(":")
    pool = ConnectionPool(
        connection_class=_connection_class({server.name: server}), host=host, port=int(port)
    )
    return Redis.from_pool(pool), server  # aclose() closes the pool too


class Cluster:
    """Scripted primaries and the slot map their ``CLUSTER SLOTS`` answers (a test may
    move slots between calls); :meth:`client` is a real ``RedisCluster`` over them."""

    def __init__(self, ports: list[int], *, full_coverage: bool = False) -> None:
        self.full_coverage = full_coverage
        self.servers = {f"127.0.0.1:{p}": ScriptedServer(f"127.0.0.1:{p}", self) for p in ports}
        step = 16384 // len(ports)
        self.ranges: list[tuple[int, int, str]] = [
            (n * step, 16383 if n == len(ports) - 1 else (n + 1) * step - 1, name)
            for n, name in enumerate(self.servers)
        ]

    def __getitem__(self, port: int) -> ScriptedServer:
        return self.servers[f"127.0.0.1:{port}"]

    def owner(self, slot: int) -> ScriptedServer:
        for start, end, name in self.ranges:
            if start <= slot <= end:
                return self.servers[name]
        raise KeyError(slot)

    def move(self, slot: int, port: int) -> None:
        """Slot ``slot`` now belongs to ``port`` in what ``CLUSTER SLOTS`` answers."""
        ranges: list[tuple[int, int, str]] = []
        for start, end, name in self.ranges:
            if start <= slot <= end:
                ranges += [(start, slot - 1, name), (slot + 1, end, name)]
            else:
                ranges.append((start, end, name))
        ranges.append((slot, slot, f"127.0.0.1:{port}"))
        self.ranges = [(s, e, n) for s, e, n in ranges if s <= e]

    def drop(self, slot: int) -> None:
        """No node owns ``slot`` any more (a failed primary without a replica)."""
        self.move(slot, 0)
        self.ranges = [(s, e, n) for s, e, n in self.ranges if s != slot]

    def slots_reply(self) -> bytes:
        entries = []
        for start, end, name in self.ranges:
            host, port = name.split(":")
            node = _array([_bulk(host.encode()), b":%d\r\n" % int(port), _bulk(name.encode())])
            entries.append(_array([b":%d\r\n" % start, b":%d\r\n" % end, node]))
        return _array(entries)

    def sent(self, name: bytes) -> int:
        return sum(len(server.sent(name)) for server in self.servers.values())

    def client(self) -> RedisCluster:
        first = next(iter(self.servers.values()))
        host, port = first.name.split(":")
        client = RedisCluster(host=host, port=int(port), require_full_coverage=self.full_coverage)
        # RedisCluster takes no connection_class: its nodes (the startup node, and those
        # CLUSTER SLOTS names) are built from the nodes manager's connection kwargs
        scripted = _connection_class(self.servers)
        client.nodes_manager.connection_kwargs["connection_class"] = scripted
        for node in client.nodes_manager.startup_nodes.values():
            node.connection_class = scripted
        return client
