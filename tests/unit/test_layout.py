"""The house's rules, checked on the source itself: no import cycles, modules of a readable size,
and nodeagent never importing manager (a manager is a node, not the other way round).

Imports are read from the syntax tree, function-level ones included: an import deferred into a
function to dodge a cycle is still a cycle in the design.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ("nodeagent", "manager", "deploy")

# The two state-machine cores read better whole (STYLE.md: "a state-machine core that reads
# better whole"); every other module stays under this many lines.
MAX_LINES = 600
WHOLE_CORES = {"manager/state/raft/core.py", "nodeagent/gossip/core.py"}


def _modules() -> dict[str, pathlib.Path]:
    found: dict[str, pathlib.Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(module: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """The project's modules that ``module`` imports (the deepest known name of each import)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                drop = node.level - 1 if is_package else node.level
                anchor = anchor[: len(anchor) - drop] if drop else anchor
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
    # Importing a.b.c runs a/__init__ and a/b/__init__ first; that is not an edge of ours to draw,
    # but an __init__ that imports its own submodule must not count as a cycle with it either.
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_project_has_no_import_cycle() -> None:
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_nodeagent_never_imports_manager_or_deploy() -> None:
    offenders = sorted(
        f"{module} -> {target}"
        for module, targets in _graph().items()
        if module.startswith("nodeagent")
        for target in targets
        if target.startswith(("manager", "deploy"))
    )
    assert offenders == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_over_the_size_limit(package: str) -> None:
    too_long = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES and rel not in WHOLE_CORES:
            too_long.append(f"{rel}: {lines} lines")
    assert too_long == [], f"modules over {MAX_LINES} lines (split them by concern): {too_long}"


def test_every_package_says_what_lives_there() -> None:
    missing = []
    for package in PACKAGES:
        for init in sorted((ROOT / package).rglob("__init__.py")):
            tree = ast.parse(init.read_text())
            if not ast.get_docstring(tree):
                missing.append(init.relative_to(ROOT).as_posix())
    assert missing == []
