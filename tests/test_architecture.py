"""The shape of the forge package, read from its source: no import cycles between its modules and no function
too long to read on one screen. Both hold for every module, so a new cycle or a new long function fails here."""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

FORGE = Path(__file__).resolve().parents[1] / "forge"
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = path.relative_to(FORGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def forge_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(FORGE.rglob("*.py"))}


def module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements that run when the module is imported: its body, into if/try/with blocks (an
    `if TYPE_CHECKING:` import counts, it still ties the two modules), not into functions."""
    for node in body:
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for field in ("body", "orelse", "finalbody"):
            yield from module_level([n for n in getattr(node, field, []) if isinstance(n, ast.stmt)])
        for handler in getattr(node, "handlers", []):
            yield from module_level(handler.body)


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The forge modules a module imports at module level; `from package import name` names the submodule
    when there is one, the package otherwise; relative imports are resolved against the module's package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in module_level(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = forge_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan), as a sorted list of names."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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


def test_the_cycle_finder_sees_relative_and_package_imports(tmp_path: Path) -> None:
    # a cycle through `from . import`, one through `from package import module`, and a lone chain that is none
    graph = {"forge.a": {"forge.b"}, "forge.b": {"forge.a"}, "forge.c": {"forge.d"}, "forge.d": set()}
    assert cycles(graph) == [["forge.a", "forge.b"]]
    package = tmp_path / "forge" / "data"
    package.mkdir(parents=True)
    (package / "steps.py").write_text("from . import chunking\n")
    (package / "chunking.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                         "    from forge.data import steps\n")
    (package / "late.py").write_text("def f():\n    from forge.data import steps\n")
    modules = {"forge.data.steps": package / "steps.py", "forge.data.chunking": package / "chunking.py",
               "forge.data.late": package / "late.py", "forge.data": package / "__init__.py"}
    found = {name: imported_modules(name, path, modules) for name, path in modules.items() if path.exists()}
    assert found == {"forge.data.steps": {"forge.data.chunking"}, "forge.data.chunking": {"forge.data.steps"},
                     "forge.data.late": set()}
    assert cycles(found) == [["forge.data.chunking", "forge.data.steps"]]


def test_forge_modules_import_each_other_without_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 100 and graph["forge.recipe.validate"]  # the walk saw the package and its imports
    found = cycles(graph)
    assert not found, "import cycles among forge modules:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_serving_does_not_import_evaluation() -> None:
    # serving tags genes with the same code evaluation scores (forge/model/tagging.py), not through forge.evaluate
    found = []
    for name, path in forge_modules().items():
        if name.startswith("forge.serve"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                found += [f"{name}:{node.lineno} {m}" for m in modules if m.startswith("forge.evaluate")]
    assert not found, found


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """'file:line name (N lines)' for each function or method in forge/ longer than limit lines, decorators
    not counted, nested functions counted in the function that holds them and on their own."""
    found = []
    for name, path in forge_modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    found.append(f"{path.relative_to(FORGE.parent)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_the_length_check_counts_a_function_from_def_to_its_last_line(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "forge").mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(4))
    (tmp_path / "forge" / "m.py").write_text(f"@decorator\ndef short():\n{body}\n\ndef also():\n    pass\n")
    monkeypatch.setattr(f"{__name__}.FORGE", tmp_path / "forge")
    assert long_functions(limit=5) == []
    assert long_functions(limit=4) == ["forge/m.py:2 short (5 lines)"]


def test_no_function_in_forge_is_longer_than_the_limit() -> None:
    found = long_functions()
    assert not found, (f"functions over {MAX_FUNCTION_LINES} lines (split them into named stages):\n"
                       + "\n".join(found))
