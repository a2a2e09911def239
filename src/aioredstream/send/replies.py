"""Error replies of our commands -> aioredstream errors, naming the command, record and node."""

from __future__ import annotations

from typing import Any, NoReturn

from .._failures import command_error
from ..errors import ServerError, TopologyError, UnsupportedError
from . import wire

__all__ = ["raise_command_error"]

# Error replies meaning the deployment moved under the call (see TopologyError).
_TOPOLOGY_REPLIES = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "READONLY")


def raise_command_error(reply: Any, command: str, index: int | None, where: Any) -> NoReturn:
    """Raise for the error ``reply`` to ``command`` of the record at ``index`` (``None``:
    not one record's), sent to ``where`` (a client or cluster node: see ``wire.address``)."""
    message = str(reply)
    node = wire.address(where)
    if message.startswith(_TOPOLOGY_REPLIES):
        raise command_error(TopologyError, message, command=command, index=index, node=node)
    error = command_error(ServerError, message, command=command, index=index, node=node)
    if "unknown command" in message.lower():
        raise UnsupportedError(str(error))
    raise error
