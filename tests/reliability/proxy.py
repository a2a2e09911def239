"""A TCP proxy in front of a real server that SIGKILLs it after the N-th stream write.

It forwards bytes unchanged. It counts the stream writes (XADD, XDEL, EVAL) clients send, and
when the count reaches ``kill_after`` it forwards exactly those commands, lets the
server answer them, kills the server (SIGKILL, as a crash) and drops every client
connection. That puts a crash at an exact point of a pipelined call: on a slice
boundary or in the middle of a slice.
"""

from __future__ import annotations

import asyncio
import contextlib

from aioredstream.testing import ServerProcess

# the producer writes XADD (delay, queue) and EVAL (queue + delete of the delay message)
WRITE_COMMANDS = {b"XADD", b"XDEL", b"EVAL"}


def split_commands(buffer: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """Complete RESP commands in ``buffer``: [(end offset, command name)], bytes consumed."""
    found: list[tuple[int, bytes]] = []
    pos = 0
    while True:
        end = _command_end(buffer, pos)
        if end is None:
            return found, pos
        name_len_end = buffer.index(b"\r\n", buffer.index(b"$", pos)) + 2
        name_end = buffer.index(b"\r\n", name_len_end)
        found.append((end, buffer[name_len_end:name_end].upper()))
        pos = end


def _command_end(buffer: bytes, pos: int) -> int | None:
    if pos >= len(buffer):
        return None
    line_end = buffer.find(b"\r\n", pos)
    if line_end < 0:
        return None
    assert buffer[pos : pos + 1] == b"*", buffer[pos : pos + 20]
    count = int(buffer[pos + 1 : line_end])
    pos = line_end + 2
    for _ in range(count):
        line_end = buffer.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(buffer[pos + 1 : line_end])
        pos = line_end + 2 + size + 2
        if pos > len(buffer):
            return None
    return pos


class KillingProxy:
    def __init__(self, server: ServerProcess, kill_after: int | None = None) -> None:
        self.server = server
        self.kill_after = kill_after
        self.writes_forwarded = 0
        self.killed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> KillingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._drop_all()
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.server.host, self.server.port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for pump in (self._requests(reader, up_writer), self._replies(up_reader, writer)):
            task = asyncio.create_task(pump)
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _replies(self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _requests(
        self, reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter
    ) -> None:
        pending = b""
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                pending += data
                commands, consumed = split_commands(pending)
                cut = self._cut(commands)
                if cut is not None:
                    up_writer.write(pending[:cut])
                    await up_writer.drain()
                    await self._crash()
                    return
                up_writer.write(pending[:consumed])
                pending = pending[consumed:]
                await up_writer.drain()
        up_writer.close()

    def _cut(self, commands: list[tuple[int, bytes]]) -> int | None:
        for end, name in commands:
            if name in WRITE_COMMANDS and not self.killed.is_set():
                self.writes_forwarded += 1
                if self.writes_forwarded == self.kill_after:
                    return end
        return None

    async def _crash(self) -> None:
        await asyncio.sleep(0.05)  # let the server apply (and answer) what it was sent
        self.server.kill()
        self.killed.set()
        self._drop_all()

    def _drop_all(self) -> None:
        for writer in self._writers:
            writer.close()
        self._writers.clear()
