"""No module of medact imports one that imports it back, directly or through others (lazy imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("action", "shared", "medseg")


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (``from a import b`` counts ``a`` and ``a.b``)."""
    files = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            files[name] = path
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in files and t != name}
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_finder_sees_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert "a" in reachable(graph, "a") and "d" not in reachable(graph, "d")


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = import_graph()
    assert {"action.train", "action.models.features", "action.training_data", "shared.engine"} <= set(graph)
    assert "action.training_data" in graph["action.models.features"]  # the graph holds real edges
    cycles = sorted(name for name in graph if name in reachable(graph, name))
    assert cycles == [], f"modules on an import cycle: {cycles}"
