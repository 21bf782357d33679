"""The import graph as a reader sees it: every import counts, at module level, inside a function or for annotations
only (`if TYPE_CHECKING:`)."""

import grimp


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), i.e. the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in edges[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = stack[stack.index(module):]
            del stack[stack.index(module):]
            if len(component) > 1:
                found.append(sorted(component))

    for module in edges:
        if module not in index:
            visit(module)
    return found


def test_the_cycle_finder_finds_a_cycle_it_is_given():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_of_vaelab_is_in_an_import_cycle_counting_function_level_and_annotation_imports():
    graph = grimp.build_graph("vaelab", exclude_type_checking_imports=False)
    edges = {module: set(graph.find_modules_directly_imported_by(module)) for module in graph.modules}
    assert "vaelab.config" in graph.find_modules_that_directly_import("vaelab.models.options")  # the graph is real
    assert cycles(edges) == []


def test_the_models_never_import_the_run_config():
    graph = grimp.build_graph("vaelab", exclude_type_checking_imports=False)
    importers = graph.find_modules_that_directly_import("vaelab.config")
    assert not [module for module in importers if module.startswith("vaelab.models")]
