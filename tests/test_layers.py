"""The code's shape, checked: every module imports downward, and no two modules import each other.

Layers, bottom to top: `common` (helpers that know no app), `consensus` (events in), `validators`
(sets), `analysis` (verdicts, alerts, pages), `ctop_project` (settings, URLs, wiring). A module may
import its own layer and the ones below. Imports inside functions count too: a lazy import is still
a dependency, only hidden. Tests and tools are outside the layers."""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import ROOT

LAYERS = ["common", "consensus", "validators", "analysis", "ctop_project"]


def modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for layer in LAYERS:
        for path in (root / layer).rglob("*.py"):
            if "migrations" in path.parts:
                continue  # Django's own history: generated, and bound to model references anyway
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports (resolved: `from . import x` is the module x if it is one)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        while target and target not in known:
            target = target.rpartition(".")[0]  # `a.b.c` where only `a.b` is a module of ours
        if target and target != name:
            found.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                full = f"{module}.{alias.name}"
                add(full if full in known else module)
    return found


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports(name, path, known) for name, path in known.items()}


def layer_of(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def upward(g: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in g.items() for b in targets if layer_of(b) > layer_of(a))


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_from_a_later_layer():
    assert upward(graph()) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_checks_see_what_they_should(tmp_path):
    """The checker itself: a cycle, an upward and a lazy import in a small tree are all found."""
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
        (tmp_path / layer / "__init__.py").write_text("")
    (tmp_path / "consensus" / "a.py").write_text("from . import b\n")
    (tmp_path / "consensus" / "b.py").write_text("def f():\n    from consensus.a import x\n")
    (tmp_path / "consensus" / "c.py").write_text("def g():\n    import analysis.views\n")
    (tmp_path / "analysis" / "views.py").write_text("from consensus import c\n")
    g = graph(tmp_path)
    assert sorted(cycles(g)) == [["analysis.views", "consensus.c"], ["consensus.a", "consensus.b"]]
    assert upward(g) == ["consensus.c -> analysis.views"]
