"""SQLAlchemy 2.x ``AsyncSession`` integration: the gem's model callbacks, for Python.

``track(producer, models=[User, Post], sessions=async_session_maker)`` makes every
session of that maker do what ``Redstream::Model`` does in Rails:

- **on flush** (after the INSERT/UPDATE/DELETE statements ran, inside the
  transaction): a delay message for each inserted, changed or deleted instance of a
  tracked model. Updates whose column attributes have no net change are skipped
  (the gem's ``saved_changes.present?``). If the delay write fails, the flush raises
  and the transaction can only be rolled back: no commit without a delay message.
- **after the commit**: one queue message per instance, carrying the same payload
  as its delay message, and the delay message deleted, in one pipeline.
- **on rollback**: nothing more is written; the pending messages are dropped (their
  delay messages stay, and the delayer re-syncs those rows later: harmless).

SQLAlchemy's session events are synchronous, but under ``AsyncSession`` every
flush and commit runs inside a greenlet started by ``greenlet_spawn``; from there
``sqlalchemy.util.await_`` hands a coroutine to the event loop and resumes when it
is done. That is how SQLAlchemy itself awaits the database driver, so the producer
runs on the session's own event loop, other tasks run meanwhile, and the delay
write completes before SQLAlchemy goes on to ``COMMIT``. A plain (sync)
``Session`` has no such greenlet: flushing tracked instances in one raises
:class:`~aioredstream.UnsupportedError`.

Semantics inside one transaction:

- A (stream, payload) pair gets one delay message and, after the commit, one queue
  message, however often the row is flushed: the consumer re-reads the row, so one
  message covers every change. A row inserted and later deleted in the same
  transaction is one message too. Payloads are taken when the row is first flushed.
- Savepoints (``begin_nested``): a released savepoint hands its pending messages to
  the enclosing transaction; a rolled-back savepoint drops the ones it added.
- Bulk statements (``update(User).where(...)``, ORM bulk inserts) bypass per-object
  events: wrap them in ``async with producer.bulk(records)`` (see the README).

One tracker per target: a second ``track()`` on the same maker, session or session
class raises :class:`~aioredstream.ArgumentError` until the first tracker's
:meth:`Tracker.remove` ran (stacked listeners would write every message twice; an
application that builds its app again in one process, as tests do, must call
``remove()`` on shutdown, as ``examples/fastapi_app.py``'s lifespan does). Targets
that overlap (``sessions=None`` and a maker) are not detected: track each once.

Streams: a model's stream is its ``__tablename__`` (see :class:`aioredstream.Model`),
so ``class BlogPost(Model, Base): __tablename__ = "posts"`` writes to ``posts``, as
the Rails model of that table does. Payloads are built at flush time; one that reads
an attribute the commit expired (``expire_on_commit=True``) fails with a
:class:`~aioredstream.PayloadError` that says so.
"""

from __future__ import annotations

import itertools
import json
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ClassVar, TypeVar, cast

from .._failures import missing_extra

try:
    from sqlalchemy import event, inspect
    from sqlalchemy import exc as sa_exc
    from sqlalchemy import util as sa_util
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
    from sqlalchemy.orm import Mapper, Session, SessionTransaction, object_session, sessionmaker
except ModuleNotFoundError as exc:  # the extra is not installed
    raise missing_extra(exc, "sqlalchemy", __name__) from exc

from .._records import payload_error
from ..errors import ArgumentError, UnsupportedError
from ..producer import Producer

__all__ = ["Tracker", "track"]

logger = logging.getLogger("aioredstream.integrations.sqlalchemy")

_T = TypeVar("_T")
_tracker_numbers = itertools.count(1)  # session.info keys: never reused, unlike id()
# what each live tracker was installed on (the maker, session or class passed to track())
_active: weakref.WeakKeyDictionary[Any, Tracker] = weakref.WeakKeyDictionary()
# SQLAlchemy 2.1 renamed await_only() to await_(); 2.0 has only the old name.
_sa_await: Callable[[Awaitable[Any]], Any] = getattr(sa_util, "await_", None) or sa_util.await_only

