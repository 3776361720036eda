"""The package's import rules, read from the source (AST) rather than from a running import:

(a) nothing under ``raymall/`` imports ``actors``, ``deployments`` or ``recommend``, except
    the composition root ``raymall.launcher``, which no package module imports but the
    ``python -m raymall`` entry point;
(b) no import cycle among the modules of the packages.

Every import counts: at module level, inside functions and classes, under
``if TYPE_CHECKING:``; relative imports are resolved, and ``from pkg import name`` is an
import of the module ``pkg.name`` when there is one (else of ``pkg``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("raymall", "actors", "deployments", "models", "recommend")
COMPOSITION_ROOT = "raymall.launcher"
ENTRY_POINTS = ("raymall.__main__",)  # may import the composition root
KEPT_OUT_OF_RAYMALL = ("actors", "deployments", "recommend")


class Import(NamedTuple):
    target: str  # a module of PACKAGES
    line: int


def package_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of PACKAGES by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def imports_of(
    module: str, source: str, known: Iterable[str], *, is_package: bool = False
) -> list[Import]:
    """The imports of ``module`` (its ``source``) that name a module in ``known``."""
    known = set(known)
    here = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def add(name: str, line: int) -> None:
        # `import a.b.c` of a module that does not exist resolves to its longest known prefix
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            found.append(Import(name, line))

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = here.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                add(submodule if submodule in known else base, node.lineno)
    return sorted(set(found), key=lambda i: (i.line, i.target))


def import_graph() -> tuple[dict[str, Path], dict[str, list[Import]]]:
    modules = package_modules()
    graph = {
        name: imports_of(
            name, path.read_text(encoding="utf-8"), modules, is_package=path.name == "__init__.py"
        )
        for name, path in modules.items()
    }
    return modules, graph


def layer_violations(modules: dict[str, Path], graph: dict[str, list[Import]]) -> list[str]:
    out = []
    for name, imports in sorted(graph.items()):
        where = modules[name].relative_to(ROOT)
        for imp in imports:
            if (
                _within(name, "raymall")
                and not _within(name, COMPOSITION_ROOT)
                and any(_within(imp.target, p) for p in KEPT_OUT_OF_RAYMALL)
            ):
                out.append(f"{where}:{imp.line}: {name} imports {imp.target}")
            elif (
                _within(imp.target, COMPOSITION_ROOT)
                and not _within(name, COMPOSITION_ROOT)
                and name not in ENTRY_POINTS
            ):
                out.append(f"{where}:{imp.line}: {name} imports the composition root {imp.target}")
    return out


def cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
    """One concrete cycle per strongly connected component of the import graph
    (Tarjan), each as a path that starts and ends at the same module."""
    edges = {m: sorted({i.target for i in imps if i.target != m}) for m, imps in graph.items()}
    self_loops = [[m, m] for m, imps in graph.items() if any(i.target == m for i in imps)]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(start: str) -> None:  # iterative Tarjan: no recursion limit to meet
        work = [(start, iter(edges.get(start, ())))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return self_loops + [_cycle_in(component, edges) for component in sorted(components)]


def describe(cycle: list[str], graph: dict[str, list[Import]]) -> str:
    """``a -> (line 3) b -> (line 7) a``: the cycle with the line of each import."""
    steps = [cycle[0]]
    for a, b in zip(cycle, cycle[1:], strict=False):
        line = min(i.line for i in graph[a] if i.target == b)
        steps.append(f"(line {line}) {b}")
    return " -> ".join(steps)


def _cycle_in(component: list[str], edges: dict[str, list[str]]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first)."""
    members = set(component)
    start = component[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in edges[node]:
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle found in {component}")


# ---- the rules ------------------------------------------------------------------------
def test_raymall_imports_no_actor_deployment_or_recommend_module_outside_the_launcher() -> None:
    modules, graph = import_graph()
    violations = layer_violations(modules, graph)
    assert not violations, "imports across the layers:\n" + "\n".join(violations)


def test_the_package_modules_import_each_other_without_a_cycle() -> None:
    _, graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(describe(c, graph) for c in found)


# ---- the walker itself ----------------------------------------------------------------
KNOWN = {"raymall", "raymall.orders", "raymall.orders.ports", "raymall.orders.service",
         "actors", "actors.order_client", "raymall.errors"}  # fmt: skip


def test_imports_in_functions_under_type_checking_and_relative_ones_are_all_seen() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import ports\n"
        "from ..errors import NotFound\n"
        "if TYPE_CHECKING:\n"
        "    from actors.order_client import OrderShardClient\n"
        "def f():\n"
        "    import actors.order_client.missing\n"
        "class C:\n"
        "    def g(self):\n"
        "        from raymall import orders\n"
    )
    found = imports_of("raymall.orders.service", source, KNOWN)
    assert found == [
        Import("raymall.orders.ports", 2),
        Import("raymall.errors", 3),
        Import("actors.order_client", 5),
        Import("actors.order_client", 7),
        Import("raymall.orders", 10),
    ]


def test_a_package_resolves_its_relative_imports_from_itself() -> None:
    found = imports_of("raymall.orders", "from .ports import x\n", KNOWN, is_package=True)
    assert found == [Import("raymall.orders.ports", 1)]


def test_a_cycle_is_reported_as_a_path_and_an_acyclic_graph_passes() -> None:
    def graph(pairs: list[tuple[str, str]]) -> dict[str, list[Import]]:
        g: dict[str, list[Import]] = {}
        for a, b in pairs:
            g.setdefault(a, []).append(Import(b, 1))
            g.setdefault(b, [])
        return g

    assert cycles(graph([("a", "b"), ("b", "c"), ("a", "c")])) == []
    assert cycles(graph([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])) == [["a", "b", "c", "a"]]
    assert cycles(graph([("a", "a")])) == [["a", "a"]]


def test_the_layer_rule_catches_a_service_importing_an_actor_client() -> None:
    modules = {
        "raymall.orders.service": ROOT / "raymall/orders/service.py",
        "raymall.launcher.app": ROOT / "raymall/launcher/app.py",
        "actors.order_client": ROOT / "actors/order_client.py",
        "raymall.cart": ROOT / "raymall/cart.py",
    }
    graph = {
        "raymall.orders.service": [Import("actors.order_client", 3)],
        "raymall.launcher.app": [Import("actors.order_client", 4)],
        "actors.order_client": [],
        "raymall.cart": [Import("raymall.launcher.app", 5)],
    }
    assert layer_violations(modules, graph) == [
        "raymall/cart.py:5: raymall.cart imports the composition root raymall.launcher.app",
        "raymall/orders/service.py:3: raymall.orders.service imports actors.order_client",
    ]
