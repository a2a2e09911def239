"""Rows of a tracked table as records: what a bulk statement reads of them, and how a row
becomes the instance its payload is built from.

A row becomes a *detached* instance of its class (its polymorphic class, when the table
maps several), holding the columns of the statement's table as the statement left them
(``UPDATE``/``INSERT``) or found them (``DELETE``); every other attribute is expired. The
payload function runs on it as on a flushed instance; one that reads what the row does not
carry (a relationship, a column of another table) raises SQLAlchemy's
``DetachedInstanceError``, which becomes a `PayloadError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Column, Table, select, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapper, configure_mappers, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.dml import UpdateBase

from ._sqla_state import TrackerBase

__all__ = ["Shape", "select_by_keys", "select_matching"]

Row = Sequence[Any]
#: keys per SELECT ... WHERE key IN (...): far below SQLite's and every driver's bind limit
KEYS_PER_SELECT = 500


class Shape:
    """What to read of ``table``'s rows for a statement on ``mapper``: the key columns
    first, then the polymorphic discriminator, then every other mapped column of the table."""

    def __init__(self, tracker: TrackerBase, mapper: Mapper[Any], table: Table) -> None:
        configure_mappers()  # (a no-op once done) subclasses' attributes are set up
        self.mapper = mapper
        self.table = table
        self.keys: list[Column[Any]] = list(table.primary_key.columns)
        discriminator = mapper.polymorphic_on
        self._discriminator = (
            len(self.keys)
            if isinstance(discriminator, Column) and discriminator.table is table
            else None
        )
        mappers = [m for m in mapper.self_and_descendants if table in m.tables]
        columns = [*self.keys]
        if self._discriminator is not None:
            columns.append(discriminator)  # type: ignore[arg-type]
        taken = set(columns)
        columns += [c for c in table.columns if c not in taken and _mapped(mappers, c)]
        self.columns: list[Column[Any]] = columns
        # per tracked mapper: (position in the row, attribute) of each column it maps
        self._attrs = {
            m: [(i, m.get_property_by_column(c).key) for i, c in enumerate(columns) if _maps(m, c)]
            for m in mappers
            if tracker.tracks(m.class_)
        }

    @property
    def follows_anything(self) -> bool:
        """Whether any class whose rows live in this table is tracked."""
        return bool(self._attrs)

    def key_of(self, row: Row) -> tuple[Any, ...]:
        return tuple(row[: len(self.keys)])

    def records(self, rows: Iterable[Row]) -> Iterator[object]:
        """The rows of tracked classes as detached instances (see the module docstring)."""
        for row in rows:
            mapper = self._mapper_of(row)
            attrs = self._attrs.get(mapper)
            if attrs is None:
                continue  # a row of an untracked subclass
            instance = mapper.class_manager.new_instance()
            for index, key in attrs:
                set_committed_value(instance, key, row[index])
            make_transient_to_detached(instance)  # whatever the row lacks is expired
            yield instance

    def _mapper_of(self, row: Row) -> Mapper[Any]:
        if self._discriminator is None:
            return self.mapper
        found = self.mapper.polymorphic_map.get(row[self._discriminator])
        return found if found is not None else self.mapper

    def keys_in(self, params: Sequence[Mapping[str, Any]], *, by_attribute: bool) -> list[Any]:
        """The keys the parameter sets name (ORM: by attribute name, Core: by column key),
        or ``[]`` when one of them lacks a key column."""
        names = [
            self.mapper.get_property_by_column(c).key if by_attribute else c.key for c in self.keys
        ]
        found = []
        for values in params:
            if not all(name in values for name in names):
                return []
            found.append(tuple(values[name] for name in names))
        return found


def _maps(mapper: Mapper[Any], column: Column[Any]) -> bool:
    try:
        mapper.get_property_by_column(column)
    except Exception:  # sqlalchemy.orm.exc.UnmappedColumnError
        return False
    return True


def _mapped(mappers: list[Mapper[Any]], column: Column[Any]) -> bool:
    return any(_maps(m, column) for m in mappers)


def select_by_keys(connection: Connection, shape: Shape, keys: Sequence[Any]) -> Iterator[Row]:
    """The rows (``shape.columns``) with these keys, a slice of keys per SELECT."""
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), KEYS_PER_SELECT):
        part = unique[start : start + KEYS_PER_SELECT]
        if len(shape.keys) == 1:
            condition = shape.keys[0].in_([key[0] for key in part])
        else:
            condition = tuple_(*shape.keys).in_(part)
        yield from connection.execute(select(*shape.columns).where(condition))


def select_matching(
    connection: Connection, shape: Shape, statement: UpdateBase, columns: list[Column[Any]]
) -> list[Row]:
    """``columns`` of the rows ``statement`` (an UPDATE or DELETE) is about to change,
    locked (``FOR UPDATE``, where the database has it) until the transaction ends."""
    query = select(*columns)
    criteria = getattr(statement, "whereclause", None)
    if criteria is not None:
        query = query.where(criteria)
    rows: dict[tuple[Any, ...], Row] = {}
    for row in connection.execute(query.with_for_update()):
        rows.setdefault(shape.key_of(row), row)  # a join in the criteria repeats rows
    return list(rows.values())