SessionTarget = async_sessionmaker[Any] | AsyncSession | sessionmaker[Any] | Session | type[Session]


class _Snapshot:
    """A record frozen at flush time: the same payload for the delay and the queue message,
    and no attribute access (no lazy load) after the commit."""

    __slots__ = ("payload",)
    stream: ClassVar[str]

    def __init__(self, payload: Any) -> None:
        self.payload = payload

    @classmethod
    def redstream_name(cls) -> str:
        return cls.stream

    def redstream_payload(self) -> Any:
        return self.payload


# (stream name, canonical payload JSON): what makes two messages the same message
_Key = tuple[str, str]


class _SessionState:
    """Per session: instances seen by this flush, and pending messages per transaction level
    (the root transaction or a savepoint) as key -> (snapshot, delay message id)."""

    __slots__ = ("flushed", "levels")

    def __init__(self) -> None:
        self.flushed: list[object] = []
        self.levels: dict[SessionTransaction, dict[_Key, tuple[_Snapshot, str]]] = {}

    def clear(self) -> None:
        self.flushed.clear()
        self.levels.clear()


class Tracker:
    """The listeners :func:`track` installed; :meth:`remove` uninstalls them."""

    def __init__(self, producer: Producer, models: tuple[type, ...], target: Any) -> None:
        self.producer = producer
        self.models = models
        self._target = target
        self._info_key = f"aioredstream.tracker.{next(_tracker_numbers)}"
        self._snapshot_classes: dict[tuple[type, str], type[_Snapshot]] = {}
        self._listeners: list[tuple[Any, str, Callable[..., None]]] = []
        self._restore: Callable[[], None] | None = None
        self._claimed: Any = None

    def __repr__(self) -> str:
        names = ", ".join(model.__qualname__ for model in self.models)
        return f"Tracker(models=[{names}], producer={self.producer!r})"

    # -- installation ----------------------------------------------------------------

    def _install(self) -> None:
        for model in self.models:
            self._listen(model, "after_insert", self._on_write, propagate=True)
            self._listen(model, "after_update", self._on_update, propagate=True)
            self._listen(model, "after_delete", self._on_write, propagate=True)
        self._listen(self._target, "before_flush", self._before_flush)
        self._listen(self._target, "after_flush", self._after_flush)
        self._listen(self._target, "after_commit", self._after_commit)
        self._listen(self._target, "after_rollback", self._after_rollback)
        self._listen(self._target, "after_transaction_end", self._after_transaction_end)

    def _listen(self, target: Any, name: str, fn: Callable[..., None], **kw: Any) -> None:
        event.listen(target, name, fn, **kw)
        self._listeners.append((target, name, fn))

    def remove(self) -> None:
        """Stop tracking: remove every listener (and the maker's session class, if set)."""
        for target, name, fn in reversed(self._listeners):
            if event.contains(target, name, fn):
                event.remove(target, name, fn)
        self._listeners.clear()
        if self._restore is not None:
            self._restore()
            self._restore = None
        if self._claimed is not None:
            if _active.get(self._claimed) is self:
                del _active[self._claimed]
            self._claimed = None

    # -- mapper events: which instances this flush wrote --------------------------------

    def _state(self, session: Session | None) -> _SessionState | None:
        if session is None:
            return None
        return cast("_SessionState | None", session.info.get(self._info_key))

    def _on_write(self, mapper: Mapper[Any], connection: Any, target: object) -> None:
        state = self._state(object_session(target))
        if state is not None:
            state.flushed.append(target)

    def _on_update(self, mapper: Mapper[Any], connection: Any, target: object) -> None:
        # after_update fires for every dirty instance, even with no net column change.
        state = self._state(object_session(target))
        if state is not None and _columns_changed(target):
            state.flushed.append(target)

    # -- session events ------------------------------------------------------------------

    def _before_flush(self, session: Session, flush_context: Any, instances: Any) -> None:
        # Marks the session as one of ours, so that the mapper events (which fire for
        # every session) collect its instances.
        if self._info_key not in session.info:
            session.info[self._info_key] = _SessionState()

    def _after_flush(self, session: Session, flush_context: Any) -> None:
        state = self._state(session)
        if state is None or not state.flushed:
            return
        instances, state.flushed = state.flushed, []
        level = _level(session)
        fresh: dict[_Key, _Snapshot] = {}
        for instance in instances:
            snapshot = self._snapshot(instance)
            key = (snapshot.stream, _canonical(snapshot.payload))
            if key not in fresh and not _pending_in(state, level, key):
                fresh[key] = snapshot
        if not fresh:
            return
        # Before COMMIT: a failure here fails the flush, and the transaction rolls back.
        ids: list[str] = _await(self.producer.bulk_delay(list(fresh.values())))
        pending = state.levels.setdefault(level, {})
        for (key, snapshot), delay_id in zip(fresh.items(), ids, strict=True):
            pending[key] = (snapshot, delay_id)

    def _after_commit(self, session: Session) -> None:
        state = self._state(session)
        if state is None:
            return
        savepoint = session.get_nested_transaction()
        if savepoint is not None:
            # RELEASE SAVEPOINT: its messages now belong to the enclosing level.
            released = state.levels.pop(savepoint, None)
            if released and savepoint.parent is not None:
                state.levels.setdefault(_level_of(savepoint.parent), {}).update(released)
            return
        root = session.get_transaction()
        pending = state.levels.pop(root, None) if root is not None else None
        state.clear()
        if pending:
            self._queue(list(pending.values()))

    def _queue(self, pending: list[tuple[_Snapshot, str]]) -> None:
        records = [snapshot for snapshot, _ in pending]
        ids = [delay_id for _, delay_id in pending]
        try:
            _await(self.producer.bulk_queue(records, delay_message_ids=ids))
        except Exception:
            # The commit has happened; raising from after_commit would leave the session
            # half-closed. The delay messages stay, and the delayer delivers them.
            logger.exception(
                "queue messages for %d committed records were not written; their delay "
                "messages remain for the delayer",
                len(records),
            )

    def _after_rollback(self, session: Session) -> None:
        # Fires for the real rollback: of the innermost savepoint, or of the whole transaction.
        state = self._state(session)
        if state is None:
            return
        state.flushed.clear()
        savepoint = session.get_nested_transaction()
        if savepoint is not None:
            state.levels.pop(savepoint, None)
        else:
            state.levels.clear()

    def _after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        state = self._state(session)
        if state is None:
            return
        if transaction.parent is None:
            state.clear()  # committed, rolled back or closed: nothing survives the root
        elif transaction.nested:
            state.levels.pop(transaction, None)  # closed by its parent's rollback or close

    # -- records -------------------------------------------------------------------------

    def _snapshot(self, instance: object) -> _Snapshot:
        cls = type(instance)
        spec = self.producer.registry.resolve(cls)
        stream = spec.stream_of(instance)  # per record, if its class names them so
        snapshot_cls = self._snapshot_classes.get((cls, stream))
        if snapshot_cls is None:
            snapshot_cls = self._snapshot_classes[cls, stream] = _snapshot_class(cls, stream)
        try:
            payload = spec.payload(instance)
        except Exception as exc:
            raise payload_error(instance, None, exc) from exc
        return snapshot_cls(payload)


