"""sal_core/evaluation/ reads top-down: grading -> votes -> one run's metrics -> across runs -> figures.

Every import inside the package, at any depth (function-level ones included, read with ast), goes to a
module of the same or a lower layer, and the imports form no circle. A new module must be given a layer
here, so the rule cannot be skipped by adding one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sal_core.evaluation

PACKAGE = "sal_core.evaluation"
FOLDER = Path(sal_core.evaluation.__file__).parent
LAYERS = {
    "grading": ("verdicts", "levels", "compute", "sal_answers", "sal_equal", "grading", "guarded", "graders_sal"),
    "graders": ("graders",),
    "votes": ("votes",),
    "one run": ("evaluate", "sal_protocol", "disagreement", "credit", "run", "protocols"),
    "across runs": ("aggregate", "difficulty", "selection", "optimal"),
    "figures": ("plot", "optimal_plot"),
}
RANK = {module: rank for rank, modules in enumerate(LAYERS.values()) for module in modules}


def imported_modules(source: str, folder: Path = FOLDER) -> set[str]:
    """Modules of the package that a source file imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *[f"{node.module}.{alias.name}" for alias in node.names]]
        else:
            continue
        for name in names:
            if name.startswith(PACKAGE + "."):
                module = name[len(PACKAGE) + 1 :].split(".")[0]
                if (folder / f"{module}.py").exists():
                    found.add(module)
    return found


def import_graph(folder: Path = FOLDER) -> dict[str, set[str]]:
    return {path.stem: imported_modules(path.read_text(), folder) - {path.stem} for path in folder.glob("*.py")}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports, or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_module_has_a_layer() -> None:
    modules = {path.stem for path in FOLDER.glob("*.py")} - {"__init__"}
    assert modules - set(RANK) == set(), "give each new module of sal_core/evaluation a layer in LAYERS"


def test_no_import_circle_at_any_depth() -> None:
    assert cycle(import_graph()) is None


def test_imports_go_down_the_layers() -> None:
    upward = [
        f"{module} ({_layer(module)}) imports {target} ({_layer(target)})"
        for module, targets in import_graph().items()
        if module in RANK
        for target in targets
        if RANK.get(target, -1) > RANK[module]
    ]
    assert upward == []


def _layer(module: str) -> str:
    return next(name for name, modules in LAYERS.items() if module in modules)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"a": "def f():\n    from sal_core.evaluation import b\n", "b": "import sal_core.evaluation.a\n"}, True),
        ({"a": "from sal_core.evaluation.b import x\n", "b": "x = 1\n"}, False),
    ],
)
def test_the_check_sees_function_level_circles(tmp_path: Path, files: dict[str, str], expected: bool) -> None:
    """The checker itself: a circle closed only by a function-level import is found."""
    for name, text in files.items():
        (tmp_path / f"{name}.py").write_text(text)
    assert (cycle(import_graph(tmp_path)) is not None) == expected
