"""`aioredstream consume|delayer|trimmer` stop on SIGTERM/SIGINT at any moment of a busy run.

50 runs in all, each signalled at a random moment once its worker holds the lock:
every one exits 0, its lock is gone, and the consumer hands no record to its
handler twice beyond the one batch that was in flight when it stopped.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from aioredstream import Keys
from aioredstream.testing import ServerProcess
from aioredstream.workers.lock import worker_lock_name

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "aioredstream"
WAIT_S = 20.0  # a failure detector for things that must happen, not a speed claim
BATCH = 50


def _fill(client: redis.Redis, key: str, first: int, count: int) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(first, first + count):
        pipe.xadd(key, {"payload": json.dumps({"id": i}, separators=(",", ":"))})
    pipe.execute()


def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.005)


def _run_and_signal(
    argv: list[str], lock_key: str, client: redis.Redis, env: dict[str, str]
) -> float:
    """Start the command, signal it at a random moment while it holds its lock; the stop time."""
    process = subprocess.Popen(
        [str(SCRIPT), *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        _until(lambda: client.exists(lock_key) or process.poll() is not None, "lock taken")
        assert process.poll() is None, process.communicate()
        time.sleep(random.uniform(0, 0.4))
        process.send_signal(random.choice([signal.SIGTERM, signal.SIGINT]))
        sent = time.monotonic()
        _, err = process.communicate(timeout=WAIT_S)
        stopped = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, (process.returncode, err.decode()[-2000:])
    assert client.exists(lock_key) == 0, "the lock outlived its worker"
    return stopped


@pytest.mark.slow
@pytest.mark.timeout(180)  # 50 starts and stops of a CLI process: over 60 s on a loaded machine
def test_workers_stop_cleanly_on_signals_at_random_moments(
    server: ServerProcess, tmp_path: Path
) -> None:
    random.seed(1234)
    client = redis.Redis.from_url(server.url)
    client.flushall()
    keys = Keys()
    handled_file = tmp_path / "handled.jsonl"
    env = {**os.environ, "HANDLED_FILE": str(handled_file), "PYTHONPATH": str(ROOT / "src")}
    url = ["--url", server.url]
    stops: list[float] = []
    total = 0
    try:
        consumer_lock = keys.lock(worker_lock_name("consumer", "users", "x"))
        for run in range(20):
            _fill(client, keys.stream("users"), total, 400)
            total += 400
            before = handled_file.read_text().splitlines() if handled_file.exists() else []
            argv = ["consume", "users", "--name", "x", "--handler", "tests.cli_handlers:record"]
            stops.append(
                _run_and_signal(
                    [*argv, "--batch-size", str(BATCH), *url], consumer_lock, client, env
                )
            )
            lines = handled_file.read_text().splitlines() if handled_file.exists() else []
            ids = [json.loads(line)["id"] for line in lines]
            repeated = len(ids) - len(set(ids))
            assert repeated <= BATCH * (run + 1), f"run {run}: {repeated} handled twice"
            new = ids[len(before) :]
            assert len(new) - len(set(new)) == 0, f"run {run} handled a record twice itself"

        delayer_lock = keys.lock(worker_lock_name("consumer", "users.delay", "delayer"))
        for _ in range(15):
            _fill(client, keys.delay_stream("users"), 0, 300)
            stops.append(
                _run_and_signal(
                    ["delayer", "users", "--delay", "0", *url], delayer_lock, client, env
                )
            )

        trimmer_lock = keys.lock(worker_lock_name("trimmer", "users"))
        for _ in range(15):
            newest: Any = client.xrevrange(keys.stream("users"), count=1)
            client.set(keys.offset("users", "x"), newest[0][0])
            _fill(client, keys.stream("users"), total, 300)
            total += 300
            argv = ["trimmer", "users", "--consumers", "x", "--interval", "0.05"]
            stops.append(_run_and_signal([*argv, *url], trimmer_lock, client, env))
    finally:
        client.close()
    assert len(stops) == 50
    print(f"\n50 signalled runs: longest stop {max(stops):.2f} s, median {sorted(stops)[25]:.2f} s")
