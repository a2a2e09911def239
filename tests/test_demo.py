"""`make demo` (examples/demo.py) runs end to end and tells a takeover as the lock saw it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from aioredstream.testing import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_ends_in_sync_and_names_the_right_indexers(server: ServerProcess) -> None:
    done = subprocess.run(
        [sys.executable, "examples/demo.py"],
        cwd=ROOT,
        # a 1 s delay instead of `make demo`'s 2 s: the same story, a second sooner
        env={
            **os.environ,
            "REDIS_URL": server.url,
            "PYTHONPATH": str(ROOT / "src"),
            "DEMO_DELAY_S": "1",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "in sync: True" in done.stdout
    assert "(its delay message waits 1.0s)" in done.stdout  # the shorter delay was used
    stopped = re.search(r"stopped indexer#(\d), the lock holder", done.stdout)
    took = re.search(r"indexer#(\d) took the lock over", done.stdout)
    assert stopped is not None
    assert took is not None
    assert stopped.group(1) != took.group(1)
