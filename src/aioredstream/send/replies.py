"""Error replies of our commands -> aioredstream errors, naming the command and the record."""

from __future__ import annotations

from typing import Any, NoReturn

from ..errors import ServerError, TopologyError, UnsupportedError

__all__ = ["raise_command_error"]

# Error replies meaning the deployment moved under the call (see TopologyError).
_TOPOLOGY_REPLIES = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "READONLY")


def raise_command_error(reply: Any, command: str, index: int | None) -> NoReturn:
    at = "" if index is None else f" (record at index {index})"
    message = str(reply)
    if message.startswith(_TOPOLOGY_REPLIES):
        raise TopologyError(f"{command}{at}: {message}")
    if "unknown command" in message.lower():
        raise UnsupportedError(f"{command}{at}: {message}")
    raise ServerError(f"{command}{at}: {message}")
