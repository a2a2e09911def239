"""The source distribution ships the examples and the docs the README points at."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_sdist_contains_the_examples_and_the_docs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path), str(ROOT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    [sdist] = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        members = {
            Path(member).relative_to(Path(member).parts[0]).as_posix()
            for member in archive.getnames()
            if "/" in member
        }
    for path in (
        "examples/fastapi_app.py",
        "examples/worker.py",
        "examples/demo.py",
        "docs/index.md",
        "mkdocs.yml",
    ):
        assert path in members
