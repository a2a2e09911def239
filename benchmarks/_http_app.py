"""The app of the HTTP benchmark (``_http.py``): one FastAPI app, ``PUT /<variant>/users/{id}``.

Variants, each on streams of its own:

- ``bare``: returns at once;
- ``aioredstream``: ``producer.delay(user)`` then ``producer.queue(user, id)``, on a
  producer over a default ``redis.asyncio`` client;
- ``redis``: the same two writes by hand with redis.asyncio (``XADD`` to the delay
  stream, then ``XADD`` + ``XDEL`` in one pipeline), on a ``BlockingConnectionPool`` of
  100 (a default client runs out of connections past 100 requests at once);
- ``glide``: the same by hand on one valkey-glide client (``xadd``, then a
  non-atomic batch of ``XADD`` + ``XDEL``).

``GET /counts`` says how many handlers of each variant completed; ``POST /reset``
clears the counts. Served by ``python -m uvicorn benchmarks._http_app:app`` with
``BENCH_REDIS_URL`` set.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from redis.asyncio import BlockingConnectionPool, Redis

from aioredstream import Producer
from benchmarks._suite import BenchUser, glide_client, glide_installed, payload

REDIS_DELAY, REDIS_QUEUE = "bench:redis:users.delay", "bench:redis:users"
GLIDE_DELAY, GLIDE_QUEUE = "bench:glide:users.delay", "bench:glide:users"


class HttpUser(BenchUser):
    """Streams ``redstream:stream:http_users`` and ``…http_users.delay``."""


STREAMS = {
    "aioredstream": ("redstream:stream:http_users", "redstream:stream:http_users.delay"),
    "redis": (REDIS_QUEUE, REDIS_DELAY),
    "glide": (GLIDE_QUEUE, GLIDE_DELAY),
}

counts: Counter[str] = Counter()
clients: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    url = os.environ["BENCH_REDIS_URL"]
    client = Redis.from_url(url)
    pool = BlockingConnectionPool.from_url(url, max_connections=100, timeout=60)
    by_hand = Redis(connection_pool=pool)
    glide = await glide_client(url) if glide_installed() else None
    clients.update(producer=Producer(client), redis=by_hand, glide=glide)
    try:
        yield
    finally:
        await client.aclose()
        await by_hand.aclose()
        await pool.disconnect()
        if glide is not None:
            await glide.close()


app = FastAPI(lifespan=lifespan)


@app.put("/bare/users/{user_id}")
async def bare(user_id: int) -> dict[str, int]:
    counts["bare"] += 1
    return {"id": user_id}


@app.put("/aioredstream/users/{user_id}")
async def with_aioredstream(user_id: int) -> dict[str, int]:
    producer: Producer = clients["producer"]
    user = HttpUser(user_id)
    message_id = await producer.delay(user)
    await producer.queue(user, message_id)
    counts["aioredstream"] += 1
    return {"id": user_id}


@app.put("/redis/users/{user_id}")
async def with_redis(user_id: int) -> dict[str, int]:
    client: Redis = clients["redis"]
    data = payload(HttpUser(user_id))
    message_id = await client.xadd(REDIS_DELAY, {"payload": data})
    pipe = client.pipeline(transaction=False)
    pipe.xadd(REDIS_QUEUE, {"payload": data})
    pipe.xdel(REDIS_DELAY, message_id)
    await pipe.execute()
    counts["redis"] += 1
    return {"id": user_id}


@app.put("/glide/users/{user_id}")
async def with_glide(user_id: int) -> dict[str, int]:
    from glide import Batch

    client = clients["glide"]
    data = payload(HttpUser(user_id))
    message_id = await client.xadd(GLIDE_DELAY, [("payload", data)])
    batch = Batch(is_atomic=False)
    batch.xadd(GLIDE_QUEUE, [("payload", data)])
    batch.xdel(GLIDE_DELAY, [message_id])
    await client.exec(batch, raise_on_error=True)
    counts["glide"] += 1
    return {"id": user_id}


@app.get("/counts")
async def get_counts() -> dict[str, Any]:
    loop = type(asyncio.get_running_loop())
    return {"counts": dict(counts), "loop": f"{loop.__module__}.{loop.__qualname__}"}


@app.post("/reset")
async def reset() -> dict[str, bool]:
    counts.clear()
    return {"ok": True}
