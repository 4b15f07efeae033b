"""Import contracts of the era monorepo, checked over the AST import graph (stdlib only).

`python tools/check_imports.py [ROOT]` (run by `nox -s lint`) reads every module under
`packages/*/src/` and `apps/*/src/`, builds the graph of first-party imports and checks:

* **layers**: a package imports only packages of lower layers (`LAYERS`: era-reproduce ->
  domain apps -> domain packages -> era-core), never a higher one;
* **independence**: packages of one layer never import each other (the three domain packages,
  the three domain apps);
* **declared**: a first-party import names a workspace member that the importer's
  `pyproject.toml` brings in (a dependency in any extra, or a dependency of one), so the
  import works wherever the importer is installed;
* **cycles**: no import cycle between modules, within a package or across packages.

Every `import` counts, wherever it stands (module level, inside a function, under
`TYPE_CHECKING`): a lazy import is still a dependency. Importing `a.b` counts as an edge to
`a.b` only, not to the package `a`. Each broken contract is printed as one line,
`importer -> imported  [contract] file:line`, and a cycle as its path `a -> b -> a`; the exit
status is 1 when any contract is broken.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

# Top-level import names from the highest layer to the lowest. A package may import packages
# of lower layers only; packages of one layer are independent of each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("era_reproduce",),
    ("era_control_app", "era_vision_app", "era_llm_app"),
    ("era_control", "era_vision", "era_llm"),
    ("era_core",),
)

# Import cycles allowed to exist: each entry is the set of modules of one cycle (one strongly
# connected component of the graph). It is empty, and should stay so; an entry that no longer
# matches a cycle fails the check, so none lingers.
KNOWN_CYCLES: tuple[frozenset[str], ...] = ()

SOURCE_GLOBS = ("packages/*/src", "apps/*/src")


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    where: str  # "path:line" of the first import statement making this edge


@dataclass
class Graph:
    modules: dict[str, Path]  # dotted module name -> file
    distribution: dict[str, str]  # top-level import name -> distribution name (pyproject)
    declared: dict[str, set[str]]  # distribution -> names of its dependencies (all extras)
    edges: dict[tuple[str, str], Edge]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return _normalise(re.split(r"[ <>=!~\[;@]", requirement.strip(), maxsplit=1)[0])


def _declared_dependencies(pyproject: Path) -> tuple[str, set[str]]:
    project = tomllib.loads(pyproject.read_text()).get("project", {})
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return _normalise(project.get("name", pyproject.parent.name)), {
        _requirement_name(r) for r in requirements
    }


def _discover(root: Path) -> tuple[dict[str, Path], dict[str, str], dict[str, set[str]]]:
    modules: dict[str, Path] = {}
    distribution: dict[str, str] = {}
    declared: dict[str, set[str]] = {}
    for src in sorted(p for pattern in SOURCE_GLOBS for p in root.glob(pattern)):
        pyproject = src.parent / "pyproject.toml"
        name, deps = (
            _declared_dependencies(pyproject)
            if pyproject.is_file()
            else (_normalise(src.parent.name), set())
        )
        declared[name] = deps
        for init in sorted(src.glob("*/__init__.py")):
            distribution[init.parent.name] = name
            for path in sorted(init.parent.rglob("*.py")):
                parts = path.relative_to(src).with_suffix("").parts
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                modules[".".join(parts)] = path
    return modules, distribution, declared


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` starts with, or None (not first-party)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _imports(
    module: str, is_package: bool, tree: ast.AST, modules: dict[str, Path]
) -> Iterator[tuple[str, int]]:
    """(first-party module imported, line) for each import statement of ``tree``.

    `from a import b` imports module a.b when that module exists, else the name b of module a.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = package[: len(package) - node.level + 1]
                prefix = ".".join([*base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            names = [
                f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in modules else prefix
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            target = _resolve(name, modules)
            if target is not None:
                yield target, node.lineno


def build_graph(root: Path) -> Graph:
    """The first-party import graph of every module under ``root``'s source trees."""
    modules, distribution, declared = _discover(root)
    edges: dict[tuple[str, str], Edge] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for target, line in _imports(module, path.name == "__init__.py", tree, modules):
            if target != module and (module, target) not in edges:
                edges[(module, target)] = Edge(module, target, f"{path.relative_to(root)}:{line}")
    return Graph(modules, distribution, declared, edges)


def _layer_of(top: str) -> int | None:
    return next((i for i, layer in enumerate(LAYERS) if top in layer), None)


def _reachable(distribution: str, declared: dict[str, set[str]]) -> set[str]:
    """Workspace members ``distribution`` brings in: its dependencies, theirs, and so on."""
    seen: set[str] = set()
    todo = [distribution]
    while todo:
        for dep in declared.get(todo.pop(), set()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def contract_violations(graph: Graph) -> list[str]:
    """One line per edge that breaks the layer, independence or declared-dependency contract."""
    problems = [
        f"{top}  [layers: {top} is in no layer: add it to LAYERS in tools/check_imports.py]"
        for top in sorted(graph.distribution)
        if _layer_of(top) is None
    ]
    for edge in sorted(graph.edges.values(), key=lambda e: (e.importer, e.imported)):
        source, target = edge.importer.split(".")[0], edge.imported.split(".")[0]
        if source == target:
            continue
        line = f"{edge.importer} -> {edge.imported}"
        source_layer, target_layer = _layer_of(source), _layer_of(target)
        if source_layer is not None and target_layer is not None:
            if target_layer < source_layer:
                problems.append(f"{line}  [layers: {source} is below {target}] {edge.where}")
            elif target_layer == source_layer:
                problems.append(
                    f"{line}  [independence: {source} and {target} are one layer] {edge.where}"
                )
        source_dist = graph.distribution[source]
        target_dist = graph.distribution[target]
        if target_dist not in _reachable(source_dist, graph.declared):
            problems.append(
                f"{line}  [declared: {source_dist} does not bring in {target_dist}] {edge.where}"
            )
    return problems


def strongly_connected(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[set[str]]:
    """Strongly connected components (Tarjan, iterative) with more than one node."""
    successors: dict[str, list[str]] = {node: [] for node in nodes}
    for a, b in edges:
        successors[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for start in sorted(successors):
        if start in index:
            continue
        work = [(start, iter(sorted(successors[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(successors[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def cycle_path(component: set[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """A shortest cycle through the component's first module: [a, b, ..., a]."""
    successors: dict[str, list[str]] = {node: [] for node in component}
    for a, b in edges:
        if a in component and b in component:
            successors[a].append(b)
    start = min(component)
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(successors[node]):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if child not in parent:
                parent[child] = node
                queue.append(child)
    raise AssertionError("a strongly connected component always holds a cycle")


def cycle_violations(graph: Graph, known: Iterable[frozenset[str]] = KNOWN_CYCLES) -> list[str]:
    """One line per import cycle not in ``known``, and per ``known`` entry that is gone."""
    known = set(known)
    problems = []
    found = strongly_connected(graph.modules, graph.edges)
    for component in sorted(found, key=min):
        if frozenset(component) in known:
            continue
        path = cycle_path(component, graph.edges)
        wheres = ", ".join(graph.edges[(a, b)].where for a, b in pairwise(path))
        extra = f" (cycle among {len(component)} modules: {', '.join(sorted(component))})"
        problems.append(
            f"{' -> '.join(path)}  [cycles] {wheres}" + (extra if len(component) > 2 else "")
        )
    for entry in sorted(known - {frozenset(c) for c in found}, key=sorted):
        problems.append(
            f"{' <-> '.join(sorted(entry))}  [cycles] KNOWN_CYCLES lists a cycle that is gone: "
            "remove its entry from tools/check_imports.py"
        )
    return problems


def check(root: Path, known_cycles: Iterable[frozenset[str]] = KNOWN_CYCLES) -> list[str]:
    """Every broken import contract under ``root``, one line each (empty when all hold)."""
    graph = build_graph(root)
    return contract_violations(graph) + cycle_violations(graph, known_cycles)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0] if args else Path(__file__).resolve().parents[1])
    graph = build_graph(root)
    problems = contract_violations(graph) + cycle_violations(graph)
    for problem in problems:
        print(problem)
    allowed = f", {len(KNOWN_CYCLES)} known cycles allowed" if KNOWN_CYCLES else ""
    print(
        f"import contracts: {len(graph.modules)} modules, {len(graph.edges)} first-party imports, "
        f"{len(problems)} broken{allowed}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
