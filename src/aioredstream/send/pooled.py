"""Borrowing a connection from a pool, ready to write on, and dropping a broken one.

`aioredstream.send.wire.acquire` borrows through here for every command of the
package (producer, coalescer, workers, the lock, cluster nodes, Sentinel), so the two
rules below hold everywhere:

- A pooled connection the server closed while it sat idle (a restart) is reconnected
  before anything is sent on it; nothing was sent yet, so that is safe. redis-py does
  not always check: 8.1 skips its check when maintenance notifications are on (the
  default for TCP clients) and a cluster node never checks, so without this every idle
  connection failed its next call after a restart.
- ``timeout_s`` bounds the whole wait for the connection: a free one of the pool,
  connecting, redis-py's connect retries (the producer's ``connect_timeout_s``).
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any

import anyio
from redis.asyncio.connection import AbstractConnection

from ..errors import ServerConnectionError

__all__ = ["borrow", "closed", "drop"]

_PUSH_MARK = ord(">")  # the first byte of a RESP3 push


async def borrow(pool: Any, what: str, timeout_s: float | None) -> AbstractConnection:
    """A connection of ``pool`` that was not closed under us, within ``timeout_s``
    (``None``: as long as the client's own retries and timeouts take)."""
    if timeout_s is None:  # no timer at all: it would cost every call
        return await _checked(pool)
    budget = asyncio.timeout(timeout_s)
    try:
        async with budget:
            return await _checked(pool)
    except Exception as exc:
        if not budget.expired():
            raise
        raise ServerConnectionError(
            f"{what}: no connection within connect_timeout_s={timeout_s} "
            "(the server is unreachable or restarting, or every pooled connection is busy)"
        ) from exc


async def _checked(pool: Any) -> AbstractConnection:
    conn: AbstractConnection = await pool.get_connection()
    if closed(conn):
        try:
            await drop(conn)
            await conn.connect()  # type: ignore[no-untyped-call]
        except BaseException:
            with anyio.CancelScope(shield=True):
                await pool.release(conn)
            raise
    return conn


def closed(conn: Any) -> bool:
    """The server closed ``conn`` (end of stream, a reset) or left bytes on it while idle.

    Only what the event loop already knows, no syscall (under 1 µs): its transport
    reads an idle socket in the background, so a close the loop has seen is in the
    stream. Buffered bytes other than a RESP3 push (which the wire skips) would pass
    for the reply to the next command.
    """
    reader: Any = getattr(conn, "_reader", None)
    if reader is None:
        return False  # not connected, or another redis-py: the wire says so
    if reader.exception() is not None or reader.at_eof():
        return True
    buffered = reader._buffer
    if buffered and buffered[0] != _PUSH_MARK:
        return True
    transport: Any = getattr(conn._writer, "transport", None)
    return transport is not None and bool(transport.is_closing())


async def drop(conn: AbstractConnection) -> None:
    """Close ``conn`` now, and observe how its stream ends.

    ``disconnect(nowait=True)`` does not wait for the stream to close, so the error
    its protocol keeps (``ConnectionResetError`` after a server died) would be
    logged as "Future exception was never retrieved" when collected; a task
    waiting for the close retrieves it instead. A transport of a closed event loop
    cannot be closed at all (see `EventLoopError`); redis-py forgets it
    anyway, so the connection reconnects when it is used again.
    """
    writer: asyncio.StreamWriter | None = getattr(conn, "_writer", None)
    with suppress(RuntimeError):
        await conn.disconnect(nowait=True)
    if writer is not None:
        try:
            closing = asyncio.ensure_future(writer.wait_closed())
        except RuntimeError:  # no running loop of its own: nothing will ever log it
            return
        closing.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
