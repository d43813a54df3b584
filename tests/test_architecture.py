"""The house rules, read from the source: no import circle anywhere in fmnist (imports inside functions
included), imports only point down (README "Design"), only the command line prints, and the engine writes no
file."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fmnist"

# What each room may import (besides itself and fmnist's own __init__, which holds only the version).
FLOORS: dict[str, set[str]] = {
    "names": set(),
    "files": set(),
    "backend": set(),
    "data": {"backend", "names", "files"},
    "network": {"backend", "names"},
    "training": {"network", "data", "backend", "names"},
    "render": {"files"},
    "rundir": {"training", "network", "data", "backend", "names", "files", "render"},
    "benchmark": {"rundir", "training", "network", "data", "backend", "names", "files", "render"},
    "sweep": {"rundir", "training", "network", "data", "backend", "names", "files", "render"},
    "cli": {"sweep", "benchmark", "rundir", "training", "network", "data", "backend", "names", "files", "render"},
}


def modules() -> dict[str, Path]:
    """Every module of fmnist by dotted name (a package by its own name, for its __init__)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The fmnist modules ``path`` imports, anywhere in it (``from pkg import sub`` counts as importing the
    submodule where ``sub`` is one)."""
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [base])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def room(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_there_is_no_import_circle():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_room_is_in_the_table():
    rooms = {room(m) for m in modules()} - {""}
    assert rooms == set(FLOORS) | {"__main__"}


@pytest.mark.parametrize("this", list(FLOORS))
def test_imports_only_point_down(this):
    offenders = []
    for module, targets in graph().items():
        if room(module) != this:
            continue
        for target in targets:
            if room(target) not in FLOORS[this] | {this, ""}:
                offenders.append(f"{module} imports {target}")
    assert offenders == []


def test_the_lifecycle_base_imports_nothing_of_fmnist():
    assert graph()["fmnist.training.callbacks"] == set()


def calls(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            names.add(func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else "")
    return names


def test_only_the_command_line_prints():
    offenders = []
    for module, path in modules().items():
        if room(module) in ("cli", "__main__"):
            continue
        text = path.read_text()
        if "print" in calls(path) or "rich.console" in text or "typer" in text:
            offenders.append(module)
    assert offenders == []


def test_the_engine_writes_no_file_and_renders_nothing():
    offenders = []
    edges = graph()
    for module, targets in edges.items():
        engine = room(module) in ("training", "network", "data", "backend")
        if engine and ("fmnist.files" in targets or any(room(t) == "render" for t in targets)):
            offenders.append(module)
    assert offenders == ["fmnist.data.fetch"]  # the data package caches downloads: its one writer
