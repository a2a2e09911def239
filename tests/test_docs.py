"""The code blocks of the README and the guide that claim to run, run.

Every ```python block is preceded by a marker: ``<!-- run: NAME -->`` (this test runs
it verbatim in a fresh interpreter, with the server URL it names replaced by a test
server's, and checks what it did) or ``<!-- sketch: why -->`` (a fragment or a
signature listing, which does not claim to run). An unmarked block fails the suite.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from redis.asyncio import Redis

from aioredstream.testing import ServerProcess

from .helpers import eventually

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DECLARED_URL = "redis://localhost:6379/0"
_BLOCK = re.compile(
    r"^(?:<!-- (run|sketch)(?::\s*([^>]*?))? -->\n)?```python\n(.*?)^```", re.M | re.S
)


@dataclass(frozen=True)
class Block:
    page: str
    kind: str | None
    name: str
    code: str


def _blocks() -> list[Block]:
    found = []
    for page in PAGES:
        for match in _BLOCK.finditer(page.read_text()):
            kind, label, code = match.groups()
            found.append(
                Block(page.relative_to(ROOT).as_posix(), kind, (label or "").strip(), code)
            )
    return found


BLOCKS = _blocks()
RUNNABLE = {block.name.split()[0]: block for block in BLOCKS if block.kind == "run"}


def test_every_python_block_says_whether_it_runs() -> None:
    unmarked = [f"{b.page}: {b.code.splitlines()[0]!r}" for b in BLOCKS if b.kind is None]
    assert not unmarked, "python blocks with no <!-- run: --> or <!-- sketch: --> marker"
    assert {
        "quickstart",
        "quickstart-app",
        "quickstart-worker",
        "fastapi-service",
        "manual",
        "producer-manual",
        "sharding",
        "testing-fixture",
        "otel",
    } <= set(RUNNABLE)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def _run(code: str, cwd: Path, *, pytest_file: bool = False) -> str:
    env = _env()
    if pytest_file:
        (cwd / "test_block.py").write_text(code)
        args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_block.py"]
    else:
        args = [sys.executable, "-c", code]
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _code(name: str, url: str) -> str:
    code = RUNNABLE[name].code
    return code.replace(DECLARED_URL, url)


async def _lengths(client: Redis, *keys: str) -> list[int]:
    return [await client.xlen(key) for key in keys]


_DRIVE_QUICKSTART = """
import asyncio as _asyncio
import httpx as _httpx
from asgi_lifespan import LifespanManager as _LifespanManager


async def _drive():
    async with _LifespanManager(app):
        transport = _httpx.ASGITransport(app=app)
        async with _httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            for name in ("Ada", "Grace"):
                response = await http.put("/users/1", params={"name": name})
                assert response.status_code == 200, response.text

_asyncio.run(_drive())
"""


async def test_readme_quickstart_serves_and_produces(
    server: ServerProcess, client: Redis, tmp_path: Path
) -> None:
    _run(_code("quickstart", server.url) + _DRIVE_QUICKSTART, tmp_path)
    # two commits of user 1: two queue messages, their delay messages deleted
    assert await _lengths(client, "redstream:stream:users", "redstream:stream:users.delay") == [
        2,
        0,
    ]


_DRIVE_SERVICE = """
import asyncio as _asyncio
import httpx as _httpx
from asgi_lifespan import LifespanManager as _LifespanManager


async def _drive():
    async with _LifespanManager(app):
        transport = _httpx.ASGITransport(app=app)
        async with _httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            for name in ("lamp", "desk"):
                response = await http.post("/products", params={"name": name})
                assert response.status_code == 201, response.text
            response = await http.post("/products/deactivate")
            assert response.json() == {"deactivated": [1, 2]}, response.text

