"""Handlers for ``aioredstream consume --handler tests.cli_handlers:...`` in the CLI tests."""

from __future__ import annotations

import json
import os

import anyio

from aioredstream import Message

NOT_CALLABLE = 3


async def record(messages: list[Message]) -> None:
    """Append each payload as a JSON line to the file named by $HANDLED_FILE."""
    lines = "".join(json.dumps(message.payload) + "\n" for message in messages)
    await anyio.to_thread.run_sync(_append, os.environ["HANDLED_FILE"], lines)


def _append(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(text)


def not_async(messages: list[Message]) -> None:
    """A synchronous function: the CLI refuses it."""


class Recorder:
    """An object whose ``__call__`` is async is accepted too."""

    async def __call__(self, messages: list[Message]) -> None:
        await record(messages)


recorder = Recorder()


async def reindex(messages: list[Message]) -> None:
    """The docs' poison message: ``{"id": 7}`` cannot be indexed; the others are recorded."""
    for message in messages:
        if message.payload["id"] == 7:
            raise ValueError("cannot index 7")
    await record(messages)
