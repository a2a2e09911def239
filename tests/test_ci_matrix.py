"""The Pythons the package claims are the ones CI runs (`make test-pythons`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / ".ci" / "pythons.sh"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _claimed_minors() -> list[str]:
    prefix = "Programming Language :: Python :: "
    return [
        c.removeprefix(prefix)
        for c in PROJECT["classifiers"]
        if re.fullmatch(re.escape(prefix) + r"3\.\d+", c)
    ]


def test_the_python_classifiers_run_from_the_floor_without_gaps() -> None:
    floor = re.fullmatch(r">=3\.(\d+)", PROJECT["requires-python"])
    assert floor is not None, PROJECT["requires-python"]
    minors = [int(m.split(".")[1]) for m in _claimed_minors()]
    assert minors == list(range(int(floor.group(1)), max(minors) + 1))
    assert minors[-1] >= 13
    for classifier in (
        "Programming Language :: Python :: 3 :: Only",
        "Typing :: Typed",
        "Framework :: AsyncIO",
    ):
        assert classifier in PROJECT["classifiers"]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on PATH")
def test_make_test_pythons_requires_the_claimed_minors() -> None:
    done = subprocess.run(
        ["make", "-n", "test-pythons"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert f'PYTHONS="{" ".join(_claimed_minors())}"' in done.stdout


def _plan(pythons: str, *, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [str(SCRIPT), "--list"],
        env={**env, "PYTHONS": pythons, "VENV": str(Path(sys.executable).parents[1])},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_in_ci_a_claimed_python_that_is_missing_fails_and_is_named() -> None:
    done = _plan("3.11 3.99", ci=True)
    assert done.returncode == 1
    assert "Python 3.99 is claimed" in done.stderr
    assert "3.99: missing" in done.stdout


def test_off_ci_a_missing_python_is_skipped_with_a_note() -> None:
    done = _plan("3.99", ci=False)
    assert done.returncode == 0, done.stderr
    assert "no Python 3.99 here" in done.stderr
    assert "3.99: skipped, not installed" in done.stdout


def test_the_running_python_is_found() -> None:
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    done = _plan("3.11", ci=True)
    assert done.returncode == 0, done.stderr
    assert re.search(rf"^   {re.escape(here)}: \S+ in ", done.stdout, re.MULTILINE), done.stdout
