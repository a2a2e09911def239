"""How ``send/wire.py`` reads replies: a chunk's replies in order, whatever arrives between.

Against a scripted server (``tests/scripted.py``): redis-py's real client and pool, the
wire's real hiredis reader; only the socket is an in-memory pipe.
"""

from __future__ import annotations

from typing import Any

from aioredstream import Producer
from aioredstream.send import wire

from ..helpers import User
from ..scripted import Command, node_client

# what a server sends a RESP3 client that tracks a key, when the key changes
INVALIDATE = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$4\r\nuser\r\n"


def _nth_xadd(n: int) -> Any:
    seen = [0]

    def match(command: Command) -> bool:
        if command[0] != b"XADD":
            return False
        seen[0] += 1
        return seen[0] == n

    return match


async def test_a_resp3_push_between_replies_is_not_taken_for_one() -> None:
    client, server = node_client()
    # the second XADD's reply comes after a push (a tracked key changed meanwhile)
    server.script(_nth_xadd(2), INVALIDATE + b"$6\r\n9999-1\r\n")
    try:
        ids = await Producer(client, slice_size=2).bulk_delay([User(n) for n in range(5)])
    finally:
        await client.aclose()
    assert len(ids) == 5
    assert ids[1] == "9999-1"
    assert [i for n, i in enumerate(ids) if n != 1] == [
        i.decode() for i, _ in server.streams[b"redstream:stream:users.delay"]
    ]


async def test_zero_and_nil_replies_are_replies() -> None:
    # a parser that said "no reply yet" with False would stop at a 0 reply
    client, server = node_client()
    for reply in (b":0\r\n", b"$-1\r\n", b":0\r\n"):
        server.script(lambda command: command[0] == b"GET", reply)
    got: list[Any] = []
    command = wire.pack("GET", "k")
    try:
        await wire.execute(
            client, [(command * 3, 3)], lambda _, replies: got.extend(replies), what="t"
        )
    finally:
        await client.aclose()
    assert got == [0, None, 0]


async def test_replies_that_arrive_in_pieces_are_put_together() -> None:
    # 2,000 replies of 40 bytes: more than one read's worth, cut anywhere
    client, server = node_client()
    value = b"v" * 30
    server.script(lambda command: command[0] == b"GET", b"$30\r\n%b\r\n" % value, times=2000)
    got: list[Any] = []
    chunks = [(wire.pack("GET", "k") * 500, 500)] * 4
    try:
        await wire.execute(client, chunks, lambda _, replies: got.extend(replies), what="t")
    finally:
        await client.aclose()
    assert got == [value] * 2000
