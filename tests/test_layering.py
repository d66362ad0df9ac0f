"""Dependencies inside `jaxviz/` run one way: no import cycle (imports inside functions count, and
importing `jaxviz.a.b` from outside `jaxviz.a` runs `jaxviz/a/__init__.py` too) and no module takes
another's private (`_name`) function, class or constant."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "jaxviz"

# Still private (the batch runner's public interface for the Ray engine is still to come): the test
# fails when a new one appears and when one of these is gone (then delete its entry here).
KNOWN_PRIVATE = {
    ("jaxviz.integrations.ray", "jaxviz.batch", "_Item"),
    ("jaxviz.integrations.ray", "jaxviz.batch", "_batches"),
    ("jaxviz.integrations.ray", "jaxviz.batch", "_entries"),
    ("jaxviz.integrations.ray", "jaxviz.batch", "_launch"),
    ("jaxviz.integrations.ray", "jaxviz.batch", "_load_all"),
}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(mods: dict[str, Path]) -> tuple[dict[str, set[str]], set[tuple[str, str, str]]]:
    """`{module: modules it imports}` and the `(importer, module, _name)` private imports."""
    graph, private = {m: set() for m in mods}, set()

    def add(importer: str, target: str) -> None:
        # a module imported from outside its package runs the package's __init__ as well
        parts = target.split(".")
        for i in range(2, len(parts) + 1):
            name = ".".join(parts[:i])
            if name in mods and name != importer and not importer.startswith(name + "."):
                graph[importer].add(name)

    for mod, path in mods.items():
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("jaxviz."):
                        add(mod, alias.name)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target != "jaxviz" and not target.startswith("jaxviz."):
                    continue
                for alias in node.names:
                    if f"{target}.{alias.name}" in mods:  # `from . import batch`
                        add(mod, f"{target}.{alias.name}")
                    else:
                        add(mod, target)
                        if alias.name.startswith("_") and target != mod:
                            private.add((mod, target, alias.name))
    return graph, private


def cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.add(tuple(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports_inside_functions_and_packages():
    graph, _ = imports(modules())
    assert "jaxviz.core" in graph["jaxviz.taps"]  # a top-level relative import
    assert "jaxviz.rules.transform" in graph["jaxviz.taps"]  # inside `run`
    assert "jaxviz.rules" in graph["jaxviz.taps"]  # the package `rules.transform` lives in
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {("a", "b", "c")}


def test_no_import_cycle():
    graph, _ = imports(modules())
    assert cycles(graph) == set()


def test_no_private_name_imported_from_another_module():
    _, private = imports(modules())
    assert private <= KNOWN_PRIVATE, f"private names imported across modules: {sorted(private - KNOWN_PRIVATE)}"
    assert private == KNOWN_PRIVATE, f"made public since (delete from KNOWN_PRIVATE): {sorted(KNOWN_PRIVATE - private)}"
