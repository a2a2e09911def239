"""Bulk statements under ``track()``: ``session.execute(update(User)...)`` and friends.

``do_orm_execute`` sees every statement a tracked session executes. For an INSERT,
UPDATE or DELETE on a tracked table (an ORM entity or its ``Table``), the changed rows
are found in one of three ways, and their delay messages written before
``session.execute()`` returns (so before any COMMIT), as for a flush:

- **RETURNING** (the database has it for that statement: PostgreSQL, SQLite >= 3.35):
  the statement itself returns the rows it changed. Exact, whatever other transactions do.
  The application's result stays what it would have been: for a statement without
  ``returning()``, a ``CursorResult`` with no rows left to read, the same ``rowcount``
  and (one-row INSERT) ``inserted_primary_key``; RETURNING goes through
  ``return_defaults()`` there, as the ORM does for itself. With the application's own
  ``returning()``, the same rows, the added columns removed.
- **Keys** (ORM bulk UPDATE by primary key, ``update(User), [dicts]``; an INSERT without
  RETURNING whose parameter sets all carry the key): the keys are in the parameters; the
  rows are read by key after the statement, in the transaction. Keys that match no row
  give no message.
- **Selected before** (UPDATE or DELETE without RETURNING): the rows the criteria match
  are selected ``FOR UPDATE`` before the statement (for an UPDATE, read again by key
  after it). A row another transaction inserts between that SELECT and the statement
  (a phantom, under READ COMMITTED) is not seen: see docs/sqlalchemy.md.

A statement that cannot be followed (an INSERT without RETURNING and without keys, an
UPDATE or DELETE with a list of parameter sets other than the ORM's bulk UPDATE by key, an
UPDATE of the key without RETURNING) raises
`UnsupportedError` before it runs. ``execution_options(redstream=False)``
turns following off for one statement (the application then writes its messages itself).

If the delay write (or a payload) fails after the statement ran, ``session.execute()``
raises and the transaction level is marked failed: its COMMIT raises SQLAlchemy's
``PendingRollbackError`` until it is rolled back. No row commits without its delay message.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Table, inspect
from sqlalchemy.engine import Connection, CursorResult, Dialect, Result
from sqlalchemy.orm import Mapper, ORMExecuteState
from sqlalchemy.sql.dml import UpdateBase

from ..errors import UnsupportedError
from ._sqla_rows import Row, Shape, select_by_keys, select_matching
from ._sqla_state import OPT_OUT, SessionState, TrackerBase, current_level

__all__ = ["follow"]
#: RETURNING rows turned into records per step
_PARTITION = 1000


def follow(tracker: TrackerBase, orm_execute_state: ORMExecuteState) -> Result[Any] | None:
    """``do_orm_execute``: run a write on a tracked table so that its rows get delay
    messages; ``None`` (SQLAlchemy runs the statement as usual) for anything else."""
    st = orm_execute_state
    if not (st.is_insert or st.is_update or st.is_delete):
        return None
    statement = st.statement
    if not isinstance(statement, UpdateBase) or _opted_out(st):
        return None
    shape = _shape(tracker, st, statement)
    if shape is None:
        return None
    if not shape.follows_anything:
        # e.g. update(Cat) where only Dog, of the same table, is tracked: run it here, so
        # that the guard knows it was seen
        return _seen(tracker.own_state(st.session), st)
    run = _Run(tracker, st, statement, shape)
    return run()


def _seen(state: SessionState, st: ORMExecuteState) -> Result[Any]:
    state.following = True
    try:
        return st.invoke_statement()
    finally:
        state.following = False


def _opted_out(st: ORMExecuteState) -> bool:
    return st.execution_options.get(OPT_OUT, True) is False


def _shape(tracker: TrackerBase, st: ORMExecuteState, statement: UpdateBase) -> Shape | None:
    mapper = st.bind_mapper
    if mapper is not None:
        return Shape(tracker, mapper, mapper.local_table)  # type: ignore[arg-type]
    table = getattr(statement, "table", None)  # a Core statement on a Table
    if not isinstance(table, Table):
        return None
    found = _mapper_of_table(tracker, table)
    return None if found is None else Shape(tracker, found, table)


def _mapper_of_table(tracker: TrackerBase, table: Table) -> Mapper[Any] | None:
    """The topmost mapper of a tracked model (or of its bases) that maps ``table``."""
    for model in tracker.models:
        mapper: Mapper[Any] | None = inspect(model)
        top = None
        while mapper is not None:
            if mapper.local_table is table:
                top = mapper
            mapper = mapper.inherits
        if top is not None:
            return top
    return None


class _Run:
    """One followed statement: its way of finding the rows, the statement run once, the
    delay messages, and the failure bookkeeping."""

    def __init__(
        self, tracker: TrackerBase, st: ORMExecuteState, statement: UpdateBase, shape: Shape
    ) -> None:
        self.tracker = tracker
        self.st = st
        self.statement = statement
        self.shape = shape
        self.state: SessionState = tracker.own_state(st.session)
        self.executed = False

    def __call__(self) -> Result[Any]:
        state = self.state
        state.following = True
        try:
            result, rows = self._plan()
            records = self.shape.records(rows)
            self.tracker.write_delays(self.st.session, map(self.tracker.snapshot, records))
            return result
        except BaseException as exc:
            if self.executed:  # rows changed without their delay messages: no commit
                state.failed.setdefault(current_level(self.st.session), exc)
            raise
        finally:
            state.following = False

    # -- which way ---------------------------------------------------------------------

    def _plan(self) -> tuple[Result[Any], Iterable[Row]]:
        st = self.st
        params = st.parameters
        orm = st.bind_mapper is not None
        many = isinstance(params, list | tuple)  # (the ORM's "bulk" strategies)
        if many and not st.is_insert:
            if not (st.is_update and orm):
                raise self._unsupported("an UPDATE or DELETE with a list of parameter sets")
            keys = self.shape.keys_in(_param_sets(params), by_attribute=True)
            if not keys:
                raise self._unsupported("a bulk UPDATE whose parameter sets lack the key")
            return self._by_keys(keys)  # the ORM's bulk UPDATE by primary key
        if self._has_returning(self._dialect(), many=many):
            return self._returning()
        if st.is_insert:
            if params:
                keys = self.shape.keys_in(_param_sets(params), by_attribute=orm)
                if not keys:
                    raise self._unsupported("an INSERT without RETURNING whose rows lack keys")
                return self._by_keys(keys)
            return self._inserted_keys()
        return self._selected_before()

    def _dialect(self) -> Dialect:
        return self.st.session.get_bind(**self.st.bind_arguments).dialect

    def _has_returning(self, dialect: Dialect, *, many: bool) -> bool:
        if self.st.is_insert:
            return bool(dialect.insert_executemany_returning if many else dialect.insert_returning)
        if self.st.is_update:
            return bool(dialect.update_returning)
        return bool(dialect.delete_returning)

    def _invoke(self, statement: UpdateBase | None = None) -> Result[Any]:
        result = self.st.invoke_statement(statement=statement)
        self.executed = True
        return result

    def _connection(self) -> Connection:
        return self.st.session.connection(bind_arguments=self.st.bind_arguments)

    def _unsupported(self, what: str, *, ran: bool = False) -> UnsupportedError:
        outcome = "roll the transaction back" if ran else "nothing ran"
        return UnsupportedError(
            f"aioredstream cannot follow {what} on the tracked table {self.shape.table.name!r} "
            f"({self._dialect().name}): {outcome}. Pass execution_options(redstream=False) "
            "and write the messages yourself (producer.bulk), or give the rows' keys "
            "(docs/sqlalchemy.md, Bulk statements)"
        )

    # -- RETURNING ---------------------------------------------------------------------

    def _returning(self) -> tuple[Result[Any], Iterable[Row]]:
        statement, ours = self.statement, self.shape.columns
        if statement.exported_columns:  # the application's own returning()
            result = self._invoke(statement.returning(*ours))
            frozen = result.freeze()
            width = len(frozen.metadata.keys) - len(ours)
            rows = [row[width:] for row in frozen.data]
            returned = frozen().columns(*range(width))
            if isinstance(result, CursorResult):  # a Core statement's result has a rowcount
                setattr(returned, "rowcount", result.rowcount)  # noqa: B010
            return returned, rows
        # One execution (not the ORM's bulk INSERT, which ignores return_defaults()).
        params, orm = self.st.parameters, self.st.bind_mapper is not None
        single = not isinstance(params, list | tuple) and not (self.st.is_insert and orm and params)
        if single and _defaults_return(statement, self.shape.table):
            return self._returned_defaults()
        result = self._invoke(statement.returning(*ours))
        cursor = _cursor_of(result)
        if cursor is None:
            return result, _drain(result, None)
        return cursor, _drain(result, cursor)

    def _returned_defaults(self) -> tuple[Result[Any], Iterable[Row]]:
        """RETURNING through ``return_defaults()``, as the ORM does for itself: the result
        stays a row-less DML result, with the ``rowcount`` (the rows returned) and
        ``inserted_primary_key`` it would have had without RETURNING."""
        ours = self.shape.columns
        defaults = self.statement.return_defaults(*self.shape.keys, supplemental_cols=ours)
        result = self._invoke(defaults)
        cursor = _cursor_of(result)
        if cursor is None or not cursor.returns_rows:  # RETURNING was not rendered after all
            raise self._unsupported("this statement (its RETURNING was vetoed)", ran=True)
        found = cursor.returned_defaults_rows or []
        deque(cursor, maxlen=0)  # the rows are rewound for us: the application reads none
        _set_rowcount(cursor, len(found))
        return result, (tuple(row._mapping[c] for c in ours) for row in found)

    # -- keys in the parameters, or selected --------------------------------------------

    def _by_keys(self, keys: Sequence[Any]) -> tuple[Result[Any], Iterable[Row]]:
        result = self._invoke()
        return result, select_by_keys(self._connection(), self.shape, keys)

    def _inserted_keys(self) -> tuple[Result[Any], Iterable[Row]]:
        """A one-row INSERT ... VALUES: its key from ``inserted_primary_key`` (lastrowid, or
        a sequence SQLAlchemy ran first)."""
        many_rows = getattr(self.statement, "_multi_values", None)  # VALUES (...), (...)
        if many_rows or getattr(self.statement, "select", None) is not None:
            raise self._unsupported("a multi-row INSERT without RETURNING or keys")
        result = self._invoke()
        cursor = _cursor_of(result)
        keys: list[Any] = []
        if cursor is not None:
            keys = [tuple(key) for key in cursor.inserted_primary_key_rows if key is not None]
        if not keys or len(keys) != cursor.rowcount or any(None in key for key in keys):  # type: ignore[union-attr]
            raise self._unsupported(
                "this INSERT (its keys are not known without RETURNING)", ran=True
            )
        return result, select_by_keys(self._connection(), self.shape, keys)

    def _selected_before(self) -> tuple[Result[Any], Iterable[Row]]:
        shape, connection = self.shape, self._connection()
        if self.st.is_delete:
            rows = select_matching(connection, shape, self.statement, shape.columns)
            return self._invoke(), rows
        if _sets_any(self.statement, shape):
            raise self._unsupported("an UPDATE of the primary key without RETURNING")
        keys = [
            shape.key_of(row)
            for row in select_matching(connection, shape, self.statement, shape.keys)
        ]
        result = self._invoke()
        return result, select_by_keys(connection, shape, keys)


def _cursor_of(result: Result[Any]) -> CursorResult[Any] | None:
    if isinstance(result, CursorResult):
        return result
    raw = getattr(result, "raw", None)  # the ORM's result over the cursor
    return raw if isinstance(raw, CursorResult) else None


def _drain(result: Result[Any], cursor: CursorResult[Any] | None) -> Iterator[Row]:
    """The result's rows, a partition at a time (the application's result then has no
    rows left to read, as without RETURNING); then the cursor's rowcount made the number
    of rows, as the statement without RETURNING would have said."""
    count = 0
    for part in result.partitions(_PARTITION):
        count += len(part)
        yield from part
    if cursor is not None:
        _set_rowcount(cursor, count)


def _set_rowcount(cursor: CursorResult[Any], count: int) -> None:
    # SQLAlchemy 2.0's aiosqlite reads the rowcount before RETURNING's rows are fetched
    # (-1). CursorResult.rowcount is memoized there, so the context is asked and set.
    context = cursor.context
    if context.rowcount != count and hasattr(context, "_rowcount"):
        context._rowcount = count


def _defaults_return(statement: UpdateBase, table: Table) -> bool:
    """Whether ``return_defaults()`` renders RETURNING for this single execution: not for
    a table that vetoes implicit RETURNING, nor for INSERT ... SELECT or an upsert (SQLite
    vetoes it there)."""
    return table.implicit_returning and all(
        getattr(statement, name, None) is None for name in ("select", "_post_values_clause")
    )


def _param_sets(params: Any) -> list[Mapping[str, Any]]:
    return [params] if isinstance(params, Mapping) else list(params)


def _sets_any(statement: UpdateBase, shape: Shape) -> bool:
    """Whether an UPDATE sets a key column (read from its values, as SQLAlchemy keeps them)."""
    values = dict(getattr(statement, "_values", None) or {})
    values.update(getattr(statement, "_ordered_values", None) or ())
    names = {c.key for c in shape.keys} | {
        shape.mapper.get_property_by_column(c).key for c in shape.keys
    }
    return any(str(getattr(target, "key", target)) in names for target in values)
