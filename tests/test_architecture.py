"""The layout's promises, checked on the source: no import cycles, imports at module level, every
third-party package the code imports declared in pyproject.toml."""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cio_mavera"


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), filename=str(path))
    return out


def _imported(name: str, tree: ast.Module, known: set[str]) -> Iterator[str]:
    """The cio_mavera modules `name` imports (a `from package import module` counts the module)."""
    package = name if (PACKAGE.parent / name.replace(".", "/")).is_dir() else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield full if full in known else base
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycles():
    modules = _modules()
    known = set(modules)
    graph = {name: {m for m in _imported(name, tree, known) if m in known and m != name}
             for name, tree in modules.items()}
    # A package's __init__ re-exporting its own submodules is not a cycle through that package.
    for name in graph:
        graph[name] = {m for m in graph[name] if not (name.startswith(m + ".") and m in known)}
    assert _cycles(graph) == []


def test_imports_sit_at_module_level():
    inside = []
    for name, tree in _modules().items():
        for func in ast.walk(tree):
            if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                inside += [f"{name}:{node.lineno}" for node in ast.walk(func)
                           if isinstance(node, ast.Import | ast.ImportFrom)]
    assert inside == []


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values()
                                              for r in extra]
    names = set()
    for requirement in requirements:
        name = requirement.split(";")[0]
        for sep in "<>=!~[ ":
            name = name.split(sep)[0]
        names.add(name.strip().lower().replace("_", "-"))
    return names


def test_every_third_party_import_is_declared():
    owners = packages_distributions()
    declared = _declared()
    stdlib = set(sys.stdlib_module_names)
    local = {"cio_mavera", "conftest", "notebook_checks", "receiver_server", "redis_server", "retention_logs"}
    missing = set()
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                tops = [node.module.split(".")[0]]
            elif isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            else:
                continue
            for top in tops:
                if top in stdlib or top in local or top.startswith("test_") or top.startswith("truth_"):
                    continue
                dists = {d.lower().replace("_", "-") for d in owners.get(top, [top])}
                if not dists & declared:
                    missing.add(f"{top} ({path.relative_to(ROOT)})")
    assert sorted(missing) == []
