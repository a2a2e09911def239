"""What a SQLAlchemy tracker keeps per session, and how it writes delay messages.

Flushes (``_sqla_track``) and bulk statements (``_sqla_statements``) both end in
`TrackerBase.write_delays`: one ``bulk_delay`` per flush or statement, for the
(stream, payload) pairs not already pending in this transaction, remembered per
transaction level (the root transaction or a savepoint) until the commit queues them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar, TypeVar, cast

from sqlalchemy import exc as sa_exc
from sqlalchemy import util as sa_util
from sqlalchemy.orm import Session, SessionTransaction

from .._records import payload_error
from ..errors import UnsupportedError
from ..producer import Producer

__all__ = [
    "OPT_OUT",
    "Key",
    "SessionState",
    "Snapshot",
    "TrackerBase",
    "await_",
    "canonical",
    "current_level",
    "level_of",
]

#: ``execution_options(redstream=False)``: the application writes this statement's
#: messages itself; it is neither followed nor warned of
OPT_OUT = "redstream"

_T = TypeVar("_T")
_tracker_numbers = itertools.count(1)  # session.info keys: never reused, unlike id()
# SQLAlchemy 2.1 renamed await_only() to await_(); 2.0 has only the old name.
_sa_await: Callable[[Awaitable[Any]], Any] = getattr(sa_util, "await_", None) or sa_util.await_only


class Snapshot:
    """A record frozen when its delay message is written: the same payload (and shard) for
    the delay and the queue message, and no attribute access (no lazy load) after the
    commit."""

    __slots__ = ("payload", "shard_key")
    stream: ClassVar[str]
    redstream_shards: ClassVar[int | None] = None  # the model's, for a sharded model

    def __init__(self, payload: Any, shard_key: Any = None) -> None:
        self.payload = payload
        self.shard_key = shard_key

    @classmethod
    def redstream_name(cls) -> str:
        return cls.stream

    def redstream_payload(self) -> Any:
        return self.payload

    def redstream_shard_key(self) -> Any:
        return self.shard_key


# (stream name, canonical payload JSON): what makes two messages the same message
Key = tuple[str, str]
Pending = dict[Key, tuple[Snapshot, str]]


class SessionState:
    """Per session: instances seen by this flush; per transaction level, the pending
    messages (key -> (snapshot, delay message id)) and the error of a bulk statement whose
    rows changed without their delay messages (that level may only roll back)."""

    __slots__ = ("connections", "failed", "flushed", "flushing", "following", "levels")

    def __init__(self) -> None:
        self.flushed: list[object] = []
        self.levels: dict[SessionTransaction, Pending] = {}
        self.failed: dict[SessionTransaction, BaseException] = {}
        self.flushing = False  # the unit of work is running its statements
        self.following = False  # a bulk statement of ours is running
        self.connections: list[Any] = []  # the session's connections in this transaction

    def clear(self) -> None:
        self.flushed.clear()
        self.levels.clear()
        self.failed.clear()
        self.flushing = self.following = False


class TrackerBase:
    """The producer, the tracked models, and the delay writes shared by flushes and bulk
    statements."""

    def __init__(self, producer: Producer, models: tuple[type, ...]) -> None:
        self.producer = producer
        self.models = models
        self._info_key = f"aioredstream.tracker.{next(_tracker_numbers)}"
        self._snapshot_classes: dict[tuple[type, str], type[Snapshot]] = {}

    def state(self, session: Session | None) -> SessionState | None:
        if session is None:
            return None
        return cast("SessionState | None", session.info.get(self._info_key))

    def own_state(self, session: Session) -> SessionState:
        """This session's state, created on first use (the session is one of ours)."""
        state = self.state(session)
        if state is None:
            state = session.info[self._info_key] = SessionState()
        return state

    def tracks(self, cls: type) -> bool:
        return issubclass(cls, self.models)

    def snapshot(self, instance: object) -> Snapshot:
        cls = type(instance)
        spec = self.producer.registry.resolve(cls)
        stream = spec.stream_of(instance)  # per record, if its class names them so
        snapshot_cls = self._snapshot_classes.get((cls, stream))
        if snapshot_cls is None:
            snapshot_cls = _snapshot_class(cls, stream, spec.shards)
            self._snapshot_classes[cls, stream] = snapshot_cls
        try:
            payload = spec.payload(instance)
            shard_key = spec.shard_key(instance) if spec.shards else None
        except Exception as exc:
            raise payload_error(instance, None, exc) from exc
        return snapshot_cls(payload, shard_key)

    def write_delays(self, session: Session, snapshots: Iterable[Snapshot]) -> int:
        """One delay message per new (stream, payload) at the session's current level, in
        one ``bulk_delay`` (slices, all payloads encoded before the first write); returns
        how many were written. Raises what the producer raises."""
        state = self.own_state(session)
        level = current_level(session)
        fresh: dict[Key, Snapshot] = {}
        for snapshot in snapshots:
            key = (snapshot.stream, canonical(snapshot.payload))
            if key not in fresh and not _pending_in(state, level, key):
                fresh[key] = snapshot
        if not fresh:
            return 0
        ids: list[str] = await_(self.producer.bulk_delay(list(fresh.values())))
        pending = state.levels.setdefault(level, {})
        for (key, snapshot), delay_id in zip(fresh.items(), ids, strict=True):
            pending[key] = (snapshot, delay_id)
        return len(fresh)


def _snapshot_class(cls: type, stream: str, shards: int | None) -> type[Snapshot]:
    # Named after the model, so that producer errors name the model.
    namespace = {
        "__slots__": (),
        "stream": stream,
        "redstream_shards": shards,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
    }
    return type(cls.__name__, (Snapshot,), namespace)


def await_(awaitable: Awaitable[_T]) -> _T:
    """Await from a synchronous SQLAlchemy event, inside AsyncSession's greenlet."""
    try:
        return cast("_T", _sa_await(awaitable))
    except sa_exc.MissingGreenlet as exc:
        raise UnsupportedError(
            "aioredstream.integrations.sqlalchemy: a tracked session flushed, committed or "
            "ran a bulk statement outside SQLAlchemy's asyncio greenlet; use AsyncSession "
            "(or its run_sync())"
        ) from exc


def canonical(payload: Any) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=repr)


def level_of(transaction: SessionTransaction) -> SessionTransaction:
    """The savepoint or root a transaction belongs to (flushes run in subtransactions)."""
    while transaction.parent is not None and not transaction.nested:
        transaction = transaction.parent
    return transaction


def current_level(session: Session) -> SessionTransaction:
    level = session.get_nested_transaction() or session.get_transaction()
    assert level is not None, "delay messages are written inside a transaction"
    return level


def _pending_in(state: SessionState, level: SessionTransaction, key: Key) -> bool:
    """Whether ``key`` is pending at ``level`` or any enclosing level."""
    transaction: SessionTransaction | None = level
    while transaction is not None:
        pending = state.levels.get(transaction)
        if pending is not None and key in pending:
            return True
        transaction = transaction.parent
    return False
