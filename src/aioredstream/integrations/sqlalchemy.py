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
`UnsupportedError`.

Semantics inside one transaction:

- A (stream, payload) pair gets one delay message and, after the commit, one queue
  message, however often the row is flushed: the consumer re-reads the row, so one
  message covers every change. A row inserted and later deleted in the same
  transaction is one message too. Payloads are taken when the row is first flushed.
- Savepoints (``begin_nested``): a released savepoint hands its pending messages to
  the enclosing transaction; a rolled-back savepoint drops the ones it added.
- Bulk statements (``session.execute(update(User).where(...).values(...))``,
  ``delete(User)...``, ``insert(User)`` with a list of dicts, ``update(User)`` with a
  list of dicts by primary key, and the same on the model's ``Table``) are followed as
  flushes are: a delay message for every row they changed, written before
  ``session.execute()`` returns, the queue messages after the commit. The rows come from
  the statement's own ``RETURNING`` where the database has it, the application's result
  unchanged; see docs/sqlalchemy.md for the rest, and for what cannot be followed
  (``text()`` statements and Core statements on ``session.connection()`` get an
  `UntrackedWriteWarning`).

One tracker per target: a second ``track()`` on the same maker, session or session
class raises `ArgumentError` until the first tracker's
`Tracker.remove` ran (stacked listeners would write every message twice; an
application that builds its app again in one process, as tests do, must call
``remove()`` on shutdown, as ``examples/fastapi_app.py``'s lifespan does). Targets
that overlap (``sessions=None`` and a maker) are not detected: track each once.

Streams: a model's stream is its ``__tablename__`` (see `aioredstream.Model`),
so ``class BlogPost(Model, Base): __tablename__ = "posts"`` writes to ``posts``, as
the Rails model of that table does. Payloads are built at flush time; one that reads
an attribute the commit expired (``expire_on_commit=True``) fails with a
`PayloadError` that says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._failures import missing_extra

try:
    from sqlalchemy import inspect
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
    from sqlalchemy.orm import Session, sessionmaker
except ModuleNotFoundError as exc:  # the extra is not installed
    raise missing_extra(exc, "sqlalchemy", __name__) from exc

from ..errors import ArgumentError
from ..producer import Producer
from ._backfill import backfill
from ._sqla_guard import UntrackedWriteWarning
from ._sqla_track import Tracker, active

__all__ = ["Tracker", "UntrackedWriteWarning", "backfill", "track"]

SessionTarget = async_sessionmaker[Any] | AsyncSession | sessionmaker[Any] | Session | type[Session]


def track(
    producer: Producer,
    *,
    models: Iterable[type],
    sessions: SessionTarget | None = None,
) -> Tracker:
    """Write delay messages on flush (and in ``session.execute()`` of a bulk INSERT,
    UPDATE or DELETE) and queue messages after commit for ``models``.

    ``models`` are mapped classes (subclasses included) whose stream and payload the
    producer knows: they mix in `aioredstream.Model` or are registered in the
    producer's registry. ``sessions`` selects the sessions that produce:

    - an ``async_sessionmaker``: its sessions (it gets a ``Session`` subclass of its
      own as ``sync_session_class``, so other makers are unaffected);
    - an ``AsyncSession`` or ``Session`` instance: that session only;
    - a ``Session`` subclass or a ``sessionmaker``: every session of that class;
    - ``None``: every session in the process.

    A target already tracked raises `ArgumentError` until its
    tracker's `Tracker.remove` (one tracker per target).
    """
    model_list = _check_models(producer, models)
    claim = Session if sessions is None else sessions
    try:
        existing = active.get(claim)
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
    active[claim] = tracker
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
