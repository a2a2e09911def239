"""The listeners `aioredstream.integrations.sqlalchemy.track` installs.

Mapper events collect the instances a flush wrote; ``after_flush`` writes their delay
messages; ``do_orm_execute`` follows bulk statements (``_sqla_statements``);
``after_commit`` queues what is pending; rollbacks drop it. ``after_begin`` hands the
session's connection to the guard (``_sqla_guard``) that warns of writes nobody follows.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Result
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, SessionTransaction, object_session

from ..producer import Producer
from ._sqla_guard import Guard
from ._sqla_state import Snapshot, TrackerBase, await_, level_of
from ._sqla_statements import follow

__all__ = ["Tracker", "active"]

logger = logging.getLogger("aioredstream.integrations.sqlalchemy")
# what each live tracker was installed on (the maker, session or class passed to track())
active: weakref.WeakKeyDictionary[Any, Tracker] = weakref.WeakKeyDictionary()


class Tracker(TrackerBase):
    """The listeners `track` installed; `remove` uninstalls them."""

    def __init__(self, producer: Producer, models: tuple[type, ...], target: Any) -> None:
        super().__init__(producer, models)
        self._target = target
        self._listeners: list[tuple[Any, str, Callable[..., Any]]] = []
        self._restore: Callable[[], None] | None = None
        self._claimed: Any = None
        self._guard = Guard(models)

    def __repr__(self) -> str:
        names = ", ".join(model.__qualname__ for model in self.models)
        return f"Tracker(models=[{names}], producer={self.producer!r})"

    # -- installation ----------------------------------------------------------------

    def _install(self) -> None:
        for model in self.models:
            self._listen(model, "after_insert", self._on_write, propagate=True)
            self._listen(model, "after_update", self._on_update, propagate=True)
            self._listen(model, "after_delete", self._on_write, propagate=True)
        target = self._target
        self._listen(target, "after_begin", self._after_begin)
        self._listen(target, "before_flush", self._before_flush)
        self._listen(target, "after_flush", self._after_flush)
        self._listen(target, "after_flush_postexec", self._after_flush_postexec)
        self._listen(target, "do_orm_execute", self._do_orm_execute)
        self._listen(target, "before_commit", self._before_commit)
        self._listen(target, "after_commit", self._after_commit)
        self._listen(target, "after_rollback", self._after_rollback)
        self._listen(target, "after_transaction_end", self._after_transaction_end)

    def _listen(self, target: Any, name: str, fn: Callable[..., Any], **kw: Any) -> None:
        event.listen(target, name, fn, **kw)
        self._listeners.append((target, name, fn))

    def remove(self) -> None:
        """Stop tracking: remove every listener (and the maker's session class, if set)."""
        for target, name, fn in reversed(self._listeners):
            if event.contains(target, name, fn):
                event.remove(target, name, fn)
        self._listeners.clear()
        self._guard.remove()
        if self._restore is not None:
            self._restore()
            self._restore = None
        if self._claimed is not None:
            if active.get(self._claimed) is self:
                del active[self._claimed]
            self._claimed = None

    # -- mapper events: which instances this flush wrote --------------------------------

    def _on_write(self, mapper: Mapper[Any], connection: Any, target: object) -> None:
        state = self.state(object_session(target))
        if state is not None:
            state.flushed.append(target)

    def _on_update(self, mapper: Mapper[Any], connection: Any, target: object) -> None:
        # after_update fires for every dirty instance, even with no net column change.
        state = self.state(object_session(target))
        if state is not None and _columns_changed(target):
            state.flushed.append(target)

    # -- session events ------------------------------------------------------------------

    def _after_begin(
        self, session: Session, transaction: SessionTransaction, connection: Connection
    ) -> None:
        self._guard.watch(connection, self.own_state(session))

    def _before_flush(self, session: Session, flush_context: Any, instances: Any) -> None:
        # Marks the session as one of ours, so that the mapper events (which fire for
        # every session) collect its instances.
        self.own_state(session).flushing = True

    def _after_flush(self, session: Session, flush_context: Any) -> None:
        state = self.state(session)
        if state is None or not state.flushed:
            return
        instances, state.flushed = state.flushed, []
        # Before COMMIT: a failure here fails the flush, and the transaction rolls back.
        self.write_delays(session, (self.snapshot(instance) for instance in instances))

    def _after_flush_postexec(self, session: Session, flush_context: Any) -> None:
        state = self.state(session)
        if state is not None:
            state.flushing = False

    def _do_orm_execute(self, orm_execute_state: ORMExecuteState) -> Result[Any] | None:
        return follow(self, orm_execute_state)

    def _before_commit(self, session: Session) -> None:
        state = self.state(session)
        if state is None or not state.failed or session.get_nested_transaction() is not None:
            return  # (a released savepoint hands its failure to the enclosing level)
        failure = next(iter(state.failed.values()))
        raise sa_exc.PendingRollbackError(
            "aioredstream: a bulk statement of this transaction changed rows whose delay "
            f"messages were not written ({type(failure).__name__}: {failure}); roll the "
            "transaction back (session.rollback()), committing it would leave the secondary "
            "stores behind"
        ) from failure

    def _after_commit(self, session: Session) -> None:
        state = self.state(session)
        if state is None:
            return
        savepoint = session.get_nested_transaction()
        if savepoint is not None:
            # RELEASE SAVEPOINT: its messages (and failures) now belong to the enclosing level.
            released = state.levels.pop(savepoint, None)
            failure = state.failed.pop(savepoint, None)
            if savepoint.parent is not None:
                parent = level_of(savepoint.parent)
                if released:
                    state.levels.setdefault(parent, {}).update(released)
                if failure is not None:
                    state.failed.setdefault(parent, failure)
            return
        root = session.get_transaction()
        pending = state.levels.pop(root, None) if root is not None else None
        self._guard.forget(state)
        state.clear()
        if pending:
            self._queue(list(pending.values()))

    def _queue(self, pending: list[tuple[Snapshot, str]]) -> None:
        records = [snapshot for snapshot, _ in pending]
        ids = [delay_id for _, delay_id in pending]
        try:
            await_(self.producer.bulk_queue(records, delay_message_ids=ids))
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
        state = self.state(session)
        if state is None:
            return
        state.flushed.clear()
        state.flushing = False
        savepoint = session.get_nested_transaction()
        if savepoint is not None:
            state.levels.pop(savepoint, None)
            state.failed.pop(savepoint, None)
        else:
            state.levels.clear()
            state.failed.clear()

    def _after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        state = self.state(session)
        if state is None:
            return
        if transaction.parent is None:
            # committed, rolled back or closed: nothing survives the root
            self._guard.forget(state)
            state.clear()
        elif transaction.nested:
            # closed by its parent's rollback or close
            state.levels.pop(transaction, None)
            state.failed.pop(transaction, None)


def _columns_changed(instance: object) -> bool:
    state = inspect(instance)
    attrs = state.attrs
    return any(attrs[prop.key].history.has_changes() for prop in state.mapper.column_attrs)
