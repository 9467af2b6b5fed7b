"""Imports run one way: down the layers of docs/ARCHITECTURE.md, with no circle anywhere.

Every import statement of every module under python/desiru counts: at the top, inside a
function, under ``if TYPE_CHECKING:``. The layer order is written once, here (LAYERS), and drawn
in docs/ARCHITECTURE.md; a module that no layer names fails the test, so a new file must be
placed before it lands.
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "python" / "desiru"

#: top to bottom; a module may import its own layer and the layers below it, never one above
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("cli", ("desiru.cli", "desiru.cli.*", "desiru.demo", "desiru.__main__")),
    ("package", ("desiru",)),  # desiru/__init__.py: the public names, and the adapters it ships
    ("adapters", ("desiru.interop", "desiru.interop.*", "desiru.report", "desiru.report.*")),
    ("journal and files", ("desiru.journal", "desiru.journal.*", "desiru.api", "desiru.files", "desiru.migrate",
                           "desiru.rekey",
                           "desiru.serialization")),  # the package's __init__: the DESIGN.md import path
    ("serialization", ("desiru.serialization.*",)),
    ("crypto and container", ("desiru.crypto", "desiru.crypto.*", "desiru.serialization.container")),
    ("model", ("desiru.program", "desiru.module", "desiru.signature", "desiru.example", "desiru.registry",
               "desiru.state", "desiru.lm", "desiru.prompt", "desiru.persistence", "desiru.adapters")),
    ("engine", ("desiru._engine", "desiru._native", "desiru._pure", "desiru._pure.*")),
    ("base", ("desiru.errors", "desiru._version", "desiru.atomic", "desiru.progress", "desiru.gcpause")),
]


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under ``root`` (a package named by its folder)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: Iterable[str]) -> list[tuple[str, int]]:
    """(imported desiru module, line) for every import statement in the file, at any depth."""
    known = set(known)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    top = name.split(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == top]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != top:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                # ``from desiru import _native``: the compiled extension is a module without a .py
                found.append((sub if sub in known or alias.name == "_native" else base, node.lineno))
    return [(target, line) for target, line in found if target != name]


def layer_of(name: str) -> int | None:
    """The index in LAYERS of the most specific pattern naming ``name`` (exact names before globs)."""
    best: tuple[int, int] | None = None  # (specificity, layer)
    for index, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if pattern == name:
                score = 10_000
            elif "*" in pattern and fnmatch.fnmatchcase(name, pattern):
                score = len(pattern)
            else:
                continue
            if best is None or score > best[0]:
                best = (score, index)
    return None if best is None else best[1]


def graph(root: Path) -> tuple[dict[str, list[tuple[str, int]]], dict[str, Path]]:
    mods = modules(root)
    return {name: imports(name, path, mods) for name, path in mods.items()}, mods


def cycles(edges: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """The import circles: strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    nodes = set(edges) | {t for out in edges.values() for t, _ in out}
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted({t for t, _ in edges.get(start, [])})))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted({t for t, _ in edges.get(child, [])}))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def upward(edges: dict[str, list[tuple[str, int]]], mods: dict[str, Path]) -> list[str]:
    """Each import from a module to a module of a higher layer, as 'file:line: a (layer) -> b (layer)'."""
    out = []
    for name, targets in edges.items():
        mine = layer_of(name)
        for target, line in targets:
            theirs = layer_of(target)
            if mine is not None and theirs is not None and theirs < mine:
                out.append(f"{mods[name].name}:{line}: {name} ({LAYERS[mine][0]}) imports "
                           f"{target} ({LAYERS[theirs][0]})")
    return out


def test_every_module_has_a_layer() -> None:
    edges, _ = graph(ROOT)
    names = set(edges) | {t for out in edges.values() for t, _ in out}
    assert sorted(n for n in names if layer_of(n) is None) == [], "place these modules in LAYERS"


def test_no_import_goes_up_a_layer() -> None:
    edges, mods = graph(ROOT)
    assert upward(edges, mods) == []


def test_no_import_circle() -> None:
    edges, _ = graph(ROOT)
    assert cycles(edges) == []


def test_the_model_imports_nothing_above_it() -> None:
    """DESIGN.md: the model never imports serialization, journal, crypto or interop, not even in a function."""
    edges, _ = graph(ROOT)
    model = LAYERS.index(next(layer for layer in LAYERS if layer[0] == "model"))
    for name in LAYERS[model][1]:
        for target, line in edges.get(name, []):
            assert layer_of(target) is not None and layer_of(target) >= model, f"{name}:{line} imports {target}"


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "desiru" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "desiru"


def test_the_checks_find_a_circle_hidden_in_a_function(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "__init__.py": "",
        "program.py": "def save():\n    from desiru.serialization import documents\n",
        "serialization/__init__.py": "",
        "serialization/documents.py": "from desiru.program import save\n",
    })
    edges, mods = graph(root)
    assert ("desiru.serialization.documents", 2) in edges["desiru.program"]
    assert cycles(edges) == [["desiru.program", "desiru.serialization.documents"]]
    assert [line.split(": ", 1)[1] for line in upward(edges, mods)] == [
        "desiru.program (model) imports desiru.serialization.documents (serialization)"]


def test_the_checks_see_relative_and_type_checking_imports(tmp_path: Path) -> None:
    root = _write(tmp_path, {
        "__init__.py": "",
        "errors.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .journal import journal\n",
        "journal/__init__.py": "",
        "journal/journal.py": "from .. import errors\nfrom desiru import _native\n",
    })
    edges, _ = graph(root)
    assert edges["desiru.errors"] == [("desiru.journal.journal", 3)]
    assert sorted(edges["desiru.journal.journal"]) == [("desiru._native", 2), ("desiru.errors", 1)]


@pytest.mark.parametrize(("name", "layer"), [
    ("desiru.serialization.container", "crypto and container"),
    ("desiru.serialization.documents", "serialization"),
    ("desiru.serialization", "journal and files"),
    ("desiru.cli.app", "cli"),
    ("desiru.nothing_here", None),
])
def test_layer_of_prefers_the_most_specific_pattern(name: str, layer: str | None) -> None:
    found = layer_of(name)
    assert (None if found is None else LAYERS[found][0]) == layer
