"""The floor plan (issue 22): stage packages that import only downward.

Read from the source with ``ast`` (nothing is imported), so an import inside a
function or under ``if TYPE_CHECKING:`` counts like any other: a lazy import
kept for start-up speed is fine, as long as it points down.
"""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import pytest

import bulksend

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bulksend"

# The floors, top first: a module may import its own package (no cycles) and
# the floors below its own, never one above or beside it.
FLOORS = [
    {"__init__", "__main__"},
    {"cli"},
    {"api"},
    {"tasks"},
    {"sending"},
    {"settings", "collect"},
    {"store"},
    {"mapping"},
    {"reading"},
    {"common"},
]
SEPARATE = "sandbox"  # the stand-in server: imports no other part; tasks and the CLI may start it
MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 80
MAX_TOP_ENTRIES = 12


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The bulksend modules ``name`` imports, wherever the import statement stands."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("bulksend"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package up
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            if not base.startswith("bulksend"):
                continue
            for alias in node.names:  # `from bulksend.x import y` may name module y
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    found.discard(name)
    return {m for m in found if m in MODULES}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _floor(part: str) -> int:
    return next(i for i, floor in enumerate(FLOORS) if part in floor)


def test_every_top_level_part_has_a_floor() -> None:
    parts = {_part(m) for m in MODULES} - {SEPARATE}
    unplaced = sorted(p for p in parts if not any(p in floor for floor in FLOORS))
    assert not unplaced, f"add these to FLOORS (and to docs/architecture.md): {unplaced}"


def test_imports_point_down_only() -> None:
    upward = []
    for module, imported in GRAPH.items():
        mine = _part(module)
        for target in imported:
            theirs = _part(target)
            if theirs == mine:
                continue
            if mine == SEPARATE:
                upward.append(f"{module} -> {target} (the sandbox imports nothing of bulksend)")
            elif theirs == SEPARATE:
                if _floor(mine) > _floor("tasks"):
                    upward.append(f"{module} -> {target} (only tasks and above start the sandbox)")
            elif _floor(theirs) <= _floor(mine):
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that point up or sideways:\n" + "\n".join(sorted(upward))


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
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

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_the_tangle_detector_sees_a_cycle() -> None:
    GRAPH["bulksend.common.errors"].add("bulksend.common.outcome")
    try:
        assert ["bulksend.common.errors", "bulksend.common.outcome"] in _cycles()
    finally:
        GRAPH["bulksend.common.errors"].discard("bulksend.common.outcome")


def test_no_library_module_imports_the_cli() -> None:
    users = sorted(m for m, imported in GRAPH.items()
                   if _part(m) not in ("cli", "__init__", "__main__")
                   and any(_part(t) == "cli" for t in imported))
    assert users == []


def test_the_top_of_the_package_stays_small() -> None:
    entries = [info.name for info in pkgutil.iter_modules(bulksend.__path__)]
    assert len(entries) <= MAX_TOP_ENTRIES, entries


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_and_functions_stay_readable(module: str) -> None:
    text = MODULES[module].read_text(encoding="utf-8")
    assert text.count("\n") <= MAX_MODULE_LINES, f"{module}: {text.count(chr(10))} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{module}: {long}"


def test_the_architecture_page_names_every_module() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    paths = [path.relative_to(PACKAGE).as_posix() for path in MODULES.values() if path.name != "__init__.py"]
    missing = [path for path in paths if f"`{path}`" not in page and f"bulksend/{path}" not in page]
    assert not missing, f"docs/architecture.md does not name: {missing}"
