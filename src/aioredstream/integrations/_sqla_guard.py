"""Writes to tracked tables that a tracked session makes and nobody follows: a warning.

Flushes and ``session.execute()`` of INSERT/UPDATE/DELETE statements are followed. What
else reaches the database on a tracked session's connection cannot be: a ``text()``
statement, a Core statement on ``session.connection()``, the legacy
``session.bulk_save_objects()`` family. An engine-level ``before_execute`` listener sees
them, and `UntrackedWriteWarning` names the table; the statement still runs.
"""

from __future__ import annotations

import re
import warnings
import weakref
from typing import Any

from sqlalchemy import Table, event, inspect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import TextClause

from ._sqla_state import OPT_OUT, SessionState

__all__ = ["Guard", "UntrackedWriteWarning"]

# a write keyword, then the (possibly schema-qualified, quoted) table it writes
_TEXT_WRITE = re.compile(
    r"\b(?:insert(?:\s+or\s+\w+)?\s+into|update(?:\s+only)?|delete\s+from(?:\s+only)?"
    r"|merge\s+into|replace\s+into|truncate(?:\s+table)?(?:\s+only)?)"
    r"\s+(?:[\"`\[]?\w+[\"`\]]?\s*\.\s*)?[\"`\[]?(\w+)",
    re.IGNORECASE,
)


class UntrackedWriteWarning(UserWarning):
    """A tracked session wrote a tracked table in a way ``track()`` cannot follow (a
    ``text()`` statement, a Core statement on ``session.connection()``, the legacy
    ``bulk_save_objects()`` family): no delay or queue message was written for those rows.

    Use ``session.execute()`` with an ORM or Core statement instead (followed), or write
    the messages yourself (``producer.bulk``) and pass ``execution_options(redstream=False)``
    to say so.
    """


class Guard:
    """Warns of writes to the tracked models' tables on tracked sessions' connections."""

    def __init__(self, models: tuple[type, ...]) -> None:
        tables: set[Table] = set()
        for model in models:
            tables.update(inspect(model).tables)
        self._tables = {(table.schema, table.name) for table in tables}
        self._names = {table.name.lower() for table in tables}
        self._owners: weakref.WeakKeyDictionary[Connection, SessionState] = (
            weakref.WeakKeyDictionary()
        )
        self._engines: weakref.WeakSet[Engine] = weakref.WeakSet()

    def watch(self, connection: Connection, state: SessionState) -> None:
        """``connection`` serves a tracked session (until `forget`)."""
        self._owners[connection] = state
        state.connections.append(connection)
        engine = connection.engine
        if engine not in self._engines:
            event.listen(engine, "before_execute", self._before_execute)
            self._engines.add(engine)

    def forget(self, state: SessionState) -> None:
        for connection in state.connections:
            self._owners.pop(connection, None)
        state.connections.clear()

    def remove(self) -> None:
        for engine in list(self._engines):
            if event.contains(engine, "before_execute", self._before_execute):
                event.remove(engine, "before_execute", self._before_execute)
        self._engines = weakref.WeakSet()
        self._owners.clear()

    def _before_execute(
        self,
        connection: Connection,
        clauseelement: Any,
        multiparams: Any,
        params: Any,
        execution_options: Any,
    ) -> None:
        state = self._owners.get(connection)
        if state is None or state.flushing or state.following:
            return  # not a tracked session's, or a flush / a followed statement
        if execution_options.get(OPT_OUT, True) is False:
            return
        table = self._written(clauseelement)
        if table is not None:
            what = _describe(clauseelement)
            warnings.warn(
                UntrackedWriteWarning(
                    f"aioredstream: {what} writes the tracked table {table!r} through a "
                    "tracked session's connection, where track() cannot follow it: no delay "
                    "or queue message is written for its rows. Use session.execute() with "
                    "an ORM or Core statement, or write the messages yourself "
                    "(producer.bulk) and pass execution_options(redstream=False)"
                ),
                stacklevel=2,
            )

    def _written(self, clauseelement: Any) -> str | None:
        """The tracked table a statement writes, if it is a write to one."""
        if isinstance(clauseelement, UpdateBase):
            table = getattr(clauseelement, "table", None)
            key = (getattr(table, "schema", None), getattr(table, "name", None))
            return key[1] if key in self._tables else None
        if isinstance(clauseelement, TextClause):
            for match in _TEXT_WRITE.finditer(clauseelement.text):
                if match.group(1).lower() in self._names:
                    return match.group(1)
        return None


def _describe(clauseelement: Any) -> str:
    if isinstance(clauseelement, TextClause):
        sql = " ".join(clauseelement.text.split())
        return f"a text() statement ({sql[:60]}{'...' if len(sql) > 60 else ''})"
    return f"a Core {type(clauseelement).__name__.removeprefix('Annotated').upper()}"
