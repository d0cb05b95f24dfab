"""The house holds: no import loops between modules, and dependencies that point down.

Reads the imports of `pipeline/`, `schemas/` and `flows/` with `ast` (no third-party tool):
every `import` and `from ... import`, at module level or inside a function (an import inside a
function is still a dependency; only `if TYPE_CHECKING:` blocks are left out).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "schemas", "flows")
# SQL builders: queries live in pipeline/store/ and nowhere else.
QUERY_NAMES = {"select", "update", "insert", "delete", "text", "func", "and_", "or_"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


MODULES = all_modules()


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, except those under `if TYPE_CHECKING:`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def _resolve(name: str) -> str | None:
    """The internal module `name` is, or the package/module it lies in; None if external."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def dependencies(module: str) -> dict[str, set[str]]:
    """Internal modules `module` imports -> the names it takes from each."""
    tree = ast.parse(MODULES[module].read_text())
    found: dict[str, set[str]] = {}
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (target := _resolve(alias.name)) is not None:
                    found.setdefault(target, set())
            continue
        if node.level:  # relative imports are not used here; resolve them anyway
            base = module.split(".")[: -node.level or None]
            source = ".".join([*base, node.module or ""]).strip(".")
        else:
            source = node.module or ""
        for alias in node.names:
            target = _resolve(f"{source}.{alias.name}") or _resolve(source)
            if target is not None:
                found.setdefault(target, set()).add(alias.name)
    found.pop(module, None)
    return found


GRAPH = {module: dependencies(module) for module in MODULES}


def external_imports(module: str) -> Iterator[tuple[str, set[str]]]:
    tree = ast.parse(MODULES[module].read_text())
    for node in _imports(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module, {a.name for a in node.names}


def strongly_connected(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that import each other (loops)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def violations(source_prefix: str, target_prefixes: tuple[str, ...], *, unless: str = "") -> list:
    return [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if _within(module, source_prefix) and not (unless and _within(module, unless))
        for target in targets
        if any(_within(target, prefix) for prefix in target_prefixes)
    ]


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_graph_is_read() -> None:
    # the reader must see real edges, or every rule below would pass on an empty graph
    assert "pipeline.steps" in GRAPH["pipeline.runner"]
    assert "pipeline.tiling.plan" in GRAPH["pipeline.tiling.auto"]
    assert "pipeline.store.claims" in GRAPH["pipeline.store.repository"]


def test_no_import_loops() -> None:
    assert strongly_connected(GRAPH) == []


def test_the_loop_finder_finds_loops() -> None:
    graph = {"a": {"b": set()}, "b": {"c": set()}, "c": {"a": set()}, "d": {"a": set()}}
    assert strongly_connected(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    ("source", "forbidden", "unless"),
    [
        ("schemas", ("pipeline", "flows"), ""),
        ("pipeline", ("flows",), "pipeline.cli"),
        ("pipeline.store", ("pipeline.backends",), ""),
        ("pipeline.backends", ("pipeline.store", "flows"), ""),
    ],
)
def test_dependencies_point_down(source: str, forbidden: tuple[str, ...], unless: str) -> None:
    assert violations(source, forbidden, unless=unless) == []


def test_database_queries_live_in_the_store() -> None:
    outside = [
        f"{module}: {sorted(names & QUERY_NAMES)} from {source}"
        for module in MODULES
        if not _within(module, "pipeline.store")
        for source, names in external_imports(module)
        if source.startswith("sqlalchemy") and names & QUERY_NAMES
    ]
    assert outside == []


def test_the_engine_never_imports_prefect() -> None:
    importers = [
        module
        for module in MODULES
        if _within(module, "pipeline") and not _within(module, "pipeline.cli")
        for source, _ in external_imports(module)
        if source.split(".")[0] == "prefect"
    ]
    assert importers == []
