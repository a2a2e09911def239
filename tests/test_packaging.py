"""What the wheel and the sdist hold, and that the sdist keeps MANIFEST.in's promise.

The wheel is the package only (with its license and ``py.typed``); the sdist is the
whole source tree, so unpacked it builds the docs and imports every test, as a
checkout does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SOURCE_FOLDERS = ("src/aioredstream", "tests", "benchmarks", "examples", "docs")
USER_EXTRAS = {"speed", "sqlalchemy", "testing", "otel", "prometheus"}
# what a checkout collects besides its source
LEFTOVERS = (
    ".git",
    ".venv*",
    "*.egg-info",
    "build",
    "dist",
    "site",
    "__pycache__",
    ".*cache",
    ".coverage*",
    "htmlcov",
    ".hypothesis",
)


@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    # A copy without build leftovers: setuptools adds whatever an old SOURCES.txt in
    # src/*.egg-info lists, so a build in place can pass on files MANIFEST.in lost.
    source = tmp_path_factory.mktemp("source") / "aioredstream"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*LEFTOVERS))
    out = tmp_path_factory.mktemp("dist")
    # the sdist first, then the wheel built from the unpacked sdist (what pip does)
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    return Dists(sdist, wheel)


def _wheel_metadata(wheel: zipfile.ZipFile) -> tuple[str, Message]:
    [metadata] = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
    return metadata.split("/")[0], Parser().parsestr(wheel.read(metadata).decode())


def _sdist_members(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as archive:
        return {
            Path(member.name).relative_to(Path(member.name).parts[0]).as_posix()
            for member in archive.getmembers()
            if member.isfile()
        }


def test_wheel_holds_the_package_with_its_license_and_types_only(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as wheel:
        names = wheel.namelist()
        dist_info, _ = _wheel_metadata(wheel)
    assert "aioredstream/py.typed" in names
    assert f"{dist_info}/licenses/LICENSE" in names
    strays = [name for name in names if not name.startswith(("aioredstream/", dist_info))]
    assert not strays, "the wheel holds more than the package (tests, examples, docs?)"


def test_published_metadata(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as wheel:
        _, metadata = _wheel_metadata(wheel)
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Author"] == "The aioredstream authors"
    assert {"redis", "asyncio"} <= set(metadata["Keywords"].split(","))
    # dev, docs and bench are dependency groups (pyproject.toml), not published extras
    assert set(metadata.get_all("Provides-Extra") or []) == USER_EXTRAS
    assert metadata.get_all("Project-URL") is None  # none that is not real
    # the README is the description on the package index: no link that works only in
    # the repository
    description = metadata.get_payload()
    assert isinstance(description, str)
    assert "make demo" in description
    assert re.findall(r"\]\((?!https://)[^)]*\)", description) == []


def test_sdist_holds_the_whole_source_tree(dists: Dists) -> None:
    members = _sdist_members(dists.sdist)
    for path in ("LICENSE", "README.md", "Makefile", "mkdocs.yml", "pyproject.toml"):
        assert path in members
    for folder in SOURCE_FOLDERS:
        files = {
            path.relative_to(ROOT).as_posix()
            for path in (ROOT / folder).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
        }
        assert files, folder
        assert not files - members, f"{folder}: missing from the sdist"


def _without_coverage() -> dict[str, str]:
    # the suite's coverage follows subprocesses; code from the unpacked sdist is not ours
    return {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}


@pytest.mark.slow
def test_unpacked_sdist_builds_the_docs_and_imports_every_test(
    dists: Dists, tmp_path: Path
) -> None:
    with tarfile.open(dists.sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    [tree] = tmp_path.iterdir()
    env = {**_without_coverage(), "NO_MKDOCS_2_WARNING": "1"}
    docs = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert docs.returncode == 0, docs.stderr
    assert (tmp_path / "site" / "benchmarks" / "results.png").exists()
    collect = ["--collect-only", "-q", "-p", "no:cacheprovider", "tests", "benchmarks"]
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", *collect],
        cwd=tree,
        env={**env, "PYTHONPATH": str(tree / "src")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert re.search(r"^\d+ tests collected", tests.stdout, re.M), tests.stdout
