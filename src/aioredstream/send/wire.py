"""Sending pre-packed commands on a ``redis.asyncio`` connection and reading the replies.

This is the one place where aioredstream touches the socket and the one place
where redis-py and socket errors become `aioredstream.errors`.

A call borrows a connection from the client's own pool (so the user's URL, TLS,
auth, db and timeouts apply), writes its commands as RESP bytes, and parses the
replies with its own ``hiredis.Reader``. Several chunks may be in flight on the
connection at once (``window``); replies come back in order, so reply *n* always
belongs to command *n*. If anything goes wrong mid-call, cancellation included,
the connection is closed before it goes back to the pool: replies that were not
read can never reach a later call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

import anyio
import hiredis
import redis
from redis import exceptions as redis_exc
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisClusterException

from .._failures import command_error
from ..errors import (
    EventLoopError,
    RedstreamError,
    ServerConnectionError,
    ServerError,
    ServerTimeoutError,
    TopologyError,
    UnsupportedError,
)
from .pooled import borrow
from .pooled import drop as _drop

__all__ = [
    "Chunk",
    "ReplyError",
    "address",
    "call",
    "exchange",
    "execute",
    "pack",
    "translate_errors",
]

ReplyError = hiredis.ReplyError
#: (RESP bytes, number of replies they produce); ``None`` asks for the oldest chunk's
#: replies before the next chunk (a sender whose next commands depend on them)
Chunk = tuple[bytes, int]
#: called with each chunk's replies, in order
Sink = Callable[[int, list[Any]], None]

# Up to this much is fed to a parser at once: hiredis moves what it holds to the front
# of its buffer after every 1 KiB it parses, so a big feed costs O(size^2).
_READ_SIZE = 1 << 14
# What asyncio says when a transport or future of another loop is touched.
_OTHER_LOOP = ("Event loop is closed", "attached to a different loop", "different event loop")
_PUSH = hiredis.PushNotification
_MORE = object()  # what a parser's gets() returns until a whole reply is in (see _Replies)


def pack(*args: bytes | str | int) -> bytes:
    """RESP-encode one command (used off the hot path; the producer packs its own)."""
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]
    return packed


def address(target: Any) -> str | None:
    """``host:port`` of the server behind ``target`` (for errors; never on the happy path).

    ``target`` is a cluster node, a client of one node (a Sentinel's ``master_for()``:
    the primary it found last), or a cluster node as a wire target; a Unix socket
    gives its path. ``None`` when it is not known (a Sentinel client before its
    first connection).
    """
    if isinstance(target, ClusterNode):
        return str(target.name)
    pool = getattr(target, "connection_pool", None)
    node = getattr(pool, "node", None)  # send.routing's view of one cluster node
    if isinstance(node, ClusterNode):
        return str(node.name)
    primary = getattr(pool, "master_address", None)  # a Sentinel's primary
    if primary:
        return f"{primary[0]}:{primary[1]}"
    kwargs: dict[str, Any] = getattr(pool, "connection_kwargs", None) or {}
    if kwargs.get("path"):
        return str(kwargs["path"])
    if kwargs.get("host") is None or getattr(pool, "service_name", None) is not None:
        return None
    return f"{kwargs['host']}:{kwargs.get('port', 6379)}"


@contextmanager
def translate_errors(what: str, command: str | None = None) -> Iterator[None]:
    """Turn redis-py and socket errors into aioredstream errors, chained; ``command`` is
    what the block is for, when it is one command (the attribute of the error)."""
    try:
        yield
    except Exception as exc:
        translated = _translated(exc, what, command)
        if translated is None:
            raise
        raise translated from exc


def _translated(exc: Exception, what: str, command: str | None = None) -> Exception | None:
    """The aioredstream error for ``exc``, or ``None`` when it passes as it is.

    The hot paths call this from a plain ``except`` (no context manager per call).
    """
    if isinstance(exc, RedstreamError):
        return None
    if isinstance(exc, redis_exc.TimeoutError | TimeoutError):
        return ServerTimeoutError(f"{what}: timed out ({_cause(exc)})")
    if isinstance(exc, redis_exc.BusyLoadingError | redis_exc.MasterDownError):
        # redis-py took the reply's code off; with it, it is a ServerUnavailableError
        code = "LOADING" if isinstance(exc, redis_exc.BusyLoadingError) else "MASTERDOWN"
        return command_error(ServerError, f"{code} {_cause(exc)}", command=command, what=what)
    if isinstance(exc, redis_exc.ConnectionError | OSError | EOFError | hiredis.ProtocolError):
        return ServerConnectionError(f"{what}: connection failed ({_cause(exc)})")
    if isinstance(exc, redis_exc.RedisError):
        return command_error(ServerError, _cause(exc), command=command, what=what)
    if isinstance(exc, RedisClusterException):  # not a RedisError: the slot map is incomplete
        return command_error(TopologyError, _cause(exc), command=command, what=what)
    if isinstance(exc, RuntimeError) and any(sign in str(exc) for sign in _OTHER_LOOP):
        return EventLoopError(
            f"{what}: the client's connections belong to another event loop; "
            "build the redis.asyncio client, and the producer or worker on it, inside the "
            "event loop that uses it (a FastAPI lifespan, main(), a test fixture)"
        )
    return None


def _cause(exc: BaseException) -> str:
    """The cause in words: its message, or its type's name when it has none
    (redis-py's ``MaxConnectionsError()``, a bare ``TimeoutError()``)."""
    return str(exc) or type(exc).__name__


async def execute(
    client: Redis,
    chunks: Iterable[Chunk | None],
    sink: Sink,
    *,
    what: str,
    window: int = 4,
    last_read_extra_s: float | None = 0.0,
    connect_timeout_s: float | None = None,
) -> None:
    """Send ``chunks`` on one pooled connection, handing each chunk's replies to ``sink``.

    ``last_read_extra_s`` extends the socket timeout for the last chunk's replies
    (it ends in a WAIT); ``None`` means no timeout for them (``WAIT n 0``).
    ``connect_timeout_s`` bounds the wait for a connection (see `acquire`).
    """
    pool: Any = client.connection_pool
    conn = await acquire(pool, what, connect_timeout_s)
    try:
        stale = await _exchange(conn, chunks, sink, window, last_read_extra_s)
    except BaseException as exc:
        translated = await _failed(pool, conn, exc, what)
        if translated is None:
            raise
        raise translated from exc
    if stale:
        # It now leads to a replica (a Sentinel failover): reconnecting asks anew.
        await _drop(conn)
    await pool.release(conn)


async def exchange(
    client: Redis,
    data: bytes,
    count: int,
    *,
    what: str,
    last_read_extra_s: float | None = 0.0,
    connect_timeout_s: float | None = None,
) -> list[Any]:
    """`execute` for one chunk (a lone single call): its ``count`` replies.

    The same connection handling and errors, with nothing per call beyond the write
    and the read.
    """
    pool: Any = client.connection_pool
    conn = await acquire(pool, what, connect_timeout_s)
    try:
        reader_stream, writer = _streams_of(conn)
        replies_of = _Replies(reader_stream)  # error replies are hiredis.ReplyError
        writer.write(data)
        await writer.drain()
        timeout_s: float | None = conn.socket_timeout
        if timeout_s is not None:
            timeout_s = None if last_read_extra_s is None else timeout_s + last_read_extra_s
        replies = await replies_of.take(count, timeout_s)
    except BaseException as exc:
        translated = await _failed(pool, conn, exc, what)
        if translated is None:
            raise
        raise translated from exc
    for reply in replies:
        if reply.__class__ is ReplyError and str(reply).startswith("READONLY"):
            # It now leads to a replica (a Sentinel failover): reconnecting asks anew.
            await _drop(conn)
            break
    await pool.release(conn)
    return replies


async def _failed(
    pool: Any, conn: AbstractConnection, exc: BaseException, what: str
) -> Exception | None:
    """After ``exc`` interrupted an exchange on ``conn``: drop the connection (unread
    replies may be on the wire, so it must not be reused) and return it to ``pool``,
    shielded; then ``exc`` translated (to raise ``from exc``), or ``None`` where ``exc``
    itself goes on (a cancellation, anything not from the server or the socket)."""
    with anyio.CancelScope(shield=True):
        await _drop(conn)
        await pool.release(conn)
    return _translated(exc, what) if isinstance(exc, Exception) else None


@contextmanager
def cancellation_kept() -> Iterator[None]:
    """Re-raise a cancellation that redis-py code inside the block returned from normally.

    For the few redis-py calls the library still makes (a cluster client reading its
    slot map): a ``Task.cancel()`` it swallowed still shows in ``cancelling()``.
    """
    task = asyncio.current_task()
    cancels = task.cancelling() if task is not None else 0
    yield
    if task is not None and task.cancelling() > cancels:
        raise asyncio.CancelledError


async def acquire(
    pool: Any, what: str, connect_timeout_s: float | None = None
) -> AbstractConnection:
    """A connected connection from ``pool``, ready to write on, without losing a cancellation.

    Every command of the package borrows through here: a connection the server closed
    while it sat idle is reconnected first, and ``connect_timeout_s`` bounds the wait
    (see `aioredstream.send.pooled`).

    redis-py connects through ``asyncio.wait_for`` when a socket timeout is set; on
    Python 3.11 that swallows a cancel arriving as the handshake completes
    (python/cpython#86296). The task's ``cancelling()`` count still shows it: give
    the connection back and let the cancellation through.

    A cancellation requested while the task itself was running (``asyncio.run``'s
    SIGINT handler runs inside whatever task holds the thread) is pending until the
    task's next await. redis-py before 8 checks a pooled connection inside
    ``asyncio.timeout(0)``; a pending cancellation delivered there, as that timeout
    expires, passes for the timeout's own: it becomes a ``TimeoutError`` redis-py
    ignores, and the ``cancelling()`` count is taken back too, so the call would return
    normally (Ctrl-C lost). A pending cancellation is therefore delivered here first.
    """
    task = asyncio.current_task()
    if task is not None and getattr(task, "_must_cancel", False):
        await asyncio.sleep(0)  # raises the pending CancelledError, the asyncio way
    cancels = task.cancelling() if task is not None else 0
    try:
        conn = await borrow(pool, what, connect_timeout_s)
    except Exception as exc:
        translated = _translated(exc, what)
        if translated is None:
            raise
        raise translated from exc
    if task is not None and task.cancelling() > cancels:
        with anyio.CancelScope(shield=True):
            await pool.release(conn)
        raise asyncio.CancelledError
    return conn


async def _exchange(
    conn: AbstractConnection,
    chunks: Iterable[Chunk | None],
    sink: Sink,
    window: int,
    last_read_extra_s: float | None,
) -> bool:
    """Write and read everything; ``True`` if the server said it is read-only."""
    reader_stream, writer = _streams_of(conn)
    readonly: list[bool] = []

    def reply_error(message: str) -> ReplyError:
        # Called by hiredis for error replies only: no cost on the happy path.
        if message.startswith("READONLY"):
            readonly.append(True)
        return ReplyError(message)

    replies = _Replies(reader_stream, replyError=reply_error)
    timeout_s: float | None = conn.socket_timeout
    pending: list[int] = []  # reply counts of chunks written and not yet read
    index = 0
    for chunk in chunks:
        if chunk is None:
            if pending:
                await writer.drain()
                sink(index, await replies.take(pending.pop(0), timeout_s))
                index += 1
            continue
        data, count = chunk
        writer.write(data)
        pending.append(count)
        if len(pending) > window:
            await writer.drain()
            sink(index, await replies.take(pending.pop(0), timeout_s))
            index += 1
    await writer.drain()
    while pending:
        count = pending.pop(0)
        last_timeout = timeout_s
        if not pending and timeout_s is not None:
            last_timeout = None if last_read_extra_s is None else timeout_s + last_read_extra_s
        sink(index, await replies.take(count, last_timeout))
        index += 1
    return bool(readonly)


def _streams_of(conn: AbstractConnection) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        reader_stream: asyncio.StreamReader = conn._reader  # type: ignore[assignment]
        writer: asyncio.StreamWriter = conn._writer  # type: ignore[assignment]
    except AttributeError as exc:  # the internals the matrix of redis-py versions covers
        raise UnsupportedError(
            f"redis-py {redis.__version__}: its connections have no _reader/_writer streams; "
            "aioredstream supports the redis versions its pyproject.toml allows"
        ) from exc
    if reader_stream is None or writer is None:
        raise ServerConnectionError("the pool handed out a closed connection")
    return reader_stream, writer


class _Replies:
    """The replies arriving on one connection, in order: `take` the next ``count``.

    A chunk's replies are taken from the parser in one C-level loop. RESP3 pushes
    (tracking, maintenance notifications) are not replies and are skipped; a push
    starts with ``>``, so the replies are searched for them only once the
    connection has sent that byte at all (never, with our commands' replies).
    """

    __slots__ = ("feed", "gets", "pushes", "stream")

    def __init__(self, stream: asyncio.StreamReader, **options: Any) -> None:
        # gets() says "no whole reply yet" with _MORE, not with False (== a 0 reply)
        parser = hiredis.Reader(notEnoughData=_MORE, **options)
        self.feed = parser.feed
        self.gets = parser.gets
        self.stream = stream
        self.pushes = False

    async def take(self, count: int, timeout_s: float | None) -> list[Any]:
        replies: list[Any] = []
        gets = self.gets
        while True:
            replies += islice(iter(gets, _MORE), count - len(replies))
            if self.pushes and _PUSH in map(type, replies):
                replies = [reply for reply in replies if reply.__class__ is not _PUSH]
                continue  # the parser may hold the replies the pushes stood in for
            if len(replies) == count:
                return replies
            if timeout_s is None:
                data = await self.stream.read(_READ_SIZE)
            else:
                async with asyncio.timeout(timeout_s):
                    data = await self.stream.read(_READ_SIZE)
            if not data:
                raise ServerConnectionError("the server closed the connection mid-reply")
            if not self.pushes and data.find(b">") != -1:
                self.pushes = True
            self.feed(data)


async def call(
    client: Redis, *args: bytes | str | int, what: str, connect_timeout_s: float | None = None
) -> Any:
    """Run one command and return its raw reply (bytes, int, list, or a ``ReplyError``)."""
    replies: list[Any] = []
    await execute(
        client,
        [(pack(*args), 1)],
        lambda _, r: replies.extend(r),
        what=what,
        connect_timeout_s=connect_timeout_s,
    )
    return replies[0]