def _snapshot_class(cls: type, stream: str) -> type[_Snapshot]:
    # Named after the model, so that producer errors name the model.
    namespace = {
        "__slots__": (),
        "stream": stream,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
    }
    return type(cls.__name__, (_Snapshot,), namespace)


def track(
    producer: Producer,
    *,
    models: Iterable[type],
    sessions: SessionTarget | None = None,
) -> Tracker:
    """Write delay messages on flush and queue messages after commit for ``models``.

    ``models`` are mapped classes (subclasses included) whose stream and payload the
    producer knows: they mix in :class:`aioredstream.Model` or are registered in the
    producer's registry. ``sessions`` selects the sessions that produce:

    - an ``async_sessionmaker``: its sessions (it gets a ``Session`` subclass of its
      own as ``sync_session_class``, so other makers are unaffected);
    - an ``AsyncSession`` or ``Session`` instance: that session only;
    - a ``Session`` subclass or a ``sessionmaker``: every session of that class;
    - ``None``: every session in the process.

    A target already tracked raises :class:`~aioredstream.ArgumentError` until its
    tracker's :meth:`Tracker.remove` (one tracker per target).
    """
    model_list = _check_models(producer, models)
    claim = Session if sessions is None else sessions
    try:
        existing = _active.get(claim)
    except TypeError:  # not weak-referenceable: not a valid target (refused below)
        existing = None
    if existing is not None:
        raise ArgumentError(
            f"{claim!r} is already tracked by {existing!r}: call its remove() first "
            "(e.g. in the lifespan's shutdown), or every change is written twice"
        )
    tracker = Tracker(producer, model_list, None)
    tracker._target = _event_target(tracker, sessions)
    tracker._install()
    _active[claim] = tracker
    tracker._claimed = claim
    return tracker


