"""Mapped classes for the backfill tests (and for ``aioredstream backfill --model``)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ForeignKey, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from aioredstream import Model


class Base(DeclarativeBase):
    pass


class Item(Model, Base):
    """Stream "bf_items", payload {"id": id}."""

    __tablename__ = "bf_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), default="plain")


class Pair(Model, Base):
    """A composite primary key."""

    __tablename__ = "bf_pairs"
    a: Mapped[int] = mapped_column(primary_key=True)
    b: Mapped[str] = mapped_column(String(20), primary_key=True)

    def redstream_payload(self) -> Any:
        return {"a": self.a, "b": self.b}


class Token(Base):
    """A UUID primary key; no Model mixin (registered in the tests' registry)."""

    __tablename__ = "bf_tokens"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)


class Shard(Model, Base):
    """Sharded over 4 streams bf_shards-0 .. bf_shards-3 by id."""

    __tablename__ = "bf_shards"
    redstream_shards = 4
    id: Mapped[int] = mapped_column(primary_key=True)


class Region(Model, Base):
    """Each row names its stream."""

    __tablename__ = "bf_regions"
    id: Mapped[int] = mapped_column(primary_key=True)
    region: Mapped[str] = mapped_column(String(20))

    def redstream_name(self) -> str:  # type: ignore[override]
        return f"bf_regions-{self.region}"


class Parent(Base):
    __tablename__ = "bf_parents"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20))


class Child(Model, Base):
    """Its payload lazy-loads a relationship."""

    __tablename__ = "bf_children"
    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("bf_parents.id"))
    parent: Mapped[Parent] = relationship()

    def redstream_payload(self) -> Any:
        return {"id": self.id, "parent": self.parent.name}


class Stamped(Model, Base):
    """A primary key a checkpoint cannot hold."""

    __tablename__ = "bf_stamped"
    id: Mapped[float] = mapped_column(primary_key=True)


class Broken(Model, Base):
    __tablename__ = "bf_broken"
    id: Mapped[int] = mapped_column(primary_key=True)

    def redstream_payload(self) -> Any:
        if self.id == 7:
            raise KeyError("seven")
        return {"id": self.id}


class Coded(Model, Base):
    """Default payload {"id": id}, but the primary key is another column."""

    __tablename__ = "bf_coded"
    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    id: Mapped[int] = mapped_column(unique=True)


class Animal(Model, Base):
    """Single-table inheritance: a Dog's payload is its own."""

    __tablename__ = "bf_animals"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "animal"}  # noqa: RUF012


class Dog(Animal):
    __mapper_args__ = {"polymorphic_identity": "dog"}  # noqa: RUF012

    def redstream_payload(self) -> Any:
        return {"id": self.id, "dog": True}


NotMapped = dict
