"""No module imports itself around a loop, counting function-level and TYPE_CHECKING imports.

The `acyclic_siblings` contract (`uv run lint-imports`) checks siblings package by package;
it does not see a loop through a package's own `__init__` (`infra.venue` importing
`infra.venue.simulated`, which imports `infra.venue`). This checks the whole module graph.
"""

from __future__ import annotations

import grimp

PACKAGES = ("domain", "projections", "workers", "api", "infra")


def import_circles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root) & modules)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    imported = graph.find_modules_directly_imported_by(target) & modules
                    work.append((target, iter(sorted(imported))))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    circles.append(sorted(group))
    return circles


def test_the_finder_sees_a_circle() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "a.b", "a.c", "d"):
        graph.add_module(module)
    graph.add_import(importer="a", imported="a.b")
    graph.add_import(importer="a.b", imported="a")
    graph.add_import(importer="a.c", imported="d")
    assert import_circles(graph, {"a", "a.b", "a.c", "d"}) == [["a", "a.b"]]


def test_no_module_imports_in_a_circle() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    ours = {m for m in graph.modules if m.split(".")[0] in PACKAGES}
    assert import_circles(graph, ours) == []
