"""The package's layers: imports point down, never in a cycle (docs/development.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import aioredstream

ROOT = Path(aioredstream.__file__).parent

# Lower number = lower layer. A module may import only from its own layer or below.
LAYERS = {
    "errors": 0,
    "_codec": 0,
    "_keys": 0,
    "_cluster": 0,
    "_telemetry": 0,
    "_version": 0,
    "_validate": 0,
    "_failures": 0,
    "_tasks": 0,
    "_records": 1,
    "_sharding": 1,
    "_packing": 1,
    "send": 2,
    "producer": 3,
    "workers": 4,
    "ops": 5,  # the CLI serves the Prometheus exporter; prometheus reads ops.status
    "integrations": 5,
    "testing": 6,
}
PUBLIC_SHIMS = {"__init__", "consumer", "delayer", "trimmer", "lock", "message", "retry", "cli"}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The aioredstream modules ``path`` imports (``from . import x`` resolved to x)."""
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not target.startswith("aioredstream"):
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                dotted = ROOT.parent / candidate.replace(".", "/")
                is_module = dotted.with_suffix(".py").exists() or dotted.is_dir()
                found.add(candidate if is_module else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("aioredstream"))
    return found - {module}


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in ROOT.rglob("*.py")}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2 or (len(parts) == 2 and parts[1] in PUBLIC_SHIMS):
        return None  # the package root and the public re-export modules sit on top
    return LAYERS[parts[1]]


def test_every_module_has_a_layer() -> None:
    unknown = [m for m in _graph() if m.count(".") >= 1 and _layer(m) is None]
    assert sorted(unknown) == sorted(f"aioredstream.{n}" for n in PUBLIC_SHIMS - {"__init__"})


def test_imports_point_down() -> None:
    upward = []
    for module, targets in _graph().items():
        mine = _layer(module)
        if mine is None:
            continue
        for target in targets:
            theirs = _layer(target)
            if theirs is None or theirs > mine:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_import_cycles() -> None:
    graph = {
        m: {t for t in ts if not (ROOT.parent / t.replace(".", "/")).is_dir()}
        for m, ts in _graph().items()
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("aioredstream.consumer", {"Consumer", "Handler"}),
        ("aioredstream.retry", {"Backoff", "Retry", "exponential"}),
        ("aioredstream.cli", {"main"}),
    ],
)
def test_documented_module_paths_still_import(path: str, names: set[str]) -> None:
    module = __import__(path, fromlist=["*"])
    assert set(module.__all__) == names
    assert all(getattr(module, n) is not None for n in names)
