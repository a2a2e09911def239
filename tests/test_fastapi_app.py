"""examples/fastapi_app.py end to end: HTTP in, rows in the database, messages in the streams."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from examples.fastapi_app import create_app
from redis.asyncio import Redis

from aioredstream.testing import ServerProcess

from .helpers import asgi_client, entries

STREAM = "shop:redstream:stream:products"


async def payloads(client: Redis, key: str = STREAM) -> list[Any]:
    return [payload for _, payload in await entries(client, key)]


async def test_create_update_delete_reach_the_stream(
    shop: httpx.AsyncClient, client: Redis
) -> None:
    created = await shop.post("/products", json={"name": "lamp", "price_cents": 1999})
    assert created.status_code == 201, created.text
    product_id = created.json()["id"]
    assert await payloads(client) == [{"id": product_id}]

    patched = await shop.patch(f"/products/{product_id}", json={"price_cents": 1499})
    assert patched.json()["price_cents"] == 1499
    unchanged = await shop.patch(f"/products/{product_id}", json={"price_cents": 1499})
    assert unchanged.status_code == 200
    assert await payloads(client) == [{"id": product_id}] * 2  # the no-op wrote nothing

    assert (await shop.delete(f"/products/{product_id}")).status_code == 204
    assert (await shop.get(f"/products/{product_id}")).status_code == 404
    assert await payloads(client) == [{"id": product_id}] * 3
    assert await payloads(client, STREAM + ".delay") == []


async def test_failed_writes_queue_nothing(shop: httpx.AsyncClient, client: Redis) -> None:
    assert (await shop.post("/products", json={"name": "mug", "price_cents": 900})).is_success
    duplicate = await shop.post("/products", json={"name": "mug", "price_cents": 5})
    assert duplicate.status_code == 409
    assert (await shop.delete("/products/999")).status_code == 404
    assert await payloads(client) == [{"id": 1}]
    assert await payloads(client, STREAM + ".delay") == []


async def test_bulk_endpoint_is_followed_by_track(shop: httpx.AsyncClient, client: Redis) -> None:
    prices = [100, 5000, 250, 499, 500, 20]
    for n, price in enumerate(prices):
        response = await shop.post("/products", json={"name": f"p{n}", "price_cents": price})
        assert response.is_success
    await client.delete(STREAM)

    response = await shop.post("/products/deactivate", params={"below_cents": 500})
    cheap = [n + 1 for n, price in enumerate(prices) if price < 500]
    assert response.json() == {"deactivated": cheap}
    assert [p["id"] for p in await payloads(client)] == cheap
    assert await payloads(client, STREAM + ".delay") == []
    for product_id in range(1, len(prices) + 1):
        product = (await shop.get(f"/products/{product_id}")).json()
        assert product["active"] is (product_id not in cheap)


async def test_app_reads_its_servers_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, server: ServerProcess, client: Redis
) -> None:
    monkeypatch.setenv("REDIS_URL", server.url)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/env.db")
    monkeypatch.delenv("REDSTREAM_NAMESPACE", raising=False)
    async with asgi_client(create_app()) as http:
        assert (await http.post("/products", json={"name": "env", "price_cents": 1})).is_success
    assert await payloads(client, "redstream:stream:products") == [{"id": 1}]
    assert (tmp_path / "env.db").exists()
