"""Dead letters: messages a consumer gave up on, kept in the stream ``<name>.dead``.

Each entry keeps the message's ``payload`` bytes (so the gem's tools, which read
``payload``, see it as any other message) and why it is there: ``error``,
``attempts``, ``original_id`` and ``consumer``. ``aioredstream dead`` lists, replays
(copies back to ``<name>``, then deletes) and drops them; a dead-letter stream they
leave empty is deleted.
"""

from __future__ import annotations

from typing import Any

from .._failures import cause
from .._keys import Keys
from ..send import command as _command
from ..send.command import Script
from ._streams import Client, decode
from .message import Message

__all__ = ["DEAD_SUFFIX", "DeadLetter", "dead_letters", "drop", "replay", "write"]

DEAD_SUFFIX = ".dead"
_ERROR_CHARS = 2000


class DeadLetter:
    """One entry of a dead-letter stream."""

    __slots__ = ("attempts", "consumer", "error", "id", "original_id", "payload")

    def __init__(self, entry_id: str, fields: dict[str, str]) -> None:
        self.id = entry_id
        self.payload = fields.get("payload", "")
        self.error = fields.get("error", "")
        self.attempts = int(fields.get("attempts", "0") or 0)
        self.original_id = fields.get("original_id", "")
        self.consumer = fields.get("consumer", "")


async def write(
    client: Client,
    keys: Keys,
    stream_name: str,
    consumer: str,
    message: Message,
    error: BaseException,
    attempts: int,
) -> str:
    """Copy ``message`` with why it failed to ``<stream_name>.dead``; the new entry's id."""
    key = keys.stream(stream_name + DEAD_SUFFIX)
    reason = cause(error)[:_ERROR_CHARS]
    reply: Any = await _command.run(
        client,
        *("XADD", key, "*", "payload", message.raw_payload, "error", reason),
        *("attempts", attempts, "original_id", message.message_id, "consumer", consumer),
        key=key,
    )
    return decode(reply)


async def dead_letters(client: Client, keys: Keys, stream_name: str) -> list[DeadLetter]:
    key = keys.stream(stream_name + DEAD_SUFFIX)
    rows: Any = await _command.run(client, "XRANGE", key, "-", "+", key=key)
    result = []
    for raw_id, raw_fields in rows:
        pairs = [decode(value) for value in raw_fields]
        result.append(DeadLetter(decode(raw_id), dict(zip(pairs[::2], pairs[1::2], strict=True))))
    return result


async def replay(client: Client, keys: Keys, stream_name: str, ids: list[str]) -> int:
    """Copy the dead letters ``ids`` back to their stream, then delete them; how many.
    A dead-letter stream left empty is deleted."""
    dead_key, key = keys.stream(stream_name + DEAD_SUFFIX), keys.stream(stream_name)
    wanted = set(ids)
    chosen = [d for d in await dead_letters(client, keys, stream_name) if d.id in wanted]
    for letter in chosen:  # copy first: a failure leaves the dead letter where it is
        await _command.run(client, "XADD", key, "*", "payload", letter.payload, key=key)
        await _command.run(client, "XDEL", dead_key, letter.id, key=dead_key)
    await _delete_if_empty(client, dead_key)
    return len(chosen)


async def drop(client: Client, keys: Keys, stream_name: str, ids: list[str]) -> int:
    """Delete the dead letters ``ids``; how many were there. A dead-letter stream left
    empty is deleted."""
    dead_key = keys.stream(stream_name + DEAD_SUFFIX)
    deleted = int(await _command.run(client, "XDEL", dead_key, *ids, key=dead_key)) if ids else 0
    await _delete_if_empty(client, dead_key)  # also one an older version left empty
    return deleted


# In one step, so a dead letter a consumer writes meanwhile is never deleted with it.
_DELETE_IF_EMPTY = Script("""
if redis.call('XLEN', KEYS[1]) == 0 then
    return redis.call('DEL', KEYS[1])
end
return 0
""")


async def _delete_if_empty(client: Client, dead_key: str) -> None:
    """An empty dead-letter stream is deleted: ``status`` then no longer lists it."""
    await _command.script(client, _DELETE_IF_EMPTY, [dead_key], [], what=f"DEL {dead_key}")
