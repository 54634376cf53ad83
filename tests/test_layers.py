"""The folders are the architecture: lower layers never import higher ones, no circles.

errors <- core <- guards <- aggregate <- engine <- graphs | delegation <- tools <- cli;
``testing`` (the simulators) imports only ``errors`` and the price table
(``guards.pricing``, for the simulated models' prices); the package's ``__init__`` is the
public face and may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import langgraph_fanout

PACKAGE = Path(langgraph_fanout.__file__).parent
LAYERS = {
    "errors": 0,
    "core": 1,
    "guards": 2,
    "aggregate": 3,
    "engine": 4,
    "graphs": 5,
    "delegation": 5,
    "tools": 6,
    "cli": 7,
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(path: Path) -> set[str]:
    """Modules of this package that ``path`` imports when it is imported."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:  # top level only: imports inside functions are not import-time
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("langgraph_fanout"):
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("langgraph_fanout"))
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: use absolute imports")
    return names


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


MODULES = _modules()


def _violations(module: str, imported: set[str]) -> list[str]:
    layer = _layer(module)
    found = []
    for target in sorted(imported):
        other = _layer(target)
        if other is None or other == layer:
            continue
        if layer == "testing":
            ok = other == "errors" or target.startswith("langgraph_fanout.guards.pricing")
        elif other == "testing":
            ok = layer == "cli"  # the CLI's --model simulated
        else:
            ok = layer in LAYERS and other in LAYERS and LAYERS[other] < LAYERS[layer]
        if not ok:
            found.append(f"{module} ({layer}) imports {target} ({other})")
    return found


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "langgraph_fanout"))
def test_no_module_imports_a_higher_layer(module: str) -> None:
    imported = {m for m in _imports(MODULES[module]) if m in MODULES}
    assert _violations(module, imported) == []


def test_every_folder_has_a_layer() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == set(LAYERS) - {"errors"} | {"testing"}


def test_there_are_no_import_circles() -> None:
    graph = {m: {t for t in _imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    graph = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in graph.items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target] if target in path else [target]
                raise AssertionError(f"import circle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_a_layer_violation_is_caught(tmp_path: Path) -> None:
    # The check itself can fail: a core module importing the engine is reported, and so
    # is a simulator importing the engine, and a graph importing a tool.
    bad = tmp_path / "bad.py"
    bad.write_text("from langgraph_fanout.engine.dispatch import Dispatcher\n")
    assert _violations("langgraph_fanout.core.bad", _imports(bad))
    assert _violations("langgraph_fanout.testing.bad", _imports(bad))
    assert _violations("langgraph_fanout.graphs.bad", {"langgraph_fanout.tools.base"})
    assert not _violations("langgraph_fanout.tools.bad", _imports(bad))