_asyncio.run(_drive())
"""


async def test_sqlalchemy_page_service_produces_for_the_session_and_the_bulk_update(
    server: ServerProcess, client: Redis, tmp_path: Path
) -> None:
    _run(_code("fastapi-service", server.url) + _DRIVE_SERVICE, tmp_path)
    # two inserts through track(), then both ids again: track() followed the UPDATE
    assert await _lengths(
        client, "redstream:stream:products", "redstream:stream:products.delay"
    ) == [4, 0]


@pytest.mark.parametrize("name", ["manual", "producer-manual"])
async def test_manual_pattern_blocks_produce(
    server: ServerProcess, client: Redis, tmp_path: Path, name: str
) -> None:
    _run(_code(name, server.url), tmp_path)
    queued, delayed = await _lengths(
        client, "redstream:stream:users", "redstream:stream:users.delay"
    )
    assert delayed == 0
    assert queued == (4 if name == "manual" else 1)


def test_sharding_block_runs(tmp_path: Path) -> None:
    _run(RUNNABLE["sharding"].code, tmp_path)


def test_testing_page_fixture_passes_under_pytest(tmp_path: Path) -> None:
    out = _run(RUNNABLE["testing-fixture"].code, tmp_path, pytest_file=True)
    assert "1 passed" in out


@pytest.mark.slow
def test_deployments_block_starts_and_removes_cluster_and_sentinels(tmp_path: Path) -> None:
    _run(RUNNABLE["deployments"].code, tmp_path)


async def test_telemetry_page_example_prints_its_spans(
    server: ServerProcess, client: Redis, tmp_path: Path
) -> None:
    out = _run(_code("otel", server.url), tmp_path)
    assert out.splitlines() == [
        "bulk_delay users.delay 600",
        "bulk_queue users 600",
        "bulk users 600",
    ]


async def test_quickstart_app_and_worker_keep_the_index_in_sync(
    server: ServerProcess, client: Redis, tmp_path: Path
) -> None:
    _run(_code("quickstart-app", server.url), tmp_path)
    assert await _lengths(client, "redstream:stream:users", "redstream:stream:users.delay") == [
        2,
        0,
    ]
    index, log = tmp_path / "index.json", tmp_path / "worker.log"
    with log.open("w") as stderr:
        worker = await anyio.open_process(
            [sys.executable, "-c", _code("quickstart-worker", server.url)],
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )

    async def indexed() -> bool:
        assert worker.returncode is None, log.read_text()
        # the consumer logs the batch once the handler returned, so the index is whole by then
        # (read earlier, the file can be caught half-written: write_text truncates first)
        if "handled 2 entries of users" not in log.read_text():
            return False
        written: dict[str, str] = json.loads(index.read_text())
        return written == {"1": "Ada", "2": "Grace"}

    try:
        await eventually(indexed, "the worker indexed both users and committed", timeout_s=30)
        # the page says Ctrl-C or SIGTERM stops it; both end run_workers the same way
        worker.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            assert await worker.wait() == 0, log.read_text()
    finally:
        if worker.returncode is None:
            worker.kill()
        await worker.aclose()
    assert "handled 2 entries of users" in log.read_text()
    assert await client.get("redstream:offset:users:indexer") is not None
    assert await client.exists("redstream:lock:consumer:users:indexer") == 0  # released


ROLE = re.compile(r":(?:class|meth|func|mod|attr|exc|data|obj):`")


def test_no_sphinx_roles_in_docstrings() -> None:
    """mkdocstrings renders Markdown: a role would show as literal text in the reference."""
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "src").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if ROLE.search(line)
    ]
    assert not found, "write [`Name`][aioredstream.Name] or `name` instead:\n" + "\n".join(found)


def test_code_blocks_in_lists_are_indented_four_spaces() -> None:
    """Python-Markdown (the site) ends a list at a block indented less than 4 spaces, so
    the next item starts a new list and shows as "1." again."""
    found = [
        f"{page.relative_to(ROOT)}:{number}: {line!r}"
        for page in PAGES
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if re.match(r" {1,3}(```|~~~)", line)
    ]
    assert not found, "indent these fences by 4 spaces:\n" + "\n".join(found)