def _check_models(producer: Producer, models: Iterable[type]) -> tuple[type, ...]:
    if isinstance(models, type | str | bytes):
        raise ArgumentError(f"models must be a list of mapped classes, got {models!r}")
    model_list = tuple(models)
    if not model_list:
        raise ArgumentError("models must name at least one mapped class")
    for model in model_list:
        if not isinstance(model, type) or inspect(model, raiseerr=False) is None:
            raise ArgumentError(f"models: {model!r} is not a mapped SQLAlchemy class")
        producer.registry.resolve(model)  # raises RecordError naming the class
    return model_list


def _event_target(tracker: Tracker, sessions: SessionTarget | None) -> Any:
    if sessions is None:
        return Session
    if isinstance(sessions, async_sessionmaker):
        return _own_session_class(tracker, sessions)
    if isinstance(sessions, AsyncSession):
        return sessions.sync_session
    if isinstance(sessions, Session | sessionmaker):
        return sessions
    if isinstance(sessions, type) and issubclass(sessions, Session):
        return sessions
    raise ArgumentError(
        f"sessions must be an async_sessionmaker, an AsyncSession, a Session (class or "
        f"instance), a sessionmaker or None, got {sessions!r}"
    )


def _own_session_class(tracker: Tracker, maker: async_sessionmaker[Any]) -> type[Session]:
    before: type[Session] | None = maker.kw.get("sync_session_class")
    base = before or maker.class_.sync_session_class
    own = type(f"Tracked{base.__name__}", (base,), {"__module__": __name__})
    maker.configure(sync_session_class=own)

    def restore() -> None:
        if maker.kw.get("sync_session_class") is own:
            if before is None:
                maker.kw.pop("sync_session_class")
            else:
                maker.configure(sync_session_class=before)

    tracker._restore = restore
    return own


def _await(awaitable: Awaitable[_T]) -> _T:
    try:
        return cast("_T", _sa_await(awaitable))
    except sa_exc.MissingGreenlet as exc:
        raise UnsupportedError(
            "aioredstream.integrations.sqlalchemy: a tracked session flushed or committed "
            "outside SQLAlchemy's asyncio greenlet; use AsyncSession (or its run_sync())"
        ) from exc


def _columns_changed(instance: object) -> bool:
    state = inspect(instance)
    attrs = state.attrs
    return any(attrs[prop.key].history.has_changes() for prop in state.mapper.column_attrs)


def _canonical(payload: Any) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=repr)


def _level_of(transaction: SessionTransaction) -> SessionTransaction:
    """The savepoint or root a transaction belongs to (flushes run in subtransactions)."""
    while transaction.parent is not None and not transaction.nested:
        transaction = transaction.parent
    return transaction


def _level(session: Session) -> SessionTransaction:
    level = session.get_nested_transaction() or session.get_transaction()
    assert level is not None, "after_flush runs inside a transaction"
    return level


def _pending_in(state: _SessionState, level: SessionTransaction, key: _Key) -> bool:
    """Whether ``key`` is pending at ``level`` or any enclosing level."""
    transaction: SessionTransaction | None = level
    while transaction is not None:
        pending = state.levels.get(transaction)
        if pending is not None and key in pending:
            return True
        transaction = transaction.parent
    return False
