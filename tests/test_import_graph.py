"""The package's import graph, read from the source with ``ast``: no cycles, and the core (the model, the
bitstream, the network modules and the losses) imports nothing of the coding pipelines, the command line,
training or evaluation (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "corrdiff"

CORE = ("corrdiff.model", "corrdiff.bitstream", "corrdiff.modules", "corrdiff.losses")
UPPER = ("corrdiff.codec", "corrdiff.encoding", "corrdiff.decoding", "corrdiff.sampling", "corrdiff.cli",
         "corrdiff.__main__", "corrdiff.demo", "corrdiff.model_io", "corrdiff.training",
         "corrdiff.evaluation", "corrdiff.bench", "corrdiff.metrics")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def imported_module(name: str) -> str | None:
    """The package module that importing ``name`` names: ``name`` itself or the module that defines it."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """The corrdiff modules that ``module`` imports anywhere (module level, functions, TYPE_CHECKING blocks)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "corrdiff" or name.startswith("corrdiff."):
                target = imported_module(name)
                if target and target != module:
                    found.add(target)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" on the current path, "done" when fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, list[str]]:
    """Every module that ``start`` imports, directly or not, with one import chain to it."""
    chains = {start: [start]}
    todo = [start]
    while todo:
        node = todo.pop()
        for nxt in graph.get(node, ()):
            if nxt not in chains:
                chains[nxt] = chains[node] + [nxt]
                todo.append(nxt)
    return chains


def test_the_graph_is_read_from_the_source():
    assert "corrdiff.model" in GRAPH["corrdiff.codec"]
    assert "corrdiff.model" in GRAPH["corrdiff.sampling"]
    assert "corrdiff.filters" in GRAPH["corrdiff.metrics.weight_free"]
    assert "corrdiff.losses.perceptual" in GRAPH["corrdiff.metrics.networks"]  # a function-level import counts too
    assert "corrdiff.model_io.checks" in GRAPH["corrdiff.model_io"]  # a package's __init__ is a module too
    assert GRAPH["corrdiff.metrics.suite"] >= {"corrdiff.metrics.networks", "corrdiff.metric_names"}
    assert GRAPH["corrdiff.cli.entry"] >= {"corrdiff.cli.compress", "corrdiff.cli.interrupts",
                                          "corrdiff.cli.parser"}
    assert "corrdiff.cli" in GRAPH["corrdiff.cli.__main__"]  # ``python -m corrdiff.cli``


def test_find_cycle_reports_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycles():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("core", sorted(m for m in MODULES if within(m, CORE)))
def test_the_core_imports_nothing_above_it(core):
    upward = {m: chain for m, chain in reachable(GRAPH, core).items() if within(m, UPPER)}
    assert not upward, "; ".join(" -> ".join(chain) for chain in upward.values())


def test_the_pipelines_take_the_model_not_the_codec():
    for pipeline in ("corrdiff.encoding", "corrdiff.decoding", "corrdiff.sampling"):
        assert "corrdiff.codec" not in GRAPH[pipeline], pipeline
