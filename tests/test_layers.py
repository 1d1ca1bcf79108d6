"""The package's layers: every import (module-level or inside a function) points to the same or a lower layer.

Read from the source with :mod:`ast`, so nothing is imported; imports under ``if TYPE_CHECKING:``
are annotations only and do not count. The order is ARCHITECTURE.md's module map, lowest first.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bayescale"
#: lowest first; the foundation modules (errors, defaults, files) sit below every layer
LAYERS = [
    "errors",
    "defaults",
    "files",
    "laws",
    "data",
    "model",
    "parallel",
    "inference",
    "forecast",
    "fitting",
    "evaluation",
    "curves",
    "downstream",
    "viz",
    "cli",
]
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool):
    """(imported bayescale module, line) for every import outside ``if TYPE_CHECKING:`` blocks."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            yield from ((a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "bayescale")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "bayescale":
                continue
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def _graph():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported, line in _imports(ast.parse(path.read_text()), name, path.name == "__init__.py"):
            while imported not in modules and "." in imported:  # `from pkg import name` -> pkg
                imported = imported.rsplit(".", 1)[0]
            if imported != name and imported != "bayescale":
                targets.add((imported, line))
        graph[name] = targets
    return modules, graph


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[1])


def test_every_module_sits_in_a_known_layer():
    modules, _ = _graph()
    unknown = [m for m in modules if m != "bayescale" and m.split(".")[1] not in LAYERS]
    assert not unknown, f"add these to LAYERS (and ARCHITECTURE.md): {unknown}"


def test_imports_point_down_the_layers():
    _, graph = _graph()
    upward = [
        f"{source} -> {target} (line {line})"
        for source, targets in graph.items()
        if source != "bayescale"
        for target, line in targets
        if _layer(target) > _layer(source)
    ]
    assert not upward, "imports that point up a layer:\n" + "\n".join(sorted(upward))


def test_no_import_circle_between_modules():
    _, graph = _graph()
    edges = {source: {t for t, _ in targets} for source, targets in graph.items()}
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                pytest.fail("import circle: " + " -> ".join(stack[stack.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_no_module_over_the_line_limit():
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"
