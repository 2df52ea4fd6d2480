"""No import cycles between the package's modules.

A cycle is dodged, not removed, by importing inside a function or under
``TYPE_CHECKING``, so every import counts, at any depth of the file (read from the
syntax tree, as tests/test_layers.py reads them). A module's import of its own parent
package is not an edge: Python loads the parent first anyway.
"""

from __future__ import annotations

from test_layers import PACKAGE, imported_modules, module_name, package_files

Graph = dict[str, set[str]]


def import_graph(sources: dict[str, str]) -> Graph:
    """module -> the package's modules it imports (`from a import b`: a.b if a module)."""
    modules = set(sources)
    graph: Graph = {}
    for name, source in sources.items():
        edges = imported_modules(source)
        parents = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
        graph[name] = {m for m in edges & modules if m != name and m not in parents}
    return graph


def find_cycle(graph: Graph) -> list[str] | None:
    """One import cycle (its modules in import order, the first repeated), or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" once explored

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt, [*path, nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def package_sources() -> dict[str, str]:
    return {module_name(path): path.read_text() for path in package_files()}


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph(package_sources()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_cycle_dodged_inside_a_function_is_still_found():
    sources = {
        "refiner.a": "from refiner.b import f\n",
        "refiner.b": "def f():\n    from refiner.c import g\n",
        "refiner.c": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import refiner.a\n",
        "refiner.d": "import refiner.a\n",
    }
    assert find_cycle(import_graph(sources)) == ["refiner.a", "refiner.b", "refiner.c", "refiner.a"]
    del sources["refiner.c"]
    assert find_cycle(import_graph(sources)) is None


def test_a_submodule_importing_its_package_is_not_a_cycle():
    sources = {
        "refiner.pkg": "from refiner.pkg.part import x\n",
        "refiner.pkg.part": "import refiner.pkg\n",
    }
    assert find_cycle(import_graph(sources)) is None
    assert PACKAGE.is_dir()
