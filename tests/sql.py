"""SQLAlchemy models and database helpers for the integration tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ForeignKey, String, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from aioredstream import Model, Registry

PG_URL = os.environ.get(
    "AIOREDSTREAM_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


class Base(DeclarativeBase):
    pass


class Account(Model, Base):
    """Mixes in aioredstream.Model: stream "accounts", payload {"id": id}."""

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    notes: Mapped[list[Note]] = relationship(back_populates="account", cascade="all, delete-orphan")


class Note(Base):
    """Does not mix in Model: described in a Registry (see ``registry()``)."""

    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    body: Mapped[str] = mapped_column(String(200), default="")
    account: Mapped[Account] = relationship(back_populates="notes")


class AuditLog(Base):
    """Never tracked."""

    __tablename__ = "audit_logs"
    id: Mapped[int] = mapped_column(primary_key=True)
    line: Mapped[str] = mapped_column(String(200))


class BlogPost(Model, Base):
    """A table named unlike the class: its stream is the table's, "posts" (as in Rails)."""

    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100), default="")


class Shop(Model, Base):
    """Names the stream of each row (the gem README's per-record redstream_name)."""

    __tablename__ = "shops"
    id: Mapped[int] = mapped_column(primary_key=True)
    region: Mapped[str] = mapped_column(String(20))

    def redstream_name(self) -> str:  # type: ignore[override]
        return f"shops-{self.region}"


def registry() -> Registry:
    reg = Registry()
    reg.register(Note, name="notes", payload=lambda n: {"id": n.id, "account_id": n.account_id})
    return reg


@dataclass
class Database:
    """A database for one test: ``url`` plus, for PostgreSQL, a schema of its own."""

    kind: str
    url: str
    schema: str | None = None

    def engine(self, **kwargs: Any) -> AsyncEngine:
        engine = create_async_engine(self.url, **kwargs)
        if self.schema is not None:
            engine = engine.execution_options(schema_translate_map={None: self.schema})
        return engine


_postgres_error: list[str] = []


async def _postgres_reachable() -> str | None:
    """None when PostgreSQL answers, else why not (asked once per session)."""
    if not _postgres_error:
        import asyncpg

        try:
            conn = await asyncpg.connect(PG_URL.replace("+asyncpg", ""), timeout=5)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            _postgres_error.append(f"PostgreSQL not reachable at {PG_URL}: {exc!r}")
        else:
            await conn.close()
            _postgres_error.append("")
    return _postgres_error[0] or None


@asynccontextmanager
async def open_database(kind: str, directory: str) -> AsyncIterator[Database | str]:
    """A fresh database with the tables, dropped afterwards; a str says why there is none."""
    if kind == "sqlite":
        database = Database("sqlite", f"sqlite+aiosqlite:///{directory}/test.db")
    else:
        reason = await _postgres_reachable()
        if reason is not None:
            yield reason
            return
        database = Database("postgresql", PG_URL, f"aioredstream_{uuid.uuid4().hex[:12]}")
    admin = create_async_engine(database.url)
    try:
        async with admin.begin() as conn:
            if database.schema:
                await conn.execute(text(f'CREATE SCHEMA "{database.schema}"'))
            await conn.run_sync(
                Base.metadata.create_all
                if not database.schema
                else lambda sync: Base.metadata.create_all(
                    sync.execution_options(schema_translate_map={None: database.schema})
                )
            )
        yield database
    finally:
        if database.schema:
            async with admin.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{database.schema}" CASCADE'))
        await admin.dispose()
