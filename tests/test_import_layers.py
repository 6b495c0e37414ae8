"""Imports run one way between sal_core's packages: a lower stage never imports a higher one, so no
package reaches itself again through others. Every `import` and `from ... import` counts, at module
level and inside functions alike (a function-level import is still a dependency, only a later one);
the sources are parsed with ast, nothing is imported."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "sal_core"
#: packages that must import one another one way only (settings → backends → prm → ... → serving)
LAYERED = ("backends", "prm", "serving")


def module_names(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package under `root`, by dotted name (a package by its own name)."""
    names = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """The modules of `known` that module `name` imports, anywhere in its source."""
    known = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:  # `from pkg import module` imports the module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {target for target in found if target in known}


def package_of(module: str) -> str:
    """sal_core.serving.client -> serving; a top-level module (sal_core.tables) is its own."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_graph(root: Path = ROOT) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(importing package, imported package) -> the module pairs that make that edge."""
    names = module_names(root)
    edges: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for name, path in names.items():
        for target in imports_of(name, path, names):
            if package_of(name) != package_of(target):
                edges.setdefault((package_of(name), package_of(target)), []).append((name, target))
    return edges


def cycles(edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected groups of more than one node (Tarjan's algorithm): each holds a circle."""
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def circles_among(packages: Iterable[str], root: Path = ROOT) -> list[str]:
    """The import circles among `packages`, each with the module imports that close it."""
    scope = set(packages)
    graph = {edge: pairs for edge, pairs in package_graph(root).items() if set(edge) <= scope}
    found = []
    for group in cycles(graph):
        links = [
            f"{a} -> {b} ({pairs[0][0]} imports {pairs[0][1]})"
            for (a, b), pairs in graph.items()
            if a in group and b in group
        ]
        found.append(f"{' / '.join(group)}: " + "; ".join(sorted(links)))
    return found


def test_backends_prm_and_serving_import_one_way() -> None:
    assert circles_among(LAYERED) == []


def test_no_package_or_top_level_module_of_sal_core_reaches_itself_again() -> None:
    """The whole package: settings, devices, the learn and cli stages and the top-level modules too."""
    everything = {package for edge in package_graph() for package in edge}
    assert len(everything) > 15
    assert circles_among(everything) == []


def test_the_check_finds_a_circle_through_a_function_level_import(tmp_path: Path) -> None:
    """A lower package importing a higher one inside a function closes a circle the check reports."""
    root = tmp_path / "sal_core"
    for folder, text in {
        "low": "from sal_core.high import mod\n",
        "high": "def later():\n    from ..low import base\n",
    }.items():
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
        (root / folder / "base.py").write_text("")
        (root / folder / "mod.py").write_text(text)
    assert (root / "__init__.py").write_text("") == 0
    [circle] = circles_among(["low", "high"], root)
    assert circle.startswith("high / low:") and "sal_core.high.mod imports sal_core.low.base" in circle
    assert circles_among(["low"], root) == []


@pytest.mark.parametrize("package", LAYERED)
def test_every_layered_package_is_found(package: str) -> None:
    """The check reads real imports: each package imports or is imported by another one."""
    assert any(package in edge for edge in package_graph())
