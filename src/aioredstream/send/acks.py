"""WAIT / WAITAOF after delay writes: the commands to append and the check of their replies."""

from __future__ import annotations

from typing import Any

from .._failures import command_error
from ..errors import ReplicationError
from . import wire
from .replies import raise_command_error

__all__ = ["Acks"]


class Acks:
    """What a producer's ``wait`` / ``wait_aof`` settings add behind its delay writes.

    ``tail`` goes on the connection that made the writes (WAIT only counts that
    connection's writes); ``count`` is how many replies it adds; `check`
    raises a fresh `ReplicationError` when they fall short.
    """

    __slots__ = ("count", "tail", "wait", "wait_aof", "wait_timeout")

    def __init__(self, wait: int, wait_timeout: float, wait_aof: tuple[int, int] | None) -> None:
        self.wait = wait
        self.wait_timeout = wait_timeout
        self.wait_aof = wait_aof
        wait_ms = round(wait_timeout * 1000)
        tail = b""
        if wait:
            tail += wire.pack("WAIT", wait, wait_ms)
        if wait_aof:
            tail += wire.pack("WAITAOF", wait_aof[0], wait_aof[1], wait_ms)
        self.tail = tail
        self.count = bool(wait) + bool(wait_aof)

    @property
    def last_read_extra_s(self) -> float | None:
        """How much longer than the socket timeout the replies may take (``None``: no bound)."""
        return self.wait_timeout or None

    def check(self, results: list[Any], where: Any) -> None:
        """Raise if the replies fell short; ``where`` is the client or cluster node they
        came from (see ``wire.address``: looked up only for an error)."""
        position = 0
        if self.wait:
            acked = results[position]
            position += 1
            if isinstance(acked, BaseException):
                raise_command_error(acked, "WAIT", None, where)
            if acked < self.wait:
                raise command_error(
                    ReplicationError,
                    f"{acked} of {self.wait} required replicas acknowledged the delay "
                    f"writes within {self.wait_timeout}s; they are on the primary only",
                    command="WAIT",
                    node=wire.address(where),
                    acknowledged=int(acked),
                    required=self.wait,
                )
        if self.wait_aof:
            self._check_aof(results[position], where)

    def _check_aof(self, reply: Any, where: Any) -> None:
        assert self.wait_aof is not None
        if isinstance(reply, BaseException):
            raise_command_error(reply, "WAITAOF", None, where)
        local, replicas = int(reply[0]), int(reply[1])
        need_local, need_replicas = self.wait_aof
        if local < need_local or replicas < need_replicas:
            raise command_error(
                ReplicationError,
                f"{local}/{need_local} local and {replicas}/{need_replicas} replica "
                f"AOF fsyncs acknowledged within {self.wait_timeout}s",
                command="WAITAOF",
                node=wire.address(where),
                acknowledged=replicas,
                required=need_replicas,
                local_acknowledged=local,
                local_required=need_local,
            )
