"""The package's module-level imports form no cycle (layers import only downwards)."""
from __future__ import annotations

import ast
from pathlib import Path

import cupy_ad

PACKAGE = Path(cupy_ad.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["cupy_ad", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class _ModuleLevelImports(ast.NodeVisitor):
    """The import statements run when the module is imported: not in function bodies, not under
    ``if TYPE_CHECKING``."""

    def __init__(self) -> None:
        self.found: list[ast.Import | ast.ImportFrom] = []

    def visit_FunctionDef(self, node: ast.AST) -> None:
        pass

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.orelse:
                self.visit(statement)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append(node)

    visit_ImportFrom = visit_Import


def import_graph() -> dict[str, set[str]]:
    """module -> the cupy_ad modules it imports at module level (the most specific module named)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        visitor = _ModuleLevelImports()
        visitor.visit(ast.parse(path.read_text()))
        for node in visitor.found:
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # ``from pkg import sub`` names the submodule sub where one exists
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_relative_imports():
    graph = import_graph()
    assert "cupy_ad.core" in graph["cupy_ad.namespace.elementwise"]
    assert "cupy_ad.namespace.elementwise" in graph["cupy_ad.namespace"]  # ``from . import elementwise``


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_helpers_that_moved_still_import_from_rules():
    from cupy_ad.namespace import elementwise
    from cupy_ad.namespace._rules import add_tangents, elementwise as factory, fit

    assert (factory, fit, add_tangents) == (elementwise.elementwise, elementwise.fit, elementwise.add_tangents)
