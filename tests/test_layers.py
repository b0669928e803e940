"""The package's import graph: the core (meshdcm/*.py and the CLI) imports no feature package, and no two modules import each
other, directly or through others (read from the source, so a lazy import inside a function counts too)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "meshdcm"
FEATURES = ("meshdcm.pacs", "meshdcm.imaging", "meshdcm.perfusion", "meshdcm.studies", "meshdcm.stroke", "meshdcm.index", "meshdcm.viewer",
            "meshdcm.web", "nodes")


def import_graph() -> dict[str, set[str]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [f"{target}.{a.name}" for a in node.names]
                targets = [n for n in names if n in modules] or [target]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t != name and (t in modules or t.split(".")[0] == "nodes"))
    return graph


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_core_imports_no_feature_package():
    graph = import_graph()
    core = [m for m in graph if (m.count(".") == 1 or m.startswith("meshdcm.cli")) and not m.startswith(FEATURES)]
    bad = {m: sorted(t for t in graph[m] if t.startswith(FEATURES)) for m in core}
    assert not {m: t for m, t in bad.items() if t}


def test_production_code_imports_no_test_data():
    """meshdcm.imaging.testdata writes phantoms for tests and benches; a module of the package that needs one of its
    helpers takes it from where it lives in production (rigid_matrix: meshdcm.imaging.geometry)."""
    graph = import_graph()
    assert "meshdcm.imaging.geometry" in graph["meshdcm.imaging.testdata"]  # the graph sees testdata's imports
    assert not sorted(m for m, targets in graph.items() if "meshdcm.imaging.testdata" in targets)


def test_no_import_circles():
    assert circles(import_graph()) == []


def test_the_graph_is_read():  # the two tests above would pass on an empty graph
    graph = import_graph()
    assert "meshdcm.journal" in graph["meshdcm.node"] and "meshdcm.pacs.results" in graph["meshdcm.pacs.scu"]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
