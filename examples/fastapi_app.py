"""A FastAPI service whose product writes reach Redis streams without a line of producer code.

Run it (the tables are created at startup)::

    pip install 'aioredstream[sqlalchemy]' fastapi uvicorn aiosqlite
    REDIS_URL=redis://127.0.0.1:6379/0 DATABASE_URL=sqlite+aiosqlite:///shop.db \\
        uvicorn examples.fastapi_app:app

- The lifespan builds the Redis client, the producer, the engine and the session
  maker, wires them with ``track()``, and closes them all on shutdown.
- Create, update and delete handlers only use the session: ``track()`` writes the
  delay message during the flush and the queue message after the commit.
- The bulk endpoint runs one ``UPDATE ... WHERE ... RETURNING`` statement: ``track()``
  follows it too (a delay message per changed row before the commit, the queue messages
  after it), and the endpoint gets its own returned ids as usual.

Configuration: ``REDIS_URL``, ``DATABASE_URL``, ``DATABASE_SCHEMA`` (PostgreSQL schema
to use, optional), ``REDSTREAM_NAMESPACE`` (optional); or ``create_app(Settings(...))``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel
from redis.asyncio import Redis
from sqlalchemy import String, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from aioredstream import Model, Producer
from aioredstream.integrations.sqlalchemy import track


class Base(DeclarativeBase):
    pass


class Product(Model, Base):
    """Stream ``products``, payload ``{"id": ...}`` (from ``aioredstream.Model``)."""

    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    price_cents: Mapped[int]
    active: Mapped[bool] = mapped_column(default=True)


@dataclass
class Settings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "sqlite+aiosqlite:///shop.db"
    database_schema: str | None = None
    namespace: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            redis_url=os.environ.get("REDIS_URL", cls.redis_url),
            database_url=os.environ.get("DATABASE_URL", cls.database_url),
            database_schema=os.environ.get("DATABASE_SCHEMA") or None,
            namespace=os.environ.get("REDSTREAM_NAMESPACE") or None,
        )


def make_engine(config: Settings) -> AsyncEngine:
    """The engine for ``config`` (examples/worker.py builds its own the same way)."""
    engine = create_async_engine(config.database_url)
    if config.database_schema:
        engine = engine.execution_options(schema_translate_map={None: config.database_schema})
    return engine


class ProductIn(BaseModel):
    name: str
    price_cents: int


class ProductPatch(BaseModel):
    name: str | None = None
    price_cents: int | None = None


class ProductOut(BaseModel):
    id: int
    name: str
    price_cents: int
    active: bool


def _out(product: Product) -> ProductOut:
    return ProductOut(
        id=product.id, name=product.name, price_cents=product.price_cents, active=product.active
    )


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    async with sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def create_app(settings: Settings | None = None) -> FastAPI:
    config = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = Redis.from_url(config.redis_url)
        engine = make_engine(config)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        producer = Producer(client, namespace=config.namespace)
        tracker = track(producer, models=[Product], sessions=sessions)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            app.state.producer = producer
            app.state.sessions = sessions
            yield
        finally:
            # Uninstall the listeners: an app started again in this process (tests, reloads)
            # calls track() again, which raises while a tracker is still on the maker.
            tracker.remove()
            await engine.dispose()
            await client.aclose()

    app = FastAPI(title="shop", lifespan=lifespan)
    _routes(app)
    return app


def _routes(app: FastAPI) -> None:
    @app.post("/products", status_code=201)
    async def create_product(data: ProductIn, session: SessionDep) -> ProductOut:
        product = Product(name=data.name, price_cents=data.price_cents)
        session.add(product)
        try:
            await session.commit()  # delay message at the flush, queue message after
        except IntegrityError:
            raise HTTPException(409, f"a product named {data.name!r} exists") from None
        return _out(product)

    @app.get("/products/{product_id}")
    async def read_product(product_id: int, session: SessionDep) -> ProductOut:
        return _out(await _get(session, product_id))

    @app.patch("/products/{product_id}")
    async def update_product(
        product_id: int, data: ProductPatch, session: SessionDep
    ) -> ProductOut:
        product = await _get(session, product_id)
        for field, value in data.model_dump(exclude_unset=True).items():
            setattr(product, field, value)
        await session.commit()  # no column changed: no message
        return _out(product)

    @app.delete("/products/{product_id}", status_code=204)
    async def delete_product(product_id: int, session: SessionDep) -> Response:
        await session.delete(await _get(session, product_id))
        await session.commit()
        return Response(status_code=204)

    @app.post("/products/deactivate")
    async def deactivate_cheap(below_cents: int, session: SessionDep) -> dict[str, Any]:
        """Deactivate every active product cheaper than ``below_cents``: one statement."""
        cheap = Product.active.is_(True), Product.price_cents < below_cents
        statement = update(Product).where(*cheap).values(active=False).returning(Product.id)
        done = sorted(await session.scalars(statement))
        await session.commit()
        return {"deactivated": done}


async def _get(session: AsyncSession, product_id: int) -> Product:
    product = await session.get(Product, product_id)
    if product is None:
        raise HTTPException(404, f"no product {product_id}")
    return product


app = create_app()
